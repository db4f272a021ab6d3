"""`?`: every key of the dashboard, generated from the bindings so it never drifts."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

HELP_FOOTNOTE = (
    "Ctrl+C once lets in-flight creates and deletes finish, then exits; twice exits at once and "
    "names what may be left behind.  Ctrl+P opens the command palette."
)


def key_label(binding: Binding) -> str:
    return ", ".join({"slash": "/", "question_mark": "?", "escape": "Esc"}.get(k, k) for k in binding.key.split(","))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help.close")]

    def __init__(self, sections: Iterable[tuple[str, Iterable[Binding]]]) -> None:
        super().__init__()
        self.sections = [(title, list(bindings)) for title, bindings in sections]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Keys", classes="dialog-title")
            yield DataTable(id="help-table", cursor_type="none", show_cursor=False)
            yield Static(HELP_FOOTNOTE, classes="help-footnote")

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = "? · help"
        table = self.query_one(DataTable)
        table.add_columns("key", "action", "what it does")
        for title, bindings in self.sections:
            table.add_row(Text(title, style="bold underline"), "", "")
            for binding in bindings:
                table.add_row(Text(key_label(binding), style="bold"), Text(binding.description), Text(binding.tooltip, style="dim"))

    def action_close(self) -> None:
        self.dismiss()
