"""The event log pane: what happened to the selected session, when, with timings. No secrets:
every line comes from `core.render.describe_event`, which never includes one."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable

from rich.text import Text
from textual.widgets import RichLog

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
    def from_event(cls, event: Event, *, since: float | None = None) -> "LogLine":
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


_LEVEL_STYLE = {"info": "", "ok": "green", "error": "bold red", "muted": "dim"}


def render_line(line: LogLine) -> Text:
    stamp = dt.datetime.fromtimestamp(line.at).strftime("%H:%M:%S.%f")[:-3]
    return Text.assemble((stamp, "dim"), "  ", (line.text, _LEVEL_STYLE[line.level]))


class EventLog(RichLog):
    """Shows one session's lines; `show` swaps the whole content when the selection changes."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_lines=LOG_LINES_KEPT, wrap=True, markup=False, highlight=False, **kwargs)

    def show(self, lines: Iterable[LogLine]) -> None:
        self.clear()
        for line in lines:
            self.write(render_line(line))

    def append(self, line: LogLine) -> None:
        self.write(render_line(line))
