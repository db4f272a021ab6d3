"""`e`: the session's `.env` as a table, every secret masked (`envfile.is_secret` decides, the
same rule as the CLI). A value is revealed only on an explicit key: `x` for the row, `X` for all.
A read-only dashboard (`--read-only`, `mk0r-tui web`) has neither reveal nor copy: only `close`
is in READ_ONLY_SAFE (tui/read_only.py)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from mk0r_tui.core.envfile import is_secret, mask_value, read_env_file
from mk0r_tui.tui.read_only import ReadOnlyRule
from mk0r_tui.tui.screens._support import CLIPBOARD_SENT
from mk0r_tui.tui.widgets.footer import DebouncedFooter

COLUMNS = (("name", "name"), ("value", "value"), ("secret", ""))


class EnvScreen(ReadOnlyRule, Screen[None]):
    BINDINGS = [
        Binding("x", "reveal", "Reveal", id="env.reveal", tooltip="Show or hide the selected secret"),
        Binding("X", "reveal_all", "Reveal all", id="env.reveal_all", tooltip="Show or hide every secret"),
        Binding("c", "copy_value", "Copy value", id="env.copy_value", tooltip="Copy the selected value (unmasked) to the clipboard"),
        Binding("C", "copy_file", "Copy file", id="env.copy_file", tooltip="Copy the whole .env file to the clipboard"),
        Binding("escape,q", "close", "Back", id="env.close"),
    ]
    #: read-only: masked values only, no reveal (x/X) and no copy (c/C)
    READ_ONLY_SAFE = frozenset({"close"})

    def __init__(self, slug: str, env_path: Path) -> None:
        super().__init__()
        self.slug = slug
        self.env_path = Path(env_path)
        self.env: dict[str, str] = {}
        self.revealed: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="env-path")
        yield DataTable(id="env-table", cursor_type="row")
        yield DebouncedFooter()

    def on_mount(self) -> None:
        self.env = read_env_file(self.env_path)
        secrets = sum(1 for k, v in self.env.items() if is_secret(k, v))
        where = f"mk0r-{self.slug} · {self.env_path.name} · {len(self.env)} values, {secrets} secret (masked)"
        self.query_one("#env-path", Static).update(where if self.env else f"mk0r-{self.slug}: no .env at {self.env_path}")
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        for name, value in self.env.items():
            table.add_row(*self._cells(name, value), key=name)
        table.focus()

    def _cells(self, name: str, value: str) -> tuple[Text, Text, Text]:
        secret = is_secret(name, value)
        shown = value if (name in self.revealed or not secret) else mask_value(name, value)
        marker = Text("revealed" if secret and name in self.revealed else ("secret" if secret else ""), style="dim")
        return Text(name, style="bold"), Text(shown, style="yellow" if secret and name in self.revealed else ""), marker

    def _refresh_row(self, name: str) -> None:
        table = self.query_one(DataTable)
        for (column, _), cell in zip(COLUMNS, self._cells(name, self.env[name])):
            table.update_cell(name, column, cell, update_width=True)

    @property
    def selected_name(self) -> str | None:
        table = self.query_one(DataTable)
        if not self.env or table.cursor_row < 0:
            return None
        return str(table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value)

    def action_reveal(self) -> None:
        name = self.selected_name
        if name is None:
            return
        self.revealed ^= {name}
        self._refresh_row(name)

    def action_reveal_all(self) -> None:
        secret_names = {k for k, v in self.env.items() if is_secret(k, v)}
        self.revealed = set() if secret_names <= self.revealed else secret_names
        for name in self.env:
            self._refresh_row(name)

    def action_copy_value(self) -> None:
        name = self.selected_name
        if name is None:
            return
        self.app.copy_to_clipboard(self.env[name])
        secret = " (a secret: paste it with care)" if is_secret(name, self.env[name]) else ""
        self.notify(f"{name}: {CLIPBOARD_SENT}{secret}")

    def action_copy_file(self) -> None:
        if not self.env_path.exists():
            self.notify(f"No .env at {self.env_path}", severity="warning")
            return
        self.app.copy_to_clipboard(self.env_path.read_text(encoding="utf-8"))
        self.notify(f"The whole .env ({len(self.env)} values, secrets included): {CLIPBOARD_SENT}")

    def action_close(self) -> None:
        self.dismiss()
