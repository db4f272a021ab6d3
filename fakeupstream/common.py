"""What every provider module shares: the configuration and fault keys, the request and
response types, timestamp and JSON helpers, and :class:`FakeState` (resources, request
counters, faults, latency, the clock and the state file)."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import random
import secrets
import string
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["HOST", "PROVIDERS", "MOUNTS", "DEFAULT_CONFIG", "CONFIG_KEYS", "FAULT_KEYS", "Request", "Response",
           "BadRequest", "FakeState", "json_response", "dumps", "utcnow", "iso", "iso_us", "resend_ts", "rand_alnum"]

HOST = "127.0.0.1"
PROVIDERS = ("neon", "resend", "github", "posthog")
MOUNTS = {"neon": "/neon/api/v2", "resend": "/resend", "github": "/github", "posthog": "/posthog"}

DEFAULT_CONFIG: dict[str, Any] = {
    # ms of extra latency per provider request; an int applies to every provider
    "latency_ms": {"neon": 0, "resend": 0, "github": 0, "posthog": 0},
    # where the resource is committed within the latency: "before" (commit, then wait),
    # "after" (wait, then commit) or "split" (half the wait on each side)
    "latency_mode": "split",
    # None: any non-empty token not starting with "bad" is valid.
    # A list: valid for every provider. A dict: {"neon": [...], ...} (absent provider = default rule)
    "tokens": None,
    # Neon operations report "running" until this many ms after the create
    "neon_operation_ms": 100,
    # latency of Neon's operation polls (GET .../operations[/{id}]) instead of latency_ms["neon"]:
    # a create is slow, a status read is not (None: the provider's latency)
    "neon_poll_latency_ms": None,
    "github_login": "octocat",
    "github_scopes": "repo, delete_repo",
    # None: any org accepted for /orgs/{org}/repos; a list restricts it (others -> 404)
    "github_orgs": None,
    "resend_domains": ["example.com"],
    # page size of Resend lists when no ?limit= is given (None: everything)
    "resend_default_limit": None,
    "posthog_max_events": 1000,
}
# keys accepted by --config and POST /_control
CONFIG_KEYS = set(DEFAULT_CONFIG) | {"faults", "clear_faults", "reset_counters"}
FAULT_KEYS = {"provider", "method", "path_prefix", "times", "skip", "status", "headers", "body",
              "drop_after_commit", "drop", "malformed", "delay_ms", "after_commit"}


# --------------------------------------------------------------------------- helpers
def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:  # 2022-11-23T17:42:25Z
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_us(dt: datetime) -> str:  # 2022-12-07T00:45:05.262011Z (Neon's cursor shape)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def resend_ts(dt: datetime) -> str:  # 2023-10-06 23:47:56.678+00
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d}+00"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def rand_alnum(n: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))



@dataclass
class Request:
    method: str
    target: str
    path: str  # decoded path, without query
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    provider: str | None = None
    rel: str = ""  # path relative to the provider mount

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body)

    def token(self) -> str | None:
        auth = self.headers.get("authorization", "").strip()
        scheme, _, value = auth.partition(" ")
        schemes = ("bearer", "token") if self.provider == "github" else ("bearer",)
        if scheme.lower() in schemes and value.strip():
            return value.strip()
        return None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = "application/json; charset=utf-8"


def json_response(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, dumps(obj), list(headers or []))


class BadRequest(Exception):
    def __init__(self, response: Response):
        self.response = response


class FakeState:
    """Resources, counters, faults and configuration; the provider mixins and the server build on it."""

    def __init__(self, config: dict | None = None, state_file: str | os.PathLike | None = None):
        self.config: dict[str, Any] = copy.deepcopy(DEFAULT_CONFIG)
        self.faults: list[dict] = []
        self.state_file = Path(state_file) if state_file else None
        self.rng = random.Random()
        self._last_created = datetime.fromtimestamp(0, UTC)
        self._version = self._written = 0
        self._flush_lock: asyncio.Lock | None = None
        self._reset_resources()
        self._reset_counters()
        if self.state_file and self.state_file.exists():
            self._load()
        if config:
            self.apply_control(config)

    # ---------------------------------------------------------------- state
    def _reset_resources(self) -> None:
        self._fragments: dict[tuple[str, str], dict[str, tuple[dict, bytes]]] = {}
        self.db: dict[str, Any] = {
            "version": 1,
            "seq": 0,
            "neon": {"projects": {}},
            "resend": {"segments": {}, "api_keys": {}},
            "github": {"repos": {}},  # key: full_name.lower()
            "posthog": {"count": 0, "events": []},
            "tombstones": {},  # id -> seq of deleted items, keeps cursors valid
        }

    def _reset_counters(self) -> None:
        def one() -> dict:
            # pacing (issues 12, 17): mutating requests in flight, and when every request
            # arrived ([seconds on the fake's monotonic clock, method, route]) so a test can
            # prove a rate or a window was kept (fakeupstream/pacing.py)
            return {"total": 0, "in_flight": 0, "max_in_flight": 0, "by_route": {}, "by_status": {},
                    "faults_injected": 0, "dropped": 0, "unauthorized": 0,
                    "mutations_in_flight": 0, "max_mutations_in_flight": 0, "arrivals": []}
        self.counters: dict[str, dict] = {p: one() for p in (*PROVIDERS, "all")}

    def _load(self) -> None:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"fakeupstream: cannot read state file {self.state_file}: {exc}")
        if not isinstance(data, dict) or data.get("version") != 1:
            raise SystemExit(f"fakeupstream: {self.state_file} is not a fakeupstream state file")
        self.db.update(data)

    def persist(self) -> None:
        """Mark the resources changed. Provider requests call :meth:`flush` before replying."""
        self._version += 1

    async def flush(self) -> None:
        """Make sure every change so far is in the state file (no-op without one).

        The response to a mutating request is sent only after this returns, so what a
        client saw acknowledged is on disk. Concurrent requests share writes, and the
        file is written in a worker thread so the event loop keeps serving meanwhile.
        """
        if not self.state_file or self._written >= self._version:
            return
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        async with self._flush_lock:
            version = self._version
            if self._written >= version:
                return
            data = self._snapshot()
            await asyncio.to_thread(self._write_file, data)
            self._written = max(self._written, version)

    def write_now(self) -> None:
        """Write the state file synchronously (control routes, shutdown)."""
        if self.state_file:
            version = self._version
            self._write_file(self._snapshot())
            self._written = max(self._written, version)

    def _write_file(self, data: bytes) -> None:
        assert self.state_file is not None
        tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, self.state_file)

    def _snapshot(self) -> bytes:
        """The state file's bytes. Each stored record is serialised once and its bytes reused
        (records are never changed in place once stored: replace a record to change it)."""
        db = self.db
        return b"".join([
            b'{"version":1,"seq":', str(db["seq"]).encode(),
            b',"tombstones":', dumps(db["tombstones"]), b',"posthog":', dumps(db["posthog"]),
            b',"neon":{"projects":', self._collection_bytes("neon", "projects"),
            b'},"resend":{"segments":', self._collection_bytes("resend", "segments"),
            b',"api_keys":', self._collection_bytes("resend", "api_keys"),
            b'},"github":{"repos":', self._collection_bytes("github", "repos"), b"}}",
        ])

    def _collection_bytes(self, provider: str, name: str) -> bytes:
        coll = self.db[provider][name]
        cache = self._fragments.setdefault((provider, name), {})
        parts = []
        for key, rec in coll.items():
            hit = cache.get(key)
            if hit is None or hit[0] is not rec:
                hit = cache[key] = (rec, dumps(key) + b":" + dumps(rec))
            parts.append(hit[1])
        if len(cache) > 2 * len(coll) + 64:  # forget deleted records
            for key in [k for k in cache if k not in coll]:
                del cache[key]
        return b"{" + b",".join(parts) + b"}"

    def _next_seq(self) -> int:
        self.db["seq"] += 1
        return self.db["seq"]

    def _created_now(self) -> datetime:
        """A strictly increasing 'now' (microsecond keys make cursors unambiguous)."""
        now = utcnow()
        if now <= self._last_created:
            now = self._last_created + timedelta(microseconds=1)
        self._last_created = now
        return now

    def reset(self) -> None:
        self._reset_resources()
        self._reset_counters()
        self.faults.clear()
        self.persist()
        self.write_now()

    def apply_control(self, data: dict) -> dict:
        if not isinstance(data, dict):
            raise ValueError("control body must be a JSON object")
        unknown = set(data) - CONFIG_KEYS
        if unknown:
            raise ValueError(f"unknown control keys {sorted(unknown)}; known: {sorted(CONFIG_KEYS)}")
        if data.get("clear_faults"):
            self.faults.clear()
        if data.get("reset_counters"):
            self._reset_counters()
        for key, value in data.items():
            if key in ("faults", "clear_faults", "reset_counters"):
                continue
            if key == "latency_ms":
                if isinstance(value, (int, float)):
                    value = {p: value for p in PROVIDERS}
                if not isinstance(value, dict) or set(value) - set(PROVIDERS):
                    raise ValueError(f"latency_ms must be a number or a dict over {PROVIDERS}")
                self.config["latency_ms"].update({k: float(v) for k, v in value.items()})
            elif key == "latency_mode" and value not in ("before", "after", "split"):
                raise ValueError("latency_mode must be 'before', 'after' or 'split'")
            else:
                self.config[key] = value
        for fault in data.get("faults") or []:
            self.faults.append(self._normalise_fault(fault))
        return self.control_view()

    @staticmethod
    def _normalise_fault(fault: Any) -> dict:
        if not isinstance(fault, dict):
            raise ValueError("each fault must be an object")
        unknown = set(fault) - FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; known: {sorted(FAULT_KEYS)}")
        if fault.get("provider") not in (None, "*", *PROVIDERS):
            raise ValueError(f"fault provider must be one of {PROVIDERS}")
        if not any(k in fault for k in ("status", "drop_after_commit", "drop", "malformed", "delay_ms")):
            raise ValueError("a fault needs one of status, drop_after_commit, drop, malformed, delay_ms")
        f = dict(fault)
        f.setdefault("times", 1)
        f.setdefault("skip", 0)
        if not isinstance(f["times"], int) or f["times"] == 0 or f["times"] < -1:
            raise ValueError("fault 'times' must be a positive integer, or -1 for every request")
        if f.get("method"):
            f["method"] = f["method"].upper()
        return f

    def control_view(self) -> dict:
        return {"config": copy.deepcopy(self.config), "faults": copy.deepcopy(self.faults)}

    def state_view(self, full: bool = False) -> dict:
        neon = sorted(self.db["neon"]["projects"].values(), key=lambda r: r["seq"])
        segs = sorted(self.db["resend"]["segments"].values(), key=lambda r: r["seq"])
        keys = sorted(self.db["resend"]["api_keys"].values(), key=lambda r: r["seq"])
        repos = sorted(self.db["github"]["repos"].values(), key=lambda r: r["seq"])
        out = {
            "neon": [{"id": r["project"]["id"], "name": r["project"]["name"],
                      "org_id": r["project"].get("org_id"), "region_id": r["project"]["region_id"],
                      "created_at": r["project"]["created_at"]} for r in neon],
            "resend": {
                "segments": [{"id": r["id"], "name": r["name"], "created_at": r["created_at"]} for r in segs],
                "api_keys": [{"id": r["id"], "name": r["name"], "token": r["token"],
                              "created_at": r["created_at"]} for r in keys],
            },
            "github": [{"full_name": r["repo"]["full_name"], "id": r["repo"]["id"],
                        "private": r["repo"]["private"], "owner": r["repo"]["owner"]["login"]}
                       for r in repos],
            "posthog": {"count": self.db["posthog"]["count"], "events": list(self.db["posthog"]["events"])},
            "requests": copy.deepcopy(self.counters),
            **self.control_view(),
        }
        if full:
            out["raw"] = copy.deepcopy(self.db)
        return out


    # ---------------------------------------------------------------- faults and latency
    def latency_split(self, provider: str, req: Request | None = None) -> tuple[float, float]:
        """Seconds to wait before and after the handler commits, per ``latency_mode``; Neon's
        operation polls take ``neon_poll_latency_ms`` when it is set."""
        latency = float(self.config["latency_ms"].get(provider, 0) or 0) / 1000.0
        poll_ms = self.config.get("neon_poll_latency_ms")
        if req is not None and provider == "neon" and poll_ms is not None and req.method == "GET" and "/operations" in req.rel:
            latency = float(poll_ms) / 1000.0
        before = {"before": 0.0, "after": latency, "split": latency / 2}[self.config["latency_mode"]]
        return before, latency - before

    def _take_fault(self, req: Request) -> dict | None:
        for fault in self.faults:
            if fault.get("provider") not in (None, "*", req.provider):
                continue
            if fault.get("method") and fault["method"] != req.method:
                continue
            prefix = fault.get("path_prefix")
            if prefix and not (req.rel.startswith(prefix) or req.path.startswith(prefix)):
                continue
            if fault["skip"] > 0:
                fault["skip"] -= 1
                return None
            if fault["times"] > 0:
                fault["times"] -= 1
                if fault["times"] == 0:
                    self.faults.remove(fault)
            return fault
        return None


    def _token_ok(self, provider: str, token: str | None) -> bool:
        if not token:
            return False
        tokens = self.config.get("tokens")
        if isinstance(tokens, dict):
            tokens = tokens.get(provider)
        if tokens is None:
            return not token.startswith("bad")
        return token in tokens

