"""The dashboard: its first frame in a real terminal, and a burst of 2,000 events/s into the panels.

1. First frame: the whole `mk0r-tui` process (the dashboard, a ledger of 20 sessions) against a
   minimal Textual app that imports nothing of mk0r (bench/baseline_dashboard.py: a header, a
   20-row table, a footer), each started on a pseudo-terminal of 160x48 as a user starts it,
   alternated A B A B. The clock runs from the fork until the terminal has been sent the title,
   every session's row and the footer's keys (the output, escape sequences removed). Goal
   (issue 17): mk0r's median <= 1.3 x the minimal app's median.
2. Burst (in process): a thread posts the app's own `SessionEventReceived` messages (as the
   orchestrator's sink does) at 2,000/s for a few seconds, for 10 sessions x 5 providers, the
   selected one among them. After it: every session's reduced state and the selected session's
   panels show the last event of each provider. During it: a key is pressed every 50 ms (a Key
   event sent through the driver, as a terminal would) and the time until its binding's action
   runs is recorded: the input latency under load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import _common as c

SIZE = (160, 48)
SESSIONS_IN_LEDGER = 20


# -- 1. first frame: whole processes in a terminal (a pty) ------------------------------------------

ANSI = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\\\)|P[^\x1b]*\x1b\\\\|[()][0-9A-Za-z]|[=>78DEHMNOcZ])")


def in_terminal(argv: list[str], env: dict[str, str], wanted: list[str], timeout: float = 60.0) -> tuple[float, float]:
    """Start `argv` on a new pty of SIZE (a real terminal as far as the app can tell), read what it
    draws and return (ms until every `wanted` text has been drawn, CPU ms used by then). The text
    is the output with escape sequences removed: a cell's text is written in one run."""
    import fcntl
    import pty
    import resource
    import select
    import signal
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm-256color",
                            "COLUMNS": str(SIZE[0]), "LINES": str(SIZE[1])}, close_fds=True, start_new_session=True)
    os.close(slave)
    seen = b""
    shown_at = None
    try:
        while time.perf_counter() - started < timeout:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:
                break
            seen += chunk
            text = ANSI.sub(b"", seen).decode(errors="replace")
            if all(w in text for w in wanted):
                shown_at = time.perf_counter()
                break
        usage = _cpu_of(proc.pid)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        os.close(master)
    if shown_at is None:
        missing = [w for w in wanted if w not in ANSI.sub(b"", seen).decode(errors="replace")]
        raise SystemExit(f"{argv[-1]}: no frame showed {missing[:5]} (exit {proc.returncode}); "
                         f"it wrote: {ANSI.sub(b'', seen).decode(errors='replace')[-600:]!r}")
    del resource
    return (shown_at - started) * 1000, usage


def _cpu_of(pid: int) -> float:
    """CPU ms a live process has used so far (/proc/<pid>/stat utime + stime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def first_frame(samples: int, home: Path, slugs: list[str]) -> dict:
    """`mk0r-tui` (the dashboard, whole process) against the minimal Textual app, alternated."""
    mk0r = [str(c.ROOT / ".venv" / "bin" / "mk0r-tui")] if (c.ROOT / ".venv" / "bin" / "mk0r-tui").exists() \
        else [sys.executable, "-m", "mk0r_tui"]
    env = c.clean_env(MK0R_HOME=str(home), MK0R_PROFILE="local", MK0R_TARGET="local", MK0R_NO_KEYRING="1")
    # what the operator needs first: the title, every session's row, the footer's keys
    mk0r_wanted = ["mk0r", *slugs, "Quit", "Help"]
    base_wanted = ["minimal", *slugs, "Quit", "New"]
    runs: dict[str, list[float]] = {"mk0r": [], "baseline": []}
    cpu: dict[str, list[float]] = {"mk0r": [], "baseline": []}
    for turn in range(samples + 1):  # turn 0 warms the page cache: not counted
        for kind in ("mk0r", "baseline"):
            if kind == "mk0r":
                ms, used = in_terminal(mk0r, env, mk0r_wanted)
            else:
                ms, used = in_terminal([sys.executable, str(c.ROOT / "bench" / "baseline_dashboard.py"), *slugs],
                                       c.clean_env(), base_wanted)
            if turn:
                runs[kind].append(ms)
                cpu[kind].append(used)
    return {"frame_ms": runs, "cpu_ms": cpu}


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

    posted = {"count": 0, "started": 0.0, "ended": 0.0, "worst_lag": 0.0}

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
                else:  # behind its schedule: how far is what tells a starved producer
                    posted["worst_lag"] = max(posted["worst_lag"], -delay)
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
        loop_cpu_before, wall_before = time.thread_time(), time.perf_counter()
        producer.start()
        while producer.is_alive():
            key_event = textual_events.Key("f9", None)
            key_event.set_sender(app)
            sent.append(time.perf_counter())
            app._driver.send_message(key_event)
            await asyncio.sleep(0.05)
        producer.join()
        #: the event loop's thread: CPU it used / wall time of the burst (1.0: saturated, the app's
        #: handling is the limit; well below 1 with a shortfall: the producer was starved)
        loop_busy = (time.thread_time() - loop_cpu_before) / (time.perf_counter() - wall_before)

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
        "input_latency_ms": latencies, "loop_busy": loop_busy, "producer_worst_lag_s": posted["worst_lag"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5, help="first-frame processes per app")
    parser.add_argument("--rate", type=int, default=2000, help="events per second in the burst")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--no-burst", action="store_true", help="only the first frame")
    args = parser.parse_args()

    info = c.print_header("dashboard: first frame in a terminal, and a 2,000 events/s burst", "dashboard.py")
    with c.scratch_dir("mk0r-bench-dash-") as scratch:
        home = scratch / "home"
        from mk0r_tui.core.ledger import Ledger

        home.mkdir(mode=0o700)
        ledger = Ledger(home / "ledger.sqlite3")
        c.fill_ledger(ledger, SESSIONS_IN_LEDGER)
        slugs = [row.slug for row in ledger.list_sessions()]
        ledger.close()
        load_before = c.load_now()
        frames = first_frame(args.samples, home, slugs)
        load_after = c.load_now()
        burst_home = scratch / "burst-home"
        burst_home.mkdir(mode=0o700)
        result = None if args.no_burst else c.run(burst(args.rate, args.seconds, burst_home))
        load_burst = c.load_now()

    print(f"first frame: {load_before} before, {load_after} after")
    print(f"whole processes in a pty of {SIZE[0]}x{SIZE[1]} (TERM=xterm-256color), {args.samples} each, alternated, "
          f"one warm-up pair not counted; the clock runs from fork until the title, all {SESSIONS_IN_LEDGER} "
          "session rows and the footer's keys (Quit + Help; Quit + New) have been drawn")
    ff = frames["frame_ms"]
    print(c.table(c.VERSUS_HEADERS, c.versus(f"`mk0r-tui` vs minimal Textual app, {SESSIONS_IN_LEDGER} sessions",
                                             ff["mk0r"], ff["baseline"])))
    print(f"CPU until the first frame (median): mk0r-tui {c.summary(frames['cpu_ms']['mk0r'])['median']:.0f} ms, "
          f"minimal app {c.summary(frames['cpu_ms']['baseline'])['median']:.0f} ms")
    ratio = c.summary(ff["mk0r"])["median"] / c.summary(ff["baseline"])["median"]
    if result is None:
        goal = c.Goal("first frame `mk0r-tui` / minimal Textual app (whole processes in a pty, medians)", ratio, 1.3)
        return c.finish("dashboard", info, [goal], {"first_frame_runs_ms": ff, "first_frame_cpu_ms": frames["cpu_ms"],
                                                      "ratio": ratio, "load": [load_before, load_after]})
    lat = c.summary(result["input_latency_ms"]) if result["input_latency_ms"] else None
    print()
    print(f"burst (in process, {load_burst} after): {result['events']} events in {result['seconds']:.2f} s = "
          f"{result['rate']:.0f} events/s (10 sessions x 5 providers; progress lines, a retry every 97th)")
    print(c.table(["figure", "value"], [
        ["event loop thread busy during the burst (CPU / wall)", result["loop_busy"]],
        ["producer's worst lag behind its schedule, s", result["producer_worst_lag_s"]],
        ["state drained after the last post, s", result["drained_s"]],
        ["every session's state = last event per provider", result["state_ok"]],
        ["selected panels show the last event", all(result["panels_show_last_event"].values())],
        ["keys sent / handled", f"{result['keys_sent']} / {result['keys_handled']}"],
        ["input latency under the burst, p50 ms", lat["median"] if lat else "n/a"],
        ["input latency under the burst, p95 ms", lat["p95"] if lat else "n/a"],
        ["input latency under the burst, max ms", lat["max"] if lat else "n/a"],
    ]))
    goals = [c.Goal("first frame `mk0r-tui` / minimal Textual app (whole processes in a pty, medians)", ratio, 1.3),
             c.Goal("burst rate shortfall (1 - achieved/asked)", max(0.0, 1 - result["rate"] / args.rate), 0.05),
             c.Goal("sessions whose final state is wrong", 0 if result["state_ok"] else 1, 0),
             c.Goal("selected panels not showing the last event",
                    sum(not ok for ok in result["panels_show_last_event"].values()), 0),
             c.Goal("keys lost", result["keys_sent"] - result["keys_handled"], 0)]
    print()
    print("the machine may be shared: figures move with the load printed above")
    return c.finish("dashboard", info, goals, {
        "first_frame_ms": {k: c.summary(v) for k, v in ff.items()}, "first_frame_runs_ms": ff,
        "first_frame_cpu_ms": frames["cpu_ms"], "ratio": ratio, "load": [load_before, load_after, load_burst],
        "burst": {k: v for k, v in result.items() if k != "input_latency_ms"},
        "input_latency_ms": lat,
    })


if __name__ == "__main__":
    raise SystemExit(main())
