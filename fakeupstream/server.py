"""The HTTP server: HTTP/1.1 on asyncio streams, dispatch to the provider mixins, injected
latency and faults, authentication, the control plane."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

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

    # ---------------------------------------------------------------- HTTP/1.1 (h11)
    async def _handle_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: h11 parses requests and frames responses; we only move bytes."""
        task = asyncio.current_task()
        if task is not None:
            self._conn_tasks.add(task)
        self._writers.add(writer)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        try:
            while True:
                req = await self._read_request(conn, reader, writer)
                if req is None:
                    break
                resp = await self._dispatch(req)
                if resp is None:  # injected connection drop
                    break
                await self._write(conn, writer, resp, self._keep_alive(conn, req))
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                try:
                    await self._write(conn, writer, json_response(exc.error_status_hint,
                                                                  {"error": f"bad request: {exc}"}), False)
                except (h11.LocalProtocolError, ConnectionError):
                    pass
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._conn_tasks.discard(task)
            try:
                writer.close()
            except Exception:
                pass

    @staticmethod
    async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> Request | None:
        """The next complete request on the connection, or None when the client is gone."""
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if head is not None and conn.they_are_waiting_for_100_continue:
                    writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
                conn.receive_data(await reader.read(1 << 16))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:  # ConnectionClosed, or PAUSED after a request the client did not finish
                return None
        headers: dict[str, str] = {}
        for name, value in head.headers:
            k, v = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        target = head.target.decode("latin-1")
        split = urlsplit(target)
        return Request(method=head.method.decode("latin-1").upper(), target=target, path=unquote(split.path),
                       query=dict(parse_qsl(split.query, keep_blank_values=True)), headers=headers,
                       body=bytes(body))

    @staticmethod
    def _keep_alive(conn: h11.Connection, req: Request) -> bool:
        wanted = req.headers.get("connection", "").lower()
        return "close" not in wanted if conn.their_http_version == b"1.1" else "keep-alive" in wanted

    @staticmethod
    async def _write(conn: h11.Connection, writer: asyncio.StreamWriter, resp: Response, keep_alive: bool) -> None:
        try:
            reason = HTTPStatus(resp.status).phrase
        except ValueError:
            reason = "Unknown"
        headers = [("Date", formatdate(usegmt=True)), ("Server", "fakeupstream"),
                   ("Connection", "keep-alive" if keep_alive else "close")]
        names = {k.lower() for k, _ in resp.headers}
        bodyless = resp.status in (204, 304)
        if not bodyless:
            if resp.content_type and "content-type" not in names:
                headers.append(("Content-Type", resp.content_type))
            headers.append(("Content-Length", str(len(resp.body))))
        headers += [(k, v) for k, v in resp.headers if k.lower() not in ("content-length", "connection")]
        out = conn.send(h11.Response(status_code=resp.status, headers=headers, reason=reason.encode()))
        if not bodyless and resp.body:
            out += conn.send(h11.Data(data=resp.body))
        out += conn.send(h11.EndOfMessage())
        writer.write(out)
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
        mutation = req.method.upper() not in ("GET", "HEAD", "OPTIONS")
        arrived = time.monotonic()
        for c in counters:
            c["total"] += 1
            c["in_flight"] += 1
            c["max_in_flight"] = max(c["max_in_flight"], c["in_flight"])
            c["by_route"][route] = c["by_route"].get(route, 0) + 1
            c["arrivals"].append([arrived, req.method.upper(), route])
            if mutation:
                c["mutations_in_flight"] += 1
                c["max_mutations_in_flight"] = max(c["max_mutations_in_flight"], c["mutations_in_flight"])
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
                if mutation:
                    c["mutations_in_flight"] -= 1
                key = str(status) if status else "dropped"
                c["by_status"][key] = c["by_status"].get(key, 0) + 1

    async def _serve(self, req: Request, handler: Callable | None,
                     params: dict[str, str]) -> Response | None:
        provider = req.provider
        before, after = self.latency_split(provider, req)
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
            except BadRequest as exc:
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

