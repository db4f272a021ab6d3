"""Regenerate the README's screenshots by driving the real dashboard with the local profile.

    .venv/bin/python scripts/export_screenshots.py [--out screenshots]
    .venv/bin/python scripts/export_screenshots.py --check     # CI: would a picture's text change?

`--check` exports into a scratch folder and compares each picture's text (the SVG's text, with
digits, spinner frames and sparkline bars evened out: times and latencies differ from run to
run) with the committed one; it exits 1 naming every picture whose words changed, so the
README never shows a screen that no longer exists.

Everything runs for real (embedded Postgres, local git, local folder) in a throwaway data
dir. Two things are staged: the database provider is held for a moment so the first picture
catches provisioning mid-flight, and the failure picture points the database provider at a
closed port (`MK0R_LOCAL_POSTGRES_URL`), so its error is the real one.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from mk0r_tui.core.provider import Provider
from mk0r_tui.providers import DEFAULT_REGISTRY

REPO = Path(__file__).resolve().parent.parent
SIZE = (150, 44)
#: the small-terminal picture beside the large ones
SMALL_SIZE = (80, 24)
CLOSED_PORT_URL = "postgresql://admin:not-a-real-password@127.0.0.1:9/postgres"


def prepare_environment(home: Path) -> None:
    """A clean local profile: no cloud keys, no keyring, our own data dir."""
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    os.environ.update({"MK0R_HOME": str(home), "MK0R_PROFILE": "local", "MK0R_TARGET": "local",
                       "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", "MK0R_NO_KEYRING": "1"})
    from mk0r_tui.core.credentials import KEY_NAMES

    for name in (*KEY_NAMES, "MK0R_LOCAL_POSTGRES_URL"):
        os.environ.pop(name, None)


class Held(Provider):
    """Wraps a real provider; `provision` waits for `release` first (for a mid-flight picture)."""

    def __init__(self, inner, release: asyncio.Event) -> None:
        self.inner = inner
        self.release = release
        self.name, self.slot, self.env_keys = inner.name, inner.slot, inner.env_keys

    async def provision(self, ctx):
        ctx.progress("starting embedded Postgres")
        await self.release.wait()
        return await self.inner.provision(ctx)

    async def teardown(self, resource):
        return await self.inner.teardown(resource)

    async def discover(self):
        return await self.inner.discover()

    async def aclose(self):
        await self.inner.aclose()


def leave_an_orphan(path: Path) -> None:
    """A real bare repo named like ours that no session owns: what a crash or a manual copy leaves."""
    subprocess.run(["git", "init", "--bare", "--quiet", str(path)], check=True)


async def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not reach the expected state")
        await asyncio.sleep(0.05)


async def shoot(app, pilot, out: Path, name: str) -> None:
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()  # the event log scrolls to its end after the refresh that showed the last line
    await pilot.pause()
    path = app.save_screenshot(filename=f"{name}.svg", path=str(out))
    print(f"wrote {path}")


def send_demo_mail(env_file: Path) -> None:
    """What a generated app does: a welcome mail with the resend SDK, a notification by SMTP,
    both to the addresses in the session's .env (the local mail catcher)."""
    import smtplib

    import resend
    from dotenv import dotenv_values

    env = dotenv_values(env_file)
    resend.api_url, resend.api_key = env["RESEND_API_URL"], env["RESEND_API_KEY"]
    resend.Emails.send({"from": "Demo app <hello@demo.test>", "to": ["ada@example.com"], "subject": "Welcome to the demo app",
                        "text": "Hi Ada,\n\nyour account is ready. Sign in any time.\n\nThe demo app team"})
    with smtplib.SMTP(env["SMTP_HOST"], int(env["SMTP_PORT"])) as client:
        client.login(env["SMTP_USER"], env["SMTP_PASSWORD"])
        client.sendmail("hello@demo.test", ["ops@demo.test"], (
            b"From: hello@demo.test\r\nTo: ops@demo.test\r\nSubject: New signup: ada@example.com\r\n\r\n"
            b"Ada signed up a minute ago.\r\n"))


async def main_scenes(out: Path) -> None:
    from dataclasses import replace

    from mk0r_tui.core.config import load_settings
    from mk0r_tui.core.models import Session, Status
    from mk0r_tui.engine.runtime import Runtime
    from mk0r_tui.providers.local_postgres import LocalPostgresProvider
    from mk0r_tui.tui.app import Mk0rApp

    settings = load_settings()
    release = asyncio.Event()
    held = Held(LocalPostgresProvider(settings=settings), release)
    # the registry this script hands the runtime: the default one, with local-postgres held
    registry = replace(DEFAULT_REGISTRY, providers=tuple(
        replace(s, factory=lambda _s, _c: held) if s.name == "local-postgres" else s for s in DEFAULT_REGISTRY.providers))
    runtime = Runtime(settings, registry=registry)
    app = Mk0rApp(runtime)
    async with app.run_test(size=SIZE) as pilot:
        # a couple of earlier sessions, so the list and the latency history are not empty
        for key in ("4c1d7e2a-earlier-1", "9b3f0a6c-earlier-2"):
            release.set()
            app.start_provision(Session.parse(key))
            await app.workers.wait_for_complete()
        release.clear()
        session = Session.parse("e9a4b6f0-demo-session")
        app.start_provision(session)
        def repo_done() -> bool:
            current = app.sessions.get(session.key)
            panel = current.panel("local-git") if current else None
            return panel is not None and panel.status is Status.OK

        await wait_until(repo_done)
        await pilot.pause(0.6)
        await shoot(app, pilot, out, "dashboard-mid-provision")
        release.set()
        await app.workers.wait_for_complete()
        await shoot(app, pilot, out, "dashboard-all-ok")

        await pilot.press("e")
        await shoot(app, pilot, out, "env-masked")
        await pilot.press("escape")
        await pilot.pause()

        # the app sends its welcome mail through the Resend SDK and a notification over SMTP
        await asyncio.to_thread(send_demo_mail, runtime.settings.env_file_for(session.slug))
        await pilot.press("m")
        await wait_until(lambda: type(app.screen).__name__ == "MailboxScreen" and app.screen.mails)
        await wait_until(lambda: len(app.screen.mails) == 2)
        await shoot(app, pilot, out, "mailbox")
        await pilot.press("escape")
        await pilot.pause()

        await pilot.press("t")
        await pilot.pause()
        await pilot.press(*session.slug[:5])
        await shoot(app, pilot, out, "teardown-modal")
        await pilot.press("escape")
        await pilot.pause()

        await pilot.resize_terminal(*SMALL_SIZE)
        await pilot.pause()
        await shoot(app, pilot, out, "dashboard-80x24")
        await pilot.resize_terminal(*SIZE)
        await pilot.pause()

        leave_an_orphan(runtime.settings.repos_dir / "mk0r-5ea1ed0d-lost.git")
        await pilot.press("O")
        await pilot.pause()
        if type(app.screen).__name__ == "OrphansScreen":
            await app.workers.wait_for_complete()
            await shoot(app, pilot, out, "orphans")
        else:
            print("skipped orphans.svg: the orphans screen is not available")
    await runtime.aclose()
    runtime.close()


async def failure_scene(out: Path) -> None:
    from mk0r_tui.core.config import load_settings
    from mk0r_tui.core.models import Session
    from mk0r_tui.engine.runtime import Runtime
    from mk0r_tui.tui.app import Mk0rApp

    runtime = Runtime(load_settings(local_postgres_url=CLOSED_PORT_URL), registry=DEFAULT_REGISTRY)
    app = Mk0rApp(runtime)
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(Session.parse("0f7d2c91-failing-demo"))
        await app.workers.wait_for_complete()
        await shoot(app, pilot, out, "dashboard-failure")
    await runtime.aclose()
    runtime.close()


_TEXT_ELEMENT = re.compile(r'<text\b[^>]*\bx="([0-9.]+)"[^>]*clip-path="url\(#[^)]*-line-(\d+)\)"[^>]*>([^<]*)</text>')
_VOLATILE = (
    (re.compile(r"[^\s…]{0,4}…[^\s…]{0,4}"), "…"),  # a masked secret's visible ends (a fresh one each run)
    (re.compile(r"[0-9]+"), "0"),  # times, latencies, ages, ports, counts
    (re.compile("[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏◐]"), "⠋"),  # spinner frames
    (re.compile("[▁▂▃▄▅▆▇█]+=*"), "▁"),  # sparkline bars, and a scrollbar's thumb as a table's width sets it
    (re.compile(r"0(?:\.0)?\s?(?:ms|s|m|h|d)\b|0m0s"), "0t"),  # a duration in whichever unit it took
    (re.compile(r"\s+"), ""),  # column padding follows the widths of the values above
)


def svg_text(svg: str) -> list[str]:
    """The words of a Textual SVG screenshot, one string per terminal line, volatile parts evened
    out (see `_VOLATILE`): what `--check` compares."""
    lines: dict[int, list[tuple[float, str]]] = {}
    for x, line, text in _TEXT_ELEMENT.findall(svg):
        lines.setdefault(int(line), []).append((float(x), html.unescape(text).replace("\xa0", " ")))
    out = []
    for number in sorted(lines):
        text = "".join(part for _, part in sorted(lines[number]))
        for pattern, replacement in _VOLATILE:
            text = pattern.sub(replacement, text)
        if text.strip():
            out.append(text.strip())
    return out


def changed_pictures(committed: Path, fresh: Path) -> list[str]:
    """One line per picture whose text differs (or that exists on one side only)."""
    problems = []
    for path in sorted(fresh.glob("*.svg")):
        old = committed / path.name
        if not old.exists():
            problems.append(f"{path.name}: new picture, not in {committed}")
            continue
        before, after = svg_text(old.read_text(encoding="utf-8")), svg_text(path.read_text(encoding="utf-8"))
        # the same lines in any order: the scenes' providers run concurrently, so which one's log
        # line or resource row comes first is theirs to decide, not the app's text changing
        if sorted(before) != sorted(after):
            gone, new = Counter(before) - Counter(after), Counter(after) - Counter(before)
            diff = f"{next(iter(gone), '(nothing)')!r} → {next(iter(new), '(nothing)')!r}"
            problems.append(f"{path.name}: its text changed: {diff}")
    for path in sorted(committed.glob("*.svg")):
        if not (fresh / path.name).exists():
            problems.append(f"{path.name}: in {committed} but the exporter no longer makes it")
    return problems


def export(out: Path, home: Path) -> None:
    prepare_environment(home)
    out.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(main_scenes(out))
        asyncio.run(failure_scene(out))
    finally:
        from mk0r_tui.providers.embedded_pg import EmbeddedPostgres
        from mk0r_tui.providers.mail_catcher import MailCatcher

        EmbeddedPostgres(home / "postgres").stop()
        MailCatcher(home / "mail").stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "screenshots")
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "mk0r-screenshots")
    parser.add_argument("--check", action="store_true", help="compare a fresh export's text with --out; exit 1 if it changed")
    args = parser.parse_args()
    if not args.check:
        export(args.out, args.home)
        return
    with tempfile.TemporaryDirectory(prefix="mk0r-screenshots-check-") as scratch:
        export(Path(scratch), args.home)
        problems = changed_pictures(args.out, Path(scratch))
    if problems:
        print("The README's screenshots are stale; run scripts/export_screenshots.py and commit screenshots/:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(1)
    print(f"screenshots/: every picture's text matches a fresh export ({len(list(args.out.glob('*.svg')))} pictures)")


if __name__ == "__main__":
    main()
