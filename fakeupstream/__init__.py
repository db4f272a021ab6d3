"""A small, fast, stateful fake of the cloud providers' HTTP APIs.

Made for crash-safety tests and benchmarks: a separate process can kill our CLI
at any point and then ask the fake (``GET /_state``) what it holds.

Pure stdlib: an ``asyncio.start_server`` HTTP/1.1 server (keep-alive,
Content-Length and chunked request bodies). Latency is ``await asyncio.sleep``,
so hundreds of concurrent connections never serialise. Binds 127.0.0.1 only.

Mounts (response shapes follow the trimmed OpenAPI documents in ``tests/api-specs/``)::

    /neon/api/v2   GET,POST /projects   GET,DELETE /projects/{id}
                   GET /projects/{id}/operations[/{op_id}]
                   GET /projects/{id}/connection_uri   GET /users/me
    /resend        POST,GET /segments   GET,DELETE /segments/{id}
                   POST,GET /api-keys   DELETE /api-keys/{id}   GET /domains
    /github        GET /user   GET,POST /user/repos   GET,POST /orgs/{org}/repos
                   GET,DELETE /repos/{owner}/{repo}   GET /rate_limit
    /posthog       POST /i/v0/e/   (also /batch/ and /capture/)

Control plane (never delayed, never faulted, not counted)::

    GET  /_state[?full=1]   resources per provider, request counters, config, faults
    POST /_control          JSON, same keys as the start-up config (see CONFIG_KEYS)
    POST /_reset            drop all resources, counters and pending faults
    POST /_shutdown         stop serving

Command line::

    python -m fakeupstream --port 0 --state-file F --config '{"latency_ms": {"neon": 800}}'

prints ``LISTENING http://127.0.0.1:<port>`` and serves until SIGTERM/SIGINT.

From Python::

    with FakeUpstream(state_file=tmp / "fake.json", config={...}) as fake:
        httpx.get(fake.github_url + "/user", headers={"Authorization": "Bearer t"})
        fake.control(faults=[{"provider": "github", "method": "POST",
                              "path_prefix": "/user/repos", "status": 500, "times": 2}])
        fake.state()["github"]
"""

from __future__ import annotations

from .common import CONFIG_KEYS, DEFAULT_CONFIG, MOUNTS
from .harness import FakeUpstream
from .server import FakeServer
from .__main__ import main

__all__ = ["FakeServer", "FakeUpstream", "DEFAULT_CONFIG", "CONFIG_KEYS", "MOUNTS", "main"]
