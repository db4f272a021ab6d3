"""The HTTP API: FastAPI on Starlette (FastAPI for the OpenAPI document at `/openapi.json`, built
from the same pydantic models that validate the requests; Starlette underneath serves it all).

Every route but `/healthz` needs `Authorization: Bearer <token>` (compared in constant time; a
missing or wrong one is 401 with no detail about the token). Errors are problem details
(`application/problem+json`) with the CLI's messages. Handlers are `async def`: they run on the
loop's thread, the one that owns the runtime's ledger connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mk0r_tui.core.envfile import masked_env, read_env_file
from mk0r_tui.core.errors import ConfigError, Mk0rError, UsageError
from mk0r_tui.core.ledger import JournalRow, SessionRow
from mk0r_tui.core.models import Session
from mk0r_tui.engine.library import preflight
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.service.jobs import JobOutcome, JobQueue
from mk0r_tui.service.logjson import log_context
from mk0r_tui.service.metrics import Metrics
from mk0r_tui.service.problems import PROBLEM_JSON, problem, status_of

log = logging.getLogger("mk0r_tui.service.http")

VERSION = "1"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass
class Service:
    """One serving process: its runtime, the queue, its metrics and the token it accepts."""

    runtime: Runtime
    queue: JobQueue
    metrics: Metrics
    token: str
    wait_s: float = 600.0


# -- models (they make the OpenAPI document) ---------------------------------------------------


class ProvisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session: str | None = Field(None, description="Session key (default: a new UUID). The same key twice creates nothing new.")
    target: Literal["auto", "local", "e2b"] | None = Field(None, description="Where the .env goes (default: MK0R_TARGET or auto).")
    sandbox: str | None = Field(None, description="e2b target: deliver into this existing sandbox.")
    reveal: bool = Field(False, description="Secret values unmasked in the answer.")


class ProviderJson(BaseModel):
    name: str
    slot: str
    status: str
    latency_ms: float | None = None
    attempts: int = 0
    error: str | None = None
    note: str | None = None
    resources: list[dict[str, Any]] = []


class ProvisionReportJson(BaseModel):
    """The same object as `mk0r-tui provision --json`."""

    session: str
    slug: str
    env_file: str | None = None
    target: str | None = None
    ok: bool
    providers: list[ProviderJson]
    env: dict[str, str]


class TeardownReportJson(BaseModel):
    """The same object as `mk0r-tui teardown --json`."""

    session: str
    ok: bool
    resources: list[dict[str, Any]]


class JobJson(BaseModel):
    id: int
    kind: str
    state: str
    attempts: int = 0
    result_status: int | None = None


class AcceptedJson(BaseModel):
    session: str
    slug: str
    job: int
    kind: str
    state: str


class SessionJson(BaseModel):
    session: str
    slug: str
    created_at: str | None
    age_s: float
    state: str
    target: str | None = None
    env_file: str | None = None
    providers: dict[str, str]


class SessionWithJobJson(SessionJson):
    """One session, and its newest job (None when no job of the service ever ran it)."""

    job: JobJson | None = None


class EnvJson(BaseModel):
    session: str
    env_file: str
    env: dict[str, str]


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None


PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": text}
    for code, text in ((401, "No or wrong bearer token"), (404, "Unknown session"), (409, "The session is busy"),
                       (422, "Bad request (e.g. a bad session key)"), (500, "The run could not start"))
}


# -- helpers ------------------------------------------------------------------------------------


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="seconds")


def session_json(runtime: Runtime, row: SessionRow, runs: dict[str, Any] | None = None) -> dict[str, Any]:
    """One item of `mk0r-tui sessions --json`."""
    if runs is None:
        runs = runtime.ledger.latest_runs(row.key)
    return {
        "session": row.key, "slug": row.slug, "created_at": _iso(row.created_at), "age_s": round(time.time() - row.created_at, 1),
        "state": row.state, "target": row.target, "env_file": row.env_file,
        "providers": {name: run.status for name, run in runs.items()},
    }


def event_json(row: JournalRow) -> dict[str, Any]:
    """One journal entry as `mk0r-tui events --json` prints it: the envelope, then the event's fields."""
    at = dt.datetime.fromtimestamp(row.at, tz=dt.UTC).isoformat(timespec="milliseconds")
    envelope = {"id": row.id, "at": at, "session": row.session, "slug": row.slug, "provider": row.provider, "kind": row.kind}
    return {**envelope, **{k: v for k, v in row.fields.items() if k not in envelope}}


def open_journal(runtime: Runtime) -> Any:
    """A journal source of its own for one reader (engine/journal.py's JournalSource): the
    engine's `open_source` for the ledger's backend where it has one, else SQLite's reader, else
    (a Postgres ledger before the engine reads it with LISTEN) a polling reader."""
    from mk0r_tui.engine import journal

    opener = getattr(journal, "open_source", None)
    if callable(opener):
        return opener(runtime.ledger)
    if runtime.ledger.url is None:
        return journal.SqliteJournal(runtime.ledger.path)
    return PolledJournal(runtime.ledger.url)


class PolledJournal:
    """A Postgres ledger's journal read on a ledger connection of its own, polled (a bridge until
    the engine's reader with LISTEN/NOTIFY is there)."""

    def __init__(self, url: str, poll_s: float = 0.2) -> None:
        from mk0r_tui.core.ledger import Ledger

        self.ledger = Ledger(url)
        self.poll_s = poll_s
        self._max = self.ledger.journal_max_id()

    def since(self, after: int, *, session: str | None = None, limit: int | None = None) -> list[JournalRow]:
        return self.ledger.journal(after, session=session, limit=limit)

    def wait(self, timeout: float, *, stop: threading.Event | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            now = self.ledger.journal_max_id()
            if now != self._max:
                self._max = now
                return True
            left = deadline - time.monotonic()
            if left <= 0 or (stop is not None and stop.wait(min(self.poll_s, left))):
                return False
            if stop is None:
                time.sleep(min(self.poll_s, left))

    def close(self) -> None:
        self.ledger.close()


def _parse_key(key: str) -> Session:
    return Session.parse(key)  # UsageError → 422


def _require(runtime: Runtime, key: str) -> SessionRow:
    _parse_key(key)
    row = runtime.ledger.get_session(key)
    if row is None:
        raise _NotFound(f"no session {key!r} in the ledger (see `mk0r-tui sessions`)")
    return row


class _NotFound(Exception):
    pass


def _accepted(session: Session, job_id: int, kind: str, joined: bool, running: bool = False) -> JSONResponse:
    state = "running" if running else "queued"
    body = {"session": session.key, "slug": session.slug, "job": job_id, "kind": kind, "state": state, "joined": joined}
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/sessions/{session.key}"})


def _outcome_response(outcome: JobOutcome, *, reveal: bool) -> JSONResponse:
    body = dict(outcome.body)
    if outcome.status >= 400:
        return JSONResponse(body, status_code=outcome.status, media_type=PROBLEM_JSON)
    if reveal and "env" in body:
        if outcome.env is not None:
            body["env"] = dict(outcome.env)
        elif body.get("env_file"):
            body["env"] = read_env_file(Path(body["env_file"])) or body["env"]
    return JSONResponse(body, status_code=outcome.status)


# -- the guard: request id, bearer token, metrics, access log ----------------------------------


class Guard:
    """Pure ASGI (no buffering: the SSE stream passes through as it is written)."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service
        self._expected = service.token.encode()

    def _authorized(self, scope: Scope) -> bool:
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                given = value
                break
        scheme, _, token = given.partition(b" ")
        # compare_digest on equal-length digests: constant time whatever the guess
        return scheme.lower() == b"bearer" and hmac.compare_digest(
            _digest(token.strip()), _digest(self._expected))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                text = value.decode("latin-1")
                rid = text if _REQUEST_ID.fullmatch(text) else ""
                break
        rid = rid or uuid.uuid4().hex[:16]
        status = {"code": 500}
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        with log_context(request_id=rid):
            try:
                if scope["path"] != "/healthz" and not self._authorized(scope):
                    response = problem(401, headers={"WWW-Authenticate": 'Bearer realm="mk0r-tui"'})
                    await response(scope, receive, sending)
                else:
                    await self.app(scope, receive, sending)
            finally:
                route = scope.get("route")
                path = getattr(route, "path", None) or ("unmatched" if status["code"] != 401 else "unauthorized")
                self.service.metrics.requests.labels(scope["method"], path, str(status["code"])).inc()
                log.info("%s %s %s %.1f ms", scope["method"], scope["path"], status["code"],
                         (time.perf_counter() - started) * 1000)


def _digest(value: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(value).digest()


# -- the app ------------------------------------------------------------------------------------


def create_app(service: Service) -> ASGIApp:
    api = FastAPI(
        title="mk0r-tui provisioning service",
        version=VERSION,
        description="Provision a real backend (Postgres, email, repo, analytics) for an app session. "
                    "Every route but /healthz needs `Authorization: Bearer <token>`.",
        docs_url=None, redoc_url=None,
    )
    runtime = service.runtime
    queue = service.queue

    @api.exception_handler(Mk0rError)
    async def _mk0r_error(request: Request, exc: Mk0rError) -> Response:
        return problem(status_of(exc), str(exc))

    @api.exception_handler(_NotFound)
    async def _not_found(request: Request, exc: _NotFound) -> Response:
        return problem(404, str(exc))

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return problem(422, "bad request: " + "; ".join(parts))

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc, exc_info=exc)
        return problem(500, f"internal error ({type(exc).__name__}); see the service's log, request id {_context_request_id()}")

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return problem(exc.status_code, None if exc.detail in (None, "") else str(exc.detail))

    @api.get("/healthz", tags=["service"], summary="Liveness (no token needed)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.post("/v1/sessions", tags=["sessions"], status_code=201, response_model=ProvisionReportJson,
              responses={202: {"model": AcceptedJson, "description": "Queued (`?wait=false`, or still running after the wait)"}, **PROBLEMS},
              summary="Provision every service of a session (idempotent)")
    async def create_session(body: ProvisionRequest | None = None,
                             wait: bool = Query(True, description="Wait for the run (201) or answer 202 at once.")) -> Response:
        body = body or ProvisionRequest.model_validate({})
        session = _parse_key(body.session) if body.session is not None else Session.new()
        plan = runtime.plan(body.target)  # a run that cannot start is said now (422), not by a job later
        try:
            preflight(plan, runtime)
        except ConfigError as exc:  # e.g. "target": "e2b" on a server without E2B_API_KEY: this request cannot run
            raise UsageError(str(exc)) from None
        if body.sandbox and plan.target.name != "e2b":
            raise UsageError("--sandbox only applies to the e2b target (set E2B_API_KEY or pass --target e2b)")
        request_id = _context_request_id()
        with log_context(slug=session.slug):
            job_id, joined = await queue.submit_provision(session, target=body.target, sandbox=body.sandbox, request_id=request_id)
            log.info("provision of %s: job %s%s", session.key, job_id, " (joined)" if joined else "")
            if not wait:
                return _accepted(session, job_id, "provision", joined)
            try:
                outcome = await queue.wait(job_id, wait_s=service.wait_s)
            except TimeoutError:
                return _accepted(session, job_id, "provision", joined, running=True)
        return _outcome_response(outcome, reveal=body.reveal)

    @api.get("/v1/sessions", tags=["sessions"], response_model=list[SessionJson], summary="Every session, newest first")
    async def list_sessions() -> list[dict[str, Any]]:
        runtime.ledger.settle_owner_gone(runtime.settings.lease_stale_s)
        runs = runtime.ledger.latest_runs_all()
        return [session_json(runtime, row, runs.get(row.key, {})) for row in runtime.ledger.list_sessions()]

    @api.get("/v1/sessions/{key}", tags=["sessions"], response_model=SessionWithJobJson, responses=PROBLEMS, summary="One session and its newest job")
    async def get_session(key: str) -> dict[str, Any]:
        runtime.ledger.settle_owner_gone(runtime.settings.lease_stale_s)
        session = _parse_key(key)
        row = runtime.ledger.get_session(key)
        if row is None:
            # queued (a 202's Location) but no worker has started it yet: the ledger has no row
            job = await queue.latest_job(session)
            if job is None:
                raise _NotFound(f"no session {key!r} in the ledger (see `mk0r-tui sessions`)")
            return {"session": session.key, "slug": session.slug, "created_at": None, "age_s": 0.0, "state": "queued",
                    "target": None, "env_file": None, "providers": {}, "job": job}
        out = session_json(runtime, row)
        out["job"] = await queue.latest_job(row.session)
        return out

    @api.get("/v1/sessions/{key}/env", tags=["sessions"], response_model=EnvJson, responses=PROBLEMS,
             summary="A session's env (masked unless ?reveal=true)")
    async def get_env(key: str, reveal: bool = Query(False, description="Secret values unmasked.")) -> dict[str, Any]:
        row = _require(runtime, key)
        path = Path(row.env_file) if row.env_file else runtime.settings.env_file_for(row.slug)
        values = read_env_file(path)
        if not values:
            raise _NotFound(f"session {row.key!r} has no env file at {path}")
        return {"session": row.key, "env_file": str(path), "env": values if reveal else masked_env(values)}

    @api.delete("/v1/sessions/{key}", tags=["sessions"], response_model=TeardownReportJson,
                responses={202: {"model": AcceptedJson, "description": "Queued"}, **PROBLEMS},
                summary="Delete every resource of a session (the teardown report)")
    async def delete_session(key: str, wait: bool = Query(True, description="Wait for the teardown (200) or answer 202 at once.")) -> Response:
        row = _require(runtime, key)
        with log_context(slug=row.slug):
            job_id, joined = await queue.submit_teardown(row.session, request_id=_context_request_id())
            log.info("teardown of %s: job %s%s", row.key, job_id, " (joined)" if joined else "")
            if not wait:
                return _accepted(row.session, job_id, "teardown", joined)
            try:
                outcome = await queue.wait(job_id, wait_s=service.wait_s)
            except TimeoutError:
                return _accepted(row.session, job_id, "teardown", joined, running=True)
        return _outcome_response(outcome, reveal=False)

    @api.get("/v1/events", tags=["events"], summary="The journal as Server-Sent Events",
             response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}, "description": "`id:` journal id, `event:` kind, `data:` the event as JSON"}})
    async def events(request: Request, since: int = Query(0, ge=0, description="Only events after this journal id."),
                     session: str | None = Query(None, description="Only this session (key or slug).")) -> Response:
        last = request.headers.get("last-event-id", "")
        if last.isdigit():
            since = max(since, int(last))
        return StreamingResponse(_sse(runtime, since, session), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.get("/metrics", tags=["service"], summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    async def metrics() -> Response:
        try:
            service.metrics.set_jobs(await queue.counts())
        except Exception as exc:  # the process's own figures are still worth a scrape
            log.warning("job counts unavailable: %s", exc)
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return Guard(api, service)


def _context_request_id() -> str | None:
    from mk0r_tui.service.logjson import current_context

    return current_context().get("request_id")


KEEPALIVE_S = 15.0


async def _sse(runtime: Runtime, since: int, session: str | None) -> AsyncIterator[bytes]:
    """Journal rows after `since`, in id order, as they are appended (a thread follows the
    journal on a connection of its own; `stop` ends it when the client goes)."""
    from mk0r_tui.engine.journal import follow

    source = open_journal(runtime)
    loop = asyncio.get_running_loop()
    batches: asyncio.Queue[list[JournalRow] | BaseException] = asyncio.Queue()
    stop = threading.Event()

    def put(item: list[JournalRow] | BaseException) -> None:
        try:
            loop.call_soon_threadsafe(batches.put_nowait, item)
        except RuntimeError:  # the loop is closed: the server stopped
            stop.set()

    def reader() -> None:
        try:
            for rows in follow(source, since, session=session, stop=stop):
                if stop.is_set():
                    break
                put(rows)
        except BaseException as exc:
            if not stop.is_set():
                with contextlib.suppress(BaseException):
                    put(exc)
        finally:
            source.close()

    thread = threading.Thread(target=reader, name="mk0r-sse", daemon=True)
    thread.start()
    try:
        yield b": mk0r-tui journal\n\n"
        while True:
            try:
                item = await asyncio.wait_for(batches.get(), KEEPALIVE_S)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if isinstance(item, BaseException):
                log.warning("journal stream ended: %s", item)
                return
            chunk = "".join(
                f"id: {row.id}\nevent: {row.kind}\ndata: {json.dumps(event_json(row), default=str)}\n\n" for row in item)
            yield chunk.encode()
    finally:
        stop.set()


__all__ = ["Service", "create_app", "event_json", "session_json"]
