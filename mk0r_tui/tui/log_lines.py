"""One line of a session's event log, with no Textual in sight: the app keeps every session's
lines from start-up on, while the log widget (and the Rich machinery it imports) is only needed
once the detail pane mounts, right after the first frame."""

from __future__ import annotations

from dataclasses import dataclass

from mk0r_tui.core.events import (
    Event,
    ProviderFailed,
    ProviderSkipped,
    ProviderSucceeded,
    ResourceDeleted,
    SessionProvisioned,
    TeardownFailed,
)
from mk0r_tui.core.render import describe_event

LOG_LINES_KEPT = 500


@dataclass(frozen=True, slots=True)
class LogLine:
    at: float
    text: str
    level: str = "info"  # info | ok | error | muted

    @classmethod
    def from_event(cls, event: Event, *, since: float | None = None) -> LogLine:
        text = describe_event(event)
        if since is not None and not isinstance(event, SessionProvisioned):
            text = f"+{max(0.0, event.at - since):6.2f}s  {text}"
        return cls(event.at, text, _level(event))


def _level(event: Event) -> str:
    if isinstance(event, (ProviderFailed, TeardownFailed)):
        return "error"
    if isinstance(event, SessionProvisioned):
        return "ok" if event.ok else "error"
    if isinstance(event, (ProviderSucceeded, ResourceDeleted)):
        return "ok"
    if isinstance(event, ProviderSkipped):
        return "muted"
    return "info"
