"""Quitting while sessions are provisioning or tearing down asks first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

QuitChoice = Literal["stay", "drain", "now"]


class ConfirmQuitScreen(ModalScreen[QuitChoice]):
    BINDINGS = [Binding("escape", "stay", "Stay", id="quit.stay")]

    def __init__(self, busy_sessions: Sequence[str]) -> None:
        super().__init__()
        self.busy_sessions = tuple(busy_sessions)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Work is still in flight", classes="dialog-title")
            yield Static("\n".join(f"  • {line}" for line in self.busy_sessions))
            yield Static(
                "Finish first: in-flight creates and deletes complete and are recorded, then the app exits.\n"
                "Quit now: resources being created or deleted may be left behind (`mk0r-tui orphans` finds them)."
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stay", id="stay")
                yield Button("Finish, then quit", variant="warning", id="drain")
                yield Button("Quit now", variant="error", id="now")

    def on_mount(self) -> None:
        self.query_one("#stay", Button).focus()

    @on(Button.Pressed)
    def _chosen(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)  # type: ignore[arg-type]

    def action_stay(self) -> None:
        self.dismiss("stay")
