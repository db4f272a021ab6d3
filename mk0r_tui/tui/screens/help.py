"""`?`: every key of the dashboard, generated from the bindings so it never drifts, and the
legend of the status glyphs. It scrolls (Down/PageDown/End, j/k) on any terminal size."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from mk0r_tui.core.models import Status
from mk0r_tui.tui.widgets.glyphs import STATUS_GLYPH

HELP_FOOTNOTE = (
    "Ctrl+C once lets in-flight creates and deletes finish, then exits; twice exits at once and "
    "names what may be left behind.  Ctrl+P opens the command palette."
)

#: what each status glyph of the session list and the panels means
GLYPH_MEANING = {
    Status.WAITING: "waiting for its turn",
    Status.RUNNING: "running now (a spinner in the panel)",
    Status.RETRYING: "retrying after an error or a rate limit",
    Status.OK: "created, or reused from an earlier run",
    Status.FAILED: "failed (the panel and the event log have the full error)",
    Status.SKIPPED: "skipped (no key for it, or not in this profile)",
    Status.TEARING_DOWN: "being deleted",
    Status.GONE: "deleted",
}

_KEY_NAMES = {"slash": "/", "question_mark": "?", "escape": "Esc", "enter": "Enter", "space": "Space"}


def key_label(binding: Binding) -> str:
    return ", ".join(_KEY_NAMES.get(k, k) for k in binding.key.split(","))


def legend_table() -> Table:
    table = Table(show_header=False, box=None, padding=(0, 1), expand=True)
    table.add_column("glyph", no_wrap=True)
    table.add_column("meaning", ratio=1)
    for status, meaning in GLYPH_MEANING.items():
        table.add_row(Text(STATUS_GLYPH[status], style="bold"), Text(f"{status.value}: {meaning}"))
    return table


def keys_table(sections: Iterable[tuple[str, Iterable[Binding]]]) -> Table:
    """One row per key; the descriptions wrap on a narrow terminal instead of being cut."""
    table = Table(box=None, padding=(0, 1), expand=True, header_style="bold")
    table.add_column("key", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("what it does", ratio=1)
    for title, bindings in sections:
        table.add_row(Text(title, style="bold underline"), "", "")
        for binding in bindings:
            table.add_row(Text(key_label(binding), style="bold"), Text(binding.description), Text(binding.tooltip, style="dim"))
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,q", "close", "Close", id="help.close"),
        Binding("j", "scroll('down')", "Down", show=False, id="help.down"),
        Binding("k", "scroll('up')", "Up", show=False, id="help.up"),
    ]

    def __init__(self, sections: Iterable[tuple[str, Iterable[Binding]]]) -> None:
        super().__init__()
        self.sections = [(title, list(bindings)) for title, bindings in sections]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Keys  (↓ PgDn End scroll · Esc closes)", classes="dialog-title")
            with VerticalScroll(id="help-body"):
                yield Static(keys_table(self.sections), id="help-table")
                yield Static(Text("Status glyphs", style="bold underline"), classes="help-heading")
                yield Static(legend_table(), id="help-legend")
                yield Static(HELP_FOOTNOTE, classes="help-footnote")

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = "? · help"
        self.set_focus(self.query_one("#help-body"))

    def action_scroll(self, direction: str) -> None:
        body = self.query_one("#help-body", VerticalScroll)
        body.scroll_down() if direction == "down" else body.scroll_up()

    def action_close(self) -> None:
        self.dismiss()
