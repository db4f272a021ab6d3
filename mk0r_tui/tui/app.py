"""The dashboard app: it owns every session's snapshot and runs the orchestrator in workers.

Workers never touch widgets: the orchestrator's sink posts `SessionEventReceived`, the handler
reduces it into an immutable `SessionState` (state.py) and marks the session dirty; one flush per
batch of queued messages repaints the dashboard. Sessions not on screen keep being reduced, so
switching the selection never loses anything.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.notifications import Notification, Notify, SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState

import mk0r_tui
from mk0r_tui.core.envfile import read_env_file, scrub
from mk0r_tui.core.events import Event, ProviderSucceeded, RunStarted, SessionTornDown
from mk0r_tui.core.ledger import HOST, LeaseRow, ResourceRow, RunRow, SessionRow
from mk0r_tui.core.models import ResourceState, Session
from mk0r_tui.core.plan import Plan
from mk0r_tui.engine.runtime import Runtime

if TYPE_CHECKING:
    import asyncio

    from mk0r_tui.engine.pool_upkeep import PoolKeeper
from mk0r_tui.tui.log_lines import LOG_LINES_KEPT, LogLine
from mk0r_tui.tui.messages import SessionEventReceived
from mk0r_tui.tui.preferences import preferences_path, read_preferences, write_preferences
from mk0r_tui.tui.screens.dashboard import LAYOUT_BREAKPOINTS, DashboardScreen
from mk0r_tui.tui.state import (
    SessionState,
    WorkEnded,
    WorkKind,
    WorkStarted,
    events_from_runs,
    from_ledger,
    reduce,
)

HISTORY_LENGTH = 40
TICK_S = 1 / 8
AGE_REFRESH_S = 10.0
#: the ledger's words for a run in progress: a dashboard opened meanwhile replays that run's journal
RUNNING_STATES = ("provisioning", "tearing_down")
#: how often a writable dashboard asks where pending hand-offs (Neon claims, GitHub transfers) stand
HANDOFF_FOLLOW_S = 60.0
#: how often the dashboard re-reads the run leases: a session whose run's owner is gone (another
#: process killed, or silent for MK0R_LEASE_STALE_S) turns `interrupted (owner gone)` within this
OWNER_CHECK_S = 2.0
TARGET_CHOICE_OF = {"local-folder": "local", "e2b": "e2b"}


#: the stages at which this process has tuned its garbage collector (`settle_gc`)
_GC_SETTLED_AT: set[str] = set()
#: allocations between two young collections while the dashboard runs (Python's default: 700)
GC_YOUNG_THRESHOLD = 10_000


def settle_gc(stage: str) -> None:
    """Tune the garbage collector for a long-lived UI, once per `stage` per process.

    Rendering allocates heavily (Textual's segments, strips and their caches). At Python's
    default of a young collection every 700 allocations, render objects that live a frame or
    two were promoted to the oldest generation and set off full collections: 7 in 4 s while 20
    sessions provision, 80-300 ms each on the event loop, which is what delayed the modals'
    keys (bench/modal_open.py). With 10,000 they die young (measured: no full collection in
    that window, young pauses <= 10 ms). And what exists at start (Textual, Rich, our modules,
    the ledger's sessions) and after the first frame (the widgets) lives as long as the
    process: `gc.freeze` (O(1)) takes it out of the generations, so no collection walks it
    again (a full collection of it landed in the first frame, ~20 ms). Once per stage: a test
    process's later apps leave the collector as the first one set it."""
    if stage in _GC_SETTLED_AT:
        return
    import gc

    _GC_SETTLED_AT.add(stage)
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if 0 < young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


#: imported on a thread right after the first frame (`warm_up_imports`)
WARM_UP_MODULES = (
    "mk0r_tui.tui.screens.new_session",
    "mk0r_tui.tui.screens.help",
    "mk0r_tui.tui.screens.teardown",
    "mk0r_tui.engine.orchestrator",
    "mk0r_tui.engine.teardown",
)


def warm_up_imports() -> None:
    """Import the modals' modules (and the widgets they use) and the engine's run path off the
    event loop, right after the first frame: the first `n`, `?` or run no longer compiles and
    executes them on the loop while the operator waits (bench/modal_open.py). A module the
    loop asks for meanwhile waits for this thread's import of it (Python's import lock), so
    nothing runs twice; a failure here is the loop's to meet later, not this thread's."""
    import importlib

    for name in WARM_UP_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # the real import on the loop raises it where it is handled
            return


def runner_label(lease: LeaseRow) -> str:
    """Who runs a session now, from its lease: `host:pid`."""
    return f"{lease.host}:{lease.pid}"


def styles_dir() -> Path:
    """The `.tcss` folder: inside the installed package (the wheel maps `styles/` to
    `mk0r_tui/styles`), else the checkout's top-level `styles/`."""
    package = Path(mk0r_tui.__file__).resolve().parent
    installed = package / "styles"
    if installed.is_dir():
        return installed
    return package.parent / "styles"


def stylesheets() -> list[str | PurePath]:
    """`global.tcss` first (variables and shared rules), then one file per area."""
    files: list[Path] = sorted(styles_dir().glob("*.tcss"), key=lambda p: (p.name != "global.tcss", p.name))
    return list[str | PurePath](files)


class DashboardCommands(Provider):
    """Command palette entries for the dashboard's actions; those that do not apply now are left out."""

    #: `{name}` is the selected session's name: the palette says what each entry acts on
    COMMANDS: tuple[tuple[str, str, str], ...] = (
        ("Retry {name}", "retry", "Provision again: failed providers retried, ok ones reused"),
        ("Tear down {name}", "teardown", "Delete every resource (asks first)"),
        ("Show .env of {name}", "env", "Secrets masked; reveal with x / X"),
        ("Open repository of {name}", "open_repo", "GitHub in the browser, or the local path"),
        ("Mailbox of {name}", "mailbox", "The mail the session's app sent, caught locally"),
        ("Hand off {name}", "handoff", "Give the repo and database to the app's creator"),
        ("New session", "new_session", "Provision a new session"),
        ("Orphans", "orphans", "Find resources no live session owns"),
        ("Provisioning keys", "keys", "Which keys are set, and where from"),
        ("Filter sessions", "filter", "Filter on slug, key, state, provider or provider status"),
        ("Sort sessions by age", "sort('age')", "Newest first; again: oldest first"),
        ("Sort sessions by state", "sort('state')", "Alphabetical by state word; again: reversed"),
        ("Sort sessions by slug", "sort('slug')", "Alphabetical; again: reversed"),
        ("Help", "app.help", "Every key"),
    )

    def _available(self) -> Iterable[tuple[str, str, str]]:
        """The entries that apply now, to the session selected when the palette opened. The
        palette's own input has the focus meanwhile, so availability is checked as the
        dashboard would with its list focused."""
        screen = self.screen
        if not isinstance(screen, DashboardScreen):
            return
        selected = screen.selected
        for title, action, help_text in self.COMMANDS:
            name = action.split("(")[0]
            if action.startswith("app.") or screen.action_available(name):
                if "{name}" in title:
                    if selected is None:
                        continue
                    title = title.format(name=selected.resource_name)
                yield title, action, help_text

    def _runner(self, action: str) -> Callable[[], Awaitable[Any]]:
        screen = self.screen
        return partial(screen.run_action, action)

    async def discover(self) -> Hits:
        for title, action, help_text in self._available():
            yield DiscoveryHit(title, self._runner(action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, help_text in self._available():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), self._runner(action), help=help_text)


class Mk0rApp(App[None]):
    """The dashboard. Every provisioning run it starts is planned once by the runtime (whose
    registry the entry point chose) and shown as the panels of that plan."""

    TITLE = "mk0r"
    SUB_TITLE = "app backends, provisioned live"
    CSS_PATH = stylesheets()
    COMMANDS = App.COMMANDS | {DashboardCommands}
    #: every screen (modals too) gets -narrow/-medium/-wide and -short/-tall for its size
    HORIZONTAL_BREAKPOINTS = [(width, f"-{name}") for width, name in LAYOUT_BREAKPOINTS]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Quit (asks first while work is in flight)"),
        Binding("ctrl+c", "interrupt", "Interrupt", id="app.interrupt", show=False, priority=True,
                tooltip="Once: let in-flight work finish, then exit. Twice: exit now"),
        Binding("question_mark", "help", "Help", id="app.help", tooltip="Every key"),
    ]

    def __init__(
        self,
        runtime: Runtime,
        *,
        read_only: bool = False,
        close_runtime: bool = False,
    ) -> None:
        super().__init__()
        self.runtime = runtime
        self.read_only = read_only
        self.close_runtime = close_runtime
        self.sessions: dict[str, SessionState] = {}
        self.logs: dict[str, deque[LogLine]] = {}
        self.history: dict[str, tuple[float, ...]] = {}
        self._run_started: dict[str, float] = {}
        self._work: dict[Worker[None], tuple[str, WorkKind]] = {}
        self._dirty: set[str] = set()
        self._repaint_scheduled = False
        self._paused = False
        self._draining = False
        self._stop: Any = None
        self._backfill: tuple[list[SessionRow], dict[str, dict[str, RunRow]]] | None = None
        #: the last journal id this dashboard has shown; the follower reads what comes after
        self.journal_cursor = 0
        #: seconds from a journal row's `at` to its message being handled (other processes' events)
        self.journal_latencies: deque[float] = deque(maxlen=10_000)
        self._follow_stop = threading.Event()
        self._follower: threading.Thread | None = None
        #: the warm pool's keeper when a pool is configured and actions are on (engine/pool_upkeep.py)
        self.pool_keeper: PoolKeeper | None = None
        self._pool_task: asyncio.Task[None] | None = None
        self._replayed: dict[str, list[Event]] = {}
        #: session key → who runs it now (`runner_label` of its live lease), re-read every OWNER_CHECK_S
        self.runners: dict[str, str] = {}
        #: the settings file (tui/preferences.py): theme, default target, footer keys
        self.preferences_file = preferences_path(runtime.settings)
        self.preferences, self._preferences_problem = read_preferences(self.preferences_file)
        #: toasts about a session that its next news replaces (a stale "cancelled")
        self._session_notices: dict[str, list[Any]] = {}
        self.load_ledger()
        settle_gc("start")

    # -- state -------------------------------------------------------------------------

    def load_ledger(self) -> None:
        """Every session the ledger knows, in three queries: what the first frame's rows need.
        The event log's lines and the latency history follow in `backfill_from_ledger`."""
        ledger = self.runtime.ledger
        # the cursor first: what is appended while the rest loads is followed, never missed
        self.journal_cursor = ledger.journal_max_id()
        ledger.settle_owner_gone(self.runtime.settings.lease_stale_s)  # the same word `sessions --json` shows
        runs = ledger.latest_runs_all()
        resources: dict[str, list[ResourceRow]] = {}
        for resource in ledger.resources():
            if resource.session_key is not None:
                resources.setdefault(resource.session_key, []).append(resource)
        sessions = ledger.list_sessions()
        self.runners = self._read_runners()
        for session in sessions:
            self.sessions[session.key] = from_ledger(session, runs.get(session.key, {}), resources.get(session.key, []))
            if session.state in RUNNING_STATES:
                self._replay_current_run(session.key)
        self._backfill = (sessions, runs)

    def _replay_current_run(self, key: str) -> None:
        """A run of another process is under way: its journal since the run started, through the
        same reducer, so the panels show where it is now (the follower continues from there)."""
        events: list[Event] = []
        for row in self.runtime.ledger.journal_of_current_run(key, self.journal_cursor):
            try:
                events.append(row.event())
            except (KeyError, TypeError, ValueError):  # a kind or field this version does not know
                continue
        state = self.sessions[key]
        for event in events:
            state = reduce(state, event)
        self.sessions[key] = state
        self._replayed[key] = events

    def backfill_from_ledger(self) -> None:
        """Each session's recorded log lines and each provider's latency history (once; the
        dashboard asks right after its first frame). Lines and latencies that arrived live in
        the meantime stay, after the recorded ones."""
        if self._backfill is None:
            return
        (rows, runs), self._backfill = self._backfill, None
        for row in rows:
            session_runs = runs.get(row.key, {})
            lines = [LogLine.from_event(e) for e in events_from_runs(row.key, session_runs.values())]
            lines.append(LogLine(row.updated_at, f"recorded in the ledger: session {row.state.replace('_', ' ')}", "muted"))
            replayed = self._replayed.pop(row.key, [])
            since = next((e.at for e in replayed if isinstance(e, RunStarted)), None)
            lines.extend(LogLine.from_event(e, since=since) for e in replayed)
            self.logs[row.key] = deque([*lines, *self.logs.get(row.key, ())], maxlen=LOG_LINES_KEPT)
        ledger = self.runtime.ledger
        for provider in {p.provider for s in self.sessions.values() for p in s.panels}:
            recorded = tuple(ledger.latency_history(provider, HISTORY_LENGTH))
            self.history[provider] = (*recorded, *self.history.get(provider, ()))[-HISTORY_LENGTH:]

    def get_default_screen(self) -> Screen[None]:
        self.dashboard = DashboardScreen()
        return self.dashboard

    def on_mount(self) -> None:
        import asyncio

        self._stop = asyncio.Event()
        self._apply_preferences()
        self.set_interval(TICK_S, self._tick, name="tick")
        self.set_interval(AGE_REFRESH_S, self.dashboard.refresh_ages, name="ages")
        if not self.read_only:
            self.set_interval(HANDOFF_FOLLOW_S, self.follow_handoffs, name="handoff")
        self.set_interval(OWNER_CHECK_S, self._check_owners, name="owners")
        self.call_after_refresh(self._check_keys)
        self.call_after_refresh(self._after_first_frame)

    def _after_first_frame(self) -> None:
        """The first frame is out: take what lives as long as the process out of the GC's
        generations, start the warm pool's keeper, and import what the first keys and the
        first run will need on a thread."""
        import asyncio

        settle_gc("first-frame")
        if not self.is_running:
            return
        # from the cursor read with the ledger: what was appended meanwhile is followed, not missed
        self._follower = threading.Thread(
            target=self._follow_journal, args=(self.journal_cursor,), name="mk0r-journal", daemon=True
        )
        self._follower.start()
        from mk0r_tui.engine.pool import pool_configured
        from mk0r_tui.engine.pool_upkeep import PoolKeeper

        if not self.read_only and pool_configured(self.runtime.settings):
            # the warm pool's refill (issue 14): a task of this app, cancelled at unmount
            self.pool_keeper = PoolKeeper(self.runtime, sink=self._post)
            self._pool_task = asyncio.create_task(self.pool_keeper.run(), name="mk0r-pool-keeper")
        threading.Thread(target=warm_up_imports, name="mk0r-warm-up", daemon=True).start()

    def _apply_preferences(self) -> None:
        """The settings file's theme (a problem with the file is said once, as a warning)."""
        problem = self._preferences_problem
        theme = self.preferences.theme
        if theme is not None:
            if theme in self.available_themes:
                self.theme = theme
            else:
                problem = f"{self.preferences_file}: unknown theme {theme!r}; keeping {self.theme}"
        if problem:
            self.notify(problem, title="Settings file", severity="warning", timeout=10)
        self._preferences_ready = True

    def watch_theme(self, theme: str) -> None:
        """A theme picked in the palette is the next start's theme too; the list's cells (Rich
        styles looked up from the theme) are coloured again."""
        if not getattr(self, "_preferences_ready", False):
            return
        self.dashboard.theme_changed()
        if theme == self.preferences.theme:
            return
        from mk0r_tui.core.envfile import EnvWriteError

        self.preferences = self.preferences.with_theme(theme)
        try:
            write_preferences(self.preferences_file, self.preferences)
        except EnvWriteError as exc:
            self.notify(f"theme not saved: {exc}", title="Settings file", severity="warning")

    @property
    def default_target(self) -> str:
        """The new-session dialog's first choice: MK0R_TARGET when set, else the settings file's."""
        settings = self.runtime.settings
        if "target" not in settings.model_fields_set and self.preferences.default_target:
            return self.preferences.default_target
        return settings.target

    def _follow_journal(self, after: int) -> None:
        """Follow the journal every process writes: another process's run (CLI, library, another
        dashboard) reaches the panels through the same message and handler as this app's own.
        This app's own rows are skipped by origin: its workers' events were posted directly (no
        journal round trip on the path of what the operator started here).

        A plain thread, not a Textual worker: it lives as long as the app, and waiting for the
        app's workers to complete (quit after draining, tests) must not wait for it."""
        from mk0r_tui.engine.journal import follow, open_source

        source = open_source(self.runtime.ledger)  # its own connection: SQLite file or Postgres LISTEN
        own = self.runtime.journal.origin
        try:
            for batch in follow(source, after, stop=self._follow_stop):
                for row in batch:
                    if row.origin == own:
                        continue
                    try:
                        event = row.event()
                    except (KeyError, TypeError, ValueError):  # a kind or field this version does not know
                        continue
                    self.post_message(SessionEventReceived(event, journal_at=row.at))
                self.journal_cursor = batch[-1].id
        finally:
            source.close()

    @work(thread=True, exit_on_error=False, group="keys")
    def _check_keys(self) -> None:
        """Look every provisioning key up once (the keyring may be slow or absent) and say so
        plainly when there is no keyring: env vars still work."""
        self.runtime.credentials.all()
        message = self.runtime.credentials.keyring_message
        if message and not self.runtime.settings.no_keyring:  # MK0R_NO_KEYRING: the operator chose it
            self.call_from_thread(self.notify, message, title="No keyring", severity="warning", timeout=10)

    async def on_unmount(self) -> None:
        self._follow_stop.set()
        if self._pool_task is not None:
            self._pool_task.cancel()
        if self._follower is not None:
            self._follower.join(2.0)
        if self.close_runtime:
            await self.runtime.aclose()

    def _tick(self) -> None:
        """The one ticker: spinners and elapsed times of the selected session's running panels."""
        self.dashboard.tick(time.time())  # it returns at once unless the selected session has a running panel

    def _read_runners(self) -> dict[str, str]:
        """Who runs each session now: the ledger's live leases of other processes (any host).
        This dashboard's own runs are its busy sessions, known at once (`runner_of`)."""
        leases = self.runtime.ledger.live_leases(self.runtime.settings.lease_stale_s)
        return {lease.session_key: runner_label(lease) for lease in leases.values()
                if not (lease.host == HOST and lease.pid == os.getpid())}

    def runner_of(self, session: SessionState) -> str | None:
        """Who runs `session` now: another process's `host:pid`, this dashboard, or nobody."""
        return self.runners.get(session.key) or ("this dashboard" if session.busy else None)

    def _check_owners(self) -> None:
        """Sessions whose run's owner is gone get the owner-gone word (core/states.py), written to
        the ledger so the dashboard, `sessions --json` and the ledger keep agreeing; and who runs
        each session now (the leases) reaches the list and the title."""
        try:
            changed = self.runtime.ledger.settle_owner_gone(self.runtime.settings.lease_stale_s)
            runners = self._read_runners()
        except Exception:  # a ledger that cannot be written now: the next check tries again
            return
        if runners != self.runners:
            self.runners = runners
            self.dashboard.runners_changed()
        for key in changed:
            current = self.sessions.get(key)
            if current is not None and current.busy:
                continue  # this dashboard's own run: its events say how it ends
            fresh = self._session_from_ledger(key, None)
            self.sessions[key] = fresh
            line = LogLine(time.time(), f"the run's owner is gone: session {fresh.state.replace('_', ' ')} (owner gone)", "error")
            self.logs.setdefault(key, deque(maxlen=LOG_LINES_KEPT)).append(line)
            self.dashboard.event_logged(key, line)
            self._dirty.add(key)
        if changed and not self._repaint_scheduled:
            self._repaint_scheduled = True
            self.call_later(self._repaint_dirty)

    @on(SessionEventReceived)
    def _session_event_received(self, message: SessionEventReceived) -> None:
        event = message.event
        key = event.session
        session = self.sessions.get(key) or self._session_from_ledger(key, event)
        self.sessions[key] = reduce(session, event)
        if message.journal_at is not None:
            self.journal_latencies.append(time.time() - message.journal_at)
        line = None if isinstance(event, (RunStarted, SessionTornDown)) and session.busy else self._log_line(event)
        if line is not None:
            self.logs.setdefault(key, deque(maxlen=LOG_LINES_KEPT)).append(line)
            self.dashboard.event_logged(key, line)
        if isinstance(event, ProviderSucceeded) and event.result.attempts > 0 and event.result.latency_ms is not None:
            history = (*self.history.get(event.provider, ()), event.result.latency_ms)[-HISTORY_LENGTH:]
            self.history[event.provider] = history
            self.dashboard.history_changed(event.provider)
        self._dirty.add(key)
        if not self._repaint_scheduled:
            self._repaint_scheduled = True
            self.call_later(self._repaint_dirty)

    def _session_from_ledger(self, key: str, event: Any) -> SessionState:
        row = self.runtime.ledger.get_session(key)
        if row is not None:
            ledger = self.runtime.ledger
            return from_ledger(row, ledger.latest_runs(key), ledger.resources(key))
        slug = getattr(event, "slug", None) or Session.parse(key).slug
        return SessionState(key, slug, created_at=event.at, state="provisioning", updated_at=event.at)

    def _log_line(self, event: Any) -> LogLine | None:
        key = event.session
        if isinstance(event, WorkStarted):
            self._run_started[key] = event.at
            words = "provisioning" + (f" → {event.target}" if event.target else "") if event.kind == "provision" else "teardown"
            return LogLine(event.at, f"{words} started", "info")
        if isinstance(event, WorkEnded):
            if event.error:
                return LogLine(event.at, f"{event.kind} stopped: {event.error}", "error")
            return LogLine(event.at, f"{event.kind} finished: session is {event.state or 'unchanged'}".replace("_", " "), "muted")
        if isinstance(event, RunStarted):  # a run of another process: its lines count from here
            self._run_started[key] = event.at
        if isinstance(event, Event):
            return LogLine.from_event(event, since=self._run_started.get(key))
        return None

    def _repaint_dirty(self) -> None:
        """Repaint every session changed since the last flush: one repaint per batch of messages."""
        self._repaint_scheduled = False
        if self._paused or not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        self.dashboard.sessions_changed(dirty)

    def pause_refresh(self, paused: bool) -> None:
        """Hold dashboard repaints while a destructive confirmation is open (state keeps reducing)."""
        self._paused = paused
        if not paused:
            self._repaint_dirty()

    # -- work --------------------------------------------------------------------------

    def _post(self, event: Any) -> None:
        self.post_message(SessionEventReceived(event))

    def start_provision(self, session: Session, target: str | None = None) -> Worker[None] | None:
        if self.read_only:
            return None
        current = self.sessions.get(session.key)
        if current is not None and current.busy:
            self.notify(f"mk0r-{session.slug} is already {current.busy}", severity="warning")
            return None
        plan = self.runtime.plan(target)  # once per run: these panels are what runs
        self._post(WorkStarted(session=session.key, kind="provision", plan=plan.panels, slug=session.slug, target=plan.target.name))
        worker = self._provision(session, plan)
        self._work[worker] = (session.key, "provision")
        self.dashboard.select_when_shown(session.key)
        return worker

    @work(exclusive=False, exit_on_error=False, group="provision")
    async def _provision(self, session: Session, plan: Plan) -> None:
        from mk0r_tui.engine.orchestrator import provision_services

        await provision_services(self.runtime, session, plan, sink=self._post)

    def start_teardown(self, key: str) -> Worker[None] | None:
        if self.read_only:
            return None
        self._post(WorkStarted(session=key, kind="teardown"))
        worker = self._teardown(key)
        self._work[worker] = (key, "teardown")
        return worker

    @work(exclusive=False, exit_on_error=False, group="teardown")
    async def _teardown(self, key: str) -> None:
        from mk0r_tui.engine.teardown import teardown_session

        await teardown_session(self.runtime, key, sink=self._post, stop=self._stop)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        owner = self._work.pop(event.worker, None)
        if owner is None:
            return
        key, kind = owner
        error = None
        if event.state is WorkerState.ERROR:
            error = scrub(str(event.worker.error) or type(event.worker.error).__name__, self.runtime.secrets())
            self.notify(error, title=f"{kind} of {key} failed", severity="error", timeout=10)
        elif event.state is WorkerState.CANCELLED:
            error = "cancelled"
        row = self.runtime.ledger.get_session(key)
        state = row.state if row else None  # the ledger's word: the engine settled it, even on error
        self._post(WorkEnded(session=key, kind=kind, state=state, error=error))
        if kind == "teardown" and error is None:
            self.withdraw_notices(key)
            word = (state or "unchanged").replace("_", " ")
            name = self.sessions[key].resource_name if key in self.sessions else key
            self.notify_about(key, f"Teardown of {name} finished: session {word}", severity="information" if state == "deleted" else "warning")
        if self._draining and not self._work:
            self.exit(message="In-flight work finished and was recorded in the ledger.")

    @property
    def busy_sessions(self) -> list[SessionState]:
        return [s for s in self.sessions.values() if s.busy]

    # -- session actions (the dashboard's keys call these) -------------------------------

    async def action_new_session(self) -> None:
        """Open the new-session modal and wait until it is mounted with its focus set: the keys
        typed right after `n` are read only then, so they land in the modal."""
        from mk0r_tui.tui.screens.new_session import NewSessionRequest, NewSessionScreen

        if self.read_only:
            return
        credentials = self.runtime.credentials

        def chosen(request: NewSessionRequest | None) -> None:
            if request is not None:
                self.start_provision(request.session, request.target)

        screen = NewSessionScreen(
            self.runtime.ledger, default_target=self.default_target, e2b_available=credentials.get("E2B_API_KEY").present
        )
        await self.push_screen(screen, chosen)

    def retry_session(self, key: str) -> None:
        session = self.sessions.get(key)
        if session is None or not session.can_retry:
            return
        self.start_provision(Session(session.key, session.slug), TARGET_CHOICE_OF.get(session.target or ""))

    def env_path(self, key: str) -> Path:
        session = self.sessions[key]
        if session.env_file:
            return Path(session.env_file)
        return self.runtime.settings.env_file_for(session.slug)

    async def show_env(self, key: str) -> None:
        from mk0r_tui.tui.screens.env_viewer import EnvScreen

        path = self.env_path(key)
        if not path.exists():
            self.notify(f"No .env yet at {path}", severity="warning")
            return
        await self.push_screen(EnvScreen(self.sessions[key].slug, path))

    async def show_mailbox(self, key: str) -> None:
        from mk0r_tui.tui.screens.mailbox import MailboxScreen

        session = self.sessions[key]
        await self.push_screen(MailboxScreen(self.runtime.settings.mail_dir, session.resource_name))

    async def open_repo(self, key: str) -> None:
        from mk0r_tui.tui.screens.repo_path import RepoPathScreen

        env = read_env_file(self.env_path(key))
        if env.get("GITHUB_REPO_URL"):
            self.open_url(env["GITHUB_REPO_URL"])
            self.notify(f"Opened {env['GITHUB_REPO_URL']}")
        elif env.get("LOCAL_GIT_REPO"):
            await self.push_screen(RepoPathScreen(self.sessions[key].resource_name, env["LOCAL_GIT_REPO"]))
        else:
            self.notify("This session has no repository in its .env", severity="warning")

    async def confirm_teardown(self, key: str) -> None:
        from mk0r_tui.tui.screens.teardown import TeardownScreen

        session = self.sessions.get(key)
        if self.read_only or session is None or not session.can_teardown:
            return
        live = self.runtime.ledger.resources(key, live_only=True)

        def confirmed(ok: bool | None) -> None:
            self.pause_refresh(False)
            if ok:
                self.withdraw_notices(key)  # an earlier "cancelled" must not sit over this teardown's news
                self.start_teardown(key)
            else:
                self.notify_about(key, f"Teardown of mk0r-{session.slug} cancelled: nothing deleted")

        self.pause_refresh(True)
        await self.push_screen(TeardownScreen(session.slug, key, live), confirmed)

    def notify_about(self, key: str, message: str, *, severity: SeverityLevel = "information", timeout: float | None = None) -> None:
        """A toast about session `key`, withdrawn when newer news of that session comes."""
        notice = Notification(message, "", severity, self.NOTIFICATION_TIMEOUT if timeout is None else timeout)
        self._session_notices.setdefault(key, []).append(notice)
        self.post_message(Notify(notice))  # what App.notify does, keeping the notification to withdraw

    def withdraw_notices(self, key: str) -> None:
        for notice in self._session_notices.pop(key, []):
            if notice in self._notifications:
                self._unnotify(notice, refresh=False)
        self._refresh_notifications()

    # -- hand-off (engine/handoff.py does the work) ------------------------------------

    async def confirm_handoff(self, key: str) -> None:
        from mk0r_tui.engine.handoff import plan_handoff
        from mk0r_tui.tui.screens.handoff import HandoffScreen

        session = self.sessions.get(key)
        if self.read_only or session is None or not session.can_teardown:
            return

        def confirmed(request: Any) -> None:
            self.pause_refresh(False)
            if request is None:
                self.notify(f"Hand-off of mk0r-{session.slug} cancelled: nothing changed hands")
            else:
                self._handoff(key, request)

        self.pause_refresh(True)
        await self.push_screen(HandoffScreen(session.slug, key, lambda request: plan_handoff(self.runtime, key, request)), confirmed)

    @work(exclusive=False, exit_on_error=False, group="handoff")
    async def _handoff(self, key: str, request: Any) -> None:
        from mk0r_tui.engine.handoff import run_handoff

        report = await run_handoff(self.runtime, key, request)
        for item in report.items:
            if item.outcome == "failed":
                self.notify(f"{item.provider} {item.name}: {item.error}", title="Hand-off refused", severity="error", timeout=15)
        self.reload_session(key)

    @work(exclusive=True, exit_on_error=False, group="handoff-follow")
    async def follow_handoffs(self) -> None:
        """Follow every pending claim or transfer until it completes or expires."""
        from mk0r_tui.engine.handoff import follow_handoff

        pending = {r.session_key for r in self.runtime.ledger.resources(live_only=True) if r.handoff == "claim_pending"}
        for key in sorted(k for k in pending if k):
            await follow_handoff(self.runtime, key)
            self.reload_session(key)

    def reload_session(self, key: str) -> None:
        """The session's panels again from the ledger (after a hand-off recorded its outcomes)."""
        row = self.runtime.ledger.get_session(key)
        if row is None:
            return
        ledger = self.runtime.ledger
        self.sessions[key] = from_ledger(row, ledger.latest_runs(key), ledger.resources(key))
        self._dirty.add(key)
        if not self._repaint_scheduled:
            self._repaint_scheduled = True
            self.call_later(self._repaint_dirty)

    async def action_orphans(self) -> None:
        from mk0r_tui.tui.screens.orphans import OrphansScreen

        await self.push_screen(OrphansScreen(self.runtime, read_only=self.read_only))

    async def action_keys(self) -> None:
        from mk0r_tui.tui.screens.keys import KeysScreen

        await self.push_screen(KeysScreen(self.runtime, read_only=self.read_only))

    async def action_help(self) -> None:
        from mk0r_tui.tui.screens.env_viewer import EnvScreen
        from mk0r_tui.tui.screens.help import HelpScreen
        from mk0r_tui.tui.screens.mailbox import MailboxScreen

        def shown(bindings: Iterable[object], safe: frozenset[str] | None = None) -> list[Binding]:
            """The bindings to list; read-only lists only its screen's READ_ONLY_SAFE actions."""
            return [b for b in bindings if isinstance(b, Binding) and (safe is None or not self.read_only or b.action in safe)]

        from mk0r_tui.tui.widgets.session_list import SessionList

        dashboard_keys = [b for b in shown(DashboardScreen.BINDINGS, DashboardScreen.READ_ONLY_SAFE) if b.show or b.tooltip]
        sections = [
            ("dashboard", dashboard_keys), ("session list", shown(SessionList.BINDINGS)), ("app", shown(self.BINDINGS)),
            (".env viewer", shown(EnvScreen.BINDINGS, EnvScreen.READ_ONLY_SAFE)), ("mailbox", shown(MailboxScreen.BINDINGS)),
        ]
        await self.push_screen(HelpScreen(sections))

    # -- quitting ----------------------------------------------------------------------

    def describe_busy(self) -> list[str]:
        return [f"mk0r-{s.slug}: {s.busy}" for s in self.busy_sessions]

    async def action_quit(self) -> None:
        from mk0r_tui.tui.screens.confirm_quit import ConfirmQuitScreen

        if not self.busy_sessions:
            self.exit()
            return
        if isinstance(self.screen, ConfirmQuitScreen):
            return

        def chosen(choice: str | None) -> None:
            if choice == "drain":
                self.begin_drain()
            elif choice == "now":
                self.exit_now()

        self.push_screen(ConfirmQuitScreen(self.describe_busy()), chosen)

    def action_interrupt(self) -> None:
        """First Ctrl+C: let in-flight work finish (and be recorded), then exit. Second: exit now."""
        if not self.busy_sessions:
            self.exit()
        elif not self._draining:
            self.begin_drain()
        else:
            self.exit_now()

    def begin_drain(self) -> None:
        self._draining = True
        if self._stop is not None:
            self._stop.set()
        self.notify(
            f"Letting {len(self.busy_sessions)} in-flight session(s) finish, then exiting. Ctrl+C again to exit now.",
            title="Interrupted", severity="warning", timeout=30,
        )

    def maybe_orphaned(self) -> list[str]:
        """Ledger resources of in-flight sessions caught mid-create or mid-delete."""
        names = []
        for session in self.busy_sessions:
            for row in self.runtime.ledger.resources(session.key, live_only=True):
                if row.state in (ResourceState.PENDING.value, ResourceState.DELETING.value):
                    names.append(f"{row.provider} {row.kind} {row.name} ({row.state})")
        return names

    def exit_now(self) -> None:
        left = self.maybe_orphaned()
        busy = ", ".join(f"mk0r-{s.slug}" for s in self.busy_sessions)
        if left:
            message = f"Exited with work in flight ({busy}). May be orphaned: " + "; ".join(left)
        else:
            message = f"Exited with work in flight ({busy}); nothing was caught mid-create or mid-delete."
        self.exit(return_code=130, message=message + "\nRun `mk0r-tui orphans` to find anything left behind.")


def run_dashboard(runtime: Runtime, *, read_only: bool = False) -> None:
    """Open the dashboard (the CLI calls this when `mk0r-tui` runs with no command)."""
    try:
        app = Mk0rApp(runtime, read_only=read_only, close_runtime=True)
        app.run()
    finally:
        runtime.close()
    if app.return_code:
        raise SystemExit(app.return_code)


__all__ = ["Mk0rApp", "run_dashboard", "styles_dir"]
