"""The event log pane: what happened to the selected session, when, with timings. No secrets:
every line comes from `core.render.describe_event`, which never includes one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Unpack

from rich.text import Text
from textual.widgets import RichLog

from mk0r_tui.tui.log_lines import LOG_LINES_KEPT, LogLine
from mk0r_tui.tui.widgets.options import WidgetOptions

_LEVEL_STYLE = {"info": "", "ok": "green", "error": "bold red", "muted": "dim"}


def render_line(line: LogLine) -> Text:
    stamp = dt.datetime.fromtimestamp(line.at).strftime("%H:%M:%S.%f")[:-3]
    return Text.assemble((stamp, "dim"), "  ", (line.text, _LEVEL_STYLE[line.level]))


class EventLog(RichLog):
    """Shows one session's lines; `show` swaps the whole content when the selection changes."""

    def __init__(self, **kwargs: Unpack[WidgetOptions]) -> None:
        super().__init__(max_lines=LOG_LINES_KEPT, wrap=True, markup=False, highlight=False, **kwargs)

    def show(self, lines: Iterable[LogLine]) -> None:
        self.clear()
        for line in lines:
            self.write(render_line(line))

    def append(self, line: LogLine) -> None:
        self.write(render_line(line))
