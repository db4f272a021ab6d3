"""Four processes provision and tear down 80 sessions together through one ledger (issue 12).

Each process (tests/team_worker.py: the library's runtime, settings from the environment)
provisions its share of the sessions at once, then tears them down. They share one data dir
(the budgets' SQLite file and the SQLite ledger) or, with `--ledger-url`, a Postgres ledger
(budgets in it too). The limits are the product's defaults unless `--scaled` (GitHub 1 s
start to start between mutations, Resend 2 requests/s, Neon 700/min, 8 in flight per provider)
and hold for the four processes together.

The bound is what those shared limits allow for every request of the run, given the fake's
latencies: GitHub's mutations (a create and a delete per session) one at a time, Resend's four
requests per session at its rate, whichever is longer. Goal: wall <= 1.3 x bound, every session
ready then deleted, and the fake's counters within every limit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator

import _common as c
import httpx

from fakeupstream.pacing import pacing_report
from mk0r_tui.core.config import Settings

sys.path.insert(0, str(c.ROOT / "tests"))
from team_worker import run_team, team_env  # the test kit: the same run as tests/test_team_pacing.py

SCALED = {"MK0R_GITHUB_MUTATION_GAP_S": "0.05", "MK0R_GITHUB_CREATES_PER_MIN": "30", "MK0R_BUDGET_MINUTE_S": "1",
          "MK0R_RESEND_RPS": "25", "MK0R_NEON_RPM": "300", "MK0R_CONCURRENCY": "4"}
SCALED_LATENCY = {"neon": 40, "resend": 20, "github": 30, "posthog": 5}


@contextlib.contextmanager
def embedded_ledger(args: argparse.Namespace, home) -> Iterator[str | None]:
    """`--embedded-postgres`: a server of our own in the scratch folder, stopped after."""
    if not args.embedded_postgres:
        yield args.ledger_url
        return
    from urllib.parse import quote

    import psycopg

    from mk0r_tui.providers.embedded_pg import EmbeddedPostgres

    server = EmbeddedPostgres(home / "pg-ledger")
    admin = server.ensure_running()
    try:
        with psycopg.connect(admin.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE team_ledger")
        yield f"postgresql://{admin.user}:{quote(admin.password, safe='')}@{admin.host}:{admin.port}/team_ledger"
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=80)
    parser.add_argument("--ledger-url", default=None, help="a postgresql:// ledger (default: the SQLite file)")
    parser.add_argument("--embedded-postgres", action="store_true",
                        help="start an embedded Postgres (pgserver) in a scratch folder and use a fresh ledger database on it")
    parser.add_argument("--scaled", action="store_true", help="scaled limits and latencies (a quick run)")
    args = parser.parse_args()
    info = c.print_header(f"{args.processes} processes, {args.sessions} sessions provisioned and torn down together",
                          "team_pacing.py" + (" --scaled" if args.scaled else "")
                          + (" --embedded-postgres" if args.embedded_postgres else ""))
    limits = dict(SCALED) if args.scaled else {}
    latency = SCALED_LATENCY if args.scaled else c.LATENCY_MS
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("MK0R_")}
    os.environ.update(limits)
    settings = Settings()
    for k in limits:
        del os.environ[k]
    os.environ.update(saved)
    print("injected latency per request (ms):", latency)
    print(f"limits: GitHub gap {settings.github_mutation_gap_s:g} s start to start, {settings.github_creates_per_minute} "
          f"creates per {settings.budget_minute_s:g} s; Resend {settings.resend_requests_per_second:g}/s; Neon "
          f"{settings.neon_requests_per_minute} per {settings.budget_minute_s:g} s; {settings.concurrency} in flight; ledger "
          f"{'Postgres' if args.ledger_url or args.embedded_postgres else 'SQLite'}")

    n = args.sessions
    lat = {p: ms / 1000 for p, ms in latency.items()}
    mutations = 2 * n
    terms = {
        "GitHub mutations one at a time": lat["github"] + (mutations - 1) * max(settings.github_mutation_gap_s, lat["github"])
        + lat["github"],
        "Resend requests/s": (4 * n - 1) / settings.resend_requests_per_second + lat["resend"],
    }
    bound_s = max(terms.values())
    print("bound: " + ", ".join(f"{k} {v:.2f} s" for k, v in terms.items()) + f" -> {bound_s:.2f} s")
    print()

    with c.fake_upstream(latency_ms=latency, neon_poll_latency_ms=10 if args.scaled else None) as fake, \
            c.scratch_dir("mk0r-bench-team-") as home, embedded_ledger(args, home) as ledger_url:
        args.ledger_url = ledger_url
        with httpx.Client(trust_env=False, timeout=30) as warm:  # the fake's first request is slow to read
            for url in (fake.github_url + "/user", fake.resend_url + "/domains", fake.neon_url + "/users/me"):
                warm.get(url, headers={"Authorization": "Bearer warm"})
        fake.control(reset_counters=True)
        if args.ledger_url:
            from mk0r_tui.core.ledger import Ledger

            Ledger(args.ledger_url).close()  # made once, before the processes race to open it
        env = team_env(fake, home, args.ledger_url, limits)
        run = run_team(env, processes=args.processes, sessions=n, race=False, timeout_s=3600)
        state = fake.state()
    load = os.getloadavg()[0]
    provisioned = {k: v for r in run["results"] for k, v in r["provisioned"].items()}
    torn = {k: v for r in run["results"] for k, v in r["torn_down"].items()}
    not_ready = [k for k in run["keys"] if not (provisioned.get(k, {}).get("ok") and provisioned[k]["state"] == "ready")]
    not_deleted = [k for k in run["keys"] if not (torn.get(k, {}).get("ok") and torn[k]["state"] == "deleted")]
    report = pacing_report(state, minute_s=settings.budget_minute_s)
    ratio = run["wall_s"] / bound_s
    print(c.table(["figure", "value"], [
        ["wall s", run["wall_s"]],
        ["bound s", bound_s],
        ["wall / bound", ratio],
        ["process walls s", ", ".join(f"{r['wall_s']:.1f}" for r in run["results"])],
        ["sessions not ready / not deleted", f"{len(not_ready)} / {len(not_deleted)}"],
        ["process errors", len(run["errors"])],
        ["GitHub max mutations in flight", report["github_max_mutations_in_flight"]],
        ["GitHub min gap between mutations s", report["github_min_mutation_gap_s"] or 0.0],
        ["GitHub creates max per minute", report["github_creates_max_per_minute"]],
        ["Resend max per second", report["resend_max_per_second"]],
        ["Neon max per minute", report["neon_max_per_minute"]],
        ["max in flight", report["max_in_flight"]],
        ["load average (1 min) at end", load],
    ]))
    if run["errors"]:
        print("errors:", run["errors"][:2])
    goals = [
        c.Goal("wall / bound", ratio, 1.3),
        c.Goal("sessions not ready then deleted", len(set(not_ready) | set(not_deleted)) + len(run["errors"]), 0),
        c.Goal("GitHub mutations in flight", report["github_max_mutations_in_flight"], 1),
        c.Goal("GitHub creates in any minute", report["github_creates_max_per_minute"], settings.github_creates_per_minute),
        c.Goal("Resend requests in any second (50 ms slack)", report["resend_max_per_second"],
               settings.resend_requests_per_second),
        c.Goal("Neon requests in any minute", report["neon_max_per_minute"], settings.neon_requests_per_minute),
        c.Goal("max in flight per provider", max(report["max_in_flight"].values()), settings.concurrency),
    ]
    return c.finish("team_pacing", info, goals, {
        "processes": args.processes, "sessions": n, "scaled": args.scaled, "wall_s": run["wall_s"], "bound_s": bound_s,
        "terms": terms, "ratio": ratio, "pacing": report, "load_at_end": load,
    })


if __name__ == "__main__":
    raise SystemExit(main())
