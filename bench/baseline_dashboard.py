"""The baseline of bench/dashboard.py's first frame: a minimal Textual app that imports nothing of
mk0r: a header with a title, a table of 20 sessions, a footer with a few keys. Run as a whole
process in a terminal:  python bench/baseline_dashboard.py <slug> <slug> ..."""
import sys

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header


class Minimal(App):
    TITLE = "minimal"
    BINDINGS = [Binding("q", "quit", "Quit"), Binding("n", "bell", "New"), Binding("question_mark", "bell", "Help")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable()
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("session", "state", "age")
        for slug in sys.argv[1:]:
            table.add_row(slug, "ready", "2m")


Minimal().run()
