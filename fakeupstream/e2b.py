"""E2B's control-plane shapes (e2b.json): a created sandbox, a listed sandbox, an error.

Serialisers only. The server mounts no E2B routes: the e2b SDK reaches its API and each
sandbox's envd over HTTPS on E2B's domains through its own transport, so tests drive it with
respx (tests/test_e2b_http.py) or a fake ``SandboxBackend`` (tests/test_e2b_target.py), and
build the answers with these functions (through tests/cloudmock.py).
"""

from __future__ import annotations

from typing import Any

ENVD_VERSION = "0.5.7"


def sandbox_obj(sandbox_id: str, *, template_id: str = "base", client_id: str = "client",
                envd_access_token: str | None = None, **extra: Any) -> dict:
    """The ``Sandbox`` of POST /sandboxes (and the SDK's /v2/sandboxes) and of .../connect."""
    body: dict[str, Any] = {"templateID": template_id, "sandboxID": sandbox_id, "clientID": client_id,
                            "envdVersion": ENVD_VERSION}
    if envd_access_token is not None:
        body["envdAccessToken"] = envd_access_token
    return {**body, **extra}


def listed_obj(sandbox_id: str, metadata: dict[str, str], *, started_at: str = "2026-11-02T10:00:00Z",
               end_at: str = "2026-11-02T11:00:00Z", state: str = "running", template_id: str = "base") -> dict:
    """One ``ListedSandbox`` of GET /v2/sandboxes."""
    return {"templateID": template_id, "sandboxID": sandbox_id, "clientID": "client", "startedAt": started_at,
            "endAt": end_at, "cpuCount": 2, "memoryMB": 512, "diskSizeMB": 1024, "state": state,
            "envdVersion": ENVD_VERSION, "metadata": dict(metadata)}


def error_body(code: int, message: str) -> dict:
    """E2B's ``Error``: the HTTP status repeated as ``code``, and a message."""
    return {"code": code, "message": message}
