"""Peak memory (RSS) of the dashboard with 1,000 sessions in the ledger.

Each figure comes from a fresh process that starts the app headless (`run_test`), lets it
load and paint, and reads its own peak RSS (`getrusage(RUSAGE_SELF).ru_maxrss`). Beside it:
the same dashboard on an empty ledger and a bare Textual `App`, so the cost of the sessions
and of the dashboard itself can be told apart. The ledger holds 1,000 sessions, each with
five providers' runs and five resources.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

if "--child" not in sys.argv:  # the bare App's process imports nothing of mk0r (nor its test kit)
    import _common as c

SIZE = (160, 48)
KINDS = ("bare", "mk0r-empty", "mk0r-full")


def child(kind: str, home: str) -> dict:
    import asyncio

    from textual.app import App

    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if kind == "bare":
        app = App()
    else:
        import _common as c

        from mk0r_tui.core.config import Settings
        from mk0r_tui.tui.app import Mk0rApp

        settings = Settings(home=home, profile="local", target="local", no_keyring=True)
        app = Mk0rApp(c.make_runtime(settings, c.bench_credentials({})), read_only=True)

    async def run() -> int:
        async with app.run_test(size=SIZE) as pilot:
            for _ in range(3):
                await pilot.pause()
            return len(getattr(app, "sessions", {}))

    loaded = asyncio.run(run())
    if kind != "bare":
        app.runtime.close()
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("mk0r_tui", "fakeupstream", "_common"))
    if kind == "bare" and leaked:
        raise SystemExit(f"the bare App imported {leaked[:5]}")
    return {"kind": kind, "sessions_loaded": loaded, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "rss_after_imports_kib": before_kib}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.home)))
        return 0

    info = c.print_header(f"dashboard peak RSS with {args.sessions} sessions in the ledger", "memory.py")
    from mk0r_tui.core.ledger import Ledger

    samples: dict[str, list[dict]] = {k: [] for k in KINDS}
    with c.scratch_dir("mk0r-bench-mem-") as scratch:
        homes = {"bare": scratch / "unused", "mk0r-empty": scratch / "empty", "mk0r-full": scratch / "full"}
        for home in homes.values():
            home.mkdir(mode=0o700)
        ledger = Ledger(homes["mk0r-full"] / "ledger.sqlite3")
        c.fill_ledger(ledger, args.sessions)
        counts = (len(ledger.list_sessions()), len(ledger.resources()))
        ledger.close()
        ledger_kib = (homes["mk0r-full"] / "ledger.sqlite3").stat().st_size / 1024
        for _ in range(args.samples):
            for kind in KINDS:
                done = subprocess.run([sys.executable, __file__, "--child", kind, "--home", str(homes[kind])],
                                      capture_output=True, text=True, timeout=120)
                if done.returncode != 0:
                    raise SystemExit(f"{kind} failed: {done.stderr[-800:]}")
                samples[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))

    print(f"{c.load_now()} at the end (RSS does not move with the load; times are not measured here)")
    print(f"ledger: {counts[0]} sessions, {counts[1]} resources, {ledger_kib:.0f} KiB on disk")
    peaks = {k: c.summary([s["peak_rss_kib"] / 1024 for s in v]) for k, v in samples.items()}
    loaded = {k: v[0]["sessions_loaded"] for k, v in samples.items()}
    print(c.table(["app", "sessions loaded", "peak RSS MiB (median)", "min", "max"], [
        ["bare textual App (imports nothing of mk0r)", "-", peaks["bare"]["median"], peaks["bare"]["min"], peaks["bare"]["max"]],
        ["Mk0rApp, empty ledger", loaded["mk0r-empty"], peaks["mk0r-empty"]["median"], peaks["mk0r-empty"]["min"], peaks["mk0r-empty"]["max"]],
        [f"Mk0rApp, {args.sessions} sessions", loaded["mk0r-full"], peaks["mk0r-full"]["median"], peaks["mk0r-full"]["min"], peaks["mk0r-full"]["max"]],
    ]))
    per_session_kib = (peaks["mk0r-full"]["median"] - peaks["mk0r-empty"]["median"]) * 1024 / max(1, args.sessions)
    print()
    print(f"the sessions cost {peaks['mk0r-full']['median'] - peaks['mk0r-empty']['median']:.1f} MiB "
          f"(~{per_session_kib:.1f} KiB each); the dashboard over a bare App: "
          f"{peaks['mk0r-empty']['median'] - peaks['bare']['median']:.1f} MiB")
    goals = [c.Goal("sessions not loaded", args.sessions - loaded["mk0r-full"], 0)]
    return c.finish("memory", info, goals, {
        "sessions": args.sessions, "ledger_kib": ledger_kib, "peak_rss_mib": peaks,
        "per_session_kib": per_session_kib, "sessions_loaded": loaded,
    })


if __name__ == "__main__":
    raise SystemExit(main())
