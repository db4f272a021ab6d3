"""Every session in the ledger, newest first: slug, state, one glyph per provider, age."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Unpack

from rich.style import Style
from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from mk0r_tui.tui.state import SessionState, matches, newest_first
from mk0r_tui.tui.widgets.glyphs import STATUS_COLOUR, STATUS_GLYPH, format_age
from mk0r_tui.tui.widgets.options import WidgetOptions

COLUMNS = (("busy", " "), ("slug", "session"), ("state", "state"), ("providers", "providers"), ("age", "age"))

_STATE_WORD = {
    "tearing_down": "tearing down",
    "teardown_incomplete": "teardown incomplete",
    "handed_off": "handed off",
}


class SessionList(DataTable[Text]):
    """A `DataTable` keyed by session key. `show` rebuilds it (new session, filter);
    `update_session` changes one row's cells in place, which is what bursts of events do."""

    class SessionHighlighted(Message):
        """The cursor moved to another session."""

        def __init__(self, session_key: str | None) -> None:
            super().__init__()
            self.session_key = session_key

    def __init__(self, **kwargs: Unpack[WidgetOptions]) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._filter = ""
        self._shown: list[str] = []
        self._styles: dict[str, Style] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def _style(self, variable: str) -> Style:
        """A Rich style for a theme variable ($success...): DataTable cells are Rich renderables."""
        style = self._styles.get(variable)
        if style is None:
            value = self.app.get_css_variables().get(variable.lstrip("$"), "")
            style = Style(color=value) if value.startswith("#") else Style(dim=True)
            self._styles[variable] = style
        return style

    @property
    def shown_keys(self) -> tuple[str, ...]:
        return tuple(self._shown)

    @property
    def selected_key(self) -> str | None:
        if not self._shown or self.cursor_row < 0 or self.cursor_row >= len(self._shown):
            return None
        return self._shown[self.cursor_row]

    def _cells(self, session: SessionState, now: float) -> dict[str, Text]:
        glyphs = Text()
        for panel in session.panels:
            status = panel.status
            glyphs.append(STATUS_GLYPH[status], self._style(STATUS_COLOUR[status]))
        state = session.busy or _STATE_WORD.get(session.state, session.state)
        state_style = {
            "ready": "$success", "partial": "$warning", "failed": "$error", "deleted": "$text-disabled",
            "teardown incomplete": "$error", "handed off": "$accent",
        }.get(state, "$warning" if session.busy else "$text-muted")
        dim = Style(dim=True) if session.deleted else Style()
        busy = "●" if session.busy else ""
        return {
            "busy": Text(busy, self._style("$warning")),
            "slug": Text(session.resource_name, dim),
            "state": Text(state, self._style(state_style) + dim),
            "providers": glyphs,
            "age": Text(format_age(now - session.created_at), Style(dim=True)),
        }

    def show(self, sessions: Iterable[SessionState], *, filter_text: str | None = None, keep: str | None = None) -> None:
        """Rebuild the rows (newest first, filtered), keeping the cursor on `keep` if shown."""
        if filter_text is not None:
            self._filter = filter_text
        keep = keep if keep is not None else self.selected_key
        now = time.time()
        self.clear()
        self._shown = []
        for session in newest_first(s for s in sessions if matches(s, self._filter)):
            cells = self._cells(session, now)
            self.add_row(*(cells[key] for key, _ in COLUMNS), key=session.key)
            self._shown.append(session.key)
        if keep in self._shown:
            self.move_cursor(row=self._shown.index(keep), animate=False)
        self._announce()

    def update_session(self, session: SessionState) -> bool:
        """Update one row in place; False when the row is not shown (new, or filtered out)."""
        if session.key not in self._shown:
            return False
        now = time.time()
        for key, cell in self._cells(session, now).items():
            self.update_cell(session.key, key, cell)
        return True

    def refresh_ages(self, sessions: dict[str, SessionState]) -> None:
        now = time.time()
        for key in self._shown:
            session = sessions.get(key)
            if session is not None:
                self.update_cell(key, "age", Text(format_age(now - session.created_at), Style(dim=True)))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._announce()

    def _announce(self) -> None:
        self.post_message(self.SessionHighlighted(self.selected_key))
