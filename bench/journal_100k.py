"""A ledger with 100,000 journal rows: do `events --since`, `events --session` and the
dashboard's start stay as fast as with an empty journal?

Two data dirs, identical but for the journal: 20 ready sessions (the dashboard bench's shape)
plus one session mid-provision in another process (its run's rows at the end of the journal,
which the dashboard replays at start); one of them also holds 100,000 rows of 2,000 older runs.
Each figure is a new process (`mk0r-tui events ...`, and the dashboard's first frame measured
exactly as bench/dashboard.py does), alternated between the two data dirs.

Goals: with 100k rows / with an empty journal <= 1.10 for the first frame and `events --since`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _common as c

from mk0r_tui.core.ledger import Ledger
from mk0r_tui.core.models import Session

HERE = Path(__file__).resolve().parent
ROWS = 100_000
LIVE = "mid-run-session-1"
RUN = [
    ("*", "RunStarted", {"kind": "provision", "state": "provisioning", "target": "local-folder"}),
    ("neon", "ProviderStarted", {"slot": "database"}),
    ("neon", "ProviderProgressed", {"message": "waiting for the project's operations"}),
    ("github", "ProviderStarted", {"slot": "repo"}),
]


def build(home: Path, rows: int) -> int:
    home.mkdir(mode=0o700)
    ledger = Ledger(home / "ledger.sqlite3")
    c.fill_ledger(ledger, 20)
    now = time.time()
    chunk: list[tuple] = []
    for i in range(rows):
        run, step = divmod(i, 50)
        key = f"old-{run:05d}-bench"
        provider, kind, fields = RUN[min(step, len(RUN) - 1)]
        chunk.append((now - 86400 + i * 0.1, key, key[:12], provider, kind, json.dumps(fields), "bench"))
        if len(chunk) == 10_000:
            ledger.append_journal(chunk)
            chunk = []
    ledger.append_journal(chunk)
    session = Session.parse(LIVE)
    ledger.ensure_session(session, target="local-folder")
    ledger.append_journal([(time.time(), LIVE, session.slug, p, k, json.dumps(f), "elsewhere") for p, k, f in RUN])
    last = ledger.journal_max_id()
    ledger.close()
    return last


def timed(command: list[str], home: Path) -> tuple[float, int]:
    env = {**os.environ, "MK0R_HOME": str(home), "MK0R_PROFILE": "local", "MK0R_NO_KEYRING": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{command} failed: {done.stderr[-500:]}")
    return elapsed, len(done.stdout.splitlines())


def first_frame(home: Path) -> float:
    done = subprocess.run([sys.executable, str(HERE / "dashboard.py"), "--first-frame", "mk0r", "--home", str(home)],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"first frame failed: {done.stderr[-800:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["cold_ms"])


def in_process(home: Path) -> dict[str, float]:
    """Off the process start: opening the ledger (its integrity check reads every page), the
    dashboard's load (sessions, runs, resources, the journal's max id and the live run's replay)."""
    from mk0r_tui.engine.runtime import Runtime
    from mk0r_tui.providers import DEFAULT_REGISTRY
    from mk0r_tui.tui.app import Mk0rApp

    os.environ.update(MK0R_HOME=str(home), MK0R_PROFILE="local", MK0R_NO_KEYRING="1")
    started = time.perf_counter()
    ledger = Ledger(home / "ledger.sqlite3")
    opened = time.perf_counter()
    runtime = Runtime(ledger=ledger, registry=DEFAULT_REGISTRY)
    loaded_at = time.perf_counter()
    app = Mk0rApp(runtime, read_only=True)
    done = time.perf_counter()
    replayed = app.sessions[LIVE].panel("neon")
    if replayed is None or replayed.message is None:
        raise SystemExit("the live run was not replayed at start")
    runtime.close()
    return {"ledger_open_ms": (opened - started) * 1000, "dashboard_load_ms": (done - loaded_at) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args()
    info = c.print_header(f"journal upkeep: {args.rows:,} journal rows", "journal_100k.py")
    cli = [sys.executable, "-m", "mk0r_tui"]
    with c.scratch_dir("mk0r-bench-100k-") as scratch:
        homes = {"empty": scratch / "empty", "100k": scratch / "full"}
        built = time.perf_counter()
        last = {name: build(home, 0 if name == "empty" else args.rows) for name, home in homes.items()}
        print(f"built both data dirs in {time.perf_counter() - built:.1f} s; journal ids up to {last['100k']:,}\n")
        samples: dict[str, dict[str, list[float]]] = {n: {"frame": [], "since": [], "session": []} for n in homes}
        lines: dict[str, int] = {}
        for _ in range(args.samples):
            for name, home in homes.items():  # alternated, so drift on a shared machine hits both alike
                samples[name]["frame"].append(first_frame(home))
                ms, lines["since"] = timed([*cli, "events", "--json", "--since", str(last[name] - len(RUN))], home)
                samples[name]["since"].append(ms)
                ms, lines["session"] = timed([*cli, "events", "--json", "--session", LIVE], home)
                samples[name]["session"].append(ms)
        dump_ms, dumped = timed([*cli, "events", "--json"], homes["100k"])
        inproc: dict[str, dict[str, list[float]]] = {n: {"ledger_open_ms": [], "dashboard_load_ms": []} for n in homes}
        for _ in range(args.samples):
            for name, home in homes.items():
                for key, value in in_process(home).items():
                    inproc[name][key].append(value)
    med = {n: {k: statistics.median(v) for k, v in s.items()} for n, s in samples.items()}
    labels = {"frame": "dashboard first frame (new process)", "since": f"events --json --since (last {len(RUN)})",
              "session": "events --json --session (one live run)"}
    print(c.table(
        ["median of new processes, ms", "empty journal", f"{args.rows:,} rows", "ratio"],
        [[labels[k], med["empty"][k], med["100k"][k], med["100k"][k] / med["empty"][k]] for k in labels],
    ))
    print()
    print(c.table(
        ["median in this process, ms", "empty journal", f"{args.rows:,} rows"],
        [[k, statistics.median(inproc["empty"][k]), statistics.median(inproc["100k"][k])] for k in ("ledger_open_ms", "dashboard_load_ms")],
    ))
    print(f"\nevents --json of the whole journal: {dumped:,} lines in {dump_ms:.0f} ms ({dumped / dump_ms * 1000:,.0f} rows/s)")
    goals = [
        c.Goal("first frame, 100k rows / empty", med["100k"]["frame"] / med["empty"]["frame"], 1.10),
        c.Goal("events --since, 100k rows / empty", med["100k"]["since"] / med["empty"]["since"], 1.10),
    ]
    return c.finish("journal_100k", info, goals, {
        "median_ms": med, "in_process_median_ms": {n: {k: statistics.median(v) for k, v in d.items()} for n, d in inproc.items()},
        "samples": args.samples, "full_dump_ms": dump_ms, "full_dump_rows": dumped,
    })


if __name__ == "__main__":
    raise SystemExit(main())
