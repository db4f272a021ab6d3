"""A provider's latency across sessions: a sparkline of its recent successful runs."""

from __future__ import annotations

import statistics
from typing import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label, Sparkline

from mk0r_tui.tui.widgets.glyphs import format_duration

MIN_SPARKLINE_POINTS = 3


def summarize_latencies(latencies_ms: Sequence[float]) -> str:
    if not latencies_ms:
        return "no history yet"
    median = statistics.median(latencies_ms) / 1000
    return f"p50 {format_duration(median)} · n={len(latencies_ms)}"


class LatencyHistory(Horizontal):
    """`history  p50 812 ms · n=12 ▁▂▅▃▂`: fed from `Ledger.latency_history(provider)`."""

    latencies_ms: reactive[tuple[float, ...]] = reactive((), init=False)

    def compose(self) -> ComposeResult:
        self._summary = Label(summarize_latencies(()), classes="history-summary")
        self._sparkline = Sparkline([], classes="history-sparkline")
        yield Label("history", classes="history-label")
        yield self._summary
        yield self._sparkline

    def on_mount(self) -> None:
        self.add_class("-empty")

    def watch_latencies_ms(self, latencies_ms: tuple[float, ...]) -> None:
        # the children are held, not queried: this may run while the panel is being replaced
        self._sparkline.data = list(latencies_ms)
        self._summary.update(summarize_latencies(latencies_ms))
        # one or two bars fill the sparkline and say nothing: show it from three runs on
        self.set_class(len(latencies_ms) < MIN_SPARKLINE_POINTS, "-empty")
