"""`t`: the teardown confirmation. It names exactly the live ledger resources that will be
deleted, starts with focus on Cancel, and enables Delete only once the slug is typed."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Static

from mk0r_tui.core.ledger import ResourceRow

#: below this terminal width the resource table leaves out the remote ids
NARROW_BELOW = 100


class TeardownScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="teardown.cancel")]

    def __init__(self, slug: str, session_key: str, resources: Sequence[ResourceRow]) -> None:
        super().__init__()
        self.slug = slug
        self.session_key = session_key
        # one order whatever order the providers' intents happened to reach the ledger in (they
        # run concurrently): by provider, kind, name, so the same session always reads the same
        self.resources = tuple(sorted(resources, key=lambda r: (r.provider, r.kind, r.name)))

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Tear down mk0r-{self.slug}?", classes="dialog-title")
            if self.resources:
                yield Static(f"This deletes these {len(self.resources)} resource(s), for good:")
                yield DataTable(id="doomed", cursor_type="none", show_cursor=False)
            else:
                yield Static("The ledger holds no live resource for this session: confirming only marks it deleted.")
            yield Label(Content.assemble("Type the slug ", (self.slug, "bold"), " to confirm"))
            yield Input(placeholder=self.slug, id="confirm-slug", select_on_focus=False)
            yield Static("", id="slug-mismatch", classes="error-text", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Delete", variant="error", id="delete", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = "t · teardown"
        if self.resources:
            table = self.query_one("#doomed", DataTable)
            # a narrow terminal drops the id column (the name says what is deleted; the id
            # would push the state off the dialog)
            narrow = self.app.size.width < NARROW_BELOW
            # the id last: the longest column (a path) is the one a wide row cuts, never the state
            table.add_columns(*(("provider", "kind", "name", "state") if narrow else ("provider", "kind", "name", "state", "id")))
            for row in self.resources:
                values = (row.provider, row.kind, row.name, row.state, *(() if narrow else (row.remote_id or "(id unknown)",)))
                table.add_row(*(Text(v) for v in values))
        self.query_one("#cancel", Button).focus()

    def on_key(self, event: events.Key) -> None:
        """Focus starts on Cancel; typing goes to the slug field anyway, so the operator can
        just type the slug (Enter on Cancel still cancels)."""
        box = self.query_one("#confirm-slug", Input)
        if event.is_printable and event.character and self.focused is not box:
            event.stop()
            event.prevent_default()
            box.focus()
            box.insert_text_at_cursor(event.character)

    @on(Input.Changed, "#confirm-slug")
    def _typed(self, event: Input.Changed) -> None:
        self.query_one("#delete", Button).disabled = event.value.strip() != self.slug
        self.query_one("#slug-mismatch", Static).remove_class("-visible")

    @on(Input.Submitted, "#confirm-slug")
    def _submitted(self, event: Input.Submitted) -> None:
        typed = event.value.strip()
        if typed == self.slug:
            self.dismiss(True)
            return
        mismatch = self.query_one("#slug-mismatch", Static)
        why = "nothing typed" if not typed else f"{typed!r} is not the slug"
        mismatch.update(f"{why}: type {self.slug} exactly to delete, or Esc to cancel")
        mismatch.add_class("-visible")

    @on(Button.Pressed, "#delete")
    def _delete(self) -> None:
        if self.query_one("#confirm-slug", Input).value.strip() == self.slug:
            self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)
