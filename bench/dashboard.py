"""The dashboard: time to first frame, and a burst of 2,000 events/s into the panels.

1. First frame: `Mk0rApp` (a ledger of 20 sessions, built the way `mk0r-tui` with no command
   builds it: the CLI module, its runtime, then the app) against a bare Textual `App` (an empty
   screen) and against a Textual app with the same widget tree but no mk0r code, each in a
   fresh process that has imported nothing of Textual or mk0r when the clock starts. The clock
   stops at the first frame the app hands to its driver after which the screen shows what the
   operator needs first: the header's title, a row for every session and every key of the
   footer (the bare App: its first frame). Frames are kept as they are displayed and replayed
   onto a virtual screen afterwards, off the clock. "Settled" is the end of the first
   `pilot.pause()` (every queued message handled and the process idle), so work deferred past
   the first frame still shows up. A second app in the same process gives the warm figures
   (imports done). Goal: <= 1.3 x bare. The same-widgets app tells what Textual charges.
2. Burst: a thread posts the app's own `SessionEventReceived` messages (as the orchestrator's
   sink does) at 2,000/s for a few seconds, for 10 sessions x 5 providers, the selected one
   among them. After it: every session's reduced state and the selected session's panels show
   the last event of each provider. During it: a key is pressed every 50 ms (a Key event sent
   through the driver, as a terminal would) and the time until its binding's action runs is
   recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time

if "--first-frame" not in sys.argv:  # a first-frame sample starts with nothing of mk0r imported
    import _common as c

SIZE = (160, 48)
SESSIONS_IN_LEDGER = 20


# -- 1. first frame, one sample per process ---------------------------------------------------


def first_frame_sample(kind: str, home: str) -> dict:
    """Runs in a fresh process: imports, builds the app, waits for its first frame; twice."""
    started = time.perf_counter()
    from textual.app import App

    if kind == "mk0r":
        os.environ.update(MK0R_HOME=home, MK0R_PROFILE="local", MK0R_TARGET="local", MK0R_NO_KEYRING="1")
        from mk0r_tui.cli import _runtime

        def build():
            from mk0r_tui.tui.app import Mk0rApp

            return Mk0rApp(_runtime(), read_only=True)
    elif kind == "widgets":
        build = same_widgets_app_class()
    else:
        def build():
            return App()

    async def one(t0: float) -> dict:
        app = build()
        frames = FrameRecorder(app)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            settled_ms = (time.perf_counter() - t0) * 1000
            wanted = first_needs(app) if kind != "bare" else []
        if kind == "mk0r":
            app.runtime.close()
        shown_at = frames.first_showing(wanted)
        if shown_at is None:
            raise SystemExit(f"{kind}: no frame showed {wanted!r}")
        return {"frame_ms": (shown_at - t0) * 1000, "settled_ms": settled_ms}

    cold = asyncio.run(one(started))
    warm = asyncio.run(one(time.perf_counter()))
    return {"cold_ms": cold["frame_ms"], "warm_ms": warm["frame_ms"],
            "cold_settled_ms": cold["settled_ms"], "warm_settled_ms": warm["settled_ms"]}


class FrameRecorder:
    """Keeps every update the app hands to its driver, with the time; `first_showing` replays
    them onto a virtual screen (off the clock) and says when all the wanted texts were first
    on it together. Headless, the driver writes nothing, but the frame is composed all the same."""

    def __init__(self, app) -> None:
        self.updates: list[tuple[float, object]] = []
        display = app._display

        def recorded(screen, renderable) -> None:
            if renderable is not None:
                self.updates.append((time.perf_counter(), renderable))
            display(screen, renderable)

        app._display = recorded

    def first_showing(self, wanted: list[str]) -> float | None:
        from textual._compositor import ChopsUpdate, LayoutUpdate

        width, height = SIZE
        cells = [[" "] * width for _ in range(height)]

        def put(x: int, y: int, text: str) -> None:
            row = cells[y]
            for offset, char in enumerate(text[: max(0, width - x)]):
                row[x + offset] = char

        for at, update in self.updates:
            if isinstance(update, LayoutUpdate):
                for y, line in enumerate(update.strips, update.region.y):
                    x = update.region.x
                    for strip in line:
                        put(x, y, strip.text)
                        x += strip.cell_length
            elif isinstance(update, ChopsUpdate):
                for y, x1, x2 in update.spans:
                    for end, (x, strip) in zip(update.chop_ends[y], update.chops[y].items()):
                        if strip is None or x > x2 or end <= x1:
                            continue
                        put(x, y, strip.crop(0, min(end, x2) - x).text)
            screen = "\n".join("".join(row) for row in cells)
            if all(text in screen for text in wanted):
                return at
        return None


def first_needs(app) -> list[str]:
    """What the operator needs first, read from the settled app: the header's title, the first
    column of every table row, and every footer key's description."""
    from textual.widgets import DataTable, Header
    from textual.widgets._footer import FooterKey

    screen = app.screen
    wanted = [app.title] if screen.query(Header) else []
    for table in screen.query(DataTable):  # a row's longest cell names it (slug, not state or age)
        wanted += [max((str(cell).strip() for cell in table.get_row_at(row)), key=len) for row in range(table.row_count)]
    wanted += [key.description for key in screen.query(FooterKey) if key.description]
    return wanted


def same_widgets_app_class():
    """A Textual app with the dashboard's widget tree (header, filter, a 20-row table, five
    panels of two statics and a sparkline row, a log, a footer with eight keys) and none of
    mk0r's code: what those widgets cost in Textual itself."""
    from textual.app import App, ComposeResult
    from textual.binding import Binding
    from textual.containers import Horizontal, Vertical, VerticalScroll
    from textual.widgets import DataTable, Footer, Header, Input, Label, RichLog, Sparkline, Static

    class SameWidgetsApp(App):
        BINDINGS = [Binding(key, "bell", f"key {key}") for key in "nreotOk/"]

        def compose(self) -> ComposeResult:
            yield Header()
            with Horizontal():
                with Vertical():
                    yield Input()
                    yield DataTable()
                with Vertical():
                    yield Static("title")
                    with VerticalScroll():
                        for _ in range(5):
                            with Vertical():
                                yield Static("status")
                                yield Static("body")
                                with Horizontal():
                                    yield Label("history")
                                    yield Label("p50")
                                    yield Sparkline([1, 2, 3])
                    yield RichLog()
            yield Footer()

        def on_mount(self) -> None:
            table = self.query_one(DataTable)
            table.add_columns("session", "state", "age", "providers")
            for i in range(SESSIONS_IN_LEDGER):
                table.add_row(f"mk0r-{i:012d}", "ready", "2m", "5 ok")
            log = self.query_one(RichLog)
            for i in range(10):
                log.write(f"line {i}")

    return SameWidgetsApp


KINDS = ("bare", "widgets", "mk0r")


def first_frame(samples: int, home) -> dict:
    figures: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    for _ in range(samples):
        for kind in KINDS:  # alternated, so drift on a shared machine hits each alike
            done = subprocess.run([sys.executable, __file__, "--first-frame", kind, "--home", str(home)],
                                  capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                raise SystemExit(f"first-frame sample {kind} failed: {done.stderr[-800:]}")
            figures[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return figures


# -- 2. the burst ------------------------------------------------------------------------


def bench_app_class():
    from textual.binding import Binding

    from mk0r_tui.tui.app import Mk0rApp

    class ProbedApp(Mk0rApp):
        """The real app plus one binding whose action records when it ran."""

        BINDINGS = [*Mk0rApp.BINDINGS, Binding("f9", "probe", "Probe", id="bench.probe", show=False)]

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.probe_handled: list[float] = []

        def action_probe(self) -> None:
            self.probe_handled.append(time.perf_counter())

    return ProbedApp


def burst_events(keys: list[str], providers: list[str], total: int):
    """ProviderProgressed lines round-robin over sessions and providers, a retry now and then."""
    from mk0r_tui.core.events import ProviderProgressed, ProviderRetrying

    for i in range(total):
        key = keys[i % len(keys)]
        provider = providers[(i // len(keys)) % len(providers)]
        if i % 97 == 0:
            yield ProviderRetrying(session=key, provider=provider, attempt=2, max_attempts=5, delay_s=0.5, reason=f"HTTP 503 #{i}")
        else:
            yield ProviderProgressed(session=key, provider=provider, message=f"step {i}")


async def burst(rate: int, seconds: float, home) -> dict:
    from textual import events as textual_events
    from textual.widgets import Static

    from mk0r_tui.core.config import Settings
    from mk0r_tui.core.events import ProviderStarted
    from mk0r_tui.core.models import Session, Slot, Status
    from mk0r_tui.tui.messages import SessionEventReceived
    from mk0r_tui.tui.state import WorkStarted

    settings = Settings(home=home, profile="local", target="local", no_keyring=True)
    app = bench_app_class()(c.make_runtime(settings, c.bench_credentials({})))
    plan = tuple((p, Slot(s)) for p, s, _ in c.LEDGER_SHAPE)
    providers = [p for p, _ in plan]
    sessions = [Session.new() for _ in range(10)]
    keys = [s.key for s in sessions]
    total = int(rate * seconds)
    expected: dict[tuple[str, str], str] = {}
    for event in burst_events(keys, providers, total):
        expected[(event.session, event.provider)] = getattr(event, "message", None) or event.reason

    posted = {"count": 0, "started": 0.0, "ended": 0.0}

    def produce() -> None:
        """Paced in 5 ms slices against absolute deadlines, so the rate holds on average."""
        batch = max(1, rate // 200)
        stream = burst_events(keys, providers, total)
        posted["started"] = time.perf_counter()
        next_at = posted["started"]
        for i, event in enumerate(stream):
            app.post_message(SessionEventReceived(event))
            posted["count"] += 1
            if (i + 1) % batch == 0:
                next_at += batch / rate
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
        posted["ended"] = time.perf_counter()

    async with app.run_test(size=SIZE) as pilot:
        for session in sessions:
            app.post_message(SessionEventReceived(WorkStarted(session=session.key, kind="provision", plan=plan,
                                                              slug=session.slug, target="local-folder")))
            for provider, slot in plan:
                app.post_message(SessionEventReceived(ProviderStarted(session=session.key, provider=provider, slot=slot)))
        app.dashboard.select_when_shown(keys[0])
        await pilot.pause()
        await pilot.pause()

        producer = threading.Thread(target=produce, name="bench-producer")
        sent: list[float] = []
        producer.start()
        while producer.is_alive():
            key_event = textual_events.Key("f9", None)
            key_event.set_sender(app)
            sent.append(time.perf_counter())
            app._driver.send_message(key_event)
            await asyncio.sleep(0.05)
        producer.join()

        deadline = time.perf_counter() + 30
        def matches() -> bool:
            for (key, provider), message in expected.items():
                panel = app.sessions[key].panel(provider)
                if panel is None or panel.message != message:
                    return False
            return True
        while not matches() and time.perf_counter() < deadline:
            await pilot.pause(0.01)
        drained_s = time.perf_counter() - posted["ended"]
        await pilot.pause()

        state_ok = matches()
        selected = app.dashboard.selected_key
        shown: dict[str, bool] = {}
        for widget in app.screen.provider_panels:
            provider = widget.panel.provider
            body = str(widget.query_one(".panel-body", Static).visual)
            want = expected[(selected, provider)]
            shown[provider] = widget.panel.message == want and want in body and widget.panel.status in (
                Status.RUNNING, Status.RETRYING)
        handled = list(app.probe_handled)
    app.runtime.close()

    latencies = [(h - s) * 1000 for s, h in zip(sent, handled)]
    return {
        "events": posted["count"], "seconds": posted["ended"] - posted["started"],
        "rate": posted["count"] / (posted["ended"] - posted["started"]),
        "drained_s": drained_s, "state_ok": state_ok, "selected_is_burst_session": selected in keys,
        "panels_show_last_event": shown, "keys_sent": len(sent), "keys_handled": len(handled),
        "input_latency_ms": latencies,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5, help="first-frame processes per app")
    parser.add_argument("--rate", type=int, default=2000, help="events per second in the burst")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--first-frame", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_frame:
        print(json.dumps(first_frame_sample(args.first_frame, args.home)))
        return 0

    info = c.print_header("dashboard: first frame and a 2,000 events/s burst", "dashboard.py")
    with c.scratch_dir("mk0r-bench-dash-") as scratch:
        home = scratch / "home"
        settings_home = home
        from mk0r_tui.core.ledger import Ledger

        home.mkdir(mode=0o700)
        ledger = Ledger(home / "ledger.sqlite3")
        c.fill_ledger(ledger, SESSIONS_IN_LEDGER)
        ledger.close()
        frames = first_frame(args.samples, settings_home)
        burst_home = scratch / "burst-home"
        burst_home.mkdir(mode=0o700)
        result = c.run(burst(args.rate, args.seconds, burst_home))

    cold = {k: c.summary([s["cold_ms"] for s in v]) for k, v in frames.items()}
    warm = {k: c.summary([s["warm_ms"] for s in v]) for k, v in frames.items()}
    cold_settled = {k: c.summary([s["cold_settled_ms"] for s in v]) for k, v in frames.items()}
    warm_settled = {k: c.summary([s["warm_settled_ms"] for s in v]) for k, v in frames.items()}
    cold_ratio = cold["mk0r"]["median"] / cold["bare"]["median"]
    warm_ratio = warm["mk0r"]["median"] / warm["bare"]["median"]
    cold_vs_widgets = cold["mk0r"]["median"] / cold["widgets"]["median"]
    warm_vs_widgets = warm["mk0r"]["median"] / warm["widgets"]["median"]
    names = {"bare": "bare textual App", "widgets": "same widgets, no mk0r code", "mk0r": "Mk0rApp (CLI path)"}
    print(f"first frame ({args.samples} fresh processes each, alternated; Mk0rApp with {SESSIONS_IN_LEDGER} sessions in the ledger, {SIZE[0]}x{SIZE[1]}):")
    print(c.table(["app", "new process: median ms", "p95 ms", "warm (2nd app) median ms", "p95 ms"], [
        *([names[k], cold[k]["median"], cold[k]["p95"], warm[k]["median"], warm[k]["p95"]] for k in KINDS),
        ["Mk0rApp / bare (median)", cold_ratio, "", warm_ratio, ""],
        ["Mk0rApp / same widgets (median)", cold_vs_widgets, "", warm_vs_widgets, ""],
    ]))
    print()
    print("settled (first pilot.pause(): every queued message handled, the process idle):")
    print(c.table(["app", "new process: median ms", "p95 ms", "warm (2nd app) median ms", "p95 ms"], [
        *([names[k], cold_settled[k]["median"], cold_settled[k]["p95"], warm_settled[k]["median"], warm_settled[k]["p95"]]
          for k in KINDS),
        ["Mk0rApp / bare (median)", cold_settled["mk0r"]["median"] / cold_settled["bare"]["median"], "",
         warm_settled["mk0r"]["median"] / warm_settled["bare"]["median"], ""],
    ]))
    lat = c.summary(result["input_latency_ms"]) if result["input_latency_ms"] else None
    print()
    print(f"burst: {result['events']} events in {result['seconds']:.2f} s = {result['rate']:.0f} events/s "
          f"(10 sessions x 5 providers; progress lines, a retry every 97th)")
    print(c.table(["figure", "value"], [
        ["state drained after the last post, s", result["drained_s"]],
        ["every session's state = last event per provider", result["state_ok"]],
        ["selected panels show the last event", all(result["panels_show_last_event"].values())],
        ["keys sent / handled", f"{result['keys_sent']} / {result['keys_handled']}"],
        ["input latency p50 ms", lat["median"] if lat else "n/a"],
        ["input latency p95 ms", lat["p95"] if lat else "n/a"],
        ["input latency max ms", lat["max"] if lat else "n/a"],
    ]))
    goals = [c.Goal("first frame Mk0rApp / bare App (new process, median)", cold_ratio, 1.3),
             c.Goal("first frame Mk0rApp / bare App (warm, median)", warm_ratio, 1.3),
             c.Goal("first frame Mk0rApp / same widgets without mk0r (new process, median)", cold_vs_widgets, 1.3),
             c.Goal("burst rate shortfall (1 - achieved/asked)", max(0.0, 1 - result["rate"] / args.rate), 0.05),
             c.Goal("sessions whose final state is wrong", 0 if result["state_ok"] else 1, 0),
             c.Goal("selected panels not showing the last event",
                    sum(not ok for ok in result["panels_show_last_event"].values()), 0),
             c.Goal("keys lost", result["keys_sent"] - result["keys_handled"], 0)]
    return c.finish("dashboard", info, goals, {
        "first_frame_new_process_ms": cold, "first_frame_warm_ms": warm,
        "settled_new_process_ms": cold_settled, "settled_warm_ms": warm_settled,
        "ratio_new_process": cold_ratio, "ratio_warm": warm_ratio,
        "ratio_vs_same_widgets_new_process": cold_vs_widgets, "ratio_vs_same_widgets_warm": warm_vs_widgets,
        "burst": {k: v for k, v in result.items() if k != "input_latency_ms"},
        "input_latency_ms": lat,
    })


if __name__ == "__main__":
    raise SystemExit(main())
