"""Plain-text descriptions of events and reports, shared by the CLI and the log (no secrets)."""

from __future__ import annotations

from collections.abc import Iterable

from mk0r_tui.core.envfile import scrub
from mk0r_tui.core.errors import Mk0rError
from mk0r_tui.core.events import (
    Event,
    ProviderFailed,
    ProviderProgressed,
    ProviderRetrying,
    ProviderSkipped,
    ProviderStarted,
    ProviderSucceeded,
    ResourceDeleted,
    RunStarted,
    SessionProvisioned,
    SessionTornDown,
    TeardownFailed,
    TeardownStarted,
)


def describe_event(event: Event) -> str:
    """One line, no secret: what happened to which provider."""
    p = event.provider
    match event:
        case ProviderStarted():
            return f"{p}: started ({event.slot.value})"
        case ProviderProgressed():
            return f"{p}: {event.message}"
        case ProviderRetrying():
            return f"{p}: retrying {event.attempt}/{event.max_attempts} in {event.delay_s:.1f}s ({event.reason})"
        case ProviderSucceeded():
            r = event.result
            extra = f", {r.note}" if r.note else ""
            return f"{p}: ok in {r.latency_ms or 0:.0f} ms ({r.attempts} attempt{'s' if r.attempts != 1 else ''}{extra})"
        case ProviderFailed():
            return f"{p}: FAILED after {event.result.latency_ms or 0:.0f} ms: {event.result.error}"
        case ProviderSkipped():
            return f"{p}: skipped ({event.result.note})"
        case TeardownStarted():
            return f"{p}: deleting {event.resource.kind} {event.resource.name}"
        case ResourceDeleted():
            what = "was already gone" if event.already_gone else f"deleted in {event.latency_ms:.0f} ms"
            return f"{p}: {event.resource.kind} {event.resource.name} {what}"
        case TeardownFailed():
            return f"{p}: could not delete {event.resource.kind} {event.resource.name}: {event.error}"
        case SessionProvisioned():
            return "all providers settled" + ("" if event.ok else " (with failures)")
        case RunStarted():
            return f"{event.kind} started" + (f" → {event.target}" if event.target else "")
        case SessionTornDown():
            return f"teardown finished: session is {event.state.replace('_', ' ')}"
    return f"{p}: {type(event).__name__}"


def describe_error(exc: BaseException, secrets: Iterable[str]) -> str:
    """One line for an operator: what failed and why, never a traceback, never a secret."""
    if isinstance(exc, TimeoutError):
        text = "timed out"
    elif isinstance(exc, Mk0rError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return scrub(text, secrets)
