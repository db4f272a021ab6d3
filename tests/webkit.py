"""Helpers for `mk0r-tui web` tests: the server as a real subprocess, its child processes, and a
real headless Chromium (Debian's `/usr/bin/chromium`, driven by Playwright's Python package;
browsers cannot be downloaded here, so never `playwright install`).

The screen is read from xterm.js's own buffer (the lines the terminal holds, as text), not from
pixels: the test routes textual-serve's `textual.js` through a one-line patch that keeps the
page's terminal object on `window.__mk0rTerminal` (test-side only; the server serves the file
unchanged).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from waiting import wait_until_sync

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
#: where textual.js makes the page's terminal; the patch keeps it reachable from the test
TERMINAL_NEEDLE = "const t=new w(e,{ping:r});"
BUFFER_JS = """() => {
  const t = window.__mk0rTerminal;
  if (!t) return null;
  const b = t.terminal.buffer.active, out = [];
  for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
  return out.join("\\n");
}"""


def require_chromium() -> str:
    """The browser, or a failure that says how to get it (the test must never skip in CI)."""
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        raise AssertionError(
            f"{CHROMIUM} is missing: `.ci/run` installs Debian's chromium package when it is absent "
            "(`apt-get install -y chromium`); run that, or install it yourself"
        )
    return CHROMIUM


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc: no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def dashboard_processes(pid: int) -> list[int]:
    """The dashboard processes (`python -m mk0r_tui`, the tabs) below the web server `pid`."""
    found = []
    for child in descendants(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mk0r_tui" in argv and b"web" not in argv:
            found.append(child)
    return found


@dataclass
class WebServer:
    """`mk0r-tui web` running as a subprocess; `url` is the one it printed (with the token)."""

    proc: subprocess.Popen[str]
    url: str
    stderr_lines: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def token(self) -> str:
        return self.url.split("token=", 1)[1]

    @property
    def tabs(self) -> list[int]:
        return dashboard_processes(self.proc.pid)


@contextmanager
def web_server(*args: str, env: dict[str, str] | None = None) -> Iterator[WebServer]:
    """Start `python -m mk0r_tui web --port 0 ARGS`, wait for its URL line, stop it at the end
    (SIGINT, as Ctrl+C would) and wait until it and every tab process are gone."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mk0r_tui", "web", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    stderr_lines: list[str] = []
    threading.Thread(target=lambda: stderr_lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    first: list[str] = []  # every stdout line (drained, so tab output never blocks the server)
    threading.Thread(target=lambda: first.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    try:
        wait_until_sync(lambda: first or proc.poll() is not None, timeout=60, what="the URL line of mk0r-tui web")
        if not first or not first[0].startswith("http://"):
            raise AssertionError(f"mk0r-tui web printed no URL (rc={proc.poll()}): {first} {''.join(stderr_lines)}")
        server = WebServer(proc, first[0].strip(), stderr_lines)
        yield server
    finally:
        tabs = descendants(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in tabs:  # a tab left behind would be a leak of the server, not of the test
            try:
                os.kill(pid, 0)
            except OSError:
                continue
            os.kill(pid, signal.SIGKILL)


@dataclass
class Browser:
    page: Any
    requests: list[str]

    def screen_text(self) -> str:
        return self.page.evaluate(BUFFER_JS) or ""

    def wait_for_text(self, *needles: str, absent: tuple[str, ...] = (), timeout_s: float = 60) -> str:
        """Wait until every needle is on the terminal's screen (and none of `absent` is); return
        the screen's text."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(
                "([wanted, absent]) => { const t = (" + BUFFER_JS + ")();"
                " return t !== null && wanted.every(w => t.includes(w)) && !absent.some(a => t.includes(a)); }",
                arg=[list(needles), list(absent)], timeout=timeout_s * 1000,
            )
        except PlaywrightTimeout:
            screen = self.screen_text()
            missing = [n for n in needles if n not in screen] + [f"no {a!r}" for a in absent if a in screen]
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {missing} on the screen:\n{screen}") from None
        return self.screen_text()

    def press(self, *keys: str) -> None:
        self.page.evaluate("() => window.__mk0rTerminal.terminal.focus()")
        for key in keys:
            self.page.keyboard.press(key)


@contextmanager
def chromium(viewport: tuple[int, int] = (1400, 900)) -> Iterator[Browser]:
    """A fresh headless Chromium (its own profile dir) with one page, the terminal patch routed in."""
    from playwright.sync_api import Route, sync_playwright

    executable = require_chromium()
    profile = tempfile.mkdtemp(prefix="mk0r-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=executable, args=CHROMIUM_FLAGS, headless=True,
                viewport={"width": viewport[0], "height": viewport[1]},
            )
            try:
                page = context.pages[0] if context.pages else context.new_page()
                requests: list[str] = []
                page.on("request", lambda request: requests.append(request.url))

                def keep_terminal(route: Route) -> None:
                    response = route.fetch()
                    body = response.text()
                    if TERMINAL_NEEDLE not in body:
                        raise AssertionError(f"textual.js changed: {TERMINAL_NEEDLE!r} not found (update tests/webkit.py)")
                    route.fulfill(response=response, body=body.replace(TERMINAL_NEEDLE, TERMINAL_NEEDLE + "window.__mk0rTerminal=t;"))

                page.route("**/static/js/textual.js", keep_terminal)
                yield Browser(page, requests)
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
