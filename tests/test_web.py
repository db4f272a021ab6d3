"""`mk0r-tui web`: the dashboard in a real headless Chromium, and the locks around it.

Everything real: the CLI provisions a session on the local profile (embedded Postgres, mail
catcher, local git) in a subprocess, `mk0r-tui web` serves the dashboard from another
subprocess, each browser tab is a dashboard process of its own, and the screen is read from
xterm.js's buffer in the page (tests/webkit.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from waiting import wait_until, wait_until_sync
from webkit import chromium, descendants, web_server

from mk0r_tui.core.envfile import read_env_file, secret_values
from mk0r_tui.tui.web import is_loopback

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mk0r_tui", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def ledger_sessions() -> list[dict]:
    proc = cli("sessions", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def own_postgres_dir():
    """An embedded Postgres for this module alone: a session provisioned here must not sit on
    the run's shared server while a test on another worker scans it for orphans."""
    import tempfile

    from mk0r_tui.providers.embedded_pg import EmbeddedPostgres

    path = Path(tempfile.mkdtemp(prefix="mk0r-test-web-pg-"))
    yield path
    EmbeddedPostgres(path).stop()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def provisioned(session_key, own_postgres_dir, monkeypatch):
    """A session provisioned by the CLI (local profile) during the test, on this module's own
    Postgres (the web server and its tabs inherit the environment), torn down after it."""
    monkeypatch.setenv("MK0R_POSTGRES_DIR", str(own_postgres_dir))
    proc = cli("provision", "--session", session_key, "--json")
    assert proc.returncode == 0, f"provision failed: {proc.stdout}\n{proc.stderr}"
    yield json.loads(proc.stdout)
    done = cli("teardown", "--yes", "--json", "--", session_key)
    assert done.returncode == 0, f"teardown failed: {done.stdout}\n{done.stderr}"


def secret_fragments(env_file: str) -> list[str]:
    """Every secret of the session's .env (and each URL's password), plus a middle piece of each
    long one, so a value cut by a narrow column would still be caught."""
    found = set()
    for value in secret_values(read_env_file(Path(env_file))):
        found.add(value)
        if len(value) >= 16:
            middle = len(value) // 2
            found.add(value[middle - 4:middle + 4])
    assert found, "the session's .env has no secret: nothing would be tested"
    return sorted(found)


def page_texts(browser) -> dict[str, str]:
    """What the page holds: the terminal's screen, the DOM as HTML and the DOM's visible text."""
    return {
        "screen": browser.screen_text(),
        "html": browser.page.content(),
        "text": browser.page.evaluate("() => document.body.innerText"),
    }


def assert_no_secret(browser, fragments: list[str], when: str) -> None:
    for where, text in page_texts(browser).items():
        leaked = [f for f in fragments if f in text]
        assert not leaked, f"{when}: a secret of the session is on the page ({where}): {leaked}"


def assert_only_this_server(browser, base: str) -> None:
    others = [u for u in browser.requests if not u.startswith(base + "/") and not u.startswith(("data:", "blob:"))]
    assert not others, f"the page fetched from elsewhere (it must work offline): {others}"


def test_the_browser_shows_the_ledger_read_only_and_never_a_secret(tmp_path, session_key, provisioned):
    """The issue's 'done when': a session provisioned by the CLI during the test is in the
    sessions table of the page (as in the ledger); `e` shows its .env with no secret on the
    page, and x/X/c/C reveal or copy nothing; `n` provisions nothing; a screenshot is taken."""
    report = provisioned
    fragments = secret_fragments(report["env_file"])
    before = ledger_sessions()
    assert [s["slug"] for s in before] == [report["slug"]]

    with web_server("--max-tabs", "2") as server, chromium() as browser:
        browser.page.goto(server.url)
        browser.page.wait_for_function("() => document.body.classList.contains('-first-byte')", timeout=60_000)
        assert "token=" not in browser.page.url, "the token stays on the address bar (the demo screen)"
        screen = browser.wait_for_text("sessions", f"mk0r-{report['slug']}")
        for row in before:  # every session the ledger holds is a row, with the ledger's state word
            line = next(line for line in screen.splitlines() if f"mk0r-{row['slug']}" in line)
            assert row["state"] in line, line
        assert "n New" not in screen and "t Teardown" not in screen, "read-only shows a provisioning key"
        browser.wait_for_text("local-postgres · database", "history p50", "events")  # the detail pane: the live panels
        browser.page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")  # painted
        shot = tmp_path / "web-dashboard.png"
        browser.page.screenshot(path=str(shot))
        assert shot.stat().st_size > 20_000
        from PIL import Image

        with Image.open(shot) as image:
            assert image.size == (1400, 900)
            assert len(set(image.convert("RGB").resize((350, 225)).get_flattened_data())) > 20, "the screenshot is blank"
        if os.environ.get("MK0R_WEB_SCREENSHOT"):  # the README's picture: see README, `mk0r-tui web`
            shutil.copyfile(shot, os.environ["MK0R_WEB_SCREENSHOT"])
        assert_no_secret(browser, fragments, "the dashboard")

        browser.press("e")
        screen = browser.wait_for_text(".env", "secret (masked)", "PGPASSWORD", "DATABASE_URL")
        assert "Reveal" not in screen and "Copy" not in screen, "read-only offers reveal/copy in the footer"
        assert_no_secret(browser, fragments, "the .env viewer")
        # x/X reveal, c/C copy: refused. ctrl+p opens the palette: once it is on screen the four
        # keys before it have been handled; closed again, the viewer shows what they did
        browser.press("x", "X", "c", "C", "Control+p")
        browser.wait_for_text("Search for commands")
        browser.press("Escape")
        screen = browser.wait_for_text("PGPASSWORD", "secret (masked)", absent=("Search for commands",))
        assert "Copied" not in screen and "clipboard" not in screen, screen
        assert "revealed" not in screen, screen
        assert_no_secret(browser, fragments, "after x, X, c, C")
        browser.press("Escape")  # back to the dashboard
        browser.wait_for_text("sessions", f"mk0r-{report['slug']}", "Orphans")

        # n in read-only: nothing. `?` after it opens the help: then `n` has been handled too
        browser.press("n", "?")
        screen = browser.wait_for_text("Keys", "dashboard", ".env viewer")
        assert "New session" not in screen and "Session key" not in screen, screen
        assert [s["session"] for s in ledger_sessions()] == [session_key], "n provisioned a session in read-only"
        assert_only_this_server(browser, server.base)
        assert len(server.tabs) == 1, f"one tab, one dashboard process: {server.tabs}"
        assert_no_secret(browser, fragments, "the help screen")
    assert "Traceback" not in "".join(server.stderr_lines), "".join(server.stderr_lines)


def test_allow_actions_turns_reveal_and_new_session_on(provisioned):
    """The other side of the read-only rule (and proof that the checks above can see a secret):
    with --allow-actions, X puts the secrets on the page and n opens the new-session modal."""
    report = provisioned
    fragments = secret_fragments(report["env_file"])
    with web_server("--allow-actions") as server, chromium() as browser:
        browser.page.goto(server.url)
        browser.wait_for_text(f"mk0r-{report['slug']}", "n New")
        browser.press("e")
        browser.wait_for_text("secret (masked)", "Reveal")
        browser.press("X")
        screen = browser.wait_for_text("revealed")
        assert any(f in screen for f in fragments), "X revealed nothing the test recognises as a secret"
        browser.press("Escape")
        browser.wait_for_text("sessions", "n New")
        browser.press("n")
        browser.wait_for_text("New session", "Session key")


async def _ws_refused(url: str, **kwargs) -> int:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url, **kwargs):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


def test_without_the_token_the_page_and_the_websocket_are_refused_and_no_process_starts():
    with web_server() as server:
        async def probe() -> dict[str, int]:
            async with aiohttp.ClientSession() as http:
                statuses = {}
                for path in ("/", "/?token=wrong", "/static/js/textual.js"):
                    async with http.get(server.base + path, allow_redirects=False) as response:
                        statuses[path] = response.status
                        body = await response.text()
                        assert server.token not in body
                statuses["ws"] = await _ws_refused(server.base.replace("http", "ws") + "/ws?width=80&height=24")
                statuses["ws wrong token"] = await _ws_refused(server.base.replace("http", "ws") + "/ws?token=nope")
                port = server.base.rsplit(":", 1)[1]
                statuses["ws wrong cookie"] = await _ws_refused(
                    server.base.replace("http", "ws") + "/ws", headers={"Cookie": f"mk0r_web_{port}=not-the-token"})
                statuses["ws other origin"] = await _ws_refused(
                    server.base.replace("http", "ws") + f"/ws?token={server.token}", headers={"Origin": "http://127.0.0.1:1"})
                return statuses

        statuses = asyncio.run(probe())
        assert statuses == {"/": 401, "/?token=wrong": 401, "/static/js/textual.js": 401, "ws": 401,
                            "ws wrong token": 401, "ws wrong cookie": 401, "ws other origin": 403}, statuses
        assert descendants(server.proc.pid) == [], f"a refused request started a process: {descendants(server.proc.pid)}"
        assert not any("Traceback" in line for line in server.stderr_lines)


def test_the_page_references_no_host_but_the_server_itself():
    """Offline: no web font, script or stylesheet from the internet (textual-serve's own page
    links one); the font is served locally."""
    with web_server() as server:
        async def fetch() -> tuple[int, str, int, str]:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # unsafe: an IP host
                async with http.get(server.url) as page:  # follows the redirect, with the cookie
                    html = await page.text()
                    status = page.status
                async with http.get(server.base + "/static/fonts/RobotoMono-VariableFont_wght.ttf") as font:
                    return status, html, font.status, font.headers.get("Content-Type", "")

        status, html, font_status, font_type = asyncio.run(fetch())
    assert status == 200
    hosts = set(re.findall(r"(?i)\b(?:https?|wss?):/*([^/\"'\s)]+)", html))
    assert hosts <= {server.base.split("//")[1]}, f"the page names another host: {hosts}"
    assert "googleapis" not in html and "@import" not in html
    assert "/static/fonts/RobotoMono" in html and "font-family" in html
    assert font_status == 200 and ("font" in font_type or "octet" in font_type), font_type
    assert "read-only" in html


def test_past_max_tabs_the_page_is_a_refusal_and_no_process_starts():
    """--max-tabs 1: one live tab (a websocket that really runs a dashboard); then the page is a
    503 refusal page and the websocket is refused before a process starts."""
    with web_server("--max-tabs", "1") as server:
        ws_url = server.base.replace("http", "ws") + f"/ws?token={server.token}&width=100&height=30"

        async def scenario() -> tuple[int, str, int]:
            jar = aiohttp.CookieJar(unsafe=True)  # unsafe: cookies of an IP host
            async with aiohttp.ClientSession(cookie_jar=jar) as http, http.ws_connect(ws_url) as tab:
                first = await asyncio.wait_for(tab.receive(), timeout=60)
                assert first.type is aiohttp.WSMsgType.BINARY, first  # the dashboard's first output
                await wait_until(lambda: len(server.tabs) == 1, timeout=30, what="the first tab's process")
                async with http.get(server.url) as page:
                    status, body = page.status, await page.text()
                refused = await _ws_refused(ws_url)
                assert len(server.tabs) == 1, f"the refused tab started a process: {server.tabs}"
                return status, body, refused

        status, body, refused = asyncio.run(scenario())
        assert status == 503 and "--max-tabs 1" in body, body
        assert refused == 503
        wait_until_sync(lambda: server.tabs == [], timeout=30, what="the closed tab's process to end")


def test_stopping_the_server_stops_every_tab_process():
    """Ctrl+C (SIGINT) with a tab open: the server closes the tab, its dashboard process quits,
    and the server exits only once that process is gone (none is left behind)."""
    import signal

    with web_server() as server:
        ws_url = server.base.replace("http", "ws") + f"/ws?token={server.token}&width=100&height=30"

        async def scenario() -> list[int]:
            async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as tab:
                assert (await asyncio.wait_for(tab.receive(), timeout=60)).type is aiohttp.WSMsgType.BINARY
                await wait_until(lambda: len(server.tabs) == 1, timeout=30, what="the tab's process")
                tabs = server.tabs
                reader = asyncio.ensure_future(tab.receive())  # the client answers the server's close
                server.proc.send_signal(signal.SIGINT)
                await asyncio.get_running_loop().run_in_executor(None, lambda: server.proc.wait(timeout=60))
                reader.cancel()
                return tabs

        tabs = asyncio.run(scenario())
        assert server.proc.returncode == 0, "".join(server.stderr_lines)
        left = [pid for pid in tabs if Path(f"/proc/{pid}").exists()]
        assert not left, f"tab processes outlived the server: {left}"


def test_a_host_that_is_not_loopback_needs_allow_remote_and_warns():
    refused = cli("web", "--host", "192.0.2.10", "--port", "0")
    assert refused.returncode == 2
    assert "not loopback" in refused.stderr and "--allow-remote" in refused.stderr and not refused.stdout
    # TEST-NET-1 is no address of this machine: the warning comes first, then the bind fails (exit 2)
    warned = cli("web", "--host", "192.0.2.10", "--port", "0", "--allow-remote")
    assert "warning: 192.0.2.10 is not loopback" in warned.stderr
    assert "gives whoever reaches it the dashboard" in warned.stderr
    assert warned.returncode == 2 and "cannot listen on 192.0.2.10" in warned.stderr


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("10.0.0.1", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_web_help_and_the_tab_command_is_the_read_only_dashboard():
    from mk0r_tui.tui.web import tab_command

    proc = cli("web", "--help")
    assert proc.returncode == 0
    for option in ("--host", "--port", "--allow-actions", "--allow-remote", "--max-tabs"):
        assert option in proc.stdout
    assert tab_command(data_dir=Path("/d"), read_only=True).endswith("-m mk0r_tui --read-only")
    assert "--read-only" not in tab_command(data_dir=Path("/d"), read_only=False)
    assert "MK0R_HOME=/d" in tab_command(data_dir=Path("/d"), read_only=True)
