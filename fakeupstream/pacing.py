"""What the fake's own counters say about pacing (issues 12 and 17): from `GET /_state`'s
`requests[provider]`, whether a client kept GitHub's one mutation at a time, its creates per
window, Resend's requests per second, Neon's requests per minute.

Arrival times are the fake's (when it read the request), so a request the client released on
time may arrive a few milliseconds early or late; `slack_s` shrinks each window by that much.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["arrivals", "max_in_window", "pacing_report"]


def arrivals(counters: dict[str, Any], *, method: str | None = None, route: str | None = None,
             routes: Iterable[str] | None = None) -> list[float]:
    """Arrival times (seconds, the fake's monotonic clock) of the requests that match."""
    wanted = set(routes) if routes is not None else None
    return sorted(at for at, m, r in counters.get("arrivals", [])
                  if (method is None or m == method) and (route is None or r == route)
                  and (wanted is None or r in wanted))


def max_in_window(times: Sequence[float], span_s: float, slack_s: float = 0.0) -> int:
    """The most arrivals inside any half-open window of `span_s - slack_s` seconds."""
    ordered = sorted(times)
    width = max(span_s - slack_s, 0.0)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - width:
            start += 1
        best = max(best, end - start + 1)
    return best


def pacing_report(state: dict[str, Any], *, minute_s: float = 60.0, slack_s: float = 0.05,
                  github_create_routes: Iterable[str] = ("POST /user/repos", "POST /orgs/{org}/repos")) -> dict[str, Any]:
    """The figures a pacing test asserts and a bench prints."""
    requests = state["requests"]
    github, resend, neon = requests["github"], requests["resend"], requests["neon"]
    creates = arrivals(github, routes=github_create_routes)
    mutations = arrivals(github, method=None)
    mutation_times = [at for at, m, _r in github.get("arrivals", []) if m not in ("GET", "HEAD", "OPTIONS")]
    gaps = [b - a for a, b in zip(sorted(mutation_times), sorted(mutation_times)[1:])]
    return {
        "github_max_mutations_in_flight": github.get("max_mutations_in_flight", 0),
        "github_creates": len(creates),
        "github_creates_max_per_minute": max_in_window(creates, minute_s, slack_s),
        "github_creates_max_per_hour": max_in_window(creates, 60 * minute_s, slack_s),
        "github_min_mutation_gap_s": min(gaps) if gaps else None,
        "github_requests": len(mutations),
        "resend_requests": len(arrivals(resend)),
        "resend_max_per_second": max_in_window(arrivals(resend), 1.0, slack_s),
        "neon_requests": len(arrivals(neon)),
        "neon_max_per_minute": max_in_window(arrivals(neon), minute_s, slack_s),
        "max_in_flight": {p: requests[p]["max_in_flight"] for p in ("neon", "resend", "github", "posthog")},
    }
