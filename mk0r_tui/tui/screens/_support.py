"""Pieces the orphans and keys screens share: where the stylesheets live, ages for people,
and the confirmation modal for anything destructive."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Static

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
#: what a copy toast can honestly say: OSC 52 hands the text to the terminal, which may or may
#: not put it on the clipboard (tmux, a terminal with OSC 52 off...), and nothing answers back
CLIPBOARD_SENT = "sent to the terminal's clipboard"


def styles_dir() -> Path:
    """The `styles/` folder: `mk0r_tui/styles` in an installed wheel (the build maps the
    top-level folder there), `<repo>/styles` in a checkout."""
    for candidate in (_PACKAGE_ROOT / "styles", _PACKAGE_ROOT.parent / "styles"):
        if candidate.is_dir():
            return candidate
    return _PACKAGE_ROOT / "styles"


def stylesheet(name: str) -> str:
    return str(styles_dir() / name)


#: how long `caught_up` waits for a widget (a bound: a widget never takes this long for a few keys)
CATCH_UP_S = 2.0


async def caught_up(widget: Widget) -> None:
    """Wait until `widget` has handled every message queued for it so far (keys typed ahead of
    a priority binding): a callback queued behind them runs once they are done."""
    import asyncio

    done = asyncio.Event()
    if widget.call_later(done.set):
        try:
            await asyncio.wait_for(done.wait(), CATCH_UP_S)
        except TimeoutError:
            pass


def human_age(seconds: float | None) -> str:
    """`45s`, `5m`, `3h`, `2d`; `?` when the provider does not say when it was made."""
    if seconds is None:
        return "?"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


class ConfirmDeleteScreen(ModalScreen[bool]):
    """Asks before deleting: names every item exactly, and the safe answer has the focus.

    Dismisses with True only on the Delete button; escape, `n` and Cancel give False.
    """

    DEFAULT_CSS = """
    ConfirmDeleteScreen {
        align: center middle;
        background: $background 60%;
    }
    ConfirmDeleteScreen > #confirm-dialog {
        width: 90;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        border: thick $error 70%;
        background: $surface;
        padding: 1 2;
    }
    ConfirmDeleteScreen #confirm-question {
        text-style: bold;
        margin-bottom: 1;
    }
    ConfirmDeleteScreen #confirm-items {
        height: auto;
        max-height: 16;
        border-left: outer $error 50%;
        padding-left: 1;
    }
    ConfirmDeleteScreen #confirm-note {
        color: $text-muted;
        margin-top: 1;
    }
    ConfirmDeleteScreen #confirm-buttons {
        height: auto;
        margin-top: 1;
        align-horizontal: right;
    }
    ConfirmDeleteScreen Button {
        margin-left: 2;
    }
    """

    BINDINGS = [
        Binding("escape,n", "cancel", "Cancel", id="confirm.cancel"),
        Binding("left", "app.focus_previous", "Previous button", show=False, id="confirm.previous"),
        Binding("right", "app.focus_next", "Next button", show=False, id="confirm.next"),
    ]

    AUTO_FOCUS = "#confirm-cancel"

    def __init__(self, question: str, items: Sequence[str], *, note: str = "", confirm_label: str = "Delete") -> None:
        super().__init__()
        self.question = question
        self.items = tuple(items)
        self.note = note
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(escape(self.question), id="confirm-question")
            with VerticalScroll(id="confirm-items"):
                for item in self.items:
                    yield Static(escape(item), classes="confirm-item", markup=True)
            if self.note:
                yield Static(escape(self.note), id="confirm-note")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="confirm-cancel", variant="primary")
                yield Button(self.confirm_label, id="confirm-delete", variant="error")

    @on(Button.Pressed, "#confirm-cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#confirm-delete")
    def _confirmed(self) -> None:
        self.dismiss(True)
