"""Provisioning on the local profile: embedded Postgres, a local git repo, the analytics tag,
delivered to the local folder.

- warm: the embedded server is already running (goal <= 300 ms per session);
- cold: a fresh server folder, so `initdb` and the server start are part of it (goal <= 3 s).

Both go through `provision_services` in process. Beside them, the whole CLI
(`mk0r-tui provision --json` in a new process, warm server) shows what an operator waits for,
interpreter start and imports included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _common as c

from mk0r_tui.core.config import Settings
from mk0r_tui.core.models import Session
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.providers.embedded_pg import EmbeddedPostgres


def local_settings(home: Path, pg_dir: Path) -> Settings:
    return Settings(home=home, profile="local", target="local", postgres_dir_override=pg_dir, no_keyring=True)


async def provision_once(runtime) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    report = await provision_services(runtime, Session.new(), runtime.plan("local"))
    wall_ms = (time.perf_counter() - started) * 1000
    if not report.ok:
        raise SystemExit(f"provisioning failed: {[(r.name, r.error) for r in report.results if r.error]}")
    return wall_ms, {r.name: r.latency_ms for r in report.results if r.latency_ms is not None}


async def warm_runs(home: Path, pg_dir: Path, count: int) -> tuple[list[float], list[dict]]:
    runtime = c.make_runtime(local_settings(home, pg_dir), c.bench_credentials({}))
    try:
        for name in ("posthog", "local-postgres", "local-git", "local-folder"):
            runtime.provider(name)
        walls, parts = [], []
        for _ in range(count):
            wall, per = await provision_once(runtime)
            walls.append(wall)
            parts.append(per)
        return walls, parts
    finally:
        await c.close_runtime(runtime)


async def cold_run(home: Path, pg_dir: Path) -> tuple[float, dict[str, float]]:
    runtime = c.make_runtime(local_settings(home, pg_dir), c.bench_credentials({}))
    try:
        for name in ("posthog", "local-postgres", "local-git", "local-folder"):
            runtime.provider(name)
        return await provision_once(runtime)
    finally:
        await c.close_runtime(runtime)


def cli_run(home: Path, pg_dir: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MK0R_", "NEON_", "RESEND_", "GITHUB_", "POSTHOG_", "E2B_"))}
    env.update({"MK0R_HOME": str(home), "MK0R_POSTGRES_DIR": str(pg_dir), "MK0R_PROFILE": "local",
                "MK0R_TARGET": "local", "MK0R_NO_KEYRING": "1"})
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mk0r_tui", "provision", "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    wall_ms = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"mk0r-tui provision failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    if not json.loads(done.stdout).get("ok", True):
        raise SystemExit(f"mk0r-tui provision reported a failure: {done.stdout[-500:]}")
    return wall_ms


def parts_table(parts: list[dict]) -> str:
    names = list(parts[0])
    rows = []
    for name in names:
        s = c.summary([p[name] for p in parts])
        rows.append([name, s["median"], s["p95"]])
    return c.table(["step", "median ms", "p95 ms"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=10)
    parser.add_argument("--cold", type=int, default=3)
    parser.add_argument("--cli", type=int, default=3, help="CLI runs in a new process (0 to skip)")
    args = parser.parse_args()
    info = c.print_header("local profile: embedded Postgres warm and cold", "local_profile.py")

    cold_walls, cold_parts = [], []
    with c.scratch_dir("mk0r-bench-local-") as scratch:
        for i in range(args.cold):
            pg_dir = scratch / f"pg-cold-{i}"
            try:
                wall, per = c.run(cold_run(scratch / f"home-cold-{i}", pg_dir))
            finally:
                EmbeddedPostgres(pg_dir).stop()
            cold_walls.append(wall)
            cold_parts.append(per)

        warm_pg = scratch / "pg-warm"
        server = EmbeddedPostgres(warm_pg)
        try:
            server.ensure_running()
            warm_walls, warm_parts = c.run(warm_runs(scratch / "home-warm", warm_pg, args.warm))
            cli_walls = [cli_run(scratch / "home-cli", warm_pg) for _ in range(args.cli)]
        finally:
            server.stop()

    warm, cold = c.summary(warm_walls), c.summary(cold_walls)
    rows = [["warm (server running), in process", warm["n"], warm["median"], warm["p95"], warm["min"], warm["max"]],
            ["cold (initdb + start), in process", cold["n"], cold["median"], cold["p95"], cold["min"], cold["max"]]]
    if cli_walls:
        cli = c.summary(cli_walls)
        rows.append(["warm, whole CLI in a new process", cli["n"], cli["median"], cli["p95"], cli["min"], cli["max"]])
    print(c.table(["provision", "n", "median ms", "p95 ms", "min ms", "max ms"], rows))
    print()
    print("warm, per step (provider latency as the orchestrator measured it):")
    print(parts_table(warm_parts))
    print()
    print("cold, per step:")
    print(parts_table(cold_parts))
    goals = [c.Goal("warm provision median ms", warm["median"], 300, " ms"),
             c.Goal("warm provision p95 ms", warm["p95"], 300, " ms"),
             c.Goal("cold provision median ms", cold["median"], 3000, " ms"),
             c.Goal("cold provision p95 ms", cold["p95"], 3000, " ms")]
    return c.finish("local_profile", info, goals, {
        "warm_ms": warm, "cold_ms": cold, "cli_warm_ms": c.summary(cli_walls) if cli_walls else None,
        "warm_steps_ms": {n: c.summary([p[n] for p in warm_parts]) for n in warm_parts[0]},
        "cold_steps_ms": {n: c.summary([p[n] for p in cold_parts]) for n in cold_parts[0]},
    })


if __name__ == "__main__":
    raise SystemExit(main())
