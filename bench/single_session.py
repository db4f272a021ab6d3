"""One session, the way a user runs it: the whole `mk0r-tui provision --json` process against the
fake cloud, beside a minimal httpx script (bench/baseline_provision.py: the same requests with
asyncio.gather, ~40 lines, nothing of mk0r) run as a whole process against the same fake, in the
same run, alternated A B A B.

The fake (its own process) answers with the issue's latencies: Neon's create 800 ms (committed at
its end), its operations finish `op` ms later (300 ms, 1 s, 2.5 s) and each status poll takes
25 ms; GitHub 400 ms per request (GET /user, POST /user/repos); Resend 150 ms per request, two
requests at the product's default 2 req/s; PostHog 50 ms (flags, capture). Product defaults
everywhere (the GitHub mutation gap of 1 s does not bite: one create per run). Every process
starts cold (interpreter, imports, TLS context, ledger) as it does for a user; the product also
writes its ledger, the `.env` and the local app folder (git), which the baseline does not.

Goal (issue 17): the product's median <= 1.15 x the baseline's median, at every operation length.
`--fan-out` adds the in-process figure of issue 15 (the fan-out span / the critical path).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

import _common as c

from mk0r_tui.core.models import Session, Slot
from mk0r_tui.engine.orchestrator import provision_services

GOAL = 1.15
BASELINE = str(c.ROOT / "bench" / "baseline_provision.py")


def product_env(fake, home) -> dict[str, str]:
    return c.clean_env(
        MK0R_HOME=str(home), MK0R_PROFILE="cloud", MK0R_TARGET="local", MK0R_NO_KEYRING="1",
        MK0R_NEON_API_URL=fake.neon_url, MK0R_RESEND_API_URL=fake.resend_url, MK0R_GITHUB_API_URL=fake.github_url,
        POSTHOG_HOST=fake.posthog_url, **c.BENCH_KEYS,
    )


def series(op_ms: int, runs: int) -> dict:
    with c.fake_upstream(latency_mode="after", neon_operation_ms=op_ms, neon_poll_latency_ms=POLL_LATENCY_MS) as fake, \
            c.scratch_dir("mk0r-bench-single-") as home:
        env = product_env(fake, home)
        mk0r = [str(c.ROOT / ".venv" / "bin" / "mk0r-tui")] if (c.ROOT / ".venv" / "bin" / "mk0r-tui").exists() \
            else [sys.executable, "-m", "mk0r_tui"]

        cpu: dict[str, list[float]] = {"product": [], "baseline": []}

        def product(i: int) -> float:
            wall, out, _err = c.timed_process([*mk0r, "provision", "--json"], env=env, cwd=c.ROOT)
            if i >= 0:
                cpu["product"].append(c.LAST_CPU_MS[0])
            report = json.loads(out)
            if not report["ok"]:
                raise SystemExit(f"provision failed: {[(p['name'], p['error']) for p in report['providers'] if p['error']]}")
            return wall

        def baseline(i: int) -> float:
            wall, out, _err = c.timed_process([sys.executable, BASELINE, fake.base_url, uuid.uuid4().hex[:12]],
                                              env=c.clean_env(), cwd=c.ROOT)
            if i >= 0:
                cpu["baseline"].append(c.LAST_CPU_MS[0])
            assert len(json.loads(out)) == 4
            return wall

        load_before = c.load_now()
        a, b = c.alternate(product, baseline, runs)
        routes = {p: c.requests_by_route(fake.state(), p) for p in c.CLOUD_PROVIDERS}
    return {"op_ms": op_ms, "product_ms": a, "baseline_ms": b, "cpu_ms": cpu, "ratio": c.summary(a)["median"] / c.summary(b)["median"],
            "load_before": load_before, "load_after": c.load_now(), "requests_all_runs": routes}


OPERATION_MS = (300, 1000, 2500)
POLL_LATENCY_MS = 25


async def fan_out(op_ms: int, repeats: int) -> list[dict]:
    with c.fake_upstream(latency_mode="after", neon_operation_ms=op_ms, neon_poll_latency_ms=POLL_LATENCY_MS) as fake, \
            c.scratch_dir("mk0r-bench-fanout-") as home:
        runtime = c.make_runtime(c.cloud_settings(fake, home))
        runs = []
        try:
            for name in (*c.CLOUD_PROVIDERS, "local-folder"):
                runtime.provider(name)
            for number in range(repeats + 1):  # run 0 warms up (connections, GitHub login): not counted
                session = Session.new()
                report = await provision_services(runtime, session, runtime.plan("local"))
                if not report.ok:
                    raise SystemExit(f"provisioning failed: {[(r.name, r.error) for r in report.results if r.error]}")
                latencies = {r.name: r.latency_ms for r in report.results if r.slot is not Slot.TARGET}
                span = max(latencies.values())
                critical = c.LATENCY_MS["neon"] + op_ms
                if number == 0:
                    continue
                runs.append({"op_ms": op_ms, "span_ms": span, "critical_ms": critical, "ratio": span / critical,
                             "latency_ms": latencies})
            polls = c.requests_by_route(fake.state(), "neon")
        finally:
            await c.close_runtime(runtime)
    for run in runs:
        run["neon_routes_all_runs"] = polls
    return runs


def main_fan_out(repeats: int) -> list:
    print()
    print(f"fan-out span / critical path (Neon create {c.LATENCY_MS['neon']} ms committed at its end, "
          f"status polls {POLL_LATENCY_MS} ms, {repeats} runs each)")
    rows, goals, figures = [], [], {}
    for op_ms in OPERATION_MS:
        runs = c.run(fan_out(op_ms, repeats))
        ratio = c.summary([r["ratio"] for r in runs])
        span = c.summary([r["span_ms"] for r in runs])
        routes = runs[0]["neon_routes_all_runs"]
        rows.append([op_ms, c.LATENCY_MS["neon"] + op_ms, span["median"], ratio["median"], ratio["max"],
                     "PASS" if ratio["max"] <= 1.10 else "FAIL", routes])
        goals.append(c.Goal(f"fan-out span / critical path at operations of {op_ms} ms (worst run)", ratio["max"], 1.10))
        figures[str(op_ms)] = {"ratio": ratio, "span_ms": span, "neon_routes": routes}
    print(c.table(["operation ms", "critical path ms", "span ms (median)", "span/critical (median)",
                   "span/critical (worst)", "<= 1.10", "Neon requests over all runs"], rows))
    return [goals, figures]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="counted runs of each side per operation length")
    parser.add_argument("--ops", default=",".join(str(o) for o in OPERATION_MS), help="Neon operation lengths, ms")
    parser.add_argument("--fan-out", action="store_true", help="also the in-process fan-out span / critical path")
    parser.add_argument("--repeats", type=int, default=5, help="(--fan-out) runs per operation length")
    args = parser.parse_args()
    info = c.print_header("single session: the whole `mk0r-tui provision` process vs a minimal httpx script",
                          "single_session.py")
    print(f"latency per request (ms): {c.LATENCY_MS}, Neon polls {POLL_LATENCY_MS} ms, creates committed at the end "
          "of their latency; product defaults (Resend 2 req/s); one warm-up pair per series, not counted")
    rows, goals, figures = [], [], {}
    for op_ms in (int(o) for o in args.ops.split(",")):
        got = series(op_ms, args.runs)
        print(f"  operations {op_ms} ms: {got['load_before']} before, {got['load_after']} after; CPU per process "
              f"(median): product {c.summary(got['cpu_ms']['product'])['median']:.0f} ms, "
              f"baseline {c.summary(got['cpu_ms']['baseline'])['median']:.0f} ms")
        rows += c.versus(f"operations {op_ms} ms", got["product_ms"], got["baseline_ms"])
        goals.append(c.Goal(f"provision process / minimal httpx script, medians, operations {op_ms} ms", got["ratio"], GOAL))
        figures[str(op_ms)] = got
    print()
    print(c.table(c.VERSUS_HEADERS, rows))
    print()
    print("requests the fake served in the last series (both sides, warm-up included):", figures[str(op_ms)]["requests_all_runs"])
    if args.fan_out:
        fan_goals, fan_figures = main_fan_out(args.repeats)
        goals += fan_goals
        figures["fan_out"] = fan_figures
    print()
    print("the machine may be shared: figures move with the load printed above")
    return c.finish("single_session", info, goals, figures)


if __name__ == "__main__":
    raise SystemExit(main())
