"""100 sessions provisioned at once in one process, at the product's default limits (issue 17).

The limits are the real defaults, not bench settings: GitHub's mutations one at a time with a
1 s gap counted start to start (and 80 creates/min, 500/h), Resend 2 requests/s per team, Neon
700 requests/min, 8 requests in flight per provider. They are kept by the product's own pacing
(core/budgets.py on the data dir's SQLite file, as a user's process runs it).

The bound is the least wall time those limits allow for the requests the sessions need, given
the fake's latencies (Neon 800 ms, Resend 150 ms, GitHub 400 ms, PostHog 50 ms): at the defaults
Resend's 200 requests at 2/s and GitHub's 100 creates 1 s apart (after one `GET /user`) set it
at about 99.8 s. Beside it, in the same run, an independent baseline: a minimal httpx script
(nothing of ours) sending the same requests with the simplest correct pacing. Runs alternate
(A B A B); each prints its wall, wall / bound, the sessions not ok and the fake's own counters
(max mutations in flight, creates per minute, Resend per second, Neon per minute).

Goal: 100/100 ok, wall <= 1.1 x bound, no limit exceeded.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

import _common as c
import httpx

sys.path.insert(0, str(c.ROOT / "tests"))  # _common.cloud_settings imports the test kit

from fakeupstream.pacing import pacing_report
from mk0r_tui.core.config import Settings
from mk0r_tui.core.models import Session
from mk0r_tui.engine.orchestrator import provision_services

DEFAULTS = Settings()
#: the product's defaults, set explicitly: the test kit's fake settings turn the gaps off
LIMITS = {"github_mutation_gap_s": DEFAULTS.github_mutation_gap_s,
          "resend_requests_per_second": DEFAULTS.resend_requests_per_second}


def bound(sessions: int) -> dict[str, Any]:
    """The least wall time the default limits allow, per provider, from the fake's latencies."""
    lat = {p: ms / 1000 for p, ms in c.LATENCY_MS.items()}
    gap = DEFAULTS.github_mutation_gap_s
    per_minute = DEFAULTS.github_creates_per_minute
    # GitHub: GET /user once, then the creates one at a time, `gap` start to start (a create
    # longer than the gap holds the next), and at most `per_minute` in any minute
    step = max(gap, lat["github"])
    serial = lat["github"] + (sessions - 1) * step + lat["github"]
    windows = (sessions - 1) // per_minute * 60.0 + lat["github"] if sessions > per_minute else 0.0
    resend_requests = 2 * sessions
    concurrency = DEFAULTS.concurrency
    terms = {
        "github": max(serial, windows),
        "resend": (resend_requests - 1) / DEFAULTS.resend_requests_per_second + lat["resend"],
        # Neon: the creates 8 at a time, then each project's operations (one poll round trip)
        "neon": -(-sessions // concurrency) * lat["neon"] + lat["neon"],
        "posthog": -(-2 * sessions // concurrency) * lat["posthog"],
    }
    binding = max(terms, key=lambda k: terms[k])
    return {"terms": terms, "bound_s": terms[binding], "binding": binding}


# -- A: the product ------------------------------------------------------------------------


async def product(fake, home, sessions: int) -> dict[str, Any]:
    settings = c.cloud_settings(fake, home, **LIMITS)
    runtime = c.make_runtime(settings)
    try:
        for name in (*c.CLOUD_PROVIDERS, "local-folder"):
            runtime.provider(name)
        keys = [Session.new() for _ in range(sessions)]
        started = time.perf_counter()
        reports = await asyncio.gather(*(provision_services(runtime, s, runtime.plan("local")) for s in keys))
        wall = time.perf_counter() - started
    finally:
        await c.close_runtime(runtime)
    failed = [(r.session.key, [f"{x.name}: {x.error}" for x in r.results if x.error]) for r in reports if not r.ok]
    return {"wall_s": wall, "not_ok": len(failed), "failed": failed[:3]}


# -- B: a minimal script doing the same requests (nothing of ours) -----------------------------


async def baseline(fake, sessions: int) -> dict[str, Any]:
    """The same requests as the product's sessions, paced the simplest correct way: GitHub's
    mutations under one lock, each start >= 1 s after the previous; Resend's requests each
    >= 0.5 s after the previous; 8 in flight per provider."""
    auth = {"Authorization": "Bearer bench"}
    gap, rps, limit = DEFAULTS.github_mutation_gap_s, DEFAULTS.resend_requests_per_second, DEFAULTS.concurrency
    slots = {p: asyncio.Semaphore(limit) for p in c.CLOUD_PROVIDERS}
    github_lock, resend_lock = asyncio.Lock(), asyncio.Lock()
    last = {"github": -1e9, "resend": -1e9}

    async with httpx.AsyncClient(headers=auth, trust_env=False, timeout=60) as http:
        async def paced(provider: str, lock: asyncio.Lock, spacing: float, method: str, url: str, **kw: Any):
            async with lock:
                wait = last[provider] + spacing - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                last[provider] = time.monotonic()
                if provider == "github":  # one mutation in flight: hold the lock through it
                    async with slots[provider]:
                        return await http.request(method, url, **kw)
            async with slots[provider]:
                return await http.request(method, url, **kw)

        async def plain(provider: str, method: str, url: str, **kw: Any):
            async with slots[provider]:
                return await http.request(method, url, **kw)

        started = time.perf_counter()
        login = (await plain("github", "GET", fake.github_url + "/user")).json()["login"]
        assert login

        async def one(n: int) -> bool:
            name = f"mk0r-base{n:03d}{int(time.time() * 1000) % 100000:05d}"

            async def neon() -> None:
                r = await plain("neon", "POST", fake.neon_url + "/projects",
                                json={"project": {"name": name, "region_id": "aws-us-east-2", "pg_version": 17}})
                project = r.json()["project"]["id"]
                waited, started = 0.0, time.monotonic()
                while True:
                    ops = (await plain("neon", "GET", f"{fake.neon_url}/projects/{project}/operations")).json()
                    if all(o["status"] in ("finished", "skipped") for o in ops["operations"]):
                        return
                    waited = time.monotonic() - started
                    await asyncio.sleep(max(0.02, waited * 0.05))

            async def resend() -> None:
                await paced("resend", resend_lock, 1 / rps, "POST", fake.resend_url + "/segments", json={"name": f"{name} Users"})
                await paced("resend", resend_lock, 1 / rps, "POST", fake.resend_url + "/api-keys",
                            json={"name": name, "permission": "sending_access"})

            async def github() -> None:
                await paced("github", github_lock, gap, "POST", fake.github_url + "/user/repos", json={"name": name, "private": True})

            async def posthog() -> None:
                await plain("posthog", "POST", fake.posthog_url + "/flags", params={"v": "2"}, json={"api_key": "phc_bench", "distinct_id": name})
                await plain("posthog", "POST", fake.posthog_url + "/i/v0/e/",
                            json={"api_key": "phc_bench", "event": "mk0r_app_provisioned", "distinct_id": name})

            await asyncio.gather(neon(), resend(), github(), posthog())
            return True

        done = await asyncio.gather(*(one(n) for n in range(sessions)), return_exceptions=True)
        wall = time.perf_counter() - started
    errors = [repr(d) for d in done if d is not True]
    return {"wall_s": wall, "not_ok": len(errors), "failed": errors[:3]}


async def one_run(kind: str, sessions: int) -> dict[str, Any]:
    with c.fake_upstream() as fake, c.scratch_dir("mk0r-bench-many-") as home:
        with httpx.Client(trust_env=False, timeout=30) as warm:  # the fake's first request is slow to read
            for url in (fake.github_url + "/user", fake.resend_url + "/domains", fake.neon_url + "/users/me"):
                warm.get(url, headers={"Authorization": "Bearer warm"})
        fake.control(reset_counters=True)
        result = await (product(fake, home, sessions) if kind == "product" else baseline(fake, sessions))
        result["pacing"] = pacing_report(fake.state())
    return result


def main() -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1, help="runs of each, alternated (A B A B)")
    args = parser.parse_args()
    info = c.print_header(f"{args.sessions} sessions at once in one process, at the default limits", "many_sessions.py")
    print("injected latency per request (ms):", c.LATENCY_MS)
    print(f"limits (the product's defaults): GitHub gap {DEFAULTS.github_mutation_gap_s:g} s start to start, "
          f"{DEFAULTS.github_creates_per_minute} creates/min, {DEFAULTS.github_creates_per_hour}/h; Resend "
          f"{DEFAULTS.resend_requests_per_second:g} req/s; Neon {DEFAULTS.neon_requests_per_minute}/min; "
          f"{DEFAULTS.concurrency} in flight per provider")
    b = bound(args.sessions)
    print("bound: " + ", ".join(f"{k} {v:.2f} s" for k, v in b["terms"].items()) + f" -> {b['bound_s']:.2f} s ({b['binding']})")
    print()
    runs: dict[str, list[dict[str, Any]]] = {"product": [], "baseline": []}
    for n in range(args.runs):
        for kind in ("product", "baseline"):
            result = c.run(one_run(kind, args.sessions))
            result["load"] = os.getloadavg()[0]
            runs[kind].append(result)
            p = result["pacing"]
            print(f"run {n + 1} {kind:8s}: wall {result['wall_s']:.2f} s = {result['wall_s'] / b['bound_s']:.3f} x bound, "
                  f"not ok {result['not_ok']}, GitHub max mutations in flight {p['github_max_mutations_in_flight']}, "
                  f"min gap {p['github_min_mutation_gap_s'] or 0:.3f} s, creates/min max {p['github_creates_max_per_minute']}, "
                  f"Resend max/s {p['resend_max_per_second']}, Neon max/min {p['neon_max_per_minute']}, "
                  f"in flight {p['max_in_flight']}, load {result['load']:.2f}", flush=True)
            if result["failed"]:
                print("   failures:", result["failed"])
    print()
    rows = []
    for kind, results in runs.items():
        walls = [r["wall_s"] for r in results]
        rows.append([kind, statistics.median(walls), min(walls), max(walls), statistics.median(walls) / b["bound_s"],
                     sum(r["not_ok"] for r in results)])
    print(c.table(["", "median wall s", "min s", "max s", "median / bound", "sessions not ok"], rows))
    product_runs = runs["product"]
    worst = max(r["wall_s"] for r in product_runs) / b["bound_s"]
    pacing = [r["pacing"] for r in product_runs]
    goals = [
        c.Goal("product wall / bound (worst run)", worst, 1.1),
        c.Goal("sessions not ok", sum(r["not_ok"] for r in product_runs), 0),
        c.Goal("GitHub mutations in flight", max(p["github_max_mutations_in_flight"] for p in pacing), 1),
        c.Goal("GitHub creates in any minute", max(p["github_creates_max_per_minute"] for p in pacing),
               DEFAULTS.github_creates_per_minute),
        c.Goal("Resend requests in any second (50 ms slack)", max(p["resend_max_per_second"] for p in pacing),
               DEFAULTS.resend_requests_per_second),
        c.Goal("Neon requests in any minute", max(p["neon_max_per_minute"] for p in pacing), DEFAULTS.neon_requests_per_minute),
        c.Goal("max in flight per provider", max(max(p["max_in_flight"].values()) for p in pacing), DEFAULTS.concurrency),
    ]
    return c.finish("many_sessions", info, goals, {
        "sessions": args.sessions, "bound": b, "runs": runs,
        "load_at_end": os.getloadavg()[0],
    })


if __name__ == "__main__":
    raise SystemExit(main())
