"""The keys screen: which provisioning keys are set and where from, masked; set or delete one
in the OS keyring. An environment variable always wins over the keyring.

Keyring calls can block (a locked Secret Service, a D-Bus timeout), so they run in thread
workers that post messages; the handlers own the state. No value is ever shown unmasked, and
no message carries one.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Input, Static
from textual.worker import Worker, WorkerState

from mk0r_tui.core.credentials import KEY_NAMES, KEYRING_SERVICE, Credentials, KeyringUnavailable
from mk0r_tui.core.envfile import mask_value
from mk0r_tui.core.render import describe_error
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.providers import DEFAULT_REGISTRY, Registry
from mk0r_tui.tui.screens._support import ConfirmDeleteScreen, stylesheet
from mk0r_tui.tui.widgets.footer import DebouncedFooter

#: keys no registry entry is switched on by, but which a provider still reads
_OPTIONAL_KEY_USES = {"POSTHOG_PROJECT_KEY": "posthog (analytics events)"}

NOTE_BOTH = "env wins over the keyring"
NOTE_ENV = "unset the env var to remove"
NOTE_UNSET = "not set"

COLUMNS = (("name", "key"), ("set", "set"), ("source", "source"), ("value", "value"),
           ("enables", "enables"), ("note", "note"))


def key_enables(name: str, registry: Registry = DEFAULT_REGISTRY) -> str:
    """The provider (and slot) that a key switches on, from the registry."""
    uses = [f"{spec.name} ({spec.slot.value})" for spec in registry.uses_of(name)]
    return ", ".join(uses) or _OPTIONAL_KEY_USES.get(name, "—")


def _column_widths() -> dict[str, int]:
    """Fixed widths, known before any lookup: the rows never change shape, and a table that
    does not re-measure never paints a half-measured frame (under a modal, say)."""
    return {
        "name": max(map(len, KEY_NAMES)),
        "set": len("✗ unset"),
        "source": len("keyring"),
        "value": 12,
        "enables": max(len(key_enables(name)) for name in KEY_NAMES),
        "note": max(map(len, (NOTE_BOTH, NOTE_ENV, NOTE_UNSET))),
    }


@dataclass(frozen=True, slots=True)
class KeyRow:
    """What the screen knows of one key. Holds the masked value only."""

    name: str
    source: str | None
    masked: str
    in_env: bool
    in_keyring: bool
    enables: str

    @property
    def note(self) -> str:
        if self.in_env and self.in_keyring:
            return NOTE_BOTH
        if self.in_env:
            return NOTE_ENV
        return "" if self.source else NOTE_UNSET


@dataclass(frozen=True, slots=True)
class KeysSnapshot:
    rows: tuple[KeyRow, ...]
    keyring_message: str | None

    def row(self, name: str) -> KeyRow | None:
        return next((row for row in self.rows if row.name == name), None)


def load_keys(runtime: Runtime) -> KeysSnapshot:
    """Look every key up: the effective value (env, else keyring) and, separately, whether the
    keyring holds one too, so a key set in both can say which wins. Blocking: call in a thread."""
    keyring_only = Credentials(environ={}, use_keyring=not runtime.settings.no_keyring)
    rows = []
    for name in KEY_NAMES:
        effective = runtime.credentials.get(name)
        stored = keyring_only.get(name)
        rows.append(KeyRow(
            name=name,
            source=effective.source if effective.present else None,
            masked=mask_value(name, effective.value) if effective.value else "—",
            in_env=effective.source == "env",
            in_keyring=stored.present,
            enables=key_enables(name, runtime.registry),
        ))
    return KeysSnapshot(tuple(rows), keyring_only.keyring_message)


class SetKeyScreen(ModalScreen[str | None]):
    """Asks for a key's value in a password field; dismisses with the value, or None."""

    DEFAULT_CSS = """
    SetKeyScreen {
        align: center middle;
        background: $background 60%;
    }
    SetKeyScreen > #set-key-dialog {
        width: 80;
        max-width: 95%;
        height: auto;
        border: thick $primary 70%;
        background: $surface;
        padding: 1 2;
    }
    SetKeyScreen #set-key-title { text-style: bold; }
    SetKeyScreen .set-key-hint { color: $text-muted; margin-top: 1; }
    SetKeyScreen #set-key-value { margin-top: 1; }
    SetKeyScreen #set-key-problem { color: $text-error; height: auto; }
    SetKeyScreen #set-key-buttons { height: auto; margin-top: 1; align-horizontal: right; }
    SetKeyScreen Button { margin-left: 2; }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="set_key.cancel")]
    AUTO_FOCUS = "#set-key-value"

    def __init__(self, row: KeyRow) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        with Vertical(id="set-key-dialog"):
            yield Static(f"Set {self.row.name} in the OS keyring", id="set-key-title", markup=False)
            yield Static(f"Enables {self.row.enables}. Stored under the service {KEYRING_SERVICE!r}; "
                         "shown masked from now on.", classes="set-key-hint", markup=False)
            if self.row.in_env:
                yield Static(f"{self.row.name} is also set in the environment, which overrides the keyring "
                             "for as long as it stays set.", classes="set-key-hint", markup=False)
            yield Input(password=True, placeholder="paste the key", id="set-key-value")
            yield Static("", id="set-key-problem")
            with Horizontal(id="set-key-buttons"):
                yield Button("Cancel", id="set-key-cancel")
                yield Button("Save", id="set-key-save", variant="primary")

    @on(Button.Pressed, "#set-key-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#set-key-value")
    @on(Button.Pressed, "#set-key-save")
    def _save(self) -> None:
        value = self.query_one("#set-key-value", Input).value.strip()
        if not value:
            self.query_one("#set-key-problem", Static).update("The key is empty: paste it, or press escape.")
            return
        self.dismiss(value)


class KeysScreen(Screen[None]):
    """Provisioning keys, where each comes from, and the keyring's set/delete."""

    CSS_PATH = stylesheet("keys.tcss")
    TITLE = "Keys"
    AUTO_FOCUS = "#keys-table"

    BINDINGS = [
        Binding("escape,q", "back", "Back", id="keys.back"),
        Binding("s", "set_key", "Set in keyring", id="keys.set", tooltip="Store this key in the OS keyring"),
        Binding("d", "delete_key", "Delete from keyring", id="keys.delete", tooltip="Remove this key from the OS keyring"),
        Binding("r", "reload", "Reload", id="keys.reload", tooltip="Look every key up again"),
    ]

    class KeysLoaded(Message):
        def __init__(self, snapshot: KeysSnapshot) -> None:
            super().__init__()
            self.snapshot = snapshot

    class KeySaved(Message):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    class KeyDeleted(Message):
        def __init__(self, name: str, existed: bool) -> None:
            super().__init__()
            self.name = name
            self.existed = existed

    class KeyringFailed(Message):
        """The keyring refused; `problem` says why and how to work without it (env vars)."""

        def __init__(self, name: str, problem: str) -> None:
            super().__init__()
            self.name = name
            self.problem = problem

    def __init__(self, runtime: Runtime, *, read_only: bool = False) -> None:
        super().__init__()
        self.runtime = runtime
        self.read_only = read_only
        self.snapshot: KeysSnapshot | None = None
        self.busy = False
        self.status_text = ""

    def compose(self) -> ComposeResult:
        lead = (f"Provisioning keys. An environment variable wins over the OS keyring (service {KEYRING_SERVICE!r}). "
                "Values are always masked.")
        if self.read_only:
            lead += " Read-only: setting and deleting are off."
        yield Static(lead, id="keys-lead", markup=False)
        yield Static("", id="keys-keyring", markup=False)
        table: DataTable[Text] = DataTable(id="keys-table", cursor_type="row")
        for key, label in COLUMNS:
            table.add_column(label, key=key, width=_column_widths()[key])
        yield table
        yield Static("", id="keys-status", markup=False)
        yield DebouncedFooter()

    def on_mount(self) -> None:
        self.palette = self.app.get_css_variables()
        self.query_one("#keys-keyring").display = False
        self.action_reload()

    # -- bindings --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in ("set_key", "delete_key"):
            return True
        if self.read_only:
            return False
        if self.busy or self.snapshot is None or self.snapshot.keyring_message:
            return None
        if action == "delete_key":
            row = self._row_under_cursor()
            return None if row is None or not row.in_keyring else True
        return True

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_reload(self) -> None:
        self.busy = True
        self.refresh_bindings()
        self._load()

    def action_set_key(self) -> None:
        row = self._row_under_cursor()
        if row is None:
            return

        def entered(value: str | None) -> None:
            if value:
                self._begin(f"saving {row.name}…")
                self._store(row.name, value)

        self.app.push_screen(SetKeyScreen(row), entered)

    def action_delete_key(self) -> None:
        row = self._row_under_cursor()
        if row is None:
            return
        note = (f"{row.name} stays set from the environment; the keyring copy goes."
                if row.in_env else "Provisioning with this provider stops working until the key is set again.")

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._begin(f"deleting {row.name}…")
                self._remove(row.name)

        question = f"Delete {row.name} from the OS keyring?"
        self.app.push_screen(ConfirmDeleteScreen(question, [f"{row.name}  (service {KEYRING_SERVICE!r})"], note=note), confirmed)

    # -- workers (threads: keyring backends block) -------------------------------------------

    @work(thread=True, exit_on_error=False, exclusive=True, group="keys-load")
    def _load(self) -> None:
        self.post_message(self.KeysLoaded(load_keys(self.runtime)))

    @work(thread=True, exit_on_error=False, group="keys-change")
    def _store(self, name: str, value: str) -> None:
        try:
            self.runtime.credentials.set(name, value)
        except KeyringUnavailable as exc:
            self.post_message(self.KeyringFailed(name, str(exc)))
        else:
            self.post_message(self.KeySaved(name))

    @work(thread=True, exit_on_error=False, group="keys-change")
    def _remove(self, name: str) -> None:
        try:
            existed = self.runtime.credentials.delete(name)
        except KeyringUnavailable as exc:
            self.post_message(self.KeyringFailed(name, str(exc)))
        else:
            self.post_message(self.KeyDeleted(name, existed))

    def _begin(self, status: str) -> None:
        self.busy = True
        self._show_status(status)
        self.refresh_bindings()

    # -- handlers ----------------------------------------------------------------------------

    def on_keys_screen_keys_loaded(self, message: KeysLoaded) -> None:
        self.snapshot = message.snapshot
        self.busy = False
        banner = self.query_one("#keys-keyring", Static)
        if message.snapshot.keyring_message:
            banner.update(f"⚠ {message.snapshot.keyring_message}. Setting and deleting keys here is off.")
        banner.display = bool(message.snapshot.keyring_message)
        self._fill_table(message.snapshot)
        if not self.status_text:
            present = sum(1 for row in message.snapshot.rows if row.source)
            self._show_status(f"{present} of {len(message.snapshot.rows)} keys set")
        self.refresh_bindings()

    def on_keys_screen_key_saved(self, message: KeySaved) -> None:
        self._show_status(f"{message.name} saved in the keyring")
        self.action_reload()

    def on_keys_screen_key_deleted(self, message: KeyDeleted) -> None:
        done = "deleted from the keyring" if message.existed else "was not in the keyring: nothing to delete"
        self._show_status(f"{message.name} {done}")
        self.action_reload()

    def on_keys_screen_keyring_failed(self, message: KeyringFailed) -> None:
        self._show_status(f"{message.name}: {message.problem}", error=True)
        self.action_reload()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.busy = False
            problem = describe_error(event.worker.error, self.runtime.secrets()) if event.worker.error else "unknown error"
            self._show_status(f"keyring call failed: {problem}", error=True)
            self.refresh_bindings()

    @on(DataTable.RowHighlighted, "#keys-table")
    def _row_highlighted(self) -> None:
        self.refresh_bindings()

    # -- state → widgets -------------------------------------------------------------------------

    def _fill_table(self, snapshot: KeysSnapshot) -> None:
        table = self.query_one(DataTable)
        current = self._row_under_cursor()
        table.clear()
        ok, muted = self.palette.get("text-success", "green"), "dim"
        for row in snapshot.rows:
            table.add_row(
                Text(row.name, style="bold"),
                Text("✓ set" if row.source else "✗ unset", style=ok if row.source else muted),
                Text(row.source or "—", style="" if row.source else muted),
                Text(row.masked, style="" if row.source else muted),
                Text(row.enables),
                Text(row.note, style=self.palette.get("text-warning", "yellow") if row.in_env and row.in_keyring else muted),
                key=row.name,
            )
        if current is not None and current.name in table.rows:
            table.move_cursor(row=table.get_row_index(current.name))

    def _row_under_cursor(self) -> KeyRow | None:
        table = self.query_one(DataTable)
        if self.snapshot is None or not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return self.snapshot.row(str(row_key.value))

    def _show_status(self, text: str, *, error: bool = False) -> None:
        self.status_text = text
        status = self.query_one("#keys-status", Static)
        status.update(text)
        status.set_class(error, "-error")
