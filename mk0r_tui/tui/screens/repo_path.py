"""`o` on a session whose repository is local: its path in a field you can select and copy
(`c` sends it to the terminal's clipboard); a toast would vanish before you could."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from mk0r_tui.tui.screens._support import CLIPBOARD_SENT


class RepoPathScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q", "close", "Back", id="repo_path.close"),
        Binding("c", "copy_path", "Copy path", id="repo_path.copy", tooltip="Send the path to the terminal's clipboard"),
    ]

    def __init__(self, resource_name: str, path: str) -> None:
        super().__init__()
        self.resource_name = resource_name
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Repository of {self.resource_name}", classes="dialog-title")
            yield Static("A bare git repository on this machine (the app folder's `origin`):")
            yield Input(self.path, id="repo-path", select_on_focus=True)
            yield Static(f"git clone {self.path}", id="repo-clone", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close", id="close")
                yield Button("Copy path (c)", variant="primary", id="copy")

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = "o · repository"
        self.set_focus(self.query_one("#close", Button))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "copy":
            self.action_copy_path()
        else:
            self.dismiss()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.value != self.path:  # a field to copy from, not to edit
            event.input.value = self.path

    def action_copy_path(self) -> None:
        self.app.copy_to_clipboard(self.path)
        self.notify(f"{self.path}: {CLIPBOARD_SENT}", title="Repository path")

    def action_close(self) -> None:
        self.dismiss()
