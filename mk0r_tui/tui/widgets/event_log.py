"""The event log pane: what happened to the selected session, when, with timings. No secrets:
every line comes from `core.render.describe_event`, which never includes one.

Every word stays readable: lines are wrapped at the pane's width (never at a fixed minimum the
pane may be narrower than), wrapped again when the pane's width changes, and kept in time order
(a line that arrives late, e.g. from another process's journal, goes where its time says)."""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable
from typing import Unpack

from rich.text import Text
from textual import events
from textual.widgets import RichLog

from mk0r_tui.tui.log_lines import LOG_LINES_KEPT, LogLine
from mk0r_tui.tui.widgets.options import WidgetOptions

_LEVEL_STYLE = {"info": "", "ok": "green", "error": "bold red", "muted": "dim"}
#: below this width the stamp drops its milliseconds, leaving the words more room
NARROW_LOG = 60


def render_line(line: LogLine, *, narrow: bool = False) -> Text:
    stamp = dt.datetime.fromtimestamp(line.at).strftime("%H:%M:%S" if narrow else "%H:%M:%S.%f")
    if not narrow:
        stamp = stamp[:-3]
    return Text.assemble((stamp, "dim"), " " if narrow else "  ", (line.text, _LEVEL_STYLE[line.level]))


class EventLog(RichLog):
    """Shows one session's lines; `show` swaps the whole content when the selection changes."""

    def __init__(self, **kwargs: Unpack[WidgetOptions]) -> None:
        super().__init__(max_lines=LOG_LINES_KEPT, wrap=True, markup=False, highlight=False, min_width=1, **kwargs)
        self._log_lines: list[LogLine] = []
        self._rendered_width = 0

    @property
    def log_lines(self) -> tuple[LogLine, ...]:
        return tuple(self._log_lines)

    def _narrow(self) -> bool:
        return 0 < self.scrollable_content_region.width < NARROW_LOG

    def _write_all(self) -> None:
        self.clear()
        narrow = self._narrow()
        self._rendered_width = self.scrollable_content_region.width
        for line in self._log_lines:
            self.write(render_line(line, narrow=narrow), scroll_end=False)
        self.scroll_end(animate=False, immediate=True)

    def show(self, lines: Iterable[LogLine]) -> None:
        self._log_lines = sorted(lines, key=lambda line: line.at)[-LOG_LINES_KEPT:]
        self._write_all()

    def append(self, line: LogLine) -> None:
        if self._log_lines and line.at < self._log_lines[-1].at:
            bisect.insort(self._log_lines, line, key=lambda kept: kept.at)
            self._log_lines = self._log_lines[-LOG_LINES_KEPT:]
            self._write_all()
            return
        self._log_lines.append(line)
        del self._log_lines[:-LOG_LINES_KEPT]
        self.write(render_line(line, narrow=self._narrow()))

    def on_resize(self, event: events.Resize) -> None:
        """Wrap every line again at the new width: nothing is cut after a resize."""
        width = self.scrollable_content_region.width
        if not width:
            return
        if not self._size_known:
            self._size_known = True  # what was written before is written again, at this width
        if width != self._rendered_width:
            self._write_all()
