"""The HTTP server: HTTP/1.1 on asyncio streams, dispatch to the provider mixins, injected
latency and faults, authentication, the control plane."""

from __future__ import annotations

import asyncio
import re
from email.utils import formatdate
from http import HTTPStatus
from typing import Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from . import github, neon, posthog, resend
from .common import HOST, MOUNTS, BadRequest, FakeState, Request, Response, dumps, json_response

PROVIDER_MODULES = {"neon": neon, "resend": resend, "github": github, "posthog": posthog}

__all__ = ["FakeServer"]


class FakeServer(FakeState, neon.NeonApi, resend.ResendApi, github.GitHubApi, posthog.PostHogApi):
    """The fake itself. Runs inside an asyncio loop (see :func:`fakeupstream.__main__.main`
    and :class:`fakeupstream.FakeUpstream`)."""

    def __init__(self, config: dict | None = None, state_file=None):
        super().__init__(config, state_file)
        self.port: int | None = None
        self._server: asyncio.base_events.Server | None = None
        self._conn_tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopped: asyncio.Event | None = None
        self._routes = self._build_routes()

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
                    await self._write(writer, json_response(400, {"error": "bad request line"}), False)
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
            return json_response(404, {"error": f"no provider mounted at {req.path}",
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
        before, after = self.latency_split(provider)
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
            commits = fault.get("drop_after_commit") or fault.get("malformed")
            if "status" in fault and not commits:
                if after > 0:
                    await asyncio.sleep(after)
                return self._decorate(req, self._fault_response(req, fault))

        if handler is None:
            resp = self._not_found(req)
        else:
            try:
                resp = handler(req, **params)
            except BadRequest as exc:
                resp = exc.response
            await self.flush()
        if after > 0:
            await asyncio.sleep(after)
        if fault is not None:
            if fault.get("drop_after_commit"):
                return None
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


    # ---------------------------------------------------------------- auth and errors
    # Each provider module has error(status, message, name) and unauthorized(token); it may
    # have token_of(req) (default: the bearer token), not_found(req) and decorate(server, resp).
    def _auth_error(self, req: Request) -> Response | None:
        module = PROVIDER_MODULES[req.provider]
        token = module.token_of(req) if hasattr(module, "token_of") else req.token()
        if self._token_ok(req.provider, token):
            return None
        return module.unauthorized(token)

    def _error(self, provider: str, status: int, message: str, name: str | None = None) -> Response:
        return PROVIDER_MODULES[provider].error(status, message, name)

    def _fault_response(self, req: Request, fault: dict) -> Response:
        status = int(fault["status"])
        if "body" in fault:
            body = fault["body"]
            resp = Response(status, body.encode() if isinstance(body, str) else dumps(body))
        else:
            phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
            resp = self._error(req.provider, status, f"{phrase} (injected by fakeupstream)")
        resp.headers.extend((str(k), str(v)) for k, v in (fault.get("headers") or {}).items())
        return resp

    def _not_found(self, req: Request) -> Response:
        module = PROVIDER_MODULES[req.provider]
        if hasattr(module, "not_found"):
            return module.not_found(req)
        return module.error(404, f"no such route: {req.method} {req.rel}")

    def _decorate(self, req: Request, resp: Response) -> Response:
        decorate = getattr(PROVIDER_MODULES[req.provider], "decorate", None)
        return resp if decorate is None else decorate(self, resp)


    # ---------------------------------------------------------------- control routes
    def _control_route(self, req: Request) -> Response:
        try:
            if req.path == "/_state" and req.method == "GET":
                full = req.query.get("full", "") not in ("", "0", "false")
                return json_response(200, self.state_view(full=full))
            if req.path == "/_control" and req.method == "POST":
                return json_response(200, self.apply_control(req.json() or {}))
            if req.path == "/_control" and req.method == "GET":
                return json_response(200, self.control_view())
            if req.path == "/_reset" and req.method == "POST":
                self.reset()
                return json_response(200, {"ok": True})
            if req.path == "/_shutdown" and req.method == "POST":
                asyncio.get_running_loop().call_soon(self.request_stop)
                return json_response(200, {"ok": True})
        except ValueError as exc:
            return json_response(400, {"error": str(exc)})
        return json_response(404, {"error": f"unknown control route {req.method} {req.path}"})

    # ---------------------------------------------------------------- routing table
    def _build_routes(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for provider, module in PROVIDER_MODULES.items():
            out[provider] = []
            for method, pattern, handler in module.ROUTES:
                regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
                out[provider].append((method, regex, pattern, getattr(self, handler)))
        return out

    def _body(self, req: Request) -> dict:
        try:
            body = req.json()
        except ValueError:
            if req.provider == "github":
                raise BadRequest(self._error("github", 400, "Problems parsing JSON"))
            raise BadRequest(self._error(req.provider, 400, "request body is not valid JSON"))
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise BadRequest(self._error(req.provider, 400, "request body must be a JSON object"))
        return body

