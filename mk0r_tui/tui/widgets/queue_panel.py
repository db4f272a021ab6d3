"""The service's job queue in one line under the session list (team mode only):
`jobs  2 queued · 1 running · 0 failed`, read every `QUEUE_POLL_S` on a thread (engine/jobs_view.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Unpack

from textual import on, work
from textual.message import Message
from textual.widgets import Static

from mk0r_tui.engine.jobs_view import QueueCounts, read_queue_counts
from mk0r_tui.tui.widgets.options import WidgetOptions

QUEUE_POLL_S = 2.0


def describe_counts(counts: QueueCounts | None, problem: str | None = None) -> str:
    if problem is not None:
        return f"jobs: queue not reachable ({problem})"
    if counts is None:
        return "jobs: no service has used this queue yet"
    return f"jobs  {counts.queued} queued · {counts.running} running · {counts.failed} failed"


class QueuePanel(Static):
    """Shows the queue at `url` (the team's Postgres); the read runs on a thread and posts the result."""

    @dataclass
    class CountsRead(Message):
        counts: QueueCounts | None
        problem: str | None = None

    def __init__(self, url: str, **kwargs: Unpack[WidgetOptions]) -> None:
        super().__init__("jobs …", **kwargs)
        self.url = url
        self.counts: QueueCounts | None = None

    def on_mount(self) -> None:
        self.read_counts()
        self.set_interval(QUEUE_POLL_S, self.read_counts, name="queue")

    @work(thread=True, exclusive=True, group="queue", exit_on_error=False)
    def read_counts(self) -> None:
        try:
            message = self.CountsRead(read_queue_counts(self.url))
        except Exception as exc:  # the database is down, or not ours to read: said, not raised
            message = self.CountsRead(None, type(exc).__name__)
        self.post_message(message)

    @on(CountsRead)
    def _counts_read(self, message: CountsRead) -> None:
        message.stop()
        self.counts = message.counts
        self.set_class(message.problem is not None, "-unreachable")
        self.set_class(bool(message.counts and message.counts.failed), "-failed")
        self.update(describe_counts(message.counts, message.problem))
