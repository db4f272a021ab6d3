"""The provisioning service (issue 13): what a POST adds over an in-process provision, and how many
sessions a minute one `serve` process provisions against the bound its providers' limits set.

1. Added latency. The same session shape, one at a time, alternating A B A B: A = the engine's
   `provision_services` on an open runtime in this process (what a job runs), B = `POST
   /v1/sessions` (wait) to a `mk0r-tui serve` process (HTTP + auth + enqueue + a worker's fetch +
   the run + the stored result). Each side has its own data dir, the same fake upstream (a
   subprocess) with the usual latencies (1a), then with none (1b: only our overhead is left), the
   product's default limits. Goal: the added latency at p50 <= 50 ms, taken as the larger of
   p50(B) - p50(A) and the median of the pairs' differences (the latter is the steadier figure).
2. Throughput. N sessions at once, the product's default limits (MK0R_CONCURRENCY 8, Resend 2
   requests/s, GitHub 1 s between mutations): POSTed to one serve process, and, as the baseline,
   run with `asyncio.gather` on one in-process runtime. Sessions/minute of each against the bound:
   the tightest of each provider's rate (requests per session counted on the fake), its
   concurrency over its latency, and GitHub's mutations (one at a time, each its latency plus
   the gap). A run of N sessions at the bound takes (N - 1) / bound plus one
   session's own latency (part 1's A): the ideal wall. Goal: wall / ideal wall <= 1.25 (the
   service reaches 80% of what the limits allow).

The machine is shared (2 cores, other engineers' work): the load average is printed; figures
under load are upper bounds on the overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import _common as c

sys.path.insert(0, str(c.ROOT / "tests"))

from crashkit import cli_env
from servicekit import TOKEN, ServeProcess, async_client

from mk0r_tui.core.config import Settings
from mk0r_tui.core.models import Session
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.providers.embedded_pg import EmbeddedPostgres

DEFAULTS = Settings()
MUTATING = ("POST", "PATCH", "PUT", "DELETE")


def serve_env(fake, home) -> dict[str, str]:
    return cli_env(fake, home, MK0R_SERVICE_TOKEN=TOKEN, MK0R_TARGET="local", MK0R_POSTGRES_DIR=str(home / "postgres"),
                   MK0R_GITHUB_MUTATION_GAP_S=str(DEFAULTS.github_mutation_gap_s), MK0R_RESEND_RPS=str(DEFAULTS.resend_requests_per_second))


async def in_process_one(runtime) -> float:
    session = Session.new()
    started = time.perf_counter()
    report = await provision_services(runtime, session, runtime.plan("local"))
    assert report.ok, report.errors
    return (time.perf_counter() - started) * 1000


async def post_one(client) -> float:
    started = time.perf_counter()
    r = await client.post("/v1/sessions", json={})
    assert r.status_code == 201 and r.json()["ok"], r.text
    return (time.perf_counter() - started) * 1000


def bound_per_minute(state_before: dict, state_after: dict, sessions: int) -> tuple[float, dict[str, float]]:
    """The tightest provider: its rate limit or its concurrency over its latency, per session."""
    bounds: dict[str, float] = {}
    for p in c.CLOUD_PROVIDERS:
        before = state_before["requests"][p]["by_route"]
        after = state_after["requests"][p]["by_route"]
        per_session = {route: (n - before.get(route, 0)) / sessions for route, n in after.items()}
        total = sum(per_session.values())
        if total <= 0:
            continue
        latency_s = c.LATENCY_MS[p] / 1000
        bounds[f"{p} concurrency"] = 60 * DEFAULTS.concurrency_for(p) / (total * latency_s) if latency_s else float("inf")
        if p == "resend":
            bounds["resend rate"] = 60 * DEFAULTS.resend_requests_per_second / total
        if p == "github":
            mutations = sum(n for route, n in per_session.items() if route.split(" ", 1)[0] in MUTATING)
            if mutations:
                # one mutation at a time, the gap counted from the previous one's answer (providers/http.py)
                bounds["github mutations (one at a time + gap)"] = 60 / (mutations * (DEFAULTS.github_mutation_gap_s + latency_s))
    return min(bounds.values()), bounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8, help="A/B pairs for the latency part")
    parser.add_argument("--sessions", type=int, default=30, help="sessions at once for the throughput part")
    args = parser.parse_args()
    info = c.print_header("the provisioning service: added latency of a POST, sessions/minute", "service.py")
    figures: dict = {}
    with c.fake_upstream() as fake, c.scratch_dir("mk0r-bench-svc-") as scratch:
        home_a, home_b = scratch / "a", scratch / "b"
        runtime = c.make_runtime(c.cloud_settings(fake, home_a, github_mutation_gap_s=DEFAULTS.github_mutation_gap_s, target="local"))
        server = ServeProcess(serve_env(fake, home_b)).start(timeout=120)
        try:
            async def latency_part() -> tuple[list[float], list[float]]:
                a: list[float] = []
                b: list[float] = []
                async with async_client(server.url, timeout=120) as client:
                    await in_process_one(runtime)  # warm-up each side: connections, GitHub's login
                    await post_one(client)
                    for _ in range(args.pairs):
                        a.append(await in_process_one(runtime))
                        b.append(await post_one(client))
                return a, b

            goals = []
            for part, latency in (("1a", None), ("1b", 0)):
                if latency is not None:
                    fake.control(latency_ms=latency)  # the providers answer at once: only our own overhead is left
                a, b = c.run(latency_part())
                sa, sb = c.summary(a), c.summary(b)
                diffs = sorted(y - x for x, y in zip(a, b))
                paired = diffs[len(diffs) // 2]
                what = "the usual latencies" if latency is None else "no injected latency"
                print(f"{part}. one session at a time, {what}, {args.pairs} pairs alternating (A in-process, B POST), ms; "
                      f"load {os.getloadavg()[0]:.2f}")
                print(c.table(["side", "n", "median", "min", "max"],
                              [["A provision_services", sa["n"], sa["median"], sa["min"], sa["max"]],
                               ["B POST /v1/sessions", sb["n"], sb["median"], sb["min"], sb["max"]]]))
                added = sb["median"] - sa["median"]
                print(f"added by the service: p50(B) - p50(A) = {added:.1f} ms; median of the pairs' differences {paired:.1f} ms")
                print()
                figures[f"latency_ms_{part}"] = {"in_process": sa, "post": sb, "added_p50": added, "added_paired_median": paired}
                goals.append(c.Goal(f"{part}: added latency of a POST at p50 (the larger of p50(B)-p50(A) and the paired median)",
                                    max(added, paired), 50.0, " ms"))
                if part == "1a":
                    single_ms = sa["median"]
            fake.control(latency_ms=c.LATENCY_MS)

            async def throughput_service() -> float:
                async with async_client(server.url, timeout=600) as client:
                    started = time.perf_counter()
                    await asyncio.gather(*(post_one(client) for _ in range(args.sessions)))
                    return time.perf_counter() - started

            async def throughput_in_process() -> float:
                started = time.perf_counter()
                await asyncio.gather(*(in_process_one(runtime) for _ in range(args.sessions)))
                return time.perf_counter() - started

            before = fake.state()
            wall_b = c.run(throughput_service())
            middle = fake.state()
            wall_a = c.run(throughput_in_process())
            after = fake.state()
            bound, bounds = bound_per_minute(before, middle, args.sessions)
            bound_a, _ = bound_per_minute(middle, after, args.sessions)
            rate_b = args.sessions / wall_b * 60
            rate_a = args.sessions / wall_a * 60
            ideal_b = (args.sessions - 1) * 60 / bound + single_ms / 1000
            ideal_a = (args.sessions - 1) * 60 / bound_a + single_ms / 1000
            print(f"2. {args.sessions} sessions at once, default limits; load {os.getloadavg()[0]:.2f}")
            print(c.table(["bound", "sessions/min"], sorted(bounds.items(), key=lambda kv: kv[1])))
            print(c.table(["side", "wall s", "ideal wall s", "sessions/min", "ideal / wall"],
                          [["A in-process gather", wall_a, ideal_a, rate_a, f"{ideal_a / wall_a:.0%}"],
                           ["B POST to one serve", wall_b, ideal_b, rate_b, f"{ideal_b / wall_b:.0%}"]]))
            figures["throughput"] = {"bound_per_min": bound, "bounds": bounds, "service_per_min": rate_b, "in_process_per_min": rate_a,
                                     "service_wall_s": wall_b, "in_process_wall_s": wall_a, "ideal_wall_s": ideal_b}
            figures["loadavg_1m_at_end"] = os.getloadavg()[0]
            goals.append(c.Goal("service wall / ideal wall at the limits' bound", wall_b / ideal_b, 1.25))
        finally:
            server.stop()
            c.run(c.close_runtime(runtime))
            EmbeddedPostgres(home_b / "postgres").stop()
    return c.finish("service", info, goals, figures)


if __name__ == "__main__":
    raise SystemExit(main())
