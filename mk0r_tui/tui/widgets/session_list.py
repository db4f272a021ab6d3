"""Every session in the ledger: slug, state, one glyph per provider, age (and who runs it, on a
wide screen). Newest first unless sorted by another column; the columns collapse on a narrow one."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Unpack

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from mk0r_tui.tui.state import SessionState, matches, sorted_sessions
from mk0r_tui.tui.widgets.glyphs import STATUS_COLOUR, STATUS_GLYPH, format_age
from mk0r_tui.tui.widgets.options import WidgetOptions

#: every column the list can show, and its header
COLUMN_LABELS = {"busy": " ", "slug": "session", "state": "state", "providers": "providers", "age": "age", "runner": "run by"}
#: a narrow list drops the `mk0r-` every session name starts with
#: the columns per layout (the dashboard picks the layout from the terminal's width): a narrow
#: list keeps what tells sessions apart and where they stand; the title line above the panels
#: names the selected session's state and runner in full
LAYOUT_COLUMNS = {
    "narrow": ("busy", "slug", "providers", "age"),
    "medium": ("busy", "slug", "state", "providers", "age"),
    "wide": ("busy", "slug", "state", "providers", "age", "runner"),
}
#: what a sorted column's header gets
SORT_MARK = {False: " ▼", True: " ▲"}

_STATE_WORD = {
    "tearing_down": "tearing down",
    "teardown_incomplete": "teardown incomplete",
    "handed_off": "handed off",
}


def _cell_key(cell: Text) -> tuple[object, ...]:
    """What a cell shows: its text, its style and its spans (Text's own == ignores the style)."""
    return (cell.plain, cell.style, tuple(cell.spans))


def state_word(session: SessionState) -> str:
    return session.busy or _STATE_WORD.get(session.state, session.state)


class SessionList(DataTable[Text]):
    """A `DataTable` keyed by session key. `show` rebuilds it (new session, filter, sort);
    `update_session` changes one row's cells in place, which is what bursts of events do."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="sessions.down"),
        Binding("k", "cursor_up", "Up", show=False, id="sessions.up"),
    ]

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
        self.layout_name = "medium"
        self.sort_column = "age"
        self.sort_reverse = False
        #: who runs a session now (`host:pid`, `this dashboard`), or None; the app's answer
        self.runner_of: Callable[[SessionState], str | None] = lambda session: None
        #: how many sessions the last `show` had before the filter
        self.total = 0
        #: each shown row's cells as last written (`_cell_key`): an update writes only what changed
        self._written: dict[str, dict[str, tuple[object, ...]]] = {}

    def on_mount(self) -> None:
        self._add_columns()

    @property
    def columns_shown(self) -> tuple[str, ...]:
        return LAYOUT_COLUMNS[self.layout_name]

    def _add_columns(self) -> None:
        for key in self.columns_shown:
            label = COLUMN_LABELS[key]
            if key == self.sort_column:
                label += SORT_MARK[self.sort_reverse]
            self.add_column(label, key=key)

    def set_layout(self, layout_name: str, sessions: Iterable[SessionState] | None) -> None:
        """Show the columns of `layout_name` (narrow, medium, wide); the rows are rebuilt from
        `sessions` (None: before the first `show`)."""
        if layout_name == self.layout_name and self.columns:
            return
        keep = self.selected_key  # clearing moves the cursor to the top
        self.layout_name = layout_name
        self.clear(columns=True)
        self._add_columns()
        if sessions is not None:
            self.show(sessions, keep=keep)

    def set_sort(self, column: str, sessions: Iterable[SessionState]) -> None:
        """Sort by `column`; the same column again reverses the order (k9s)."""
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False
        keep = self.selected_key
        self.clear(columns=True)
        self._add_columns()
        self.show(sessions, keep=keep)

    def _style(self, variable: str) -> Style:
        """A Rich style for a theme variable ($success...): DataTable cells are Rich renderables."""
        style = self._styles.get(variable)
        if style is None:
            value = self.app.get_css_variables().get(variable.lstrip("$"), "")
            style = Style(color=value) if value.startswith("#") else Style(dim=True)
            self._styles[variable] = style
        return style

    def refresh_theme(self) -> None:
        """The theme changed: the cells' colours are looked up again."""
        self._styles.clear()

    @property
    def shown_keys(self) -> tuple[str, ...]:
        return tuple(self._shown)

    @property
    def filter_text(self) -> str:
        return self._filter

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
        state = state_word(session)
        state_style = {
            "ready": "$success", "partial": "$warning", "failed": "$error", "deleted": "$text-disabled",
            "teardown incomplete": "$error", "handed off": "$accent",
        }.get(state, "$warning" if session.busy else "$text-muted")
        dim = Style(dim=True) if session.deleted else Style()
        runner = self.runner_of(session) or ""
        busy = "●" if runner else ""
        cells = {
            "busy": Text(busy, self._style("$warning")),
            "slug": Text(session.slug if self.layout_name == "narrow" else session.resource_name, dim),
            "state": Text(state, self._style(state_style) + dim),
            "providers": glyphs,
            "age": Text(format_age(now - session.created_at), Style(dim=True)),
            "runner": Text(runner, Style(dim=True)),
        }
        return {key: cells[key] for key in self.columns_shown}

    def show(self, sessions: Iterable[SessionState], *, filter_text: str | None = None, keep: str | None = None) -> None:
        """Rebuild the rows (sorted, filtered), keeping the cursor on `keep` if shown."""
        if filter_text is not None:
            self._filter = filter_text
        keep = keep if keep is not None else self.selected_key
        now = time.time()
        self.clear()
        self._shown = []
        self._written = {}
        every = list(sessions)
        self.total = len(every)
        for session in sorted_sessions((s for s in every if matches(s, self._filter)), self.sort_column, self.sort_reverse):
            cells = self._cells(session, now)
            self.add_row(*(cells[key] for key in self.columns_shown), key=session.key)
            self._shown.append(session.key)
            self._written[session.key] = {key: _cell_key(cell) for key, cell in cells.items()}
        if keep in self._shown:
            self.move_cursor(row=self._shown.index(keep), animate=False)
        self._drop_stale_renders()
        self._announce()

    def update_session(self, session: SessionState) -> bool:
        """Update one row in place; False when the row is not shown (new, or filtered out).
        Only the cells whose text or style changed are written: each write makes the table
        render every visible row again."""
        if session.key not in self._shown:
            return False
        changed = False
        for key, cell in self._cells(session, time.time()).items():
            changed |= self._write(session.key, key, cell)
        if changed:
            self._drop_stale_renders()
        return True

    def refresh_ages(self, sessions: dict[str, SessionState]) -> None:
        now = time.time()
        changed = False
        for key in self._shown:
            session = sessions.get(key)
            if session is not None:
                changed |= self._write(key, "age", Text(format_age(now - session.created_at), Style(dim=True)))
        if changed:
            self._drop_stale_renders()

    def _write(self, row: str, column: str, cell: Text) -> bool:
        written = self._written.setdefault(row, {})
        stamp = _cell_key(cell)
        if written.get(column) == stamp:
            return False
        self.update_cell(row, column, cell)
        written[column] = stamp
        return True

    def _drop_stale_renders(self) -> None:
        """Textual's DataTable keys its rendered cells, rows and lines by a counter that every
        cell update bumps, so what was rendered before an update is never read again; its
        caches (up to 10,000 cells and 3 x 1,000 rows/lines) kept it all the same. Under a
        stream of updates that was ~200k objects of dead renders, walked by every full garbage
        collection (130-300 ms each on the event loop while 20 sessions provision). Dropped
        here after each of our updates: the caches hold the current renders only."""
        for cache in (self._cell_render_cache, self._row_render_cache, self._row_renderable_cache, self._line_cache):
            cache.clear()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._announce()

    def _announce(self) -> None:
        self.post_message(self.SessionHighlighted(self.selected_key))
