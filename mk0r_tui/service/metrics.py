"""Prometheus metrics of one service process, fed by the runs' events (an event sink), so they
count what the orchestrator did whoever asked for it. No session id is ever a label: the labels
are provider names, outcomes, operations and job states (bounded sets).

Jobs queued/running/failed are the queue's (all processes'), read from Postgres at each scrape.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

from mk0r_tui.core.events import (
    Event,
    ProviderFailed,
    ProviderProgressed,
    ProviderRetrying,
    ProviderSkipped,
    ProviderSucceeded,
    ResourceDeleted,
    SessionProvisioned,
    SessionTornDown,
    TeardownFailed,
)

#: a provider's client holding requests for a window the provider announced (providers/http.py)
_BUDGET_WAIT = re.compile(r"rate limit reached: waiting (\d+(?:\.\d+)?)s")
#: seconds: from a fast local create to a slow Neon project
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
JOB_STATES = ("queued", "running", "succeeded", "failed")


def is_rate_limit(reason: str) -> bool:
    """A retry that waits for a provider's rate limit (429, a secondary limit, a reset header)."""
    text = reason.lower()
    return "429" in text or "rate limit" in text or "rate-limit" in text or "retry-after" in text


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # the `_created` series double the text and say nothing a scrape needs
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.provisions = Counter("mk0r_provisions", "Provider runs of provisions, by provider and outcome (ok, failed, skipped).",
                                  ["provider", "outcome"], registry=r)
        self.teardowns = Counter("mk0r_teardowns", "Resource deletes of teardowns, by provider and outcome (deleted, already_gone, failed).",
                                 ["provider", "outcome"], registry=r)
        self.sessions = Counter("mk0r_sessions", "Sessions provisioned or torn down, by operation and outcome.",
                                ["operation", "outcome"], registry=r)
        self.duration = Histogram("mk0r_provider_duration_seconds", "Time of one provider's provision or one resource's delete.",
                                  ["provider", "operation"], buckets=BUCKETS, registry=r)
        self.retries = Counter("mk0r_provider_retries", "Provider requests retried, by provider.", ["provider"], registry=r)
        self.rate_limit_waits = Counter("mk0r_rate_limit_waits", "Waits for a provider's rate limit, by provider.", ["provider"], registry=r)
        self.rate_limit_wait_seconds = Counter("mk0r_rate_limit_wait_seconds", "Seconds waited for providers' rate limits.",
                                               ["provider"], registry=r)
        self.jobs = Gauge("mk0r_jobs", "Jobs in the queue (every process's) by state: queued, running, succeeded, failed.",
                          ["state"], registry=r)
        self.requests = Counter("mk0r_http_requests", "HTTP requests served, by method, route and status.",
                                ["method", "route", "status"], registry=r)

    def sink(self, event: Event) -> None:
        """The event sink: every event of every run of this process passes here."""
        if isinstance(event, ProviderSucceeded):
            self._provider(event.provider, "ok", event.result.latency_ms)
        elif isinstance(event, ProviderFailed):
            self._provider(event.provider, "failed", event.result.latency_ms)
        elif isinstance(event, ProviderSkipped):
            self.provisions.labels(event.provider, "skipped").inc()
        elif isinstance(event, ProviderRetrying):
            self.retries.labels(event.provider).inc()
            if is_rate_limit(event.reason):
                self.rate_limit_waits.labels(event.provider).inc()
                self.rate_limit_wait_seconds.labels(event.provider).inc(max(0.0, event.delay_s))
        elif isinstance(event, ProviderProgressed):
            match = _BUDGET_WAIT.search(event.message)
            if match:
                self.rate_limit_waits.labels(event.provider).inc()
                self.rate_limit_wait_seconds.labels(event.provider).inc(float(match.group(1)))
        elif isinstance(event, ResourceDeleted):
            self.teardowns.labels(event.provider, "already_gone" if event.already_gone else "deleted").inc()
            self.duration.labels(event.provider, "teardown").observe(max(0.0, event.latency_ms) / 1000)
        elif isinstance(event, TeardownFailed):
            self.teardowns.labels(event.provider, "failed").inc()
        elif isinstance(event, SessionProvisioned):
            self.sessions.labels("provision", "ok" if event.ok else "failed").inc()
        elif isinstance(event, SessionTornDown):
            self.sessions.labels("teardown", "ok" if event.ok else "failed").inc()

    def _provider(self, provider: str, outcome: str, latency_ms: float | None) -> None:
        self.provisions.labels(provider, outcome).inc()
        if latency_ms is not None:
            self.duration.labels(provider, "provision").observe(max(0.0, latency_ms) / 1000)

    def set_jobs(self, counts: dict[str, int]) -> None:
        for state in JOB_STATES:
            self.jobs.labels(state).set(counts.get(state, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["JOB_STATES", "Metrics", "is_rate_limit"]
