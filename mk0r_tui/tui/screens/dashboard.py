"""The main screen: the session list on the left; the selected session's provider panels and
event log on the right. It renders the app's snapshots and turns keys into the app's actions."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Header, Input, Static

from mk0r_tui.core.models import Slot, Status
from mk0r_tui.tui.log_lines import LogLine
from mk0r_tui.tui.read_only import ReadOnlyRule
from mk0r_tui.tui.state import SessionState, newest_first
from mk0r_tui.tui.widgets.footer import DebouncedFooter
from mk0r_tui.tui.widgets.session_list import SessionList

if TYPE_CHECKING:
    from textual.widget import AwaitMount

    from mk0r_tui.tui.app import Mk0rApp
    from mk0r_tui.tui.widgets.event_log import EventLog
    from mk0r_tui.tui.widgets.provider_panel import ProviderPanel

#: actions that create or delete something (read-only refuses them, and whatever else is not
#: in DashboardScreen.READ_ONLY_SAFE)
MUTATING_ACTIONS = frozenset({"new_session", "retry", "teardown", "handoff"})
#: actions about the selected session
SESSION_ACTIONS = frozenset({"retry", "env", "open_repo", "teardown", "mailbox", "handoff"})
#: how often the local mail panel looks for newly caught mail (one directory stat)
MAIL_POLL_S = 0.5

EMPTY_HINT = "No sessions yet. Press [b]n[/b] to provision one (the local profile needs no keys)."
EMPTY_HINT_READ_ONLY = "No sessions yet. This dashboard is read-only: provision with `mk0r-tui provision`."
NO_MATCH_HINT = "No session matches {text!r} ({total} in the ledger). Esc clears the filter."
#: the dashboard's layouts by terminal width (columns): the list's columns and the panels' grid
#: follow them (styles/dashboard.tcss reads the screen's -narrow/-medium/-wide class)
LAYOUT_BREAKPOINTS = ((0, "narrow"), (120, "medium"), (160, "wide"))
#: actions bound to a letter: while the filter box has the focus, the letter is typed instead
LETTER_ACTIONS = frozenset({"new_session", "retry", "env", "open_repo", "mailbox", "teardown", "handoff", "orphans", "keys",
                            "filter", "sort"})


#: a panel needs this many columns to sit beside another
TWO_PANELS_FROM = 76


class PanelGrid(VerticalScroll):
    """The selected session's panels: two side by side when the pane is wide enough, else
    stacked in one column (a panel 8 columns wide says nothing)."""

    def on_resize(self, event: events.Resize) -> None:
        columns = 2 if event.size.width >= TWO_PANELS_FROM else 1
        if self.styles.grid_size_columns != columns:
            self.styles.grid_size_columns = columns


def layout_for(width: int) -> str:
    return [name for least, name in LAYOUT_BREAKPOINTS if width >= least][-1]


def unavailable_reason(session: SessionState | None, action: str) -> str:
    """Why a session action does nothing now, in a few words (the footer only greys it out)."""
    if session is None:
        return "no session selected"
    name = session.resource_name
    if session.busy:
        return f"{name} is {session.busy}: wait for it to finish"
    if session.deleted:
        return f"{name} is deleted: nothing left to {ACTION_WORDS.get(action, action)}"
    if action == "retry":
        return f"{name} is {session.state.replace('_', ' ')}: nothing to retry"
    if action == "env":
        return f"{name} has no .env yet: no provider succeeded"
    if action == "open_repo":
        return f"{name} has no repository: its repo provider did not succeed"
    if action == "mailbox":
        return f"{name} has no local mailbox"
    return f"{ACTION_WORDS.get(action, action)} is not available for {name} now"


ACTION_WORDS = {"retry": "retry", "env": "show", "open_repo": "open", "teardown": "tear down", "mailbox": "read",
                "handoff": "hand off"}


def panel_class(provider: str) -> str:
    """A CSS class naming the provider's panel (panels are rebuilt often, so no ids)."""
    return "panel--" + re.sub(r"[^a-zA-Z0-9_-]", "_", provider)


def session_title(session: SessionState, runner: str | None = None) -> Content:
    """The selected session in one line: name, state, target, who runs it now, key."""
    state = session.busy or session.state.replace("_", " ")
    parts: list[str | tuple[str, str]] = [(session.resource_name, "bold"), ("  ", ""), (state, "$accent")]
    if session.target:
        parts += [("  → ", "$text-muted"), session.target]
    if runner:
        parts += [("  run by ", "$text-muted"), (runner, "$warning")]
    parts += [("  key ", "$text-muted"), session.key]
    return Content.assemble(*parts)


class DashboardScreen(ReadOnlyRule, Screen[None]):
    """The first frame holds what the operator needs first: the header, every session's row and
    the footer's keys. The detail pane (the selected session's title, panels and event log,
    with the ledger's history) is mounted in one pass right after that frame."""

    #: Keys that open a screen or move the focus are priority bindings: the app runs them as it
    #: reads the key, so the screen or widget they switch to is in place before the next key of a
    #: burst is read (a non-priority binding runs only after the key has travelled to the focused
    #: widget and back, and the keys read meanwhile went to the old focus). While the filter box
    #: has the focus they step aside (check_action), so a filter can contain any letter.
    BINDINGS = [
        Binding("n", "new_session", "New", id="dashboard.new_session", tooltip="Provision a new session", priority=True),
        Binding("r", "retry", "Retry", id="dashboard.retry", tooltip="Provision again: retry what failed, reuse what is ok",
                priority=True),
        Binding("e", "env", ".env", id="dashboard.env", tooltip="Show the session's .env (secrets masked)", priority=True),
        Binding("o", "open_repo", "Repo", id="dashboard.open_repo", tooltip="Open the session's repository", priority=True),
        Binding("m", "mailbox", "Mail", id="dashboard.mailbox", tooltip="The mail the session's app sent, caught locally",
                priority=True),
        Binding("t", "teardown", "Teardown", id="dashboard.teardown", tooltip="Delete every resource of the selected session",
                priority=True),
        Binding("h", "handoff", "Hand off", id="dashboard.handoff",
                tooltip="Give the session's repo and database to the app's creator", priority=True),
        Binding("O", "orphans", "Orphans", id="dashboard.orphans", tooltip="Find resources no live session owns", priority=True),
        Binding("K", "keys", "Keys", id="dashboard.keys", tooltip="Provisioning keys: which are set, and where from",
                priority=True),
        Binding("slash", "filter", "Filter", id="dashboard.filter",
                tooltip="Filter on slug, key, state, provider or provider status", priority=True),
        Binding("A", "sort('age')", "Sort by age", id="dashboard.sort_age", show=False,
                tooltip="Sort the list by age (again: reverse)"),
        Binding("S", "sort('state')", "Sort by state", id="dashboard.sort_state", show=False,
                tooltip="Sort the list by state (again: reverse)"),
        Binding("N", "sort('slug')", "Sort by slug", id="dashboard.sort_slug", show=False,
                tooltip="Sort the list by slug (again: reverse)"),
        Binding("escape", "clear_filter", "Clear filter", id="dashboard.clear_filter",
                tooltip="Empty the filter and show every session"),
    ]

    #: what --read-only keeps (tui/read_only.py); a new action is refused there until listed here
    READ_ONLY_SAFE = frozenset({"env", "open_repo", "mailbox", "orphans", "keys", "filter", "clear_filter", "sort"})

    selected_key: reactive[str | None] = reactive(None, init=False)
    #: narrow | medium | wide, from the terminal's width (LAYOUT_BREAKPOINTS)
    layout_name: reactive[str] = reactive("medium", init=False)

    app: Mk0rApp

    def __init__(self) -> None:
        super().__init__()
        self._select_when_shown: str | None = None
        #: the panels on screen now (a query would also find ones still being removed)
        self._panels: list[ProviderPanel] = []
        self._action_availability: tuple[bool | None, ...] | None = None
        #: the detail pane's widgets are mounted (right after the first frame)
        self._detail_shown = False
        #: another screen (a modal, Keys, Orphans...) is on top: repaints wait for it to close.
        #: Behind a modal every changed row and panel made Textual repaint the modal too (the
        #: dashboard shows through its translucent background, blended cell by cell), so with
        #: 20 sessions provisioning the loop was busy painting what nobody can read, and keys
        #: (the modal's own, or the next `n`) waited behind it (bench/modal_open.py).
        self._covered = False
        self._pending_keys: set[str] = set()
        self._pending_history: set[str] = set()
        self._pending_log = False
        self._pending_runners = False
        self._pending_ages = False
        self._log_widget: EventLog | None = None
        self._list_widget: SessionList | None = None
        self._parts: tuple[Static, Widget, VerticalScroll] | None = None

    def select_when_shown(self, key: str) -> None:
        """Move the cursor to `key` as soon as its row exists (a session just started)."""
        session_list = self.query_one(SessionList)
        if key in session_list.shown_keys:
            session_list.show(self.app.sessions.values(), keep=key)
        else:
            self._select_when_shown = key

    def compose(self) -> ComposeResult:
        # the cursor starts on the newest session: selected before the footer composes, so
        # its keys are right in the first frame (no recompose when the list announces it)
        newest = next(iter(newest_first(self.app.sessions.values())), None)
        self.set_reactive(DashboardScreen.selected_key, newest.key if newest else None)
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="sidebar"):
                # the filter box (hidden until `/`) joins right after the first frame: `_filter_box`
                yield SessionList(id="sessions")
            yield Vertical(id="detail")
            # optional side panels (pool, service...) mount here: `add_side_panel`
            yield Vertical(id="side-panels")
        yield DebouncedFooter(shown_actions=self.app.preferences.footer_keys)

    def add_side_panel(self, widget: Widget) -> None:
        """Mount an optional panel to the right of the detail pane (below it on a narrow
        terminal); the column shows only once it holds a panel."""
        column = self.query_one("#side-panels")
        column.mount(widget)
        column.add_class("-used")

    def on_mount(self) -> None:
        self.query_one("#sidebar").border_title = "sessions"
        session_list = self.query_one(SessionList)
        self.set_reactive(DashboardScreen.layout_name, layout_for(self.app.size.width))
        session_list.runner_of = self.app.runner_of
        session_list.set_layout(self.layout_name, None)
        session_list.show(self.app.sessions.values(), keep=self.selected_key)
        self._show_list_count()
        session_list.focus()
        self.call_after_refresh(self._show_detail)
        self.set_interval(MAIL_POLL_S, self._refresh_mail, name="mail")
        self._mount_queue_panel()

    def _mount_queue_panel(self) -> None:
        """The service's job queue under the sessions, when a team's queue exists (issue 13)."""
        from mk0r_tui.engine.jobs_view import queue_location

        url = queue_location(self.app.runtime.settings)
        if url:
            from mk0r_tui.tui.widgets.queue_panel import QueuePanel

            self.query_one("#sidebar").mount(QueuePanel(url, id="queue-panel"))

    def _mount_pool_panel(self) -> None:
        """The warm pool's panel under the session list, only when a pool is configured."""
        from mk0r_tui.engine import pool, pool_upkeep
        from mk0r_tui.tui.widgets.pool_panel import PoolPanel

        runtime = self.app.runtime
        if not pool.pool_configured(runtime.settings):
            return
        app = self.app

        def activity() -> dict[str, str]:  # the keeper starts after the first frame too
            keeper = app.pool_keeper
            return dict(keeper.activity) if keeper is not None else {}

        self.query_one("#sidebar").mount(PoolPanel(lambda: pool_upkeep.status(runtime), activity, id="pool-panel"))

    def _filter_box(self) -> tuple[Input, AwaitMount | None]:
        """The filter box above the list, mounted on first need (right after the first frame,
        or by `/` if that comes first: one widget less to mount and style before the operator
        sees the sessions). The second item is the mount to await when it was mounted now."""
        box = next(self.query("#session-filter").results(Input), None)
        if box is not None:
            return box, None
        box = Input(placeholder="filter: slug, key, state, provider, status", id="session-filter", compact=True)
        sidebar = self.query_one("#sidebar")
        if not sidebar.is_attached:  # the app is closing before the box joined: nothing to show it in
            return box, None
        return box, sidebar.mount(box, before=self.query_one(SessionList))

    def _show_detail(self) -> None:
        """Mount the detail pane with the selected session's panels already in it (one pass)."""
        from mk0r_tui.tui.widgets.event_log import EventLog

        self._filter_box()
        self._mount_pool_panel()  # after the first frame: engine.pool is not the first frame's to import
        self.app.backfill_from_ledger()
        session = self.selected
        self._panels = self._new_panels(session) if session is not None else []
        shown: list[Widget] = [*self._panels] if self._panels else [self._empty_hint()]
        grid = PanelGrid(*shown, id="panels")
        log = EventLog(id="event-log")
        self._log_widget = log
        log.border_title = "events"
        if session is not None:
            log.show(self.app.logs.get(session.key, ()))
        self.query_one("#detail").mount_all([Static(id="session-title"), grid, log])
        self._detail_shown = True
        self._render_selected()

    # -- rendering snapshots -------------------------------------------------------------

    @property
    def provider_panels(self) -> tuple[ProviderPanel, ...]:
        return tuple(self._panels)

    @property
    def _event_log(self) -> EventLog:
        if self._log_widget is None:
            self._log_widget = self.query_one("#event-log")  # type: ignore[assignment]
        return self._log_widget  # type: ignore[return-value]

    def _detail_parts(self) -> tuple[Static, Widget, VerticalScroll]:
        """The title, the detail pane and the panels' grid: looked up once (repainting the
        selected session under a stream of events queried the DOM three times a repaint)."""
        if self._parts is None:
            self._parts = (self.query_one("#session-title", Static), self.query_one("#detail"),
                           self.query_one("#panels", VerticalScroll))
        return self._parts

    def _live_log(self) -> EventLog | None:
        """The event log, or None before the detail pane or once the app is closing. Kept, not
        queried: a DOM query per event (selector matching over the tree) was a third of the
        loop's time under a burst of 2,000 events/s (bench/dashboard.py)."""
        log = self._log_widget
        return log if log is not None and log.is_attached else None

    @property
    def selected(self) -> SessionState | None:
        return self.app.sessions.get(self.selected_key) if self.selected_key else None

    def on_resize(self, event: events.Resize) -> None:
        self.layout_name = layout_for(event.size.width)

    def watch_layout_name(self, layout_name: str) -> None:
        session_list = self._live_list()
        if session_list is not None:
            session_list.set_layout(layout_name, self.app.sessions.values())

    def _live_list(self) -> SessionList | None:
        """The session list, or None once the app is closing (its timers may still fire after
        the screen's widgets are gone). Kept from the first look-up, as the log is."""
        if self._list_widget is None:
            found = self.query(SessionList)
            self._list_widget = found.first() if found else None
        widget = self._list_widget
        return widget if widget is not None and widget.is_attached else None

    def _show_list_count(self) -> None:
        """The list's box says how many sessions the filter shows, and the sort."""
        session_list = self.query_one(SessionList)
        shown, total = len(session_list.shown_keys), session_list.total
        words = [f"{shown} of {total}" if session_list.filter_text else f"{total}"]
        if session_list.filter_text and not shown:
            words = ["no match"]
        words.append(f"by {session_list.sort_column}{' ↑' if session_list.sort_reverse else ''}")
        self.query_one("#sidebar").border_subtitle = " · ".join(words)

    def theme_changed(self) -> None:
        session_list = self._live_list()
        if session_list is None:
            return
        session_list.refresh_theme()
        session_list.show(self.app.sessions.values())

    def runners_changed(self) -> None:
        """The ledger's leases changed (the app re-reads them): rows and title say who runs what."""
        if self._covered:
            self._pending_runners = True
            return
        session_list = self._live_list()
        if session_list is None:
            return
        for key in session_list.shown_keys:
            session = self.app.sessions.get(key)
            if session is not None:
                session_list.update_session(session)
        self._render_selected()

    def on_screen_suspend(self) -> None:
        self._covered = True

    def on_screen_resume(self) -> None:
        if self._covered:
            self._covered = False
            self._catch_up()

    def _catch_up(self) -> None:
        """What changed while another screen covered this one, painted in one pass."""
        keys, self._pending_keys = self._pending_keys, set()
        history, self._pending_history = self._pending_history, set()
        if keys:
            self.sessions_changed(keys)
        if self._pending_runners:
            self._pending_runners = False
            self.runners_changed()
        if self._pending_ages:
            self._pending_ages = False
            self.refresh_ages()
        for provider in sorted(history):
            self.history_changed(provider)
        if self._pending_log:
            self._pending_log = False
            log = self._live_log()
            if log is not None and self.selected_key is not None:
                log.show(self.app.logs.get(self.selected_key, ()))

    def sessions_changed(self, keys: set[str]) -> None:
        """Repaint what changed: rows in place (a rebuild only for rows not shown yet), and the
        panels when the selected session is among `keys`."""
        if self._covered:
            self._pending_keys |= keys
            return
        session_list = self._live_list()
        if session_list is None:
            return
        missing = False
        for key in keys:
            session = self.app.sessions.get(key)
            if session is not None and not session_list.update_session(session):
                missing = True
        if missing:
            keep = self._select_when_shown if self._select_when_shown in keys else None
            session_list.show(self.app.sessions.values(), keep=keep)
            if keep is not None and session_list.selected_key == keep:
                self._select_when_shown = None
        if self.selected_key in keys:
            self._render_selected()
        if missing:
            self._show_list_count()
        self._refresh_bindings_if_changed()

    def _refresh_bindings_if_changed(self) -> None:
        """Refresh the footer only when an action became available or unavailable.
        `refresh_bindings` recomposes the Footer; doing it for every batch of events made a
        burst of 2,000 events/s back the message queue up by seconds, and keys waited behind it.
        Every refresh of this screen's bindings goes through here, so the footer always shows
        the availability last recorded."""
        availability = tuple(self.check_action(action, ()) for action in sorted(MUTATING_ACTIONS | SESSION_ACTIONS))
        if availability != self._action_availability:
            self._action_availability = availability
            self.refresh_bindings()

    def event_logged(self, key: str, line: LogLine) -> None:
        # the log is gone once the app is closing (a late event is dropped, not an error)
        if key == self.selected_key and self._covered:
            self._pending_log = True  # the app keeps every line: the log shows them on return
        elif key == self.selected_key:
            log = self._live_log()
            if log is not None:
                log.append(line)

    def history_changed(self, provider: str) -> None:
        if self._covered:
            self._pending_history.add(provider)
            return
        for panel in self._panels:
            if panel.panel is not None and panel.panel.provider == provider:
                panel.show_history(self.app.history.get(provider, ()))

    def tick(self, now: float) -> None:
        session = self.selected
        if self._covered or session is None or not any(p.active for p in session.panels):
            return
        for panel in self._panels:
            panel.tick(now)

    def refresh_ages(self) -> None:
        if self._covered:
            self._pending_ages = True
            return
        session_list = self._live_list()
        if session_list is not None:
            session_list.refresh_ages(self.app.sessions)

    @on(SessionList.SessionHighlighted)
    def _session_highlighted(self, message: SessionList.SessionHighlighted) -> None:
        self.selected_key = message.session_key

    def watch_selected_key(self, key: str | None) -> None:
        if not self._detail_shown:  # the pane shows the selection when it mounts
            self._refresh_bindings_if_changed()
            return
        session = self.selected
        log = self._event_log
        if session is None:
            log.clear()
            self._show_empty()
            self._refresh_bindings_if_changed()
            return
        log.show(self.app.logs.get(session.key, ()))
        self._render_selected(rebuild=True)
        self._refresh_bindings_if_changed()

    def _show_empty(self) -> None:
        grid = self.query_one("#panels", VerticalScroll)
        grid.remove_children()
        self._panels = []
        grid.mount(self._empty_hint())
        self.query_one("#session-title", Static).update("")

    def _empty_hint(self) -> Static:
        session_list = self.query_one(SessionList)
        if self.app.sessions and session_list.filter_text:
            text = NO_MATCH_HINT.format(text=session_list.filter_text, total=len(self.app.sessions))
            return Static(text, classes="empty-hint -no-match", markup=False)
        return Static(EMPTY_HINT_READ_ONLY if self.app.read_only else EMPTY_HINT, classes="empty-hint")

    def _new_panels(self, session: SessionState) -> list[ProviderPanel]:
        from mk0r_tui.tui.widgets.provider_panel import ProviderPanel

        history, now = self.app.history, time.time()
        return [
            ProviderPanel(state, now=now, history=history.get(state.provider, ()), classes=panel_class(state.provider))
            for state in session.panels
        ]

    def _render_selected(self, rebuild: bool = False) -> None:
        session = self.selected
        if session is None or not self._detail_shown:
            return
        title, detail, grid = self._detail_parts()
        title.update(session_title(session, self.app.runner_of(session)))
        detail.set_class(session.deleted or session.busy == "tearing down", "-dimmed")
        names = tuple(p.panel.provider for p in self._panels if p.panel is not None)
        if rebuild or names != session.provider_names or not self._panels:
            grid.remove_children()
            self._panels = self._new_panels(session)
            grid.mount_all(self._panels)
            self._refresh_mail()
            return
        for widget, state in zip(self._panels, session.panels):
            widget.panel = state
        self._refresh_mail()

    def _mail_panel(self) -> ProviderPanel | None:
        for widget in self._panels:
            if widget.panel is not None and widget.panel.provider == "local-mail":
                return widget
        return None

    def _refresh_mail(self) -> None:
        """The local mail panel says how many mails the session's app sent and the latest one;
        it reads the mailbox again only when the folder changed."""
        session, widget = self.selected, self._mail_panel()
        if session is None or widget is None or widget.panel is None:
            return
        from mk0r_tui.providers.mail_catcher import MailStore

        store = MailStore(self.app.runtime.settings.mail_dir)
        box = store.box_dir(session.resource_name)
        try:
            mtime: int | None = box.stat().st_mtime_ns
        except OSError:
            mtime = None
        stamp = (str(box), mtime)
        if stamp == widget.extra_stamp:
            return
        if mtime is None:
            widget.show_extra((), stamp)
            return
        summary = store.mailbox_summary(session.resource_name)
        lines: tuple[Content, ...]
        if summary.latest is None:
            lines = (Content.styled("no mail caught yet: what the app sends lands here (m)", "$text-muted"),)
        else:
            latest = summary.latest
            lines = (
                Content.assemble((f"{summary.count} mail{'s' if summary.count != 1 else ''} caught", "bold"), ("  m: mailbox", "$text-muted")),
                Content.assemble(("latest ", "$text-muted"), latest.subject or "(no subject)", ("  → ", "$text-muted"), ", ".join(latest.to)),
            )
        widget.show_extra(lines, stamp)

    # -- actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.read_only_refuses(action):  # tui/read_only.py: anything not in READ_ONLY_SAFE
            return False
        if action in LETTER_ACTIONS and isinstance(self.focused, Input):
            return False  # the letter is typed into the filter
        if action == "clear_filter":  # in the footer only while there is a filter to clear
            box = next(self.query("#session-filter").results(Input), None)  # None before compose
            return box is not None and (box.has_class("-visible") or bool(box.value))
        return self._action_state(action)

    def action_available(self, action: str) -> bool:
        """Whether `action` would run for the selection (the command palette asks, whatever has the focus)."""
        return not self.read_only_refuses(action) and self._action_state(action) is True

    def _action_state(self, action: str) -> bool | None:
        """True: available; None: shown but not for this session now (the key says why)."""
        if action not in SESSION_ACTIONS:
            return True
        session = self.selected
        if session is None:
            return False
        if action == "retry":
            return True if session.can_retry else None
        if action in ("teardown", "handoff"):
            return True if session.can_teardown else None
        if action == "env":
            return True if (session.env_file or any(p.status is Status.OK for p in session.panels)) and not session.deleted else None
        if action == "mailbox":
            mail_ok = any(p.provider == "local-mail" and p.status is Status.OK for p in session.panels)
            return True if mail_ok and not session.deleted else None
        if action == "open_repo":
            repo_ok = any(p.slot is Slot.REPO and p.status is Status.OK for p in session.panels)
            return True if repo_ok and not session.deleted else None
        return True

    async def action_new_session(self) -> None:
        await self.app.action_new_session()

    def action_retry(self) -> None:
        if self.selected is not None:
            self.app.retry_session(self.selected.key)

    async def action_env(self) -> None:
        if self.selected is not None:
            await self.app.show_env(self.selected.key)

    async def action_open_repo(self) -> None:
        if self.selected is not None:
            await self.app.open_repo(self.selected.key)

    async def action_mailbox(self) -> None:
        if self.selected is not None:
            await self.app.show_mailbox(self.selected.key)

    async def action_teardown(self) -> None:
        if self.selected is not None:
            await self.app.confirm_teardown(self.selected.key)

    async def action_handoff(self) -> None:
        if self.selected is not None:
            await self.app.confirm_handoff(self.selected.key)

    async def action_orphans(self) -> None:
        await self.app.action_orphans()

    async def action_keys(self) -> None:
        await self.app.action_keys()

    async def action_filter(self) -> None:
        box, mounting = self._filter_box()
        if mounting is not None:  # `/` before the box joined: the keys after it wait for it
            await mounting
        box.add_class("-visible")
        self.set_focus(box)  # now, not on the next loop turn: the rest of a burst is the filter's
        self.refresh_bindings()

    def action_clear_filter(self) -> None:
        box = next(self.query("#session-filter").results(Input), None)
        if box is not None and (box.has_class("-visible") or box.value):
            box.value = ""
            box.remove_class("-visible")
            self.query_one(SessionList).show(self.app.sessions.values(), filter_text="")
            self._show_list_count()
            self.set_focus(self.query_one(SessionList))

    def action_sort(self, column: str) -> None:
        self.query_one(SessionList).set_sort(column, self.app.sessions.values())
        self._show_list_count()

    @on(Input.Changed, "#session-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_one(SessionList).show(self.app.sessions.values(), filter_text=event.value)
        self._show_list_count()
        if self.selected_key is None and self._detail_shown:
            self._show_empty()  # the hint says "no match", not "no sessions yet"

    @on(Input.Submitted, "#session-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self.set_focus(self.query_one(SessionList))

    def on_key(self, event: events.Key) -> None:
        """A session key that does nothing now says why (the footer only greys it out)."""
        if isinstance(self.focused, Input):
            return
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            action = binding.action
            if action in SESSION_ACTIONS and not self.read_only_refuses(action) and self.check_action(action, ()) is None:
                event.stop()
                self.notify(unavailable_reason(self.selected, action), title=binding.description, timeout=4)
                return
