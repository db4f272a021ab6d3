"""`h`: the hand-off modal. Recipient fields (a GitHub user to transfer to, an organisation, or
a login to invite; a Neon claim link or an organization id; revoke the email key), then exactly
what changes hands (the engine's plan, recomputed as the fields change), then the slug typed to
confirm, as in the teardown modal. Thin: `plan` is `engine/handoff.plan_handoff` bound to the
session; the app runs `run_handoff` with the request this screen returns. Rich markup in the
preview is escaped: the names come from the ledger and the fields."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from mk0r_tui.core.errors import Mk0rError
from mk0r_tui.engine.handoff import HandoffRequest, HandoffStep

#: (field id, placeholder) of the GitHub recipient; at most one may be filled
GITHUB_FIELDS = (("github-user", "transfer to GitHub user (they accept)"), ("github-org", "transfer to GitHub org"),
                 ("invite", "or invite this login (repo stays ours)"))


class HandoffScreen(ModalScreen[HandoffRequest | None]):
    """Returns the `HandoffRequest` confirmed, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="handoff.cancel")]

    def __init__(self, slug: str, session_key: str, plan: Callable[[HandoffRequest], Sequence[HandoffStep]]) -> None:
        super().__init__()
        self.slug = slug
        self.session_key = session_key
        self.plan = plan
        self.request: HandoffRequest | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Hand off mk0r-{self.slug} to the app's creator", classes="dialog-title")
            with VerticalScroll(id="handoff-fields"):
                for field_id, placeholder in GITHUB_FIELDS:
                    yield Input(placeholder=placeholder, id=field_id)
                yield Checkbox("Neon: create a claim link", id="neon-claim")
                yield Input(placeholder="or move the Neon project to organization id", id="neon-org")
                yield Checkbox("Resend: revoke the app's sending key", id="revoke-email")
                yield Static("", id="handoff-preview")
            yield Label(Content.assemble("Type the slug ", (self.slug, "bold"), " to confirm"))
            yield Input(placeholder=self.slug, id="confirm-slug", select_on_focus=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Hand off", variant="warning", id="handoff", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = "h · hand-off"
        self._replan()
        self.query_one("#github-user", Input).focus()

    def _value(self, field_id: str) -> str | None:
        return self.query_one(f"#{field_id}", Input).value.strip() or None

    def _replan(self) -> None:
        preview = self.query_one("#handoff-preview", Static)
        try:
            request = HandoffRequest(
                github_user=self._value("github-user"), github_org=self._value("github-org"), invite=self._value("invite"),
                neon_claim=self.query_one("#neon-claim", Checkbox).value, neon_org=self._value("neon-org"),
                revoke_email=self.query_one("#revoke-email", Checkbox).value,
            )
            steps = self.plan(request)
        except Mk0rError as exc:
            self.request = None
            preview.update(f"[b]Nothing to confirm yet:[/b] {escape(str(exc))}")
        else:
            self.request = request
            lines = [f"{'[b]changes hands[/b]' if s.changes_hands else s.action}: {escape(s.what)}" for s in steps]
            preview.update("What happens:\n" + "\n".join(lines))
        self._update_button()

    def _update_button(self) -> None:
        typed = self.query_one("#confirm-slug", Input).value.strip() == self.slug
        self.query_one("#handoff", Button).disabled = not (typed and self.request is not None)

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        if event.input.id == "confirm-slug":
            self._update_button()
        else:
            self._replan()

    @on(Checkbox.Changed)
    def _checked(self) -> None:
        self._replan()

    @on(Input.Submitted, "#confirm-slug")
    def _submitted(self) -> None:
        self._confirm()

    @on(Button.Pressed, "#handoff")
    def _confirm(self) -> None:
        if self.request is not None and self.query_one("#confirm-slug", Input).value.strip() == self.slug:
            self.dismiss(self.request)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
