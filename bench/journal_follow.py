"""Event-to-screen latency of a dashboard following the journal: CLI processes provision (and
then tear down) sessions one after another against the fake upstream (Neon 800 ms, Resend
2 x 150 ms, GitHub 400 ms, PostHog 50 ms) while a headless dashboard (Mk0rApp under Textual's
test driver) in this process follows the journal.

Each figure is one event: from the journal row's `at` (when the other process emitted it) to the
dashboard's handler applying it (reduced into the session's snapshot, the repaint scheduled).
Goal: p95 <= 500 ms. Also checked: every session reached `ready`, then `deleted`, on screen.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import _common as c

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the test kit: the CLI's env against the fake

SIZE = (160, 48)


async def until(pilot, predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the dashboard")
        await pilot.pause(0.02)


async def bench(sessions: int, home: Path) -> dict:
    from crashkit import cli_command, cli_env

    from mk0r_tui.tui.app import Mk0rApp

    with c.fake_upstream() as fake:
        env = cli_env(fake, home)
        runtime = c.make_runtime(c.cloud_settings(fake, home))
        app = Mk0rApp(runtime, read_only=True)
        keys = [f"follow-{i:02d}-bench" for i in range(sessions)]
        phases: dict[str, list[float]] = {}
        try:
            async with app.run_test(size=SIZE) as pilot:
                for phase, args, word in (("provision", ("provision", "--session"), "ready"), ("teardown", ("teardown", "--yes"), "deleted")):
                    first = len(app.journal_latencies)
                    for key in keys:
                        proc = subprocess.Popen(cli_command(*args, key), env=env, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
                        await until(pilot, lambda proc=proc: proc.poll() is not None)
                        if proc.returncode != 0:
                            raise SystemExit(f"{phase} of {key} exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
                        await until(pilot, lambda key=key, word=word: key in app.sessions and app.sessions[key].state == word)
                    phases[phase] = [s * 1000 for s in list(app.journal_latencies)[first:]]
        finally:
            await c.close_runtime(runtime)
    return phases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5)
    args = parser.parse_args()
    info = c.print_header("journal follow: event-to-screen latency of another process's runs", "journal_follow.py")
    with c.scratch_dir("mk0r-bench-follow-") as home:
        phases = c.run(bench(args.sessions, home))
    every = [v for values in phases.values() for v in values]
    rows = [[phase, len(v), c.percentile(v, 50), c.percentile(v, 95), max(v)] for phase, v in phases.items()]
    rows.append(["all", len(every), c.percentile(every, 50), c.percentile(every, 95), max(every)])
    print(c.table(["runs by another process", "events", "p50 ms", "p95 ms", "max ms"], rows))
    goals = [c.Goal("event-to-screen p95", c.percentile(every, 95), 500.0, " ms")]
    return c.finish("journal_follow", info, goals, {
        phase: c.summary(v) for phase, v in [*phases.items(), ("all", every)]
    })


if __name__ == "__main__":
    raise SystemExit(main())
