"""The local profile (no keys): embedded Postgres, the local mail catcher, a local git repo,
delivered to the local folder, measured as the whole `mk0r-tui provision --json` process a user
runs, beside a psycopg script (bench/baseline_local.py, nothing of mk0r) that runs the same SQL
(a scram login role, its database, no PUBLIC access) on the same running server, as a whole
process, alternated A B A B.

- warm: the server and the mail catcher already run (one product run first starts the catcher;
  it and one baseline run are not counted). Goal (issue 17): product median <= 1.3 x baseline median.
- cold: a fresh server folder and data dir per run, so `initdb`, the server's start and the mail
  catcher's start are in it; beside it the floor any client pays, `initdb` + start alone
  (EmbeddedPostgres.ensure_running in a fresh process). Reported; goal (issue 15): <= 3 s.
- in process (`provision_services` on one runtime, warm), per step: where the time goes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

import _common as c

from mk0r_tui.core.config import Settings
from mk0r_tui.core.models import Session
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.providers.embedded_pg import EmbeddedPostgres
from mk0r_tui.providers.mail_catcher import MailCatcher

WARM_GOAL = 1.3
COLD_GOAL_MS = 3000
BASELINE = str(c.ROOT / "bench" / "baseline_local.py")
MK0R = [str(c.ROOT / ".venv" / "bin" / "mk0r-tui")] if (c.ROOT / ".venv" / "bin" / "mk0r-tui").exists() \
    else [sys.executable, "-m", "mk0r_tui"]


def local_env(home: Path, pg_dir: Path) -> dict[str, str]:
    return c.clean_env(MK0R_HOME=str(home), MK0R_POSTGRES_DIR=str(pg_dir), MK0R_PROFILE="local",
                       MK0R_TARGET="local", MK0R_NO_KEYRING="1")


def product(home: Path, pg_dir: Path) -> float:
    wall, out, _err = c.timed_process([*MK0R, "provision", "--json"], env=local_env(home, pg_dir), cwd=c.ROOT)
    report = json.loads(out)
    if not report["ok"]:
        raise SystemExit(f"provision failed: {[(p['name'], p['error']) for p in report['providers'] if p['error']]}")
    return wall


def stop_all(home: Path, pg_dir: Path) -> None:
    MailCatcher(home / "mail").stop()
    EmbeddedPostgres(pg_dir).stop()


def warm_series(scratch: Path, runs: int) -> tuple[list[float], list[float], list[float], list[float]]:
    home, pg_dir = scratch / "home-warm", scratch / "pg-warm"
    admin = EmbeddedPostgres(pg_dir).ensure_running()
    try:
        a_cpu, b_cpu = [], []

        def a(_i: int) -> float:
            wall = product(home, pg_dir)
            a_cpu.append(c.LAST_CPU_MS[0])
            return wall

        def b(_i: int) -> float:
            ident = "mk0r_" + uuid.uuid4().hex[:12]
            wall, _out, _err = c.timed_process([sys.executable, BASELINE, admin.dsn(), ident], env=c.clean_env(), cwd=c.ROOT)
            b_cpu.append(c.LAST_CPU_MS[0])
            return wall

        got_a, got_b = c.alternate(a, b, runs)
        return got_a, got_b, a_cpu[1:], b_cpu[1:]
    finally:
        stop_all(home, pg_dir)


def cold_series(scratch: Path, runs: int) -> tuple[list[float], list[float]]:
    floor_code = "import sys; from mk0r_tui.providers.embedded_pg import EmbeddedPostgres; EmbeddedPostgres(sys.argv[1]).ensure_running()"
    product_ms, floor_ms = [], []
    for i in range(runs):
        home, pg_dir = scratch / f"home-cold-{i}", scratch / f"pg-cold-{i}"
        try:
            product_ms.append(product(home, pg_dir))
        finally:
            stop_all(home, pg_dir)
        floor_dir = scratch / f"pg-floor-{i}"
        try:
            wall, _out, _err = c.timed_process([sys.executable, "-c", floor_code, str(floor_dir)], env=c.clean_env(), cwd=c.ROOT)
            floor_ms.append(wall)
        finally:
            EmbeddedPostgres(floor_dir).stop()
    return product_ms, floor_ms


async def in_process(home: Path, pg_dir: Path, count: int) -> list[dict[str, float]]:
    settings = Settings(home=home, profile="local", target="local", postgres_dir_override=pg_dir, no_keyring=True)
    runtime = c.make_runtime(settings, c.bench_credentials({}))
    parts = []
    try:
        for number in range(count + 1):
            started = time.perf_counter()
            report = await provision_services(runtime, Session.new(), runtime.plan("local"))
            wall = (time.perf_counter() - started) * 1000
            if not report.ok:
                raise SystemExit(f"provisioning failed: {[(r.name, r.error) for r in report.results if r.error]}")
            if number:  # the first run starts the mail catcher: not counted
                parts.append({"wall": wall, **{r.name: r.latency_ms for r in report.results if r.latency_ms is not None}})
    finally:
        await c.close_runtime(runtime)
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="counted warm runs of each side")
    parser.add_argument("--cold", type=int, default=3)
    parser.add_argument("--in-process", type=int, default=5)
    args = parser.parse_args()
    info = c.print_header("local profile: the whole provision process vs the same SQL through psycopg", "local_profile.py")
    figures: dict = {}
    with c.scratch_dir("mk0r-bench-local-") as scratch:
        load_before = c.load_now()
        warm_a, warm_b, a_cpu, b_cpu = warm_series(scratch, args.runs)
        cold_a, cold_floor = cold_series(scratch, args.cold) if args.cold else ([], [])
        pg_dir = scratch / "pg-inproc"
        EmbeddedPostgres(pg_dir).ensure_running()
        try:
            parts = c.run(in_process(scratch / "home-inproc", pg_dir, args.in_process)) if args.in_process else []
        finally:
            stop_all(scratch / "home-inproc", pg_dir)
        load_after = c.load_now()
    print(f"{load_before} before, {load_after} after")
    print()
    rows = c.versus("warm provision process", warm_a, warm_b)
    if cold_a:
        rows += c.versus("cold provision process (initdb + start in it)", cold_a, cold_floor)
        rows[-1][1] = "initdb + start alone"
    print(c.table(c.VERSUS_HEADERS, rows))
    print(f"CPU per process, warm (median): product {c.summary(a_cpu)['median']:.0f} ms, baseline {c.summary(b_cpu)['median']:.0f} ms")
    if parts:
        print()
        print("in process, warm (provision_services on one runtime; provider latency as the orchestrator measured it):")
        print(c.table(["step", "median ms", "min ms", "max ms"],
                      [[n, *(c.summary([p[n] for p in parts])[k] for k in ("median", "min", "max"))] for n in parts[0]]))
    ratio = c.summary(warm_a)["median"] / c.summary(warm_b)["median"]
    goals = [c.Goal("warm provision process / psycopg script (medians)", ratio, WARM_GOAL)]
    if cold_a:
        goals.append(c.Goal("cold provision process median ms", c.summary(cold_a)["median"], COLD_GOAL_MS, " ms"))
    figures.update(warm_product_ms=warm_a, warm_baseline_ms=warm_b, warm_ratio=ratio, warm_cpu_ms={"product": a_cpu, "baseline": b_cpu},
                   cold_product_ms=cold_a, cold_floor_ms=cold_floor, in_process=parts, load_before=load_before, load_after=load_after)
    print()
    print("the machine may be shared: figures move with the load printed above")
    return c.finish("local_profile", info, goals, figures)


if __name__ == "__main__":
    raise SystemExit(main())
