"""The orphans screen: resources named `mk0r-*` that no live session owns, and ledger rows
left pending by a crash. Scanning deletes nothing; deleting takes marked rows and a confirmation.

The scan and the deletions run in workers that only post messages; the handlers here own the
state (one `OrphanRow` per orphan) and repaint the table from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Input, Select, Static
from textual.worker import Worker, WorkerState

from mk0r_tui.core.events import Event, ResourceDeleted, TeardownFailed, TeardownStarted
from mk0r_tui.core.models import Orphan
from mk0r_tui.core.render import describe_error
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.engine.teardown import OrphanScan, TeardownOutcome, delete_orphans, find_orphans
from mk0r_tui.tui.screens._support import ConfirmDeleteScreen, human_age, stylesheet
from mk0r_tui.tui.widgets.footer import DebouncedFooter

AGE_CHOICES: tuple[tuple[str, float], ...] = (
    ("any age", 0.0),
    ("older than 10m", 600.0),
    ("older than 1h", 3600.0),
    ("older than 1d", 86400.0),
)

COLUMNS = (("mark", "✓"), ("provider", "provider"), ("kind", "kind"), ("name", "name"), ("id", "id"),
           ("age", "age"), ("why", "why"))

ID_WIDTH = 28
COLUMN_WIDTHS = {"mark": 1}

DELETING, DELETED, ALREADY_GONE, FAILED = "deleting…", "deleted", "already gone", "failed"


def orphan_key(provider: str, kind: str, name: str) -> str:
    """One row per (provider, kind, name): the deletion events carry exactly these."""
    return f"{provider}\x1f{kind}\x1f{name}"


def short_id(remote_id: str | None, width: int = ID_WIDTH) -> str:
    """Ids can be long local paths; the tail (the part that names the thing) is what matters."""
    if not remote_id:
        return "—"
    return remote_id if len(remote_id) <= width else "…" + remote_id[-(width - 1):]


@dataclass(frozen=True, slots=True)
class OrphanRow:
    orphan: Orphan
    marked: bool = False
    status: str = ""
    error: str | None = None

    @property
    def key(self) -> str:
        return orphan_key(self.orphan.provider, self.orphan.kind, self.orphan.name)

    @property
    def gone(self) -> bool:
        return self.status in (DELETED, ALREADY_GONE)

    @property
    def markable(self) -> bool:
        return not self.gone and self.status != DELETING

    def describe(self) -> str:
        o = self.orphan
        where = f" (id {o.remote_id})" if o.remote_id and o.remote_id != o.name else ""
        foreign = " — NOT IN THIS LEDGER" if o.foreign else ""
        return f"{o.provider} {o.kind} {o.name}{where}, age {human_age(o.age_s)}{foreign}"

    def outcome(self, palette: Mapping[str, str]) -> Text:
        """The reason, led by the deletion's progress once there is some; the error if it failed.

        `palette` is the theme's CSS variables: Rich styles cannot read `$error`."""
        if not self.status:
            if self.orphan.foreign and not self.orphan.reason.startswith("not in this ledger"):
                return Text(f"not in this ledger · {self.orphan.reason}", style="dim italic")
            return Text(self.orphan.reason, style="dim italic" if self.orphan.foreign else "dim")
        ok, bad = palette.get("text-success", "green"), palette.get("text-error", "red")
        style = {DELETING: f"bold {palette.get('text-warning', 'yellow')}", FAILED: f"bold {bad}"}.get(self.status, ok)
        text = Text(self.status, style=style)
        text.append(" · ")
        text.append(self.error or self.orphan.reason, style=bad if self.error else "dim")
        return text

    def cells(self, palette: Mapping[str, str]) -> list[Text]:
        o = self.orphan
        name = Text(o.name, style="bold")
        values = [
            Text("●" if self.marked else " ", style=f"bold {palette.get('text-accent', 'yellow')}"),
            Text(o.provider),
            Text(o.kind),
            name,
            Text(short_id(o.remote_id)),
            Text(human_age(o.age_s), justify="right"),
            self.outcome(palette),
        ]
        if self.gone:
            for value in values:
                value.stylize("dim strike" if value is name else "dim")
        return values


class OrphansScreen(Screen[None]):
    """Scan for orphans, filter them, mark some, delete the marked ones after a confirmation."""

    CSS_PATH = stylesheet("orphans.tcss")
    TITLE = "Orphans"
    AUTO_FOCUS = "#orphans-table"

    BINDINGS = [
        Binding("escape,q", "back", "Back", id="orphans.back"),
        Binding("r", "rescan", "Rescan", id="orphans.rescan", tooltip="Scan every provider and the ledger again"),
        Binding("slash", "focus_filter", "Filter", key_display="/", id="orphans.filter", tooltip="Filter by name"),
        Binding("space,m", "toggle_mark", "Mark", key_display="space", id="orphans.mark", tooltip="Mark or unmark this row"),
        Binding("a", "mark_all", "Mark all", id="orphans.mark_all",
                tooltip="Mark every visible row of this ledger (again: unmark); rows not in this ledger are marked one by one"),
        Binding("d", "delete_marked", "Delete marked", id="orphans.delete", tooltip="Delete the marked rows, after a confirmation"),
    ]

    class ScanFinished(Message):
        def __init__(self, scan: OrphanScan) -> None:
            super().__init__()
            self.scan = scan

    class DeletionProgressed(Message):
        """A TeardownStarted, ResourceDeleted or TeardownFailed for one marked row."""

        def __init__(self, event: Event) -> None:
            super().__init__()
            self.event = event

    class DeletionFinished(Message):
        """All marked rows settled, or (`error`) the deletion itself broke off."""

        def __init__(self, outcomes: Sequence[TeardownOutcome], *, error: str | None = None) -> None:
            super().__init__()
            self.outcomes = tuple(outcomes)
            self.error = error

        @property
        def summary(self) -> str:
            if self.error:
                return f"deletion stopped: {self.error}"
            counts = {name: sum(1 for o in self.outcomes if o.outcome == name) for name in ("deleted", "already_gone", "failed")}
            return f"{counts['deleted']} deleted, {counts['already_gone']} already gone, {counts['failed']} failed"

    def __init__(self, runtime: Runtime, *, read_only: bool = False) -> None:
        super().__init__()
        self.runtime = runtime
        self.read_only = read_only
        self.rows: dict[str, OrphanRow] = {}
        self.scan: OrphanScan | None = None
        self.scanning = False
        self.deleting = False
        self.name_filter = ""
        self.min_age_s = 0.0
        self.status_text = ""
        self.palette: Mapping[str, str] = {}

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        lead = "Resources named mk0r-* that no live session owns, and creates a crash left pending. Scanning deletes nothing."
        if self.read_only:
            lead += " Read-only: marking and deleting are off."
        yield Static(lead, id="orphans-lead")
        with Horizontal(id="orphans-filters"):
            yield Static("name", classes="orphans-filter-label")
            yield Input(placeholder="type to filter  (/)", id="orphans-name-filter", compact=True)
            yield Static("age", classes="orphans-filter-label")
            yield Select(
                [(label, seconds) for label, seconds in AGE_CHOICES],
                value=0.0,
                allow_blank=False,
                id="orphans-age-filter",
                compact=True,
            )
        yield Static("", id="orphans-scanned")
        yield Static("", id="orphans-warnings")
        table: DataTable[Text] = DataTable(id="orphans-table", cursor_type="row", zebra_stripes=True)
        for key, label in COLUMNS:
            table.add_column(label, key=key, width=COLUMN_WIDTHS.get(key))
        yield table
        yield Static("", id="orphans-detail")
        yield Static("", id="orphans-status")
        yield DebouncedFooter()

    def on_mount(self) -> None:
        self.palette = self.app.get_css_variables()
        self.query_one("#orphans-warnings").display = False
        self.action_rescan()

    # -- bindings --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("toggle_mark", "mark_all", "delete_marked"):
            if self.read_only:
                return False
            if self.deleting or self.scanning:
                return None
        if action == "rescan" and (self.deleting or self.scanning):
            return None
        return True

    def action_back(self) -> None:
        if self.query_one("#orphans-name-filter", Input).has_focus:
            self.query_one(DataTable).focus()
        else:
            self.app.pop_screen()

    def action_focus_filter(self) -> None:
        self.query_one("#orphans-name-filter", Input).focus()

    def action_rescan(self) -> None:
        self.scanning = True
        self.query_one(DataTable).loading = True
        self._show_status("scanning…")
        self.refresh_bindings()
        self._scan()

    def action_toggle_mark(self) -> None:
        row = self._row_under_cursor()
        if row is None or not row.markable:
            return
        self._put(replace(row, marked=not row.marked))
        self._show_status(self._summary())

    def action_mark_all(self) -> None:
        # never pre-selects what may be another ledger's: those are marked one by one, on purpose
        visible = [row for row in self._visible_rows() if row.markable and not row.orphan.foreign]
        mark = not all(row.marked for row in visible)
        for row in visible:
            self._put(replace(row, marked=mark))
        self._show_status(self._summary())

    def action_delete_marked(self) -> None:
        marked = [row for row in self.rows.values() if row.marked and row.markable]
        if not marked:
            self.notify("Nothing is marked: mark rows with space, or all visible rows with a.", severity="warning")
            return
        visible = {row.key for row in self._visible_rows()}
        hidden = sum(1 for row in marked if row.key not in visible)
        what = "this resource" if len(marked) == 1 else f"these {len(marked)} resources"
        question = f"Delete {what}? This cannot be undone."
        note = f"{hidden} of them are hidden by the filter." if hidden else ""
        orphans = [row.orphan for row in marked]

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._start_deletion(orphans)
            else:
                self._show_status("deletion cancelled: nothing was deleted")

        self.app.push_screen(ConfirmDeleteScreen(question, [row.describe() for row in marked], note=note), confirmed)

    # -- workers (post messages only) --------------------------------------------------------

    @work(exit_on_error=False, exclusive=True, group="orphans-scan")
    async def _scan(self) -> None:
        scan = await find_orphans(self.runtime, older_than_s=0.0)
        self.post_message(self.ScanFinished(scan))

    async def _delete(self, orphans: list[Orphan]) -> None:
        """Runs as an *app* worker: leaving the screen must not cancel deletes half done. The
        core records each outcome in the ledger; this screen only shows them while it is up."""

        def sink(event: Event) -> None:
            self.post_message(self.DeletionProgressed(event))

        try:
            # a foreign row is here only because it was marked by hand and confirmed
            outcomes = await delete_orphans(self.runtime, orphans, sink=sink, include_foreign=True)
        except Exception as exc:
            self.post_message(self.DeletionFinished((), error=describe_error(exc, self.runtime.secrets())))
            raise
        finished = self.DeletionFinished(outcomes)
        if not self.is_attached:
            self.app.notify(f"Orphans: {finished.summary}", title="Deletion finished")
        self.post_message(finished)

    def _start_deletion(self, orphans: list[Orphan]) -> None:
        self.deleting = True
        self.refresh_bindings()
        for orphan in orphans:
            row = self.rows[orphan_key(orphan.provider, orphan.kind, orphan.name)]
            self._put(replace(row, marked=False, status=DELETING, error=None))
        self._show_status(f"deleting {len(orphans)}…")
        self.app.run_worker(self._delete(orphans), name="delete orphans", group="orphans-delete", exit_on_error=False)

    # -- handlers (own the state) ------------------------------------------------------------

    def on_orphans_screen_scan_finished(self, message: ScanFinished) -> None:
        self.scan = message.scan
        self.scanning = False
        previous = self.rows
        self.rows = {}
        for orphan in message.scan.orphans:
            key = orphan_key(orphan.provider, orphan.kind, orphan.name)
            kept = previous.get(key)
            self.rows[key] = OrphanRow(orphan, marked=bool(kept and kept.marked and not self.read_only))
        self.query_one(DataTable).loading = False
        self._show_scan_info(message.scan)
        self._rebuild_table()
        self._show_status(self._summary())
        self.refresh_bindings()

    def on_orphans_screen_deletion_progressed(self, message: DeletionProgressed) -> None:
        event = message.event
        if not isinstance(event, (TeardownStarted, ResourceDeleted, TeardownFailed)):
            return
        ref = event.resource
        row = self.rows.get(orphan_key(ref.provider, ref.kind, ref.name))
        if row is None:
            return
        if isinstance(event, TeardownStarted):
            self._put(replace(row, status=DELETING))
        elif isinstance(event, ResourceDeleted):
            self._put(replace(row, status=ALREADY_GONE if event.already_gone else DELETED, marked=False))
        else:
            self._put(replace(row, status=FAILED, error=event.error))

    def on_orphans_screen_deletion_finished(self, message: DeletionFinished) -> None:
        self.deleting = False
        if message.error:
            for row in list(self.rows.values()):
                if row.status == DELETING:
                    self._put(replace(row, status=FAILED, error=message.error))
            self._show_status(message.summary, error=True)
        else:
            self._show_status(f"done: {message.summary} · r rescans")
        self.refresh_bindings()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is not WorkerState.ERROR:
            return
        if event.worker.group == "orphans-scan":
            error = describe_error(event.worker.error, self.runtime.secrets()) if event.worker.error else "unknown error"
            self.scanning = False
            self.query_one(DataTable).loading = False
            self._show_status(f"scan failed: {error}", error=True)
            self.refresh_bindings()

    @on(DataTable.RowHighlighted, "#orphans-table")
    def _row_highlighted(self) -> None:
        self._show_detail()

    @on(Input.Changed, "#orphans-name-filter")
    def _name_filter_changed(self, event: Input.Changed) -> None:
        self.name_filter = event.value.strip().lower()
        self._rebuild_table()
        self._show_status(self._summary())

    @on(Input.Submitted, "#orphans-name-filter")
    def _name_filter_submitted(self) -> None:
        self.query_one(DataTable).focus()

    @on(Select.Changed, "#orphans-age-filter")
    def _age_filter_changed(self, event: Select.Changed) -> None:
        self.min_age_s = float(event.value) if isinstance(event.value, (int, float)) else 0.0
        self._rebuild_table()
        self._show_status(self._summary())

    # -- state → widgets -----------------------------------------------------------------------

    def _visible(self, row: OrphanRow) -> bool:
        orphan = row.orphan
        if self.name_filter and self.name_filter not in orphan.name.lower():
            return False
        # same rule as the core's older_than_s: an unknown age is never filtered out
        return orphan.age_s is None or orphan.age_s >= self.min_age_s

    def _visible_rows(self) -> list[OrphanRow]:
        """This ledger's orphans first, then (apart) those not in this ledger."""
        rows = [row for row in self.rows.values() if self._visible(row)]
        return [r for r in rows if not r.orphan.foreign] + [r for r in rows if r.orphan.foreign]

    def _row_under_cursor(self) -> OrphanRow | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return self.rows.get(str(row_key.value))

    def _rebuild_table(self) -> None:
        table = self.query_one(DataTable)
        current = self._row_under_cursor()
        table.clear()
        for row in self._visible_rows():
            table.add_row(*row.cells(self.palette), key=row.key)
        if current is not None and current.key in table.rows:
            table.move_cursor(row=table.get_row_index(current.key))
        self._show_detail()

    def _put(self, row: OrphanRow) -> None:
        """Store a changed row and repaint just its cells, if it is on screen."""
        self.rows[row.key] = row
        table = self.query_one(DataTable)
        if row.key not in table.rows:
            return
        for (column, _), value in zip(COLUMNS, row.cells(self.palette)):
            table.update_cell(row.key, column, value)
        self._show_detail()

    def _show_detail(self) -> None:
        """The highlighted row in full: the table crops long ids and reasons."""
        row = self._row_under_cursor()
        detail = self.query_one("#orphans-detail", Static)
        if row is None:
            detail.update("")
            return
        o = row.orphan
        text = Text.assemble((o.name, "bold"), f"  id {o.remote_id or '—'}  ", row.outcome(self.palette))
        detail.update(text)

    def _show_scan_info(self, scan: OrphanScan) -> None:
        scanned = ", ".join(scan.scanned) or "nothing"
        self.query_one("#orphans-scanned", Static).update(Text(f"scanned: {scanned} and the ledger's pending rows"))
        warnings = self.query_one("#orphans-warnings", Static)
        warnings.update(Text("\n".join(f"⚠ {w}" for w in scan.warnings)))
        warnings.display = bool(scan.warnings)

    def _summary(self) -> str:
        total = len(self.rows)
        if not total:
            return "no orphans found"
        shown = len(self._visible_rows())
        marked = sum(1 for row in self.rows.values() if row.marked)
        noun = "orphan" if total == 1 else "orphans"
        parts = [f"{total} {noun}"]
        if shown != total:
            parts.append(f"{shown} shown")
        if not self.read_only:
            parts.append(f"{marked} marked")
        return " · ".join(parts)

    def _show_status(self, text: str, *, error: bool = False) -> None:
        self.status_text = text
        status = self.query_one("#orphans-status", Static)
        status.update(Text(text))
        status.set_class(error, "-error")
