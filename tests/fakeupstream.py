#!/usr/bin/env python3
"""A small, fast, stateful fake of the cloud providers' HTTP APIs.

Made for crash-safety tests and benchmarks: a separate process can kill our CLI
at any point and then ask the fake (``GET /_state``) what it holds.

Pure stdlib: an ``asyncio.start_server`` HTTP/1.1 server (keep-alive,
Content-Length and chunked request bodies). Latency is ``await asyncio.sleep``,
so hundreds of concurrent connections never serialise. Binds 127.0.0.1 only.

Mounts (response shapes follow the trimmed OpenAPI documents in
``/work/shared/api-specs``)::

    /neon/api/v2   GET,POST /projects   GET,DELETE /projects/{id}
                   GET /projects/{id}/operations[/{op_id}]
                   GET /projects/{id}/connection_uri   GET /users/me
    /resend        POST,GET /segments   GET,DELETE /segments/{id}
                   POST,GET /api-keys   DELETE /api-keys/{id}   GET /domains
    /github        GET /user   GET,POST /user/repos   GET,POST /orgs/{org}/repos
                   GET,DELETE /repos/{owner}/{repo}   GET /rate_limit
    /posthog       POST /i/v0/e/   (also /batch/ and /capture/), POST /flags (key check)

Control plane (never delayed, never faulted, not counted)::

    GET  /_state[?full=1]   resources per provider, request counters, config, faults
    POST /_control          JSON, same keys as the start-up config (see CONFIG_KEYS)
    POST /_reset            drop all resources, counters and pending faults
    POST /_shutdown         stop serving

Command line::

    python tests/fakeupstream.py --port 0 --state-file F --config '{"latency_ms": {"neon": 800}}'

prints ``LISTENING http://127.0.0.1:<port>`` and serves until SIGTERM/SIGINT.

From Python::

    with FakeUpstream(state_file=tmp / "fake.json", config={...}) as fake:
        httpx.get(fake.github_url + "/user", headers={"Authorization": "Bearer t"})
        fake.control(faults=[{"provider": "github", "method": "POST",
                              "path_prefix": "/user/repos", "status": 500, "times": 2}])
        fake.state()["github"]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import gzip
import json
import os
import random
import re
import secrets
import signal
import string
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

__all__ = ["FakeServer", "FakeUpstream", "DEFAULT_CONFIG", "CONFIG_KEYS", "MOUNTS", "main"]

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

_ADJ = ("autumn", "bitter", "black", "blue", "bold", "broad", "calm", "cold", "crimson", "curly",
        "damp", "dark", "divine", "dry", "falling", "floral", "fragrant", "frosty", "gentle", "green",
        "hidden", "icy", "jolly", "little", "lively", "lucky", "misty", "morning", "muddy", "odd",
        "old", "patient", "plain", "polished", "proud", "purple", "quiet", "rapid", "red", "royal",
        "shiny", "silent", "small", "snowy", "soft", "spring", "still", "summer", "sweet", "tiny",
        "twilight", "wandering", "white", "wild", "winter", "wispy", "yellow", "young")
_NOUN = ("art", "band", "bird", "block", "boat", "bread", "breeze", "brook", "bush", "cake", "cell",
         "cherry", "cloud", "darkness", "dawn", "dew", "dream", "dust", "feather", "field", "fire",
         "flower", "fog", "forest", "frog", "frost", "glade", "grass", "haze", "heart", "hill",
         "king", "lake", "leaf", "meadow", "moon", "mountain", "mouse", "night", "paper", "pine",
         "pond", "queen", "rain", "river", "sea", "shadow", "sky", "smoke", "snow", "sound", "star",
         "sun", "sunset", "surf", "thunder", "tree", "violet", "voice", "water", "wave", "wind")

GH_DOCS = "https://docs.github.com/rest"


# --------------------------------------------------------------------------- helpers
def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(dt: datetime) -> str:  # 2022-11-23T17:42:25Z
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_us(dt: datetime) -> str:  # 2022-12-07T00:45:05.262011Z (Neon's cursor shape)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _resend_ts(dt: datetime) -> str:  # 2023-10-06 23:47:56.678+00
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d}+00"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _rand_alnum(n: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _neon_name(rng: random.Random, prefix: str = "") -> str:
    return f"{prefix}{rng.choice(_ADJ)}-{rng.choice(_NOUN)}-{rng.randrange(10**7, 10**8)}"


def _region_host(region_id: str) -> str:
    """aws-us-east-2 -> us-east-2.aws.neon.tech ; azure-eastus2 -> eastus2.azure.neon.tech"""
    platform, _, rest = region_id.partition("-")
    return f"{rest}.{platform}.neon.tech"


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


def _json(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, _dumps(obj), list(headers or []))


class _BadRequest(Exception):
    def __init__(self, response: Response):
        self.response = response


# --------------------------------------------------------------------------- server
class FakeServer:
    """The fake itself. Runs inside an asyncio loop (see :func:`main` and :class:`FakeUpstream`)."""

    def __init__(self, config: dict | None = None, state_file: str | os.PathLike | None = None):
        self.config: dict[str, Any] = copy.deepcopy(DEFAULT_CONFIG)
        self.faults: list[dict] = []
        self.state_file = Path(state_file) if state_file else None
        self.rng = random.Random()
        self.port: int | None = None
        self._server: asyncio.base_events.Server | None = None
        self._conn_tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopped: asyncio.Event | None = None
        self._last_created = datetime.fromtimestamp(0, timezone.utc)
        self._version = self._written = 0
        self._flush_lock: asyncio.Lock | None = None
        self._reset_resources()
        self._reset_counters()
        if self.state_file and self.state_file.exists():
            self._load()
        if config:
            self.apply_control(config)
        self._routes = self._build_routes()

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
            return {"total": 0, "in_flight": 0, "max_in_flight": 0, "by_route": {}, "by_status": {},
                    "faults_injected": 0, "dropped": 0, "unauthorized": 0}
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
            b',"tombstones":', _dumps(db["tombstones"]), b',"posthog":', _dumps(db["posthog"]),
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
                hit = cache[key] = (rec, _dumps(key) + b":" + _dumps(rec))
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
        now = _now()
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

    # ---------------------------------------------------------------- lifecycle
    async def start(self, port: int = 0) -> int:
        self._stopped = asyncio.Event()
        self._server = await asyncio.start_server(self._handle_conn, HOST, port, backlog=1024,
                                                  limit=1 << 20)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def request_stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()

    async def wait_stopped(self) -> None:
        assert self._stopped is not None
        await self._stopped.wait()

    async def close(self) -> None:
        if self._written < self._version:
            self.write_now()
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        tasks = [t for t in self._conn_tasks if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # ---------------------------------------------------------------- HTTP/1.1
    async def _handle_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conn_tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                if line in (b"\r\n", b"\n"):
                    continue
                try:
                    method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
                except ValueError:
                    await self._write(writer, _json(400, {"error": "bad request line"}), False)
                    break
                headers: dict[str, str] = {}
                complete = False
                while True:
                    h = await reader.readline()
                    if not h:
                        break
                    if h in (b"\r\n", b"\n"):
                        complete = True
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    k, v = k.strip().lower(), v.strip()
                    headers[k] = f"{headers[k]}, {v}" if k in headers else v
                if not complete:
                    break
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    body = await self._read_chunked(reader)
                else:
                    body = await reader.readexactly(int(headers.get("content-length") or 0))
                conn = headers.get("connection", "").lower()
                keep_alive = ("close" not in conn) if version == "HTTP/1.1" else ("keep-alive" in conn)
                split = urlsplit(target)
                req = Request(method=method.upper(), target=target, path=unquote(split.path),
                              query=dict(parse_qsl(split.query, keep_blank_values=True)),
                              headers=headers, body=body)
                resp = await self._dispatch(req)
                if resp is None:  # injected connection drop
                    break
                await self._write(writer, resp, keep_alive)
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._conn_tasks.discard(task)
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - best effort on a dead socket
                pass

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        chunks = []
        while True:
            size_line = await reader.readline()
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, resp: Response, keep_alive: bool) -> None:
        try:
            reason = HTTPStatus(resp.status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {resp.status} {reason}", f"Date: {formatdate(usegmt=True)}",
                 "Server: fakeupstream", f"Connection: {'keep-alive' if keep_alive else 'close'}"]
        names = {k.lower() for k, _ in resp.headers}
        if resp.status not in (204, 304):
            if resp.content_type and "content-type" not in names:
                lines.append(f"Content-Type: {resp.content_type}")
            lines.append(f"Content-Length: {len(resp.body)}")
        lines += [f"{k}: {v}" for k, v in resp.headers if k.lower() not in ("content-length", "connection")]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        writer.write(head + (resp.body if resp.status not in (204, 304) else b""))
        await writer.drain()

    # ---------------------------------------------------------------- dispatch
    async def _dispatch(self, req: Request) -> Response | None:
        if req.path.startswith("/_"):
            return self._control_route(req)
        for provider, mount in MOUNTS.items():
            if req.path == mount or req.path.startswith(mount + "/"):
                req.provider, req.rel = provider, req.path[len(mount):] or "/"
                break
        else:
            return _json(404, {"error": f"no provider mounted at {req.path}",
                               "mounts": list(MOUNTS.values())})
        provider = req.provider
        handler, params, route = self._match(provider, req.method, req.rel)
        counters = (self.counters[provider], self.counters["all"])
        for c in counters:
            c["total"] += 1
            c["in_flight"] += 1
            c["max_in_flight"] = max(c["max_in_flight"], c["in_flight"])
            c["by_route"][route] = c["by_route"].get(route, 0) + 1
        status = 0
        try:
            resp = await self._serve(req, handler, params)
            status = resp.status if resp is not None else 0
            if resp is None:
                for c in counters:
                    c["dropped"] += 1
            return resp
        finally:
            for c in counters:
                c["in_flight"] -= 1
                key = str(status) if status else "dropped"
                c["by_status"][key] = c["by_status"].get(key, 0) + 1

    async def _serve(self, req: Request, handler: Callable | None,
                     params: dict[str, str]) -> Response | None:
        provider = req.provider
        latency = float(self.config["latency_ms"].get(provider, 0) or 0) / 1000.0
        poll_ms = self.config.get("neon_poll_latency_ms")
        if provider == "neon" and poll_ms is not None and req.method == "GET" and "/operations" in req.rel:
            latency = float(poll_ms) / 1000.0
        mode = self.config["latency_mode"]
        before = {"before": 0.0, "after": latency, "split": latency / 2}[mode]
        after = latency - before
        if before > 0:
            await asyncio.sleep(before)

        auth_error = self._auth_error(req)
        if auth_error is not None:
            self.counters[provider]["unauthorized"] += 1
            self.counters["all"]["unauthorized"] += 1
            if after > 0:
                await asyncio.sleep(after)
            return self._decorate(req, auth_error)

        fault = self._take_fault(req)
        if fault is not None:
            self.counters[provider]["faults_injected"] += 1
            self.counters["all"]["faults_injected"] += 1
            if fault.get("delay_ms"):
                await asyncio.sleep(float(fault["delay_ms"]) / 1000.0)
            if fault.get("drop"):
                return None
            # after_commit: the handler applies the request, then `status` is answered instead
            commits = fault.get("drop_after_commit") or fault.get("malformed") or fault.get("after_commit")
            if "status" in fault and not commits:
                if after > 0:
                    await asyncio.sleep(after)
                return self._decorate(req, self._fault_response(req, fault))

        if handler is None:
            resp = self._not_found(req)
        else:
            try:
                resp = handler(req, **params)
            except _BadRequest as exc:
                resp = exc.response
            await self.flush()
        if after > 0:
            await asyncio.sleep(after)
        if fault is not None:
            if fault.get("drop_after_commit"):
                return None
            if fault.get("after_commit") and "status" in fault:
                return self._decorate(req, self._fault_response(req, fault))
            if fault.get("malformed"):
                body = resp.body or b'{"ok":true}'
                resp = Response(int(fault.get("status", 200)), body[: max(1, len(body) // 2)],
                                [*resp.headers, *fault.get("headers", {}).items()])
        return self._decorate(req, resp)

    def _match(self, provider: str, method: str, rel: str):
        for m, regex, pattern, handler in self._routes[provider]:
            mt = regex.match(rel)
            if mt and m == method:
                return handler, mt.groupdict(), f"{method} {pattern}"
        return None, {}, f"{method} <unknown>"

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

    # ---------------------------------------------------------------- auth and errors
    def _token_ok(self, provider: str, token: str | None) -> bool:
        if not token:
            return False
        tokens = self.config.get("tokens")
        if isinstance(tokens, dict):
            tokens = tokens.get(provider)
        if tokens is None:
            return not token.startswith("bad")
        return token in tokens

    def _auth_error(self, req: Request) -> Response | None:
        p = req.provider
        if p == "posthog":
            token = req.token()
            if token is None:
                try:
                    body = self._posthog_body(req)
                    token = body.get("api_key") or body.get("token") if isinstance(body, dict) else None
                except ValueError:
                    token = None
            if self._token_ok(p, token):
                return None
            return _json(401, {"type": "authentication_error", "code": "invalid_api_key",
                               "detail": "Project API key invalid. You can find your project API key "
                                         "in your PostHog project settings.", "attr": None})
        token = req.token()
        if self._token_ok(p, token):
            return None
        if p == "neon":
            return _json(401, {"request_id": str(uuid.uuid4()), "code": "",
                               "message": "authorization failed"})
        if p == "resend":
            if token is None:
                return _json(401, {"statusCode": 401, "name": "missing_api_key",
                                   "message": "Missing API key in the authorization header. Include the "
                                              "following header in the request: Authorization: Bearer "
                                              "YOUR_API_KEY"})
            return _json(401, {"statusCode": 401, "name": "invalid_api_key", "message": "API key is invalid"})
        msg = "Requires authentication" if token is None else "Bad credentials"
        return _json(401, {"message": msg, "documentation_url": GH_DOCS, "status": "401"})

    def _error(self, provider: str, status: int, message: str, name: str | None = None) -> Response:
        if provider == "neon":
            return _json(status, {"request_id": str(uuid.uuid4()), "code": "", "message": message})
        if provider == "resend":
            default = {400: "validation_error", 404: "not_found", 422: "validation_error",
                       429: "rate_limit_exceeded", 500: "application_error"}.get(status, "internal_server_error")
            return _json(status, {"statusCode": status, "name": name or default, "message": message})
        if provider == "github":
            return _json(status, {"message": message, "documentation_url": GH_DOCS, "status": str(status)})
        return _json(status, {"type": "server_error" if status >= 500 else "validation_error",
                              "code": name or "error", "detail": message, "attr": None})

    def _fault_response(self, req: Request, fault: dict) -> Response:
        status = int(fault["status"])
        if "body" in fault:
            body = fault["body"]
            resp = Response(status, body.encode() if isinstance(body, str) else _dumps(body))
        else:
            phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
            resp = self._error(req.provider, status, f"{phrase} (injected by fakeupstream)")
        resp.headers.extend((str(k), str(v)) for k, v in (fault.get("headers") or {}).items())
        return resp

    def _not_found(self, req: Request) -> Response:
        if req.provider == "github":
            return _json(404, {"message": "Not Found", "documentation_url": GH_DOCS, "status": "404"})
        return self._error(req.provider, 404, f"no such route: {req.method} {req.rel}")

    def _decorate(self, req: Request, resp: Response) -> Response:
        if req.provider == "github":
            c = self.counters["github"]
            reset = int(time.time()) // 3600 * 3600 + 3600
            used = c["total"]
            extra = [("X-GitHub-Request-Id", uuid.uuid4().hex[:20].upper()),
                     ("X-GitHub-Media-Type", "github.v3; format=json"),
                     ("X-RateLimit-Limit", "5000"), ("X-RateLimit-Remaining", str(max(0, 5000 - used))),
                     ("X-RateLimit-Reset", str(reset)), ("X-RateLimit-Used", str(used)),
                     ("X-RateLimit-Resource", "core")]
            if resp.status != 401:
                extra.append(("X-OAuth-Scopes", self.config["github_scopes"]))
            have = {k.lower() for k, _ in resp.headers}
            resp.headers.extend((k, v) for k, v in extra if k.lower() not in have)
        elif req.provider == "neon":
            resp.headers.append(("X-Neon-Ret-Request-Id", uuid.uuid4().hex))
        return resp

    # ---------------------------------------------------------------- control routes
    def _control_route(self, req: Request) -> Response:
        try:
            if req.path == "/_state" and req.method == "GET":
                full = req.query.get("full", "") not in ("", "0", "false")
                return _json(200, self.state_view(full=full))
            if req.path == "/_control" and req.method == "POST":
                return _json(200, self.apply_control(req.json() or {}))
            if req.path == "/_control" and req.method == "GET":
                return _json(200, self.control_view())
            if req.path == "/_reset" and req.method == "POST":
                self.reset()
                return _json(200, {"ok": True})
            if req.path == "/_shutdown" and req.method == "POST":
                asyncio.get_running_loop().call_soon(self.request_stop)
                return _json(200, {"ok": True})
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        return _json(404, {"error": f"unknown control route {req.method} {req.path}"})

    # ---------------------------------------------------------------- routing table
    def _build_routes(self) -> dict[str, list]:
        table = {
            "neon": [
                ("GET", "/projects", self.neon_list_projects),
                ("POST", "/projects", self.neon_create_project),
                ("GET", "/projects/{project_id}", self.neon_get_project),
                ("DELETE", "/projects/{project_id}", self.neon_delete_project),
                ("GET", "/projects/{project_id}/operations", self.neon_list_operations),
                ("GET", "/projects/{project_id}/operations/{operation_id}", self.neon_get_operation),
                ("GET", "/projects/{project_id}/connection_uri", self.neon_connection_uri),
                ("GET", "/users/me", self.neon_me),
            ],
            "resend": [
                ("POST", "/segments", self.resend_create_segment),
                ("GET", "/segments", self.resend_list_segments),
                ("GET", "/segments/{id}", self.resend_get_segment),
                ("DELETE", "/segments/{id}", self.resend_delete_segment),
                ("POST", "/api-keys", self.resend_create_api_key),
                ("GET", "/api-keys", self.resend_list_api_keys),
                ("DELETE", "/api-keys/{api_key_id}", self.resend_delete_api_key),
                ("GET", "/domains", self.resend_list_domains),
            ],
            "github": [
                ("GET", "/user", self.gh_user),
                ("GET", "/user/repos", self.gh_list_user_repos),
                ("POST", "/user/repos", self.gh_create_user_repo),
                ("GET", "/orgs/{org}/repos", self.gh_list_org_repos),
                ("POST", "/orgs/{org}/repos", self.gh_create_org_repo),
                ("GET", "/repos/{owner}/{repo}", self.gh_get_repo),
                ("DELETE", "/repos/{owner}/{repo}", self.gh_delete_repo),
                ("GET", "/rate_limit", self.gh_rate_limit),
            ],
            "posthog": [
                ("POST", "/i/v0/e/", self.posthog_capture),
                ("POST", "/i/v0/e", self.posthog_capture),
                ("POST", "/batch/", self.posthog_capture),
                ("POST", "/capture/", self.posthog_capture),
                ("POST", "/flags", self.posthog_flags),  # key check: 401 for an unknown key (see _auth_error)
            ],
        }
        out: dict[str, list] = {}
        for provider, routes in table.items():
            out[provider] = []
            for method, pattern, handler in routes:
                regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
                out[provider].append((method, regex, pattern, handler))
        return out

    def _body(self, req: Request) -> dict:
        try:
            body = req.json()
        except ValueError:
            if req.provider == "github":
                raise _BadRequest(self._error("github", 400, "Problems parsing JSON"))
            raise _BadRequest(self._error(req.provider, 400, "request body is not valid JSON"))
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise _BadRequest(self._error(req.provider, 400, "request body must be a JSON object"))
        return body

    # ================================================================= Neon
    def _neon_op_view(self, op: dict) -> dict:
        out = {k: v for k, v in op.items() if not k.startswith("_")}
        if time.time() >= op["_finish_at"]:
            out["status"] = "finished"
            out["updated_at"] = _iso(datetime.fromtimestamp(op["_finish_at"], timezone.utc))
            out["total_duration_ms"] = op["_duration_ms"]
        return out

    def _neon_list_item(self, project: dict) -> dict:
        keep = ("id", "platform_id", "region_id", "name", "provisioner", "default_endpoint_settings",
                "settings", "pg_version", "proxy_host", "branch_logical_size_limit",
                "branch_logical_size_limit_bytes", "store_passwords", "cpu_used_sec", "creation_source",
                "created_at", "updated_at", "owner_id", "org_id")
        item = {k: project[k] for k in keep if k in project}
        item["active_time"] = project["active_time_seconds"]
        return item

    def _neon_project(self, project_id: str) -> dict:
        rec = self.db["neon"]["projects"].get(project_id)
        if rec is None:
            raise _BadRequest(self._error("neon", 404, f"project {project_id} not found"))
        return rec

    def neon_create_project(self, req: Request) -> Response:
        body = self._body(req)
        spec = body.get("project")
        if not isinstance(spec, dict):
            raise _BadRequest(self._error("neon", 400, "request body must contain a 'project' object"))
        region = spec.get("region_id") or "aws-us-east-2"
        if not isinstance(region, str) or not re.fullmatch(r"(aws|azure)-[a-z0-9-]+", region):
            raise _BadRequest(self._error("neon", 400, f"region {region!r} is not supported"))
        pg_version = spec.get("pg_version", 17)
        if not isinstance(pg_version, int) or not 14 <= pg_version <= 18:
            raise _BadRequest(self._error("neon", 400, "pg_version must be an integer from 14 to 18"))
        name = spec.get("name")
        if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 256):
            raise _BadRequest(self._error("neon", 400, "project name must be 1 to 256 characters"))
        org_id = spec.get("org_id")
        if org_id is not None and (not isinstance(org_id, str) or not re.fullmatch(r"[a-z0-9-]{1,60}", org_id)):
            raise _BadRequest(self._error("neon", 400, "org_id is malformed"))
        branch_spec = spec.get("branch") or {}
        while True:
            pid = _neon_name(self.rng)
            if pid not in self.db["neon"]["projects"] and pid not in self.db["tombstones"]:
                break
        created = self._created_now()
        ts = _iso(created)
        proxy_host = _region_host(region)
        branch_id, ep_id = _neon_name(self.rng, "br-"), _neon_name(self.rng, "ep-")
        role = branch_spec.get("role_name") or f"{branch_spec.get('database_name') or 'neondb'}_owner"
        dbname = branch_spec.get("database_name") or "neondb"
        password = "npg_" + _rand_alnum(12)
        host, pooler_host = f"{ep_id}.{proxy_host}", f"{ep_id}-pooler.{proxy_host}"
        project = {
            "id": pid, "platform_id": region.split("-", 1)[0], "region_id": region,
            "name": name or pid, "provisioner": "k8s-neonvm",
            "default_endpoint_settings": {"autoscaling_limit_min_cu": 0.25, "autoscaling_limit_max_cu": 2,
                                          "suspend_timeout_seconds": 0},
            "settings": {"allowed_ips": {"ips": [], "protected_branches_only": False},
                         "enable_logical_replication": False},
            "pg_version": pg_version, "proxy_host": proxy_host,
            "branch_logical_size_limit": 512, "branch_logical_size_limit_bytes": 536870912,
            "store_passwords": spec.get("store_passwords", True), "active_time_seconds": 0,
            "compute_time_seconds": 0, "written_data_bytes": 0, "data_transfer_bytes": 0,
            "data_storage_bytes_hour": 0, "cpu_used_sec": 0, "creation_source": "console",
            "history_retention_seconds": int(spec.get("history_retention_seconds", 86400)),
            "created_at": ts, "updated_at": ts,
            "consumption_period_start": _iso(created.replace(day=1, hour=0, minute=0, second=0, microsecond=0)),
            "consumption_period_end": _iso((created.replace(day=1) + timedelta(days=32)).replace(
                day=1, hour=0, minute=0, second=0, microsecond=0)),
            "owner_id": "u-fake-0001",
            "owner": {"email": "dev@example.com", "name": "Dev User", "branches_limit": 10,
                      "subscription_type": "free_v3"},
        }
        if org_id:
            project["org_id"] = org_id
        branch = {
            "id": branch_id, "project_id": pid, "name": branch_spec.get("name") or "main",
            "current_state": "init", "pending_state": "ready", "state_changed_at": ts,
            "creation_source": "console", "primary": True, "default": True, "protected": False,
            "cpu_used_sec": 0, "compute_time_seconds": 0, "active_time_seconds": 0,
            "written_data_bytes": 0, "data_transfer_bytes": 0, "created_at": ts, "updated_at": ts,
        }
        endpoint = {
            "host": host, "id": ep_id, "project_id": pid, "branch_id": branch_id,
            "autoscaling_limit_min_cu": 0.25, "autoscaling_limit_max_cu": 2, "region_id": region,
            "type": "read_write", "current_state": "init", "pending_state": "active", "settings": {},
            "pooler_enabled": False, "pooler_mode": "transaction", "disabled": False,
            "passwordless_access": True, "creation_source": "console", "created_at": ts, "updated_at": ts,
            "proxy_host": proxy_host, "suspend_timeout_seconds": 0, "provisioner": "k8s-neonvm",
        }
        roles = [{"branch_id": branch_id, "name": role, "password": password, "protected": False,
                  "created_at": ts, "updated_at": ts}]
        databases = [{"id": self.rng.randrange(10**6, 10**7), "branch_id": branch_id, "name": dbname,
                      "owner_name": role, "created_at": ts, "updated_at": ts}]
        delay_ms = int(self.config["neon_operation_ms"])
        finish_at = created.timestamp() + delay_ms / 1000.0
        operations = [
            {"id": str(uuid.uuid4()), "project_id": pid, "branch_id": branch_id, "action": "create_timeline",
             "status": "running", "failures_count": 0, "created_at": ts, "updated_at": ts,
             "total_duration_ms": 0, "_finish_at": finish_at, "_duration_ms": delay_ms},
            {"id": str(uuid.uuid4()), "project_id": pid, "branch_id": branch_id, "endpoint_id": ep_id,
             "action": "start_compute", "status": "running", "failures_count": 0, "created_at": ts,
             "updated_at": ts, "total_duration_ms": 0, "_finish_at": finish_at, "_duration_ms": delay_ms},
        ]
        rec = {"seq": self._next_seq(), "cursor": _iso_us(created), "project": project, "branch": branch,
               "endpoints": [endpoint], "roles": roles, "databases": databases, "operations": operations}
        self.db["neon"]["projects"][pid] = rec
        self.persist()
        uri = f"postgresql://{role}:{password}@{host}/{dbname}?sslmode=require"
        return _json(201, {
            "project": project,
            "connection_uris": [{"connection_uri": uri, "connection_parameters": {
                "database": dbname, "password": password, "role": role, "host": host,
                "pooler_host": pooler_host}}],
            "roles": roles, "databases": databases,
            "operations": [{k: v for k, v in op.items() if not k.startswith("_")} for op in operations],
            "branch": branch, "endpoints": [endpoint],
        })

    def neon_list_projects(self, req: Request) -> Response:
        q = req.query
        try:
            limit = int(q.get("limit", 10))
        except ValueError:
            limit = -1
        if not 1 <= limit <= 400:
            raise _BadRequest(self._error("neon", 400, "limit must be an integer from 1 to 400"))
        recs = sorted(self.db["neon"]["projects"].values(), key=lambda r: r["cursor"])
        org_id = q.get("org_id") or None
        recs = [r for r in recs if r["project"].get("org_id") == org_id]
        search = (q.get("search") or "").lower()
        if search:
            recs = [r for r in recs if search in r["project"]["name"].lower() or search in r["project"]["id"]]
        cursor = q.get("cursor")
        if cursor:
            recs = [r for r in recs if r["cursor"] > cursor]
        page = recs[:limit]
        out: dict[str, Any] = {"projects": [self._neon_list_item(r["project"]) for r in page],
                               "applications": {}, "integrations": {}}
        if page:
            out["pagination"] = {"cursor": page[-1]["cursor"]}
        elif cursor:
            out["pagination"] = {"cursor": cursor}
        return _json(200, out)

    def neon_get_project(self, req: Request, project_id: str) -> Response:
        return _json(200, {"project": self._neon_project(project_id)["project"]})

    def neon_delete_project(self, req: Request, project_id: str) -> Response:
        rec = self._neon_project(project_id)
        del self.db["neon"]["projects"][project_id]
        self.db["tombstones"][project_id] = rec["seq"]
        self.persist()
        return _json(200, {"project": rec["project"]})

    def neon_list_operations(self, req: Request, project_id: str) -> Response:
        rec = self._neon_project(project_id)
        ops = [self._neon_op_view(op) for op in rec["operations"]]
        return _json(200, {"operations": ops, **({"pagination": {"cursor": ops[-1]["id"]}} if ops else {})})

    def neon_get_operation(self, req: Request, project_id: str, operation_id: str) -> Response:
        rec = self._neon_project(project_id)
        for op in rec["operations"]:
            if op["id"] == operation_id:
                return _json(200, {"operation": self._neon_op_view(op)})
        raise _BadRequest(self._error("neon", 404, f"operation {operation_id} not found"))

    def neon_connection_uri(self, req: Request, project_id: str) -> Response:
        rec = self._neon_project(project_id)
        q = req.query
        db, role = q.get("database_name"), q.get("role_name")
        if not db or not role:
            raise _BadRequest(self._error("neon", 400, "database_name and role_name are required"))
        if q.get("branch_id") and q["branch_id"] != rec["branch"]["id"]:
            raise _BadRequest(self._error("neon", 404, f"branch {q['branch_id']} not found"))
        endpoint = rec["endpoints"][0]
        if q.get("endpoint_id") and q["endpoint_id"] != endpoint["id"]:
            raise _BadRequest(self._error("neon", 404, f"endpoint {q['endpoint_id']} not found"))
        role_rec = next((r for r in rec["roles"] if r["name"] == role), None)
        if role_rec is None:
            raise _BadRequest(self._error("neon", 404, f"role {role} not found"))
        if not any(d["name"] == db for d in rec["databases"]):
            raise _BadRequest(self._error("neon", 404, f"database {db} not found"))
        host = endpoint["host"]
        if q.get("pooled", "").lower() == "true":
            host = host.replace(endpoint["id"], endpoint["id"] + "-pooler", 1)
        return _json(200, {"uri": f"postgresql://{role}:{role_rec['password']}@{host}/{db}?sslmode=require"})

    def neon_me(self, req: Request) -> Response:
        return _json(200, {
            "active_seconds_limit": 360000, "id": "u-fake-0001", "email": "dev@example.com",
            "login": "dev", "name": "Dev", "last_name": "User", "image": "", "projects_limit": 100,
            "branches_limit": 10, "max_autoscaling_limit": 2, "compute_seconds_limit": 360000,
            "auth_accounts": [{"provider": "github", "email": "dev@example.com", "name": "Dev User",
                               "login": "dev", "image": ""}],
            "plan": "free_v3",
        })

    # ================================================================= Resend
    def _resend_page(self, req: Request, items: list[dict], view: Callable[[dict], dict]) -> Response:
        """Newest first; ``limit`` (1-100), ``after``/``before`` = an item id, as the spec says."""
        q = req.query
        if "after" in q and "before" in q:
            raise _BadRequest(self._error("resend", 422, "You can only use one of `after` or `before`."))
        limit_raw = q.get("limit", self.config.get("resend_default_limit"))
        limit = None
        if limit_raw is not None:
            try:
                limit = int(limit_raw)
            except ValueError:
                limit = 0
            if not 1 <= limit <= 100:
                raise _BadRequest(self._error("resend", 422, "The `limit` must be between 1 and 100."))
        items = sorted(items, key=lambda r: r["seq"], reverse=True)
        has_more = False
        for key in ("after", "before"):
            if key in q:
                seq = self._resend_cursor_seq(q[key])
                if key == "after":
                    items = [r for r in items if r["seq"] < seq]
                    if limit is not None:
                        has_more = len(items) > limit
                        items = items[:limit]
                else:
                    items = [r for r in items if r["seq"] > seq]
                    if limit is not None:
                        has_more = len(items) > limit
                        items = items[-limit:]
                break
        else:
            if limit is not None:
                has_more = len(items) > limit
                items = items[:limit]
        return _json(200, {"object": "list", "has_more": has_more, "data": [view(r) for r in items]})

    def _resend_cursor_seq(self, cursor: str) -> int:
        for coll in (self.db["resend"]["segments"], self.db["resend"]["api_keys"]):
            if cursor in coll:
                return coll[cursor]["seq"]
        if cursor in self.db["tombstones"]:
            return self.db["tombstones"][cursor]
        raise _BadRequest(self._error("resend", 422, f"The cursor {cursor!r} is invalid."))

    def resend_create_segment(self, req: Request) -> Response:
        body = self._body(req)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise _BadRequest(self._error("resend", 422, "Missing `name` field.", "missing_required_field"))
        created = self._created_now()
        sid = str(uuid.uuid4())
        rec = {"seq": self._next_seq(), "id": sid, "name": name, "created_at": _resend_ts(created)}
        if isinstance(body.get("filter"), dict):
            rec["filter"] = body["filter"]
        if isinstance(body.get("audience_id"), str):
            rec["audience_id"] = body["audience_id"]
        self.db["resend"]["segments"][sid] = rec
        self.persist()
        return _json(201, {"object": "segment", "id": sid, "name": name})

    @staticmethod
    def _segment_view(rec: dict) -> dict:
        return {k: v for k, v in rec.items() if k in ("id", "name", "audience_id", "created_at")}

    def resend_list_segments(self, req: Request) -> Response:
        return self._resend_page(req, list(self.db["resend"]["segments"].values()), self._segment_view)

    def resend_get_segment(self, req: Request, id: str) -> Response:  # noqa: A002 - spec name
        rec = self.db["resend"]["segments"].get(id)
        if rec is None:
            raise _BadRequest(self._error("resend", 404, "Segment not found"))
        return _json(200, {"object": "segment", **{k: v for k, v in rec.items() if k != "seq"}})

    def resend_delete_segment(self, req: Request, id: str) -> Response:  # noqa: A002
        rec = self.db["resend"]["segments"].pop(id, None)
        if rec is None:
            raise _BadRequest(self._error("resend", 404, "Segment not found"))
        self.db["tombstones"][id] = rec["seq"]
        self.persist()
        return _json(200, {"object": "segment", "id": id, "deleted": True})

    def resend_create_api_key(self, req: Request) -> Response:
        body = self._body(req)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise _BadRequest(self._error("resend", 422, "Missing `name` field.", "missing_required_field"))
        if len(name) > 50:
            raise _BadRequest(self._error("resend", 422, "The `name` must be at most 50 characters."))
        permission = body.get("permission", "full_access")
        if permission not in ("full_access", "sending_access"):
            raise _BadRequest(self._error("resend", 422, "Invalid `permission`: must be `full_access` "
                                                         "or `sending_access`."))
        created = self._created_now()
        kid = str(uuid.uuid4())
        token = f"re_{_rand_alnum(8)}_{_rand_alnum(24)}"
        rec = {"seq": self._next_seq(), "id": kid, "name": name, "token": token, "permission": permission,
               "domain_id": body.get("domain_id"), "created_at": _resend_ts(created), "last_used_at": None}
        self.db["resend"]["api_keys"][kid] = rec
        self.persist()
        return _json(201, {"id": kid, "token": token})

    def resend_list_api_keys(self, req: Request) -> Response:
        view = lambda r: {k: r[k] for k in ("id", "name", "created_at", "last_used_at")}  # noqa: E731
        return self._resend_page(req, list(self.db["resend"]["api_keys"].values()), view)

    def resend_delete_api_key(self, req: Request, api_key_id: str) -> Response:
        rec = self.db["resend"]["api_keys"].pop(api_key_id, None)
        if rec is None:
            raise _BadRequest(self._error("resend", 404, "API key not found"))
        self.db["tombstones"][api_key_id] = rec["seq"]
        self.persist()
        return _json(200, {"object": "api_key", "id": api_key_id, "deleted": True})

    def resend_list_domains(self, req: Request) -> Response:
        """The configured ``resend_domains``, all verified (read-only; no cursors needed)."""
        data = [{"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), "name": name, "status": "verified",
                 "created_at": "2024-01-01 00:00:00.000+00", "region": "us-east-1",
                 "open_tracking": False, "click_tracking": False,
                 "capabilities": {"sending": "enabled", "receiving": "disabled"}}
                for name in self.config.get("resend_domains") or []]
        limit = req.query.get("limit")
        has_more = False
        if limit is not None and limit.isdigit() and 1 <= int(limit) <= 100:
            has_more, data = len(data) > int(limit), data[: int(limit)]
        return _json(200, {"object": "list", "has_more": has_more, "data": data})

    # ================================================================= GitHub
    def _gh_user_obj(self, login: str, kind: str = "User") -> dict:
        uid = 583231 if kind == "User" and login == self.config["github_login"] else (
            10_000_000 + int.from_bytes(login.lower().encode()[:6].ljust(6, b"\0"), "big") % 89_999_999)
        prefix = "MDQ6VXNlcj" if kind == "User" else "MDEyOk9yZ2FuaXphdGlvbj"
        api = f"https://api.github.com/users/{login}"
        return {
            "login": login, "id": uid, "node_id": prefix + base64.b64encode(str(uid).encode()).decode(),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4", "gravatar_id": "",
            "url": api, "html_url": f"https://github.com/{login}",
            "followers_url": f"{api}/followers", "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}", "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions", "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos", "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events", "type": kind, "user_view_type": "public",
            "site_admin": False,
        }

    def _gh_repo_obj(self, owner: dict, name: str, rid: int, body: dict, created: datetime,
                     org: bool) -> dict:
        full = f"{owner['login']}/{name}"
        api = f"https://api.github.com/repos/{full}"
        ts = _iso(created)
        private = bool(body.get("private", False)) or body.get("visibility") == "private"
        u = lambda s: f"{api}/{s}"  # noqa: E731
        repo = {
            "id": rid, "node_id": "R_kgDO" + base64.b64encode(rid.to_bytes(5, "big")).decode().rstrip("="),
            "name": name, "full_name": full, "private": private, "owner": owner,
            "html_url": f"https://github.com/{full}", "description": body.get("description") or None,
            "fork": False, "url": api,
            "archive_url": u("{archive_format}{/ref}"), "assignees_url": u("assignees{/user}"),
            "blobs_url": u("git/blobs{/sha}"), "branches_url": u("branches{/branch}"),
            "collaborators_url": u("collaborators{/collaborator}"), "comments_url": u("comments{/number}"),
            "commits_url": u("commits{/sha}"), "compare_url": u("compare/{base}...{head}"),
            "contents_url": u("contents/{+path}"), "contributors_url": u("contributors"),
            "deployments_url": u("deployments"), "downloads_url": u("downloads"),
            "events_url": u("events"), "forks_url": u("forks"), "git_commits_url": u("git/commits{/sha}"),
            "git_refs_url": u("git/refs{/sha}"), "git_tags_url": u("git/tags{/sha}"),
            "git_url": f"git://github.com/{full}.git", "issue_comment_url": u("issues/comments{/number}"),
            "issue_events_url": u("issues/events{/number}"), "issues_url": u("issues{/number}"),
            "keys_url": u("keys{/key_id}"), "labels_url": u("labels{/name}"), "languages_url": u("languages"),
            "merges_url": u("merges"), "milestones_url": u("milestones{/number}"),
            "notifications_url": u("notifications{?since,all,participating}"), "pulls_url": u("pulls{/number}"),
            "releases_url": u("releases{/id}"), "ssh_url": f"git@github.com:{full}.git",
            "stargazers_url": u("stargazers"), "statuses_url": u("statuses/{sha}"),
            "subscribers_url": u("subscribers"), "subscription_url": u("subscription"), "tags_url": u("tags"),
            "teams_url": u("teams"), "trees_url": u("git/trees{/sha}"), "clone_url": f"https://github.com/{full}.git",
            "mirror_url": None, "hooks_url": u("hooks"), "svn_url": f"https://github.com/{full}",
            "homepage": body.get("homepage") or None, "language": None, "forks_count": 0, "forks": 0,
            "stargazers_count": 0, "watchers_count": 0, "watchers": 0, "size": 0,
            "default_branch": "main", "open_issues_count": 0, "open_issues": 0,
            "is_template": bool(body.get("is_template", False)), "topics": [],
            "has_issues": body.get("has_issues", True), "has_projects": body.get("has_projects", True),
            "has_wiki": body.get("has_wiki", True), "has_pages": False,
            "has_downloads": body.get("has_downloads", True),
            "has_discussions": body.get("has_discussions", False), "archived": False, "disabled": False,
            "visibility": "private" if private else "public", "pushed_at": ts, "created_at": ts,
            "updated_at": ts, "permissions": {"admin": True, "maintain": True, "push": True, "triage": True,
                                              "pull": True},
            "allow_rebase_merge": body.get("allow_rebase_merge", True),
            "allow_squash_merge": body.get("allow_squash_merge", True),
            "allow_auto_merge": body.get("allow_auto_merge", False),
            "delete_branch_on_merge": body.get("delete_branch_on_merge", False),
            "allow_merge_commit": body.get("allow_merge_commit", True), "allow_forking": True,
            "web_commit_signoff_required": False, "license": None,
            "network_count": 0, "subscribers_count": 1,
        }
        if org:
            repo["organization"] = owner
        return repo

    def _gh_create(self, req: Request, owner_login: str, org: bool) -> Response:
        body = self._body(req)
        doc = GH_DOCS + ("/repos/repos#create-an-organization-repository" if org
                         else "/repos/repos#create-a-repository-for-the-authenticated-user")
        raw = body.get("name")
        if not isinstance(raw, str) or not raw.strip():
            return _json(422, {"message": "Repository creation failed.", "documentation_url": doc,
                               "status": "422", "errors": [{"resource": "Repository", "code": "missing_field",
                                                            "field": "name"}]})
        name = re.sub(r"[^A-Za-z0-9._-]", "-", raw.strip())
        if name in (".", "..") or len(name) > 100:
            return _json(422, {"message": "Repository creation failed.", "documentation_url": doc,
                               "status": "422", "errors": [{"resource": "Repository", "code": "custom",
                                                            "field": "name", "message": "name is invalid"}]})
        key = f"{owner_login}/{name}".lower()
        if key in self.db["github"]["repos"]:
            return _json(422, {"message": "Repository creation failed.", "documentation_url": doc,
                               "status": "422",
                               "errors": [{"resource": "Repository", "code": "custom", "field": "name",
                                           "message": "name already exists on this account"}]})
        owner = self._gh_user_obj(owner_login, "Organization" if org else "User")
        seq = self._next_seq()
        repo = self._gh_repo_obj(owner, name, 900_000_000 + seq, body, self._created_now(), org)
        self.db["github"]["repos"][key] = {"seq": seq, "repo": repo}
        self.persist()
        return _json(201, repo, [("Location", repo["url"])])

    def _gh_page(self, req: Request, repos: list[dict], default_sort: str) -> Response:
        q = req.query
        try:
            per_page = min(100, max(1, int(q.get("per_page", 30))))
            page = max(1, int(q.get("page", 1)))
        except ValueError:
            return self._error("github", 400, "Invalid pagination parameter")
        sort = q.get("sort", default_sort)
        direction = q.get("direction") or ("asc" if sort == "full_name" else "desc")
        if sort == "full_name":
            repos.sort(key=lambda r: r["repo"]["full_name"].lower(), reverse=direction == "desc")
        else:
            repos.sort(key=lambda r: r["seq"], reverse=direction == "desc")
        pages = max(1, -(-len(repos) // per_page))
        data = [r["repo"] for r in repos[(page - 1) * per_page: page * per_page]]
        headers = []
        if pages > 1:
            base = f"http://{req.headers.get('host', f'{HOST}:{self.port}')}{MOUNTS['github']}{req.rel}"

            def link(n: int, rel: str) -> str:
                return f'<{base}?{urlencode({**q, "per_page": per_page, "page": n})}>; rel="{rel}"'
            links = []
            if page > 1:
                links.append(link(min(page - 1, pages), "prev"))
            if page < pages:
                links += [link(page + 1, "next"), link(pages, "last")]
            if page > 1:
                links.append(link(1, "first"))
            headers.append(("Link", ", ".join(links)))
        return _json(200, data, headers)

    def gh_user(self, req: Request) -> Response:
        u = self._gh_user_obj(self.config["github_login"])
        u["user_view_type"] = "private"
        mine = [r for r in self.db["github"]["repos"].values()
                if r["repo"]["owner"]["login"] == self.config["github_login"]]
        private = sum(1 for r in mine if r["repo"]["private"])
        u.update({"name": "Mona Lisa Octocat", "company": None, "blog": "", "location": None,
                  "email": None, "hireable": None, "bio": None, "twitter_username": None,
                  "public_repos": len(mine) - private, "public_gists": 0, "followers": 0, "following": 0,
                  "created_at": "2011-01-25T18:44:36Z", "updated_at": "2024-01-01T00:00:00Z",
                  "private_gists": 0, "total_private_repos": private, "owned_private_repos": private,
                  "disk_usage": 0, "collaborators": 0, "two_factor_authentication": True,
                  "plan": {"name": "free", "space": 976562499, "private_repos": 10000, "collaborators": 0}})
        return _json(200, u)

    def gh_create_user_repo(self, req: Request) -> Response:
        return self._gh_create(req, self.config["github_login"], org=False)

    def _gh_check_org(self, org: str) -> None:
        orgs = self.config.get("github_orgs")
        if orgs is not None and org.lower() not in {o.lower() for o in orgs}:
            raise _BadRequest(_json(404, {"message": "Not Found", "documentation_url": GH_DOCS,
                                          "status": "404"}))

    def gh_create_org_repo(self, req: Request, org: str) -> Response:
        self._gh_check_org(org)
        return self._gh_create(req, org, org=True)

    def gh_list_user_repos(self, req: Request) -> Response:
        repos = list(self.db["github"]["repos"].values())
        vis = req.query.get("visibility", "all")
        if vis in ("public", "private"):
            repos = [r for r in repos if r["repo"]["visibility"] == vis]
        affiliation = req.query.get("affiliation")
        if affiliation and "organization_member" not in affiliation and "owner" in affiliation:
            repos = [r for r in repos if r["repo"]["owner"]["login"] == self.config["github_login"]]
        return self._gh_page(req, repos, "full_name")

    def gh_list_org_repos(self, req: Request, org: str) -> Response:
        self._gh_check_org(org)
        repos = [r for r in self.db["github"]["repos"].values()
                 if r["repo"]["owner"]["login"].lower() == org.lower()]
        return self._gh_page(req, repos, "created")

    def gh_get_repo(self, req: Request, owner: str, repo: str) -> Response:
        rec = self.db["github"]["repos"].get(f"{owner}/{repo}".lower())
        if rec is None:
            return _json(404, {"message": "Not Found",
                               "documentation_url": GH_DOCS + "/repos/repos#get-a-repository", "status": "404"})
        return _json(200, rec["repo"])

    def gh_delete_repo(self, req: Request, owner: str, repo: str) -> Response:
        key = f"{owner}/{repo}".lower()
        doc = GH_DOCS + "/repos/repos#delete-a-repository"
        if key not in self.db["github"]["repos"]:
            return _json(404, {"message": "Not Found", "documentation_url": doc, "status": "404"})
        scopes = {s.strip() for s in str(self.config["github_scopes"]).split(",")}
        if "delete_repo" not in scopes:
            return _json(403, {"message": "Must have admin rights to Repository.", "documentation_url": doc,
                               "status": "403"})
        rec = self.db["github"]["repos"].pop(key)
        self.db["tombstones"][key] = rec["seq"]
        self.persist()
        return Response(204, b"", content_type=None)

    def gh_rate_limit(self, req: Request) -> Response:
        used = self.counters["github"]["total"]
        reset = int(time.time()) // 3600 * 3600 + 3600
        core = {"limit": 5000, "used": used, "remaining": max(0, 5000 - used), "reset": reset}
        search = {"limit": 30, "used": 0, "remaining": 30, "reset": int(time.time()) + 60}
        graphql = {"limit": 5000, "used": 0, "remaining": 5000, "reset": reset}
        return _json(200, {"resources": {"core": core, "search": search, "graphql": graphql}, "rate": core})

    # ================================================================= PostHog
    @staticmethod
    def _posthog_body(req: Request) -> Any:
        body = req.body
        if req.headers.get("content-encoding", "").lower() == "gzip" or body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        return json.loads(body) if body else {}

    def posthog_flags(self, req: Request) -> Response:
        return _json(200, {"flags": {}, "errorsWhileComputingFlags": False, "requestId": str(uuid.uuid4())})

    def posthog_capture(self, req: Request) -> Response:
        try:
            body = self._posthog_body(req)
        except (ValueError, OSError):
            return _json(400, {"type": "validation_error", "code": "invalid_payload",
                               "detail": "Malformed request data", "attr": None})
        if not isinstance(body, dict):
            return _json(400, {"type": "validation_error", "code": "invalid_payload",
                               "detail": "Malformed request data", "attr": None})
        events = body.get("batch") if isinstance(body.get("batch"), list) else [body]
        store = self.db["posthog"]
        for ev in events:
            if not isinstance(ev, dict) or not ev.get("event"):
                return _json(400, {"type": "validation_error", "code": "invalid_payload",
                                   "detail": "Invalid payload: event name is required", "attr": "event"})
        for ev in events:
            props = ev.get("properties") if isinstance(ev.get("properties"), dict) else {}
            store["count"] += 1
            store["events"].append({"event": ev["event"],
                                    "distinct_id": ev.get("distinct_id", props.get("distinct_id")),
                                    "properties": props, "timestamp": ev.get("timestamp")})
        max_events = int(self.config.get("posthog_max_events") or 0)
        if len(store["events"]) > max_events:
            del store["events"][: len(store["events"]) - max_events]
        self.persist()
        return _json(200, {"status": "Ok"})


# --------------------------------------------------------------------------- test helper
class FakeUpstream:
    """Start the fake for a test: in a background thread (default) or as a subprocess.

    >>> with FakeUpstream(state_file=p, config={"latency_ms": {"github": 50}}) as fake:
    ...     fake.github_url, fake.state(), fake.control(faults=[...]), fake.reset()
    """

    def __init__(self, *, state_file: str | os.PathLike | None = None, config: dict | None = None,
                 port: int = 0, use_subprocess: bool = False, startup_timeout: float = 10.0):
        self.state_file = str(state_file) if state_file else None
        self.config = dict(config or {})
        self.requested_port = port
        self.use_subprocess = use_subprocess
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: FakeServer | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- urls
    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeUpstream is not started")
        return f"http://{HOST}:{self.port}"

    neon_url = property(lambda self: self.base_url + MOUNTS["neon"])
    resend_url = property(lambda self: self.base_url + MOUNTS["resend"])
    github_url = property(lambda self: self.base_url + MOUNTS["github"])
    posthog_url = property(lambda self: self.base_url + MOUNTS["posthog"])

    # -- lifecycle
    def start(self) -> "FakeUpstream":
        if self.use_subprocess:
            self._start_subprocess()
        else:
            self._start_thread()
        return self

    def _start_thread(self) -> None:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._server = FakeServer(self.config, self.state_file)
                self.port = loop.run_until_complete(self._server.start(self.requested_port))
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_until_complete(self._server.wait_stopped())
                loop.run_until_complete(self._server.close())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="fakeupstream", daemon=True)
        self._thread.start()
        if not ready.wait(self.startup_timeout):
            raise RuntimeError("fakeupstream did not start in time")
        if errors:
            raise RuntimeError(f"fakeupstream failed to start: {errors[0]!r}") from errors[0]

    def _start_subprocess(self) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--port", str(self.requested_port)]
        if self.state_file:
            cmd += ["--state-file", self.state_file]
        if self.config:
            cmd += ["--config", json.dumps(self.config)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # blocks until LISTENING or exit
        m = re.match(r"LISTENING http://127\.0\.0\.1:(\d+)", line or "")
        if not m:
            self.proc.kill()
            err = self.proc.stderr.read()
            raise RuntimeError(f"fakeupstream subprocess failed to start: {line!r} {err}")
        self.port = int(m.group(1))

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream:
                    stream.close()
            self.proc = None
        if self._thread is not None:
            if self._loop is not None and self._server is not None and not self._loop.is_closed():
                try:
                    self._loop.call_soon_threadsafe(self._server.request_stop)
                except RuntimeError:
                    pass
            self._thread.join(10)
            self._thread = None
        self.port = None

    def kill(self) -> None:
        """SIGKILL the subprocess (no clean-up at all), to test state-file durability."""
        if self.proc is None:
            raise RuntimeError("kill() needs use_subprocess=True")
        self.proc.kill()
        self.proc.wait()
        self.stop()

    def __enter__(self) -> "FakeUpstream":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- control plane
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=10) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from None

    def state(self, full: bool = False) -> dict:
        return self._call("GET", "/_state" + ("?full=1" if full else ""))

    def control(self, **kw: Any) -> dict:
        return self._call("POST", "/_control", kw)

    def add_fault(self, **fault: Any) -> dict:
        return self.control(faults=[fault])

    def reset(self) -> dict:
        return self._call("POST", "/_reset", {})


# --------------------------------------------------------------------------- CLI
def _parse_config(text: str | None) -> dict:
    if not text:
        return {}
    text = text.strip()
    if not text.startswith("{"):
        text = Path(text).read_text()
    data = json.loads(text)
    if not isinstance(data, dict):
        raise SystemExit("--config must be a JSON object (or a path to one)")
    return data


async def _serve(args: argparse.Namespace) -> None:
    server = FakeServer(_parse_config(args.config), args.state_file)
    port = await server.start(args.port)
    print(f"LISTENING http://{HOST}:{port}", flush=True)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, server.request_stop)
        except (NotImplementedError, RuntimeError):
            pass
    await server.wait_stopped()
    await server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stateful fake of the Neon/Resend/GitHub/PostHog APIs")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = pick a free one)")
    parser.add_argument("--state-file", help="JSON file the resources are kept in (atomic writes)")
    parser.add_argument("--config", help="JSON object (or path to a JSON file); keys: "
                                         + ", ".join(sorted(CONFIG_KEYS)))
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
