"""`n`: a new session. The key is optional and validated exactly as the core does; the target
picks where the `.env` goes."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static
from textual.widgets._select import SelectOverlay

from mk0r_tui.core.errors import UsageError
from mk0r_tui.core.ledger import Ledger
from mk0r_tui.core.models import Session
from mk0r_tui.tui.screens._support import caught_up

TARGET_CHOICES = (("auto: e2b when E2B_API_KEY is set, else local", "auto"), ("local folder", "local"), ("e2b sandbox", "e2b"))


@dataclass(frozen=True, slots=True)
class NewSessionRequest:
    session: Session
    target: str  # auto | local | e2b


def parse_session_key(text: str, ledger: Ledger) -> Session:
    """The session for `text` (a new UUID when empty), or UsageError saying what is wrong,
    including a slug already taken by another session's key."""
    session = Session.new() if not text else Session.parse(text)
    owner = ledger.get_session(session.slug)
    if owner is not None and owner.key != session.key:
        raise UsageError(
            f"the slug {session.slug!r} already belongs to session {owner.key!r}; "
            "session keys must differ in their first 12 characters"
        )
    return session


class NewSessionScreen(ModalScreen[NewSessionRequest | None]):
    #: Enter in the key field and Escape are priority bindings: the app runs them as it reads
    #: the key, so the modal is gone before the next key of a burst is read (an `n` typed right
    #: after Enter opens the next modal instead of landing in this one's field)
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="new_session.cancel", priority=True),
        Binding("enter", "submit", "Provision", id="new_session.submit", priority=True, show=False),
    ]

    def __init__(self, ledger: Ledger, *, default_target: str = "auto", e2b_available: bool = True) -> None:
        super().__init__()
        self.ledger = ledger
        self.default_target = default_target
        self.e2b_available = e2b_available

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("New session", classes="dialog-title")
            yield Label("Session key (optional: empty makes a new UUID)")
            yield Input(placeholder="e.g. 3f2a9c1e-demo", id="session-key")
            yield Static("", id="key-error", classes="error-text")
            yield Label("Target: where the .env goes")
            yield Select(TARGET_CHOICES, value=self.default_target, allow_blank=False, id="target")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Provision", variant="primary", id="provision")

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = "n · provision"
        self.set_focus(self.query_one("#session-key", Input))  # now: the next key typed is the field's

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "submit":  # Enter on a button or in the open target list does what it does there
            return self.focused is None or self.focused is self.query_one("#session-key", Input)
        if action == "cancel":  # Esc in the open target list closes the list, not the dialog
            return not isinstance(self.focused, SelectOverlay)
        return True

    async def action_submit(self) -> None:
        # the field may still hold keys typed just before Enter: let it handle them first
        await caught_up(self.query_one("#session-key", Input))
        self._submit()

    def _validated(self) -> NewSessionRequest | None:
        text = self.query_one("#session-key", Input).value
        target = str(self.query_one("#target", Select).value)
        error = self.query_one("#key-error", Static)
        try:
            session = parse_session_key(text, self.ledger)
            if target == "e2b" and not self.e2b_available:
                raise UsageError("the e2b target needs E2B_API_KEY (set it in the environment or with `k`)")
        except UsageError as exc:
            error.update(str(exc))
            error.add_class("-visible")
            return None
        error.update("")
        error.remove_class("-visible")
        return NewSessionRequest(session, target)

    @on(Input.Changed, "#session-key")
    def _key_changed(self) -> None:
        error = self.query_one("#key-error", Static)
        if error.has_class("-visible"):
            self._validated()

    @on(Button.Pressed, "#provision")
    def _submit(self) -> None:
        request = self._validated()
        if request is not None:
            self.dismiss(request)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
