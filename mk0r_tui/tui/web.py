"""`mk0r-tui web`: the dashboard in a browser, one dashboard process per tab (textual-serve).

textual-serve runs a Textual app per websocket: the browser page (xterm.js) connects, the
server spawns the command, and bytes flow both ways. What this module adds around it, before
anything is spawned:

- **an access token**: a random token is made at start and printed as the URL to open. The page
  with `?token=` sets an HttpOnly, SameSite=Strict cookie and redirects to the URL without the
  token (so it is not on the demo screen's address bar); every request (the page, the static
  files, the websocket) must carry the cookie, the token or `Authorization: Bearer`, else 401
  and no process. The websocket also refuses a browser `Origin` other than the server itself
  (another local port is "same site" to cookies, not the same origin).
- **a tab cap** (`--max-tabs`): past it the page is a refusal page (503) and the websocket is
  refused (503) before a process starts.
- **an offline page**: textual-serve's own page links a web font from the internet; ours serves
  the Roboto Mono that ships inside textual-serve and references no other host.
- **read-only tabs** unless `--allow-actions`: each tab runs `mk0r-tui --read-only` on the same
  data dir (the dashboard's read-only rule: `tui/read_only.py`).

From textual-serve we use its `AppService` (spawn one process, pump bytes both ways, stop it),
its message loop (`Server._process_messages`: keys, resize, ping, focus) and its static files
(xterm.js and the font). The routes, the access middleware, the websocket handler (the checks,
then one `AppService`), the page and the serving loop are ours: port 0, no logo, no access log
that would carry a token, and a stop that waits for (or kills) every tab's process.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import ipaddress
import secrets
import shlex
import signal
import socket
import sys
from asyncio.subprocess import Process
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server

PAGE = Path(__file__).with_name("web_page.html")
TOKEN_BYTES = 32


def is_loopback(host: str) -> bool:
    """True when `host` only ever means this machine (127.0.0.0/8, ::1, `localhost`, or a name
    that resolves to loopback addresses only)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


def remote_warning(host: str, *, allow_actions: bool) -> str:
    what = "every action (provisioning, teardown, revealing secrets)" if allow_actions else "the live sessions (read-only)"
    return (
        f"warning: {host} is not loopback: this port gives whoever reaches it the dashboard, {what}; "
        "only the token stands in the way, and it travels in clear over plain HTTP: use a trusted "
        "network or a tunnel"
    )


def tab_command(*, data_dir: Path, read_only: bool) -> str:
    """The shell command textual-serve runs per tab: this Python, the dashboard, the same data
    dir; `exec` so the tab's process is the dashboard itself (no shell left in between)."""
    argv = ["env", f"MK0R_HOME={data_dir}", sys.executable, "-m", "mk0r_tui"]
    if read_only:
        argv.append("--read-only")
    return "exec " + shlex.join(argv)


@dataclass
class TabCount:
    """Dashboard processes (tabs) running now, the number `--max-tabs` caps; a tab counts from
    the moment its websocket is accepted until its process has stopped."""

    running: int = 0


class DashboardServer(Server):
    """textual-serve's server with the token, the tab cap, the offline page and a clean stop."""

    def __init__(
        self,
        command: str,
        *,
        host: str,
        port: int,
        token: str,
        max_tabs: int,
        read_only: bool,
    ) -> None:
        super().__init__(command, host=host, port=port, title="mk0r dashboard")
        self.token = token
        self.max_tabs = max_tabs
        self.read_only = read_only
        self.tabs = TabCount()
        self.cookie_name = f"mk0r_web_{port}"
        self._tab_tasks: set[asyncio.Task[Any]] = set()
        self._processes: set[Process] = set()

    # -- access ------------------------------------------------------------------------

    def _token_ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token.encode())

    def authorised(self, request: web.Request) -> bool:
        bearer = request.headers.get("Authorization", "")
        return (
            self._token_ok(request.cookies.get(self.cookie_name))
            or self._token_ok(request.query.get("token"))
            or (bearer.startswith("Bearer ") and self._token_ok(bearer[len("Bearer "):]))
        )

    @web.middleware
    async def _access(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if not self.authorised(request):
            return _page(401, "mk0r dashboard: not authorised",
                         "Open the URL that <code>mk0r-tui web</code> printed: it carries <code>?token=…</code>.",
                         headers={"WWW-Authenticate": 'Bearer realm="mk0r-tui web"'})
        if "token" in request.query and request.path == "/" and request.method == "GET":
            # keep the token off the address bar: the cookie carries it from now on
            rest = {k: v for k, v in request.query.items() if k != "token"}
            response = web.HTTPSeeOther("/" + (f"?{urlencode(rest)}" if rest else ""))
            response.set_cookie(self.cookie_name, self.token, httponly=True, samesite="Strict", path="/")
            return response
        return await handler(request)

    # -- routes ------------------------------------------------------------------------

    async def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._access])
        app.add_routes([
            web.get("/", self.handle_index, name="index"),
            web.get("/ws", self.handle_websocket, name="websocket"),
            web.static("/static", self.statics_path, show_index=False, name="static"),
        ])
        return app

    def _full(self) -> bool:
        return self.tabs.running >= self.max_tabs

    def _refusal(self) -> web.Response:
        return _page(503, "mk0r dashboard: every tab is taken",
                     f"{self.tabs.running} dashboard tab(s) are open, the most this server runs at once "
                     f"(<code>--max-tabs {self.max_tabs}</code>). Close one, then reload this page.")

    async def handle_index(self, request: web.Request) -> web.Response:
        if self._full():
            return self._refusal()
        font_size = request.query.get("fontsize", "16")  # textual-serve's parameter: 6..48 px
        mode = "read-only demo: no provisioning, teardown, hand-off, reveal or copy of secrets" if self.read_only else "actions on"
        text = Template(PAGE.read_text(encoding="utf-8")).substitute(
            title=html.escape(f"mk0r dashboard · {mode}"),
            mode=html.escape(mode),
            font_size=str(min(max(int(font_size), 6), 48)) if font_size.isdigit() else "16",
            max_tabs=str(self.max_tabs),
        )
        return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """One tab: the checks first (the token was checked by the middleware), then one
        dashboard process for as long as the websocket lives."""
        origin = request.headers.get("Origin")
        if origin is not None and origin not in (f"http://{request.host}", f"https://{request.host}"):
            raise web.HTTPForbidden(text=f"websocket from another origin ({origin}) refused")
        if self._full():
            raise web.HTTPServiceUnavailable(text=f"every tab is taken (--max-tabs {self.max_tabs})")
        self.tabs.running += 1
        websocket = web.WebSocketResponse(heartbeat=15)
        service = TabService(
            self.command, processes=self._processes, write_bytes=websocket.send_bytes, write_str=websocket.send_str,
            close=websocket.close, download_manager=self.download_manager, debug=self.debug,
        )
        task = asyncio.current_task()
        if task is not None:
            self._tab_tasks.add(task)
        try:
            await websocket.prepare(request)
            width, height = _size(request.query.get("width"), 80), _size(request.query.get("height"), 24)
            await service.start(width, height)
            await self._process_messages(websocket, service)  # textual-serve's: stdin, resize, ping, focus
        except asyncio.CancelledError:
            await websocket.close()
        finally:
            await service.stop()
            self.tabs.running -= 1
            if task is not None:
                self._tab_tasks.discard(task)
        return websocket

    async def close_tabs(self, timeout_s: float = 10.0) -> None:
        """Stop every tab now and wait for its process: cancelled, a tab closes its websocket
        and tells its dashboard to quit (aiohttp alone would wait up to a minute for open
        websockets). A process still running after `timeout_s` is killed: none outlives us."""
        tasks = list(self._tab_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        processes = [p for p in self._processes if p.returncode is None]
        if processes:
            waits = [asyncio.ensure_future(p.wait()) for p in processes]
            await asyncio.wait(waits, timeout=timeout_s)
            for process in processes:
                if process.returncode is None:
                    process.kill()
            await asyncio.gather(*waits, return_exceptions=True)

    # -- serving -----------------------------------------------------------------------

    async def run(self, ready: Callable[[int], None], stop: asyncio.Event) -> None:
        """Serve until `stop` is set; `ready(port)` once listening (the real port with `--port 0`)."""
        runner = web.AppRunner(await self.build_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
            server = site._server
            sockets = getattr(server, "sockets", None) or ()
            port = sockets[0].getsockname()[1] if sockets else self.port
            self.port = port
            self.cookie_name = f"mk0r_web_{port}"
            ready(port)
            await stop.wait()
        finally:
            await self.close_tabs()
            await runner.cleanup()


class TabService(AppService):
    """textual-serve's process manager for one tab, which also keeps its process in the
    server's set (so stopping the server waits for every tab's process)."""

    def __init__(self, command: str, *, processes: set[Process], **kwargs: Any) -> None:
        super().__init__(command, **kwargs)
        self._processes = processes

    async def _open_app_process(self, width: int = 80, height: int = 24) -> Process:
        process = await super()._open_app_process(width, height)
        self._processes.add(process)
        return process

    async def stop(self) -> None:
        await super().stop()
        if self._process is not None and self._process.returncode is not None:
            self._processes.discard(self._process)


def _size(text: str | None, default: int) -> int:
    return int(text) if text is not None and text.isdigit() and 0 < int(text) < 10_000 else default


def _page(status: int, title: str, body_html: str, headers: dict[str, str] | None = None) -> web.Response:
    text = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
        "<style>body{background:#0c181f;color:#e6eef2;font-family:monospace;margin:10vh auto;max-width:44em;"
        "line-height:1.5}code{color:#ffcb6b}</style></head><body><h1>" + html.escape(title) + "</h1><p>"
        + body_html + "</p><p><button onclick='location.reload()'>Reload</button></p></body></html>"
    )
    return web.Response(status=status, text=text, content_type="text/html", headers=headers)


def url_for(host: str, port: int, token: str) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?token={token}"


def serve_dashboard(
    *,
    data_dir: Path,
    host: str,
    port: int,
    allow_actions: bool,
    max_tabs: int,
    say: Callable[[str], None],
    warn: Callable[[str], None],
    token: str | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM. `say` gets the URL to open (stdout), `warn` the notes (stderr)."""
    token = token or secrets.token_urlsafe(TOKEN_BYTES)
    server = DashboardServer(
        tab_command(data_dir=data_dir, read_only=not allow_actions),
        host=host, port=port, token=token, max_tabs=max_tabs, read_only=not allow_actions,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass

        def ready(real_port: int) -> None:
            mode = "read-only (--allow-actions turns provisioning, teardown and the .env's reveal/copy on)" if not allow_actions \
                else "actions ON: whoever opens it can provision, tear down and reveal secrets"
            warn(f"mk0r-tui web: {mode}; at most {max_tabs} tab(s) at once (--max-tabs); data dir {data_dir}; Ctrl+C stops")
            say(url_for(host, real_port, token))

        await server.run(ready, stop)

    asyncio.run(main())


__all__ = ["DashboardServer", "TabCount", "is_loopback", "remote_warning", "serve_dashboard", "tab_command", "url_for"]
