"""A provider's latency across sessions: a sparkline of its recent successful runs."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Unpack

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label, Sparkline

from mk0r_tui.tui.widgets.glyphs import format_duration
from mk0r_tui.tui.widgets.options import WidgetOptions

MIN_SPARKLINE_POINTS = 3


def summarize_latencies(latencies_ms: Sequence[float]) -> str:
    if not latencies_ms:
        return "no history yet"
    median = statistics.median(latencies_ms) / 1000
    return f"p50 {format_duration(median)} · n={len(latencies_ms)}"


class LatencyHistory(Horizontal):
    """`history  p50 812 ms · n=12 ▁▂▅▃▂`: fed from `Ledger.latency_history(provider)`."""

    latencies_ms: reactive[tuple[float, ...]] = reactive((), init=False)

    def __init__(self, latencies_ms: tuple[float, ...] = (), **kwargs: Unpack[WidgetOptions]) -> None:
        super().__init__(**kwargs)
        latencies_ms = tuple(latencies_ms)
        self.set_reactive(LatencyHistory.latencies_ms, latencies_ms)
        self.set_class(len(latencies_ms) < MIN_SPARKLINE_POINTS, "-empty", update=False)
        self._summary = Label(summarize_latencies(latencies_ms), classes="history-summary")
        self._sparkline = Sparkline(list(latencies_ms), classes="history-sparkline")

    def compose(self) -> ComposeResult:
        yield Label("history", classes="history-label")
        yield self._summary
        yield self._sparkline

    def watch_latencies_ms(self, latencies_ms: tuple[float, ...]) -> None:
        # the children are held, not queried: this may run before they mount or while the
        # panel is being replaced
        self._sparkline.data = list(latencies_ms)
        self._summary.update(summarize_latencies(latencies_ms))
        # one or two bars fill the sparkline and say nothing: show it from three runs on
        self.set_class(len(latencies_ms) < MIN_SPARKLINE_POINTS, "-empty")
