"""What a job runs: the engine's orchestrator on the process's one runtime (one provider instance
each, so HTTP pools and rate limits are shared by every session the process runs), with the
service's sinks (metrics, the event log). The same JSON shapes as the CLI (engine/library.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mk0r_tui.core.errors import Mk0rError
from mk0r_tui.core.events import Event, EventSink
from mk0r_tui.core.models import Session
from mk0r_tui.core.render import describe_event
from mk0r_tui.engine.library import plan_run, provision_report_json, teardown_report_json
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.service.metrics import Metrics

log = logging.getLogger("mk0r_tui.service.jobs")
events_log = logging.getLogger("mk0r_tui.service.events")


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class JobRunner:
    def __init__(self, runtime: Runtime, metrics: Metrics) -> None:
        self.runtime = runtime
        self.metrics = metrics

    def sink(self, slug: str) -> EventSink:
        metrics = self.metrics

        def sink(event: Event) -> None:
            metrics.sink(event)
            events_log.info(describe_event(event), extra={"slug": slug, "provider": event.provider})

        return sink

    async def provision(self, key: str, target: str | None, sandbox: str | None) -> tuple[dict[str, Any], dict[str, str]]:
        """The `provision --json` dict (env masked) and the env itself (for a local `reveal`)."""
        from mk0r_tui.engine.orchestrator import provision_services

        session = Session.parse(key)
        runtime = self.runtime
        own = None
        if sandbox:
            # a sandbox is this run's setting, never the process's: a runtime of its own that
            # shares the ledger (and closes only its providers)
            own = Runtime(runtime.settings, runtime.credentials, runtime.ledger, registry=runtime.registry)
            runtime = own
        started = time.monotonic()
        try:
            plan = plan_run(runtime, target, sandbox)
            try:
                report = await provision_services(runtime, session, plan, sink=self.sink(session.slug))
            except BaseExceptionGroup as group:
                leaf = _leaf(group)
                if isinstance(leaf, Mk0rError):
                    raise leaf from None
                raise
        finally:
            if own is not None:
                await own.aclose()
        log.info("provisioned %s in %.0f ms: %s", session.key, (time.monotonic() - started) * 1000,
                 "ok" if report.ok else "failed: " + ", ".join(report.errors))
        return provision_report_json(report, reveal=False), dict(report.env)

    async def teardown(self, key: str) -> dict[str, Any]:
        from mk0r_tui.engine.teardown import teardown_session

        row = self.runtime.ledger.require_session(key)
        try:
            report = await teardown_session(self.runtime, row.key, sink=self.sink(row.slug))
        except BaseExceptionGroup as group:
            leaf = _leaf(group)
            if isinstance(leaf, Mk0rError):
                raise leaf from None
            raise
        log.info("tore down %s: %s", row.key, "ok" if report.ok else "failed")
        return teardown_report_json(report)


__all__ = ["JobRunner"]
