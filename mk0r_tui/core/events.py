"""Typed, immutable events the orchestrator emits. A sink is any callable taking an Event.

The orchestrator knows nothing of who listens: the CLI prints them, the dashboard posts them
as Textual messages. Names are past tense: each event says something that already happened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from mk0r_tui.core.models import ProviderResult, ResourceRef, Slot, Status


def _now() -> float:
    return time.time()


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    session: str  # the session key
    provider: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderStarted(Event):
    slot: Slot


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderProgressed(Event):
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderRetrying(Event):
    attempt: int  # the attempt about to be made (2 = first retry)
    max_attempts: int
    delay_s: float
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderSucceeded(Event):
    result: ProviderResult


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderFailed(Event):
    result: ProviderResult


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderSkipped(Event):
    result: ProviderResult


@dataclass(frozen=True, slots=True, kw_only=True)
class TeardownStarted(Event):
    resource: ResourceRef


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceDeleted(Event):
    resource: ResourceRef
    already_gone: bool = False
    latency_ms: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TeardownFailed(Event):
    resource: ResourceRef
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionProvisioned(Event):
    """All providers and the target settled; `provider` is "*". `state` is the word the ledger
    recorded for the session (core/states.py decides it)."""

    ok: bool
    state: str
    env_file: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    """A provisioning or teardown run began (any process); `provider` is "*". `state` is the
    word the ledger recorded for the session as the run started."""

    kind: str  # provision | teardown
    state: str
    target: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionTornDown(Event):
    """Every delete of a teardown settled; `provider` is "*", `state` the ledger's word
    (deleted, or teardown_incomplete)."""

    ok: bool
    state: str


#: every event class by name: what the journal's `kind` column holds
EVENT_KINDS: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        ProviderStarted, ProviderProgressed, ProviderRetrying, ProviderSucceeded, ProviderFailed, ProviderSkipped,
        TeardownStarted, ResourceDeleted, TeardownFailed, SessionProvisioned, RunStarted, SessionTornDown,
    )
}

#: the envelope every event has; the rest are the event's own fields
_ENVELOPE = ("session", "provider", "at")


def _result_to_dict(result: ProviderResult) -> dict[str, Any]:
    """What a panel shows of a result: never its env (that is the .env's business, and secret).
    The latency is kept exact (not rounded as in `to_json`): the reader rebuilds the same event."""
    return {**result.to_json(), "latency_ms": result.latency_ms}


def _result_from_dict(data: dict[str, Any]) -> ProviderResult:
    return ProviderResult(
        data["name"], Slot(data["slot"]), Status(data["status"]), data.get("latency_ms"), int(data.get("attempts") or 0),
        error=data.get("error"), note=data.get("note"),
        resources=tuple(_ref_from_dict(r) for r in data.get("resources") or ()),
        from_pool=bool(data.get("from_pool")),
    )


def _ref_from_dict(data: dict[str, Any]) -> ResourceRef:
    return ResourceRef(data["provider"], data["kind"], data["name"], data.get("id"), data.get("url"))


def event_fields(event: Event) -> dict[str, Any]:
    """The event's own fields (not session, provider, at) as JSON-ready values: what the journal
    stores and `events --json` prints. A result carries no env; the caller scrubs the text."""
    out: dict[str, Any] = {}
    for f in fields(event):
        if f.name in _ENVELOPE:
            continue
        value = getattr(event, f.name)
        if isinstance(value, ProviderResult):
            value = _result_to_dict(value)
        elif isinstance(value, ResourceRef):
            value = value.to_json()
        elif isinstance(value, Slot):
            value = value.value
        out[f.name] = value
    return out


def event_from_fields(kind: str, session: str, provider: str, at: float, data: dict[str, Any]) -> Event:
    """The inverse of `event_fields`: the very event object (an unknown kind is a KeyError)."""
    cls = EVENT_KINDS[kind]
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in _ENVELOPE or f.name not in data:
            continue
        value = data[f.name]
        if f.name == "result":
            value = _result_from_dict(value)
        elif f.name == "resource":
            value = _ref_from_dict(value)
        elif f.name == "slot":
            value = Slot(value)
        values[f.name] = value
    return cls(session=session, provider=provider, at=at, **values)


class EventSink(Protocol):
    def __call__(self, event: Event) -> None: ...


def null_sink(event: Event) -> None:
    """A sink that drops everything."""


class Collector:
    """A sink that keeps every event, for tests and for the report."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]
