"""Messages the app's workers post. Widgets' own messages live in the widgets."""

from __future__ import annotations

from textual.message import Message

from mk0r_tui.core.events import ProviderProgressed
from mk0r_tui.tui.state import UiEvent


class SessionEventReceived(Message):
    """A core event (or a UI-side WorkStarted/WorkEnded) arrived for one session.

    Posted by the orchestrator's sink from a worker, or by the journal follower for another
    process's run (the same message, the same handler: one rendering path); the app's handler
    reduces it into the session's snapshot. Progress lines for the same session and provider collapse: when a
    burst queues up, only the newest is handled (toolong's `can_replace` trick).
    """

    def __init__(self, event: UiEvent, *, journal_at: float | None = None) -> None:
        super().__init__()
        self.event = event
        #: set when the event came from the journal (another process's run): the row's time, so
        #: the handler can measure event-to-screen latency
        self.journal_at = journal_at

    def can_replace(self, message: Message) -> bool:
        if not isinstance(message, SessionEventReceived):
            return False
        older, newer = self.event, message.event
        return (
            isinstance(older, ProviderProgressed)
            and isinstance(newer, ProviderProgressed)
            and older.session == newer.session
            and older.provider == newer.provider
        )
