"""Does writing the journal slow a provision? One session at a time through `provision_services`
against the fake upstream (Neon 800 ms, Resend 2 x 150 ms, GitHub 400 ms, PostHog 50 ms), the
journal on and off alternately (the runtime's writer enabled / disabled), one warm-up run each.

Goal: median wall with the journal / median wall without <= 1.05. Also printed: the journal rows
and the time spent inside the journal writes per run (the direct cost, off the network's clock).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import _common as c

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # _common.cloud_settings imports the test kit

from mk0r_tui.core.models import Session
from mk0r_tui.engine.orchestrator import provision_services


async def bench(runs: int, home) -> dict:
    with c.fake_upstream() as fake:
        runtime = c.make_runtime(c.cloud_settings(fake, home))
        writes: list[float] = []
        real_append = runtime.ledger.append_journal

        def timed_append(entries):
            started = time.perf_counter()
            try:
                return real_append(entries)
            finally:
                writes.append(time.perf_counter() - started)

        runtime.ledger.append_journal = timed_append  # type: ignore[method-assign]
        walls: dict[bool, list[float]] = {True: [], False: []}
        write_ms: list[float] = []
        rows: list[int] = []
        try:
            for index in range(-1, runs):
                for journal in ((True, False) if index % 2 else (False, True)):  # alternated, order swapped each pair
                    runtime.journal.enabled = journal
                    before, written = runtime.ledger.journal_max_id(), len(writes)
                    session = Session.new()
                    started = time.perf_counter()
                    report = await provision_services(runtime, session, runtime.plan("local"))
                    wall = time.perf_counter() - started
                    if not report.ok:
                        raise SystemExit(f"a run failed: {report.errors}")
                    if index < 0:
                        continue  # warm-up: connections opened, GitHub's login asked once
                    walls[journal].append(wall)
                    if journal:
                        rows.append(runtime.ledger.journal_max_id() - before)
                        write_ms.append(sum(writes[written:]) * 1000)
        finally:
            await c.close_runtime(runtime)
    return {"walls": walls, "rows": rows, "write_ms": write_ms}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="pairs of runs (journal on, off)")
    args = parser.parse_args()
    info = c.print_header("journal overhead: provision with and without the journal", "journal_overhead.py")
    with c.scratch_dir("mk0r-bench-journal-") as home:
        result = c.run(bench(args.runs, home))
    on, off = result["walls"][True], result["walls"][False]
    print(c.table(
        ["journal", "runs", "median s", "min s", "max s"],
        [["on", len(on), statistics.median(on), min(on), max(on)], ["off", len(off), statistics.median(off), min(off), max(off)]],
    ))
    print(f"\njournal rows per run: {statistics.median(result['rows']):.0f}; time inside the journal writes per run: "
          f"median {statistics.median(result['write_ms']):.2f} ms, max {max(result['write_ms']):.2f} ms")
    ratio = statistics.median(on) / statistics.median(off)
    goals = [c.Goal("median wall, journal on / off", ratio, 1.05)]
    return c.finish("journal_overhead", info, goals, {
        "on_s": c.summary(on), "off_s": c.summary(off), "ratio": ratio,
        "rows_per_run": statistics.median(result["rows"]), "write_ms_per_run": c.summary(result["write_ms"]),
    })


if __name__ == "__main__":
    raise SystemExit(main())
