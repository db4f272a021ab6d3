"""The dashboard's modals open fast while it is busy: `n` (new session) and `?` (help) while 20
sessions provision against the fake upstream (its default latencies), against the same kind
of modal in a minimal Textual app that imports nothing of mk0r (idle: what Textual itself
charges for pushing a modal).

A sample: a Key event is handed to the app's driver, as a terminal's key would be; the clock
stops when the modal is the active screen with its first widget focused (the next key typed
lands in it), polled every loop turn. Esc closes it, and the next sample follows 100 ms later.
Rounds alternate mk0r and baseline (A B A B). Goal (issue 16): every modal opens in <= 100 ms
while 20 sessions provision (p95).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import _common as c

SIZE = (160, 48)
SESSIONS = 20


def baseline_app():
    """A minimal Textual app: `n` pushes a modal shaped like the new-session dialog, `?` one
    with a long scrolling table (the help). Nothing of mk0r is imported."""
    from textual.app import App, ComposeResult
    from textual.binding import Binding
    from textual.containers import Horizontal, Vertical, VerticalScroll
    from textual.screen import ModalScreen
    from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

    class Dialog(ModalScreen[None]):
        BINDINGS = [Binding("escape", "dismiss", "Close")]

        def compose(self) -> ComposeResult:
            with Vertical():
                yield Label("New session")
                yield Input(placeholder="key", id="first")
                yield Select((("auto", "auto"), ("local", "local")), value="auto", allow_blank=False)
                with Horizontal():
                    yield Button("Cancel")
                    yield Button("Provision", variant="primary")

        def on_mount(self) -> None:
            self.set_focus(self.query_one("#first"))

    class Help(ModalScreen[None]):
        BINDINGS = [Binding("escape", "dismiss", "Close")]

        def compose(self) -> ComposeResult:
            from rich.table import Table

            table = Table()
            for column in ("key", "action", "what it does"):
                table.add_column(column)
            for i in range(30):
                table.add_row(str(i), f"action {i}", "a sentence that says what the key does, long enough to wrap")
            with VerticalScroll(id="first"):
                yield Static(table)

        def on_mount(self) -> None:
            self.set_focus(self.query_one("#first"))

    class Minimal(App[None]):
        BINDINGS = [Binding("n", "new", "New"), Binding("question_mark", "help", "Help")]

        def compose(self) -> ComposeResult:
            yield Header()
            yield Static("sessions")
            yield Footer()

        def action_new(self) -> None:
            self.push_screen(Dialog())

        def action_help(self) -> None:
            self.push_screen(Help())

    return Minimal()


async def open_times(app, keys: tuple[str, ...], samples: int, busy=lambda: True) -> dict[str, list[float]]:
    """Press each key in turn `samples` times (while `busy()`); ms until its modal is up and focused."""
    from textual import events
    from textual.screen import ModalScreen

    times: dict[str, list[float]] = {key: [] for key in keys}
    base = app.screen
    for _ in range(samples):
        if not busy():
            break
        for key in keys:
            event = events.Key(key, {"question_mark": "?"}.get(key, key))
            event.set_sender(app)
            started = time.perf_counter()
            app._driver.send_message(event)
            deadline = started + 10
            while not (isinstance(app.screen, ModalScreen) and app.screen.focused is not None):
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{key}: no modal after 10 s")
                await asyncio.sleep(0.0005)
            times[key].append((time.perf_counter() - started) * 1000)
            close = events.Key("escape", "\x1b")
            close.set_sender(app)
            app._driver.send_message(close)
            while app.screen is not base:
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.1)
    return times


async def mk0r_round(fake, home, samples: int) -> tuple[dict[str, list[float]], int]:
    from mk0r_tui.core.config import load_settings
    from mk0r_tui.core.models import Session
    from mk0r_tui.tui.app import Mk0rApp

    # every cloud provider against the fake, at the product's default limits (Resend's rate,
    # GitHub's mutation gap); not c.cloud_settings, whose test kit import is not on the path here
    settings = load_settings(home=home, profile="cloud", target="local", no_keyring=True, neon_api_url=fake.neon_url,
                             resend_api_url=fake.resend_url, github_api_url=fake.github_url, posthog_host=fake.posthog_url)
    runtime = c.make_runtime(settings)
    app = Mk0rApp(runtime)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for _ in range(SESSIONS):
            app.start_provision(Session.new())
        await pilot.pause()
        busy_at_start = len(app.busy_sessions)
        times = await open_times(app, ("n", "question_mark"), samples, busy=lambda: len(app.busy_sessions) >= SESSIONS // 2)
        await app.workers.wait_for_complete()
    await c.close_runtime(runtime)
    return times, busy_at_start


async def baseline_round(samples: int) -> dict[str, list[float]]:
    app = baseline_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        return await open_times(app, ("n", "question_mark"), samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="mk0r/baseline round pairs, alternated")
    parser.add_argument("--samples", type=int, default=6, help="opens of each modal per round")
    args = parser.parse_args()
    info = c.print_header(f"modals open while {SESSIONS} sessions provision (n, ?)", "modal_open.py")
    mk0r: dict[str, list[float]] = {"n": [], "question_mark": []}
    base: dict[str, list[float]] = {"n": [], "question_mark": []}
    busy_counts: list[int] = []
    loads: list[float] = []
    with c.scratch_dir("mk0r-bench-modal-") as scratch, c.fake_upstream() as fake:
        for round_index in range(args.rounds):
            loads.append(os.getloadavg()[0])
            home = scratch / f"home-{round_index}"
            times, busy = c.run(mk0r_round(fake, home, args.samples))
            busy_counts.append(busy)
            for key, values in times.items():
                mk0r[key] += values
            for key, values in c.run(baseline_round(args.samples)).items():
                base[key] += values
    names = {"n": "n: new session", "question_mark": "?: help"}
    rows = []
    for key in ("n", "question_mark"):
        a, b = c.summary(mk0r[key]), c.summary(base[key])
        rows.append([names[key], f"mk0r, {SESSIONS} provisioning", a["n"], a["median"], a["p95"], a["min"], a["max"]])
        rows.append([names[key], "minimal Textual app, idle", b["n"], b["median"], b["p95"], b["min"], b["max"]])
    print(f"rounds: {args.rounds} (A B A B), load average (1 min) per round: {', '.join(f'{x:.2f}' for x in loads)}; "
          f"sessions provisioning when sampling started: {busy_counts}")
    print("(the machine is shared: other work shows up in these figures)")
    print(c.table(["modal", "app", "n", "median ms", "p95 ms", "min ms", "max ms"], rows))
    goals = [c.Goal(f"{names[k]} opens while {SESSIONS} provision (p95)", c.summary(mk0r[k])["p95"], 100.0, " ms")
             for k in ("n", "question_mark")]
    return c.finish("modal_open", info, goals, {"mk0r_ms": mk0r, "baseline_ms": base, "loadavg_per_round": loads})


if __name__ == "__main__":
    raise SystemExit(main())
