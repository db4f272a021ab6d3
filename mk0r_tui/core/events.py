"""Typed, immutable events the orchestrator emits. A sink is any callable taking an Event.

The orchestrator knows nothing of who listens: the CLI prints them, the dashboard posts them
as Textual messages. Names are past tense: each event says something that already happened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from mk0r_tui.core.models import ProviderResult, ResourceRef, Slot


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
