"""100 sessions provisioned at once in one process against the fake upstream.

The runtime shares one client per provider, so every session competes for the same
per-provider limits: requests in flight (`MK0R_CONCURRENCY_*`), Resend's requests per second
(`MK0R_RESEND_RPS`) and GitHub's one-mutation-at-a-time rule (`MK0R_GITHUB_MUTATION_GAP_S`,
here 0 s, still one at a time). The bound is the least time those limits allow for the
requests the sessions need; the goal is wall time <= 1.3 x that bound, and the fake's own
count of requests in flight proves no limit was exceeded.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import time

import _common as c

from mk0r_tui.core.models import Session, Slot
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.providers.github import CREATES_PER_MINUTE
from mk0r_tui.providers.neon import NeonProvider

#: the requests one session needs from each provider, in order (from the providers' code:
#: Neon creates and then polls its two operations; Resend makes a segment then a key;
#: GitHub creates the repo (its login is asked once per process); PostHog sends one event)
REQUESTS_PER_SESSION = {"posthog": 1, "neon": 3, "resend": 2, "github": 1}
MUTATIONS_PER_SESSION = {"github": 1}
ONCE_PER_PROCESS = {"github": 1}  # GET /user


def provider_bound(provider: str, sessions: int, settings) -> dict:
    """The least wall time the configured limits allow for `provider`'s requests."""
    latency_s = c.LATENCY_MS[provider] / 1000
    limit = settings.concurrency_for(provider)
    requests = REQUESTS_PER_SESSION[provider] * sessions + ONCE_PER_PROCESS.get(provider, 0)
    terms = {"in-flight limit": math.ceil(requests / limit) * latency_s}
    if provider == "resend":
        terms["requests/s"] = requests / settings.resend_requests_per_second
    if provider == "github" and sessions > CREATES_PER_MINUTE:
        # GitHub's secondary limit on content creation: 80 repo creates a minute per token
        terms["80 creates/min"] = (sessions - 1) // CREATES_PER_MINUTE * 60.0 + latency_s
    if provider in MUTATIONS_PER_SESSION:
        mutations = MUTATIONS_PER_SESSION[provider] * sessions
        terms["one mutation at a time"] = mutations * latency_s + (mutations - 1) * settings.github_mutation_gap_s
    if provider == "neon":
        # the create, then its operations polled at once: one wait and one round trip
        terms["one session's path"] = 2 * latency_s + NeonProvider.poll_min_s
    binding = max(terms, key=terms.get)
    return {"limit": limit, "requests": requests, "terms": terms, "bound_s": terms[binding], "binding": binding}


async def loop_lag_monitor(samples: list[float], stop: asyncio.Event, interval: float = 0.01) -> None:
    """How late the event loop wakes a 10 ms sleeper: time spent blocking the loop."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(interval)
        samples.append((time.perf_counter() - started - interval) * 1000)


async def bench(sessions: int, overrides: dict) -> dict:
    with c.fake_upstream() as fake, c.scratch_dir("mk0r-bench-many-") as home:
        settings = c.cloud_settings(fake, home, **overrides)
        runtime = c.make_runtime(settings)
        try:
            for name in (*c.CLOUD_PROVIDERS, "local-folder"):
                runtime.provider(name)
            keys = [Session.new() for _ in range(sessions)]
            lag: list[float] = []
            stop = asyncio.Event()
            monitor = asyncio.create_task(loop_lag_monitor(lag, stop))
            started = time.perf_counter()
            reports = await asyncio.gather(*(provision_services(runtime, s, runtime.plan("local")) for s in keys))
            wall_s = time.perf_counter() - started
            stop.set()
            await monitor
            state = fake.state()
        finally:
            await c.close_runtime(runtime)
    failed = [(r.session.key, {x.name: x.error for x in r.results if x.error}) for r in reports if not r.ok]
    provider_ms = {p: [next(x.latency_ms for x in r.results if x.name == p) for r in reports] for p in c.CLOUD_PROVIDERS}
    target_ms = [next(x.latency_ms for x in r.results if x.slot is Slot.TARGET) for r in reports]
    return {"settings": settings, "wall_s": wall_s, "failed": failed, "state": state, "lag_ms": lag,
            "provider_ms": provider_ms, "target_ms": target_ms}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    args = parser.parse_args()
    info = c.print_header(f"{args.sessions} sessions at once in one process", "many_sessions.py")
    # Resend's default of 2 requests/s would make 200 requests take 100 s; the bench runs at
    # 10/s unless MK0R_RESEND_RPS says otherwise (the bound uses whatever is configured).
    overrides = {} if "MK0R_RESEND_RPS" in os.environ else {"resend_requests_per_second": 10.0}
    print("injected latency per request (ms):", c.LATENCY_MS)
    result = c.run(bench(args.sessions, overrides))
    settings, state = result["settings"], result["state"]
    in_flight = c.max_in_flight(state)

    bounds = {p: provider_bound(p, args.sessions, settings) for p in c.CLOUD_PROVIDERS}
    print(f"configured: MK0R_CONCURRENCY={settings.concurrency}, MK0R_RESEND_RPS={settings.resend_requests_per_second:g}, "
          f"MK0R_GITHUB_MUTATION_GAP_S={settings.github_mutation_gap_s:g}, Neon first poll after {NeonProvider.poll_intervals_s[0]:g} s")
    print()
    rows = []
    for p, b in bounds.items():
        served = state["requests"][p]["total"]
        rows.append([p, b["limit"], in_flight[p], "yes" if in_flight[p] <= b["limit"] else "NO",
                     b["requests"], served, b["bound_s"], b["binding"],
                     c.summary(result["provider_ms"][p])["median"] / 1000, max(result["provider_ms"][p]) / 1000])
    print(c.table(["provider", "limit", "max in flight", "within", "requests needed", "requests served",
                   "bound s", "bound set by", "median session s", "slowest session s"], rows))
    print()
    for p, b in bounds.items():
        print(f"  {p}: " + ", ".join(f"{k} {v:.2f} s" for k, v in b["terms"].items()))
    for p in c.CLOUD_PROVIDERS:
        print(f"  {p} requests by route: {c.requests_by_route(state, p)}")

    bound_s = max(b["bound_s"] for b in bounds.values())
    ratio = result["wall_s"] / bound_s
    lag = c.summary(result["lag_ms"])
    target = c.summary(result["target_ms"])
    print()
    print(c.table(["figure", "value"], [
        ["sessions", args.sessions],
        ["sessions not ok", len(result["failed"])],
        ["bound s (slowest provider's)", bound_s],
        ["wall s", result["wall_s"]],
        ["wall / bound", ratio],
        ["local-folder delivery median ms", target["median"]],
        ["event-loop lag p95 ms / max ms", f"{lag['p95']:.1f} / {lag['max']:.1f}"],
    ]))
    if result["failed"]:
        print("failures:", result["failed"][:5])
    goals = [c.Goal("wall / bound", ratio, 1.3),
             c.Goal("sessions not ok", len(result["failed"]), 0)]
    goals += [c.Goal(f"{p} max in flight (configured limit)", in_flight[p], bounds[p]["limit"]) for p in c.CLOUD_PROVIDERS]
    return c.finish("many_sessions", info, goals, {
        "sessions": args.sessions, "wall_s": result["wall_s"], "bound_s": bound_s, "ratio": ratio,
        "bounds": bounds, "max_in_flight": in_flight,
        "requests_by_route": {p: c.requests_by_route(state, p) for p in c.CLOUD_PROVIDERS},
        "provider_s": {p: c.summary([v / 1000 for v in result["provider_ms"][p]]) for p in c.CLOUD_PROVIDERS},
        "loop_lag_ms": lag, "failed": result["failed"][:5],
    })


if __name__ == "__main__":
    raise SystemExit(main())
