"""Orphan teardown of 500 resources that exist upstream with no ledger row.

The resources are made in the fake directly (no latency while making them): Neon projects,
Resend segments and API keys, GitHub repositories, all named `mk0r-*`. Then, with the
injected latency on: `find_orphans` (paginated discovery of every provider) and
`delete_orphans` at the product's default limits (issue 17: GitHub's mutations one at a time,
1 s start to start; Resend 2 requests/s; Neon 700/min; 8 in flight per provider), kept by the
product's own pacing (core/budgets.py). The bound for the deletes is what those limits allow;
the fake's own counters (fakeupstream/pacing.py) prove no limit was exceeded.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import _common as c
import httpx

from fakeupstream.pacing import pacing_report
from mk0r_tui.core.config import Settings
from mk0r_tui.engine.teardown import delete_orphans, find_orphans

sys.path.insert(0, str(c.ROOT / "tests"))  # _common.cloud_settings imports the test kit

#: how the orphans are spread (Resend's share is half segments, half keys)
SHARE = {"neon": 0.4, "resend": 0.4, "github": 0.2}


def make_orphans(fake, total: int) -> dict[str, int]:
    counts = {"neon": round(total * SHARE["neon"]), "github": round(total * SHARE["github"])}
    counts["resend"] = total - counts["neon"] - counts["github"]
    auth = {"Authorization": "Bearer bench"}
    with httpx.Client(headers=auth, trust_env=False, timeout=10) as http:
        for i in range(counts["neon"]):
            r = http.post(fake.neon_url + "/projects",
                          json={"project": {"name": f"mk0r-orphan{i:05d}", "region_id": "aws-us-east-2", "pg_version": 17}})
            r.raise_for_status()
        for i in range(counts["resend"]):
            if i % 2 == 0:
                r = http.post(fake.resend_url + "/segments", json={"name": f"mk0r-orphan{i:05d} Users"})
            else:
                r = http.post(fake.resend_url + "/api-keys", json={"name": f"mk0r-orphan{i:05d}", "permission": "sending_access"})
            r.raise_for_status()
        for i in range(counts["github"]):
            r = http.post(fake.github_url + "/user/repos", json={"name": f"mk0r-orphan{i:05d}", "private": True})
            r.raise_for_status()
    return counts


def delete_bound(counts: dict[str, int], settings) -> dict[str, dict]:
    bounds = {}
    for provider, n in counts.items():
        latency_s = c.LATENCY_MS[provider] / 1000
        limit = settings.concurrency_for(provider)
        terms = {"in-flight limit": math.ceil(n / limit) * latency_s}
        if provider == "resend":  # one request every 1/rps s, start to start
            terms["requests/s"] = (n - 1) / settings.resend_requests_per_second + latency_s
        if provider == "github":  # one at a time, `gap` start to start (a longer delete holds the next)
            terms["one mutation at a time"] = (n - 1) * max(latency_s, settings.github_mutation_gap_s) + latency_s
        if provider == "neon":
            terms["requests/min"] = max(0, n - settings.neon_requests_per_minute) / settings.neon_requests_per_minute * 60
        binding = max(terms, key=terms.get)
        bounds[provider] = {"limit": limit, "deletes": n, "terms": terms, "bound_s": terms[binding], "binding": binding}
    return bounds


def client_gaps(runtime) -> dict[str, float | None]:
    """The smallest start-to-start gap the budgets recorded (each start moved to when its
    request's bytes left): the client's side of the fake's arrival times."""
    out: dict[str, float | None] = {}
    for provider, what in (("github", "mutations"), ("resend", "rate")):
        api = runtime.provider(provider).api
        _lane, rules = api.rules_for("DELETE", "/")
        key = next(r.key for r in rules if r.key.endswith(":" + what))
        starts = api.budgets.store.starts(key)
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        out[provider] = min(gaps) if gaps else None
    return out


async def bench(total: int, overrides: dict) -> dict:
    with c.fake_upstream(latency_ms={p: 0 for p in c.LATENCY_MS}) as fake, c.scratch_dir("mk0r-bench-orphans-") as home:
        counts = make_orphans(fake, total)
        fake.control(latency_ms=dict(c.LATENCY_MS), reset_counters=True)
        settings = c.cloud_settings(fake, home, **overrides)
        runtime = c.make_runtime(settings)
        try:
            started = time.perf_counter()
            scan = await find_orphans(runtime, older_than_s=0.0)  # made seconds ago
            find_s = time.perf_counter() - started
            scan_state = fake.state()
            fake.control(reset_counters=True)
            started = time.perf_counter()
            # made in the fake directly, unmarked: no ledger's, so foreign; deleted on purpose
            outcomes = await delete_orphans(runtime, scan.orphans, include_foreign=True)
            delete_s = time.perf_counter() - started
            state = fake.state()
            pacing = pacing_report(state)
            pacing["client"] = client_gaps(runtime)
        finally:
            await c.close_runtime(runtime)
    left = {"neon": len(state["neon"]), "resend": len(state["resend"]["segments"]) + len(state["resend"]["api_keys"]),
            "github": len(state["github"])}
    by_outcome: dict[str, int] = {}
    for outcome in outcomes:
        by_outcome[outcome.outcome] = by_outcome.get(outcome.outcome, 0) + 1
    return {"settings": settings, "counts": counts, "found": len(scan.orphans), "warnings": scan.warnings,
            "find_s": find_s, "delete_s": delete_s, "scan_state": scan_state, "state": state,
            "left": left, "by_outcome": by_outcome, "pacing": pacing}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orphans", type=int, default=500)
    args = parser.parse_args()
    info = c.print_header(f"orphan teardown of {args.orphans} resources", "orphan_teardown.py")
    defaults = Settings()  # the product's defaults (the test kit's fake settings turn the gaps off)
    overrides = {"resend_requests_per_second": defaults.resend_requests_per_second,
                 "github_mutation_gap_s": defaults.github_mutation_gap_s}
    print("injected latency per request (ms):", c.LATENCY_MS)
    result = c.run(bench(args.orphans, overrides))
    settings, state = result["settings"], result["state"]
    print(f"configured: MK0R_CONCURRENCY={settings.concurrency}, MK0R_RESEND_RPS={settings.resend_requests_per_second:g}, "
          f"MK0R_GITHUB_MUTATION_GAP_S={settings.github_mutation_gap_s:g}")
    print(f"made upstream: {result['counts']}  found as orphans: {result['found']}  "
          f"deleted: {result['by_outcome']}  left upstream: {result['left']}")
    if result["warnings"]:
        print("scan warnings:", result["warnings"])
    print()
    scan_in_flight = c.max_in_flight(result["scan_state"])
    in_flight = c.max_in_flight(state)
    bounds = delete_bound(result["counts"], settings)
    rows = []
    for p, b in bounds.items():
        rows.append([p, b["limit"], b["deletes"], state["requests"][p]["by_route"].get(next(
            (r for r in state["requests"][p]["by_route"] if r.startswith("DELETE")), ""), 0),
            result["scan_state"]["requests"][p]["total"], scan_in_flight[p], in_flight[p], b["bound_s"], b["binding"]])
    print(c.table(["provider", "limit", "orphans", "DELETEs served", "scan requests", "scan max in flight",
                   "delete max in flight", "delete bound s", "bound set by"], rows))
    for p in bounds:
        print(f"  {p} delete requests by route: {c.requests_by_route(state, p)}")
    bound_s = max(b["bound_s"] for b in bounds.values())
    print()
    print(c.table(["figure", "value"], [
        ["find_orphans s", result["find_s"]],
        ["delete_orphans s", result["delete_s"]],
        ["delete bound s", bound_s],
        ["delete / bound", result["delete_s"] / bound_s],
    ]))
    deleted = result["by_outcome"].get("deleted", 0)
    pacing = result["pacing"]
    print(f"the fake's counters: GitHub max mutations in flight {pacing['github_max_mutations_in_flight']}, min gap "
          f"{pacing['github_min_mutation_gap_s'] or 0:.3f} s; Resend max in any second {pacing['resend_max_per_second']}; "
          f"Neon max in any minute {pacing['neon_max_per_minute']}; load at end {os.getloadavg()[0]:.2f}")
    print(f"the client's own start-to-start gaps (when each request's bytes left): GitHub min "
          f"{pacing['client']['github'] or 0:.3f} s, Resend min {pacing['client']['resend'] or 0:.3f} s")
    goals = [c.Goal("orphans not found", args.orphans - result["found"], 0),
             c.Goal("orphans left upstream", sum(result["left"].values()), 0),
             c.Goal("delete_orphans / bound", result["delete_s"] / bound_s, 1.1),
             c.Goal("GitHub mutations in flight", pacing["github_max_mutations_in_flight"], 1),
             c.Goal("Resend requests in any second (50 ms slack)", pacing["resend_max_per_second"],
                    settings.resend_requests_per_second),
             c.Goal("Neon requests in any minute", pacing["neon_max_per_minute"], settings.neon_requests_per_minute)]
    goals += [c.Goal(f"{p} max in flight (configured limit)", max(in_flight[p], scan_in_flight[p]), bounds[p]["limit"])
              for p in bounds]
    return c.finish("orphan_teardown", info, goals, {
        "orphans": args.orphans, "made": result["counts"], "found": result["found"], "deleted": deleted,
        "outcomes": result["by_outcome"], "left": result["left"], "find_s": result["find_s"],
        "delete_s": result["delete_s"], "delete_bound_s": bound_s, "bounds": bounds,
        "scan_max_in_flight": scan_in_flight, "delete_max_in_flight": in_flight,
    })


if __name__ == "__main__":
    raise SystemExit(main())
