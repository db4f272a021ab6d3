"""One session through `provision_services` against the fake upstream: does running the
providers concurrently cost nothing beyond the slowest one, and does Neon's operation polling
waste no more than a tenth of the critical path?

Goal 1: wall time / slowest provider's latency <= 1.05.
Goal 2 (issue 15 item 4): the fan-out span (the slowest provider's latency) / the critical path
<= 1.10 with Neon operations of 300 ms, 1 s and 2.5 s. The fake commits a Neon create at the end
of its 800 ms latency (latency_mode "after"), its operations finish `op` ms later and a status
poll takes 25 ms, so the critical path is 800 ms + op: no client can see the project ready
sooner. GitHub (GET /user + POST, 400 ms each) and Resend (2 x 150 ms at the product's 2 rps)
finish earlier. Each duration gets a fresh fake and one warm-up run that is not counted (it
opens the connections and asks GitHub for the login once, as any later session finds them). Beside it, the same session shape run
with the providers one after another (the same orchestrator and providers; a shared lock
lets only one provider's `provision` run at a time), so the gain from concurrency is visible.
The wall time includes writing the .env and delivering to the local folder (git init etc.).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import _common as c

from mk0r_tui.core.models import ProvisionOutcome, Session, Slot
from mk0r_tui.core.provider import Provider
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.providers import ProviderSpec, Registry


class OneAtATime(Provider):
    """Wraps a provider so that only one wrapped provider provisions at a time."""

    def __init__(self, inner, lock: asyncio.Lock, spent_ms: dict[str, float]) -> None:
        self.inner = inner
        self.lock = lock
        self.spent_ms = spent_ms
        self.name: str = inner.name
        self.slot: Slot = inner.slot
        self.env_keys = inner.env_keys

    async def provision(self, ctx) -> ProvisionOutcome:
        async with self.lock:
            started = time.perf_counter()
            try:
                return await self.inner.provision(ctx)
            finally:
                self.spent_ms[self.name] = (time.perf_counter() - started) * 1000

    async def teardown(self, resource):
        return await self.inner.teardown(resource)

    async def discover(self):
        return await self.inner.discover()


async def one_run(runtime, *, sequential: bool) -> dict:
    session = Session.new()
    plan = runtime.plan("local")
    inside_ms: dict[str, float] = {}
    if sequential:
        lock = asyncio.Lock()
        wrapped = [OneAtATime(runtime.provider(step.name), lock, inside_ms) for step in plan.providers if step.runs]
        specs = tuple(ProviderSpec(w.name, w.slot, lambda _s, _c, w=w: w) for w in wrapped)
        runtime = Runtime(runtime.settings, runtime.credentials, runtime.ledger,
                          registry=Registry(specs, runtime.registry.targets))
    started = time.perf_counter()
    report = await provision_services(runtime, session, plan)
    wall_ms = (time.perf_counter() - started) * 1000
    if not report.ok:
        failed = {r.name: r.error for r in report.results if r.error}
        raise SystemExit(f"provisioning failed, no figure to give: {failed}")
    latencies = {r.name: r.latency_ms for r in report.results if r.slot is not Slot.TARGET}
    if sequential:
        latencies = inside_ms
    target_ms = next(r.latency_ms for r in report.results if r.slot is Slot.TARGET)
    slowest = max(latencies, key=latencies.get)
    return {"wall_ms": wall_ms, "latency_ms": latencies, "slowest": slowest, "slowest_ms": latencies[slowest],
            "sum_ms": sum(latencies.values()), "target_ms": target_ms,
            "ratio": wall_ms / latencies[slowest]}


async def bench(repeats: int) -> tuple[list[dict], list[dict], dict]:
    with c.fake_upstream() as fake, c.scratch_dir("mk0r-bench-single-") as home:
        runtime = c.make_runtime(c.cloud_settings(fake, home))
        try:
            for name in (*c.CLOUD_PROVIDERS, "local-folder"):
                runtime.provider(name)  # imports and client set-up are not what is measured
            concurrent, sequential = [], []
            for _ in range(repeats):
                concurrent.append(await one_run(runtime, sequential=False))
                sequential.append(await one_run(runtime, sequential=True))
            state = fake.state()
        finally:
            await c.close_runtime(runtime)
    return concurrent, sequential, state


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
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fan-out-only", action="store_true", help="only the span / critical path figure")
    args = parser.parse_args()
    if args.fan_out_only:
        info = c.print_header("single session: fan-out span / critical path", "single_session.py")
        goals, figures = main_fan_out(args.repeats)
        return c.finish("single_session", info, goals, {"fan_out": figures})
    info = c.print_header("single session: concurrent providers vs one after another", "single_session.py")
    print("injected latency per request (ms):", c.LATENCY_MS, " MK0R_GITHUB_MUTATION_GAP_S=0, target local folder")
    concurrent, sequential, state = c.run(bench(args.repeats))

    rows = []
    for i, (con, seq) in enumerate(zip(concurrent, sequential), 1):
        rows.append([i, con["wall_ms"], con["slowest"], con["slowest_ms"], con["ratio"], con["target_ms"],
                     seq["wall_ms"], seq["sum_ms"]])
    print()
    print(c.table(["run", "concurrent wall ms", "slowest", "slowest ms", "wall/slowest", "target ms",
                   "sequential wall ms", "sequential sum of providers ms"], rows))
    print()
    per_provider = {p: c.summary([r["latency_ms"][p] for r in concurrent]) for p in concurrent[0]["latency_ms"]}
    print(c.table(["provider (concurrent run)", "median ms", "min ms", "max ms"],
                  [[p, s["median"], s["min"], s["max"]] for p, s in per_provider.items()]))
    routes = {p: c.requests_by_route(state, p) for p in c.CLOUD_PROVIDERS}
    print()
    print("requests the fake served over all runs:", routes)

    ratio = c.summary([r["ratio"] for r in concurrent])
    con_wall = c.summary([r["wall_ms"] for r in concurrent])
    seq_wall = c.summary([r["wall_ms"] for r in sequential])
    print()
    print(c.table(["figure", "median", "min", "max"], [
        ["concurrent wall ms", con_wall["median"], con_wall["min"], con_wall["max"]],
        ["sequential wall ms", seq_wall["median"], seq_wall["min"], seq_wall["max"]],
        ["concurrent wall / slowest provider", ratio["median"], ratio["min"], ratio["max"]],
        ["sequential wall / concurrent wall", seq_wall["median"] / con_wall["median"], "", ""],
    ]))
    goals = [c.Goal("wall / slowest provider (median of runs)", ratio["median"], 1.05),
             c.Goal("wall / slowest provider (worst run)", ratio["max"], 1.05)]
    fan_goals, fan_figures = main_fan_out(args.repeats)
    goals += fan_goals
    return c.finish("single_session", info, goals, {"fan_out": fan_figures,
        "concurrent": concurrent, "sequential": sequential, "ratio": ratio,
        "concurrent_wall_ms": con_wall, "sequential_wall_ms": seq_wall, "requests_by_route": routes,
    })


if __name__ == "__main__":
    raise SystemExit(main())
