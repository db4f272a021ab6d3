"""The warm pool (issue 14) against the fake upstream at the issue's latencies (Neon 800 ms + its
operations, GitHub 400 ms, Resend 2 x 150 ms, PostHog 50 ms), the product's default limits.

1. In-process: from the `provision_services` call to a complete `.env` on disk (the moment the
   orchestrator starts the target, right after writing it), p50/p95 over N sessions with a ready
   pool (A), beside the same sessions with no pool item (B, the baseline: today's path), runs
   alternating A B A B. Goal: A p50 <= 50 ms. The pool is filled beforehand by a separate filling
   runtime (not timed); the claims' renames are finished after the timed runs.
2. The CLI `provision --json` process with a ready pool (A) against `mk0r-tui sessions --json`
   (B) on the same data dir, alternating, wall time per process. Goal: median A / median B <= 1.3.
   The detached finisher that `provision` starts is waited for (to its exit) after each A, before
   B is timed.
3. Sustained claims per minute: a keeper refills (one create at a time per provider, through the
   providers' shared clients: GitHub's 80 creates/min and 500/h budget, Resend at its 2 req/s)
   while a claimer provisions a session whenever every pooled provider has a ready item, for a
   fixed window; beside it the figure the limits allow over an hour.

The machine is shared (2 cores, several engineers): the load average is printed with each part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _common as c

from mk0r_tui.core import pool_store as store
from mk0r_tui.core.events import ProviderStarted
from mk0r_tui.core.models import Session
from mk0r_tui.engine import pool_upkeep
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.teardown import teardown_session

POOLED = ("neon", "resend", "github")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


async def fill_pool(fake, home: Path, size: int) -> None:
    """Fill outside the timing, with lifted client limits so it does not take minutes."""
    settings = c.cloud_settings(fake, home, target="local", pool_size=size, pool_fill_concurrency=8,
                                resend_requests_per_second=1000.0)
    runtime = c.make_runtime(settings)
    try:
        await pool_upkeep.fill(runtime, {p: size for p in POOLED})
    finally:
        await c.close_runtime(runtime)


async def env_time(runtime, session: Session) -> tuple[float, float, bool]:
    """(ms to the complete .env, ms to the call's return, every pooled provider from the pool)."""
    marks: dict[str, float] = {}
    target = runtime.plan().target.name

    def sink(event) -> None:
        if isinstance(event, ProviderStarted) and event.provider == target and "env" not in marks:
            marks["env"] = time.perf_counter()

    started = time.perf_counter()
    report = await provision_services(runtime, session, runtime.plan(), sink=sink)
    done = time.perf_counter()
    assert report.ok, report.errors
    assert runtime.settings.env_file_for(session.slug).exists()
    from_pool = all(r.from_pool for r in report.results if r.name in POOLED)
    return (marks["env"] - started) * 1000, (done - started) * 1000, from_pool


async def part_in_process(fake, root: Path, n: int, *, posthog_key: bool) -> dict:
    home_a, home_b = root / f"a-{posthog_key}", root / f"b-{posthog_key}"
    await fill_pool(fake, home_a, n + 1)
    keys = dict(c.BENCH_KEYS)
    if not posthog_key:
        keys.pop("POSTHOG_PROJECT_KEY")  # the tag only: no upstream call (PostHog creates nothing to pool)
    rt_a = c.make_runtime(c.cloud_settings(fake, home_a, target="local", pool_size=n + 1), c.bench_credentials(keys))
    rt_b = c.make_runtime(c.cloud_settings(fake, home_b, target="local"), c.bench_credentials(keys))
    a_env, a_done, b_env, b_done, misses = [], [], [], [], 0
    try:
        # one warm-up each (connections, GitHub's login), not counted
        await env_time(rt_a, Session.new())
        await env_time(rt_b, Session.new())
        for _ in range(n):
            e, d, from_pool = await env_time(rt_a, Session.new())
            misses += not from_pool
            a_env.append(e)
            a_done.append(d)
            e, d, _ = await env_time(rt_b, Session.new())
            b_env.append(e)
            b_done.append(d)
        await pool_upkeep.finish_claims(rt_a)
        unfinished = store.unfinished_claims(rt_a.ledger)
        for rt in (rt_a, rt_b):
            for s in rt.ledger.list_sessions():
                await teardown_session(rt, s.key)
        await pool_upkeep.drain(rt_a)
    finally:
        await c.close_runtime(rt_a)
        await c.close_runtime(rt_b)
    return {"a_env": a_env, "a_done": a_done, "b_env": b_env, "b_done": b_done, "misses": misses,
            "unfinished_after": len(unfinished)}


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """(wall ms, stdout) of one process."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = (time.perf_counter() - started) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def running_with(word: str) -> bool:
    """Is a process whose command line holds `word` alive (the detached `pool finish --session <key>`)?"""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if word.encode() in (entry / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
    return False


def part_cli(fake, root: Path, n: int) -> dict:
    from crashkit import KEYS, cli_env

    home = root / "cli"
    asyncio.run(fill_pool(fake, home, n + 1))
    keys = {k: v for k, v in KEYS.items() if k != "POSTHOG_PROJECT_KEY"}  # the tag only, as in part 1a
    env = cli_env(fake, home, keys=keys, MK0R_POOL_SIZE=str(n + 1), MK0R_TARGET="local", MK0R_RESEND_RPS="2",
                  MK0R_GITHUB_MUTATION_GAP_S="1")
    env["PYTHONPATH"] = os.pathsep.join([str(c.ROOT), str(c.ROOT / "tests")])
    provision = [sys.executable, "-m", "mk0r_tui", "provision", "--json"]
    sessions = [sys.executable, "-m", "mk0r_tui", "sessions", "--json"]
    from mk0r_tui.core.ledger import Ledger

    ledger = Ledger(home / "ledger.sqlite3")
    a, b = [], []
    try:
        timed(sessions, env)  # warm the page cache for both, not counted
        timed(provision, env)
        for _ in range(n):
            elapsed, out = timed(provision, env)
            a.append(elapsed)
            key = json.loads(out)["session"]
            # the detached finisher (~150 ms of CPU to start) is waited for, to its exit, before B
            # is timed: B beside it would be slowed and the ratio flattered
            deadline = time.monotonic() + 60
            while (store.unfinished_claims(ledger) or running_with(key)) and time.monotonic() < deadline:  # untimed
                time.sleep(0.05)
            b.append(timed(sessions, env)[0])
        left = len(store.unfinished_claims(ledger))
    finally:
        ledger.close()
    subprocess.run([sys.executable, "-m", "mk0r_tui", "pool", "drain", "--yes"], env=env, capture_output=True)
    for row in Ledger(home / "ledger.sqlite3").list_sessions():
        subprocess.run([sys.executable, "-m", "mk0r_tui", "teardown", row.key, "--yes"], env=env, capture_output=True)
    return {"provision": a, "sessions": b, "unfinished_after": left}


async def part_sustained(fake, root: Path, window_s: float, size: int) -> dict:
    home = root / "sustained"
    settings = c.cloud_settings(fake, home, target="local", pool_size=size, github_mutation_gap_s=1.0)
    runtime = c.make_runtime(settings)
    keeper = pool_upkeep.PoolKeeper(runtime, interval_s=1.0)
    keeper_task = asyncio.create_task(keeper.run())
    claims = full = 0
    try:
        # start from a full pool, as a long-running keeper would be
        while any(pool_upkeep.levels(runtime).get(p, pool_upkeep.Level()).ready < size for p in POOLED):
            await asyncio.sleep(0.2)
        started = time.monotonic()
        while time.monotonic() - started < window_s:
            levels = pool_upkeep.levels(runtime)
            if all(levels.get(p, pool_upkeep.Level()).ready for p in POOLED):
                session = Session.new()
                report = await provision_services(runtime, session, runtime.plan())
                claims += 1
                full += all(r.from_pool for r in report.results if r.name in POOLED)
            else:
                await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
    finally:
        keeper_task.cancel()
        try:
            await keeper_task
        except BaseException:
            pass
    try:
        await pool_upkeep.finish_claims(runtime)
        for s in runtime.ledger.list_sessions():
            await teardown_session(runtime, s.key)
        await pool_upkeep.drain(runtime)
    finally:
        await c.close_runtime(runtime)
    return {"claims": claims, "from_pool": full, "elapsed_s": elapsed, "per_min": full / elapsed * 60}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=50, help="in-process runs of each kind")
    parser.add_argument("--cli-runs", type=int, default=10)
    parser.add_argument("--window", type=float, default=60.0, help="seconds of sustained claims")
    parser.add_argument("--skip", nargs="*", default=[], choices=["inprocess", "cli", "sustained"])
    args = parser.parse_args()
    sys.path.insert(0, str(c.ROOT / "tests"))  # crashkit: the test kit's settings against the fake
    info = c.print_header("warm pool: claim to .env, CLI provision, sustained refill", "pool.py")
    goals: list[c.Goal] = []
    figures: dict = {}
    with c.fake_upstream() as fake, c.scratch_dir("mk0r-bench-pool-") as root:
        if "inprocess" not in args.skip:
            for posthog_key in (False, True):
                what = ("PostHog with its project key (key check + capture, 2 x 50 ms, not poolable)" if posthog_key
                        else "PostHog tag only (no upstream call)")
                print(f"1{'b' if posthog_key else 'a'}. in-process, {args.claims} sessions each, alternating A (ready pool) / "
                      f"B (no pool); {what}; {load()}")
                r = asyncio.run(part_in_process(fake, root, args.claims, posthog_key=posthog_key))
                rows = []
                for label, key in (("A pool: call -> .env", "a_env"), ("B no pool: call -> .env", "b_env"),
                                   ("A pool: call -> return", "a_done"), ("B no pool: call -> return", "b_done")):
                    s = c.summary(r[key])
                    rows.append((label, s["n"], s["median"], s["p95"], s["min"], s["max"]))
                print(c.table(("ms", "n", "p50", "p95", "min", "max"), rows))
                print(f"claims that missed the pool: {r['misses']}; renames unfinished after finish_claims: {r['unfinished_after']}")
                print(f"after: {load()}")
                a = c.summary(r["a_env"])
                label = "with PostHog's key" if posthog_key else "PostHog tag only"
                goals.append(c.Goal(f"in-process provision -> complete .env with a ready pool, p50 ({label})", a["median"], 50.0, " ms"))
                figures[f"in_process_posthog_{'key' if posthog_key else 'tag'}"] = {
                    k: c.summary(v) for k, v in r.items() if isinstance(v, list)}
                print()
        if "cli" not in args.skip:
            print(f"2. CLI processes, {args.cli_runs} each, alternating A provision --json (ready pool, PostHog tag only) / "
                  f"B sessions --json; {load()}")
            r = part_cli(fake, root, args.cli_runs)
            pa, sb = c.summary(r["provision"]), c.summary(r["sessions"])
            print(c.table(("ms", "n", "p50", "p95", "min", "max"), [
                ("A provision --json (pool)", pa["n"], pa["median"], pa["p95"], pa["min"], pa["max"]),
                ("B sessions --json", sb["n"], sb["median"], sb["p95"], sb["min"], sb["max"]),
            ]))
            ratio = pa["median"] / sb["median"]
            print(f"ratio of medians A/B: {ratio:.2f}; renames left unfinished: {r['unfinished_after']}; {load()}")
            goals.append(c.Goal("CLI provision (ready pool) / sessions --json, medians", ratio, 1.3, "x"))
            figures["cli"] = {"provision": pa, "sessions": sb, "ratio": ratio}
            print()
        if "sustained" not in args.skip:
            print(f"3. sustained: keeper refilling (pool size 3) while claiming for {args.window:.0f}s; {load()}")
            r = asyncio.run(part_sustained(fake, root, args.window, 3))
            print(f"claims {r['claims']} ({r['from_pool']} wholly from the pool) in {r['elapsed_s']:.1f}s: "
                  f"{r['per_min']:.1f} claims/min sustained here")
            print("the limits allow, per claim one create per provider: GitHub 80/min for a minute but 500/h = "
                  "8.3/min over an hour; Resend 2 req/s = 4 requests per claim (2 creates, 2 renames) = 30/min; "
                  "Neon: no documented create limit here, one create at a time per provider ~ 1/(0.8 s + ops)")
            print(f"{load()}")
            figures["sustained"] = r
    return c.finish("pool", info, goals, figures)


if __name__ == "__main__":
    raise SystemExit(main())
