"""Pilot tests of the dashboard against fake providers: what the widgets show, and the order
of the messages that got them there."""

from __future__ import annotations

import asyncio

from pilot_kit import settle
from textual.widgets import Button, DataTable, Input
from textual.worker import Worker, WorkerState
from tui_fakes import REPO_URL, FakeProvider, fake_set
from waiting import wait_until

from mk0r_tui.core.events import (
    ProviderStarted,
    ProviderSucceeded,
)
from mk0r_tui.core.models import Session, Slot, Status
from mk0r_tui.core.plan import Plan, PlanStep
from mk0r_tui.tui.messages import SessionEventReceived
from mk0r_tui.tui.screens.dashboard import DashboardScreen
from mk0r_tui.tui.screens.new_session import NewSessionScreen
from mk0r_tui.tui.screens.teardown import TeardownScreen
from mk0r_tui.tui.state import WorkStarted
from mk0r_tui.tui.widgets.provider_panel import ProviderPanel
from mk0r_tui.tui.widgets.session_list import SessionList

SIZE = (160, 48)


class Conversation:
    """A `message_hook` that keeps the messages the tests care about, in dispatch order."""

    def __init__(self) -> None:
        self.messages: list = []

    def __call__(self, message) -> None:
        if isinstance(message, (SessionEventReceived, Worker.StateChanged)):
            self.messages.append(message)

    def events(self, session: str | None = None) -> list:
        found = [m.event for m in self.messages if isinstance(m, SessionEventReceived)]
        return [e for e in found if session is None or e.session == session]

    def kinds(self, session: str, provider: str | None = None) -> list[str]:
        return [type(e).__name__ for e in self.events(session) if provider is None or getattr(e, "provider", None) == provider]


def db_running(app, key: str) -> bool:
    """The gated fake-db of session `key` is mid-create (its intent row is in the ledger)."""
    state = app.sessions.get(key)
    panel = state.panel("fake-db") if state is not None else None
    return panel is not None and panel.status is Status.RUNNING and any(
        r.provider == "fake-db" and r.state == "pending" for r in app.runtime.ledger.resources(key))


async def provision_via_modal(pilot, key: str) -> None:
    await pilot.press("n")
    assert isinstance(pilot.app.screen, NewSessionScreen)
    await pilot.press(*key)
    await pilot.press("enter")


async def provision(pilot, key: str) -> None:
    """Start provisioning straight away (the modal has its own tests) and wait for it."""
    pilot.app.start_provision(Session.parse(key))
    await settle(pilot.app, pilot)


def panels(app) -> dict[str, ProviderPanel]:
    return {p.panel.provider: p for p in app.screen.provider_panels}


def notifications(app) -> list[str]:
    return [n.message for n in app._notifications]


async def test_new_session_panels_reach_ok_failed_skipped(make_app, session_key):
    providers = fake_set(**{"fake-repo": FakeProvider("fake-repo", Slot.REPO, kind="repo", fail_times=1, error="repo name taken")})
    app = make_app(providers)
    talk = Conversation()
    async with app.run_test(size=SIZE, message_hook=talk) as pilot:
        await provision_via_modal(pilot, session_key)
        await settle(app, pilot)

        assert isinstance(app.screen, DashboardScreen)
        shown = panels(app)
        assert list(shown) == ["fake-analytics", "fake-db", "fake-mail", "fake-repo", "fake-target"]
        status = {name: p.panel.status for name, p in shown.items()}
        assert status == {
            "fake-analytics": Status.OK, "fake-db": Status.OK, "fake-mail": Status.SKIPPED,
            "fake-repo": Status.FAILED, "fake-target": Status.OK,
        }
        assert shown["fake-repo"].has_class("-failed") and shown["fake-db"].has_class("-ok")
        repo_text = str(shown["fake-repo"].query_one(".panel-body").render())
        assert "POST /repos → HTTP 500: repo name taken (try again later)" in repo_text
        assert "database-" + session_key[:12] in str(shown["fake-db"].query_one(".panel-body").render())
        session = app.sessions[session_key]
        assert session.state == "partial" and session.busy is None
        assert app.screen.query_one(SessionList).selected_key == session_key

        kinds = talk.kinds(session_key)
        assert kinds[0] == "WorkStarted" and kinds[-1] == "WorkEnded"
        for name in ("fake-analytics", "fake-db", "fake-repo", "fake-target"):
            mine = talk.kinds(session_key, name)
            assert mine[0] == "ProviderStarted" and mine[-1] in ("ProviderSucceeded", "ProviderFailed"), (name, mine)
        assert kinds.index("SessionProvisioned") > max(i for i, k in enumerate(kinds) if k in ("ProviderSucceeded", "ProviderFailed"))
        # the target runs after every service settled, and the worker ends before WorkEnded is handled
        target_started = next(i for i, e in enumerate(talk.events(session_key)) if isinstance(e, ProviderStarted) and e.provider == "fake-target")
        db_done = next(i for i, e in enumerate(talk.events(session_key)) if isinstance(e, ProviderSucceeded) and e.provider == "fake-db")
        assert db_done < target_started
        order = [
            "worker-success" if isinstance(m, Worker.StateChanged) and m.state is WorkerState.SUCCESS else type(m.event).__name__
            for m in talk.messages
            if isinstance(m, SessionEventReceived) or m.state is WorkerState.SUCCESS
        ]
        assert order.index("worker-success") < order.index("WorkEnded")


async def test_bad_session_key_is_refused_inline(make_app, fakes):
    app = make_app(fakes)
    async with app.run_test(size=SIZE) as pilot:
        await provision_via_modal(pilot, "short")
        await pilot.pause()
        assert isinstance(app.screen, NewSessionScreen)
        error = app.screen.query_one("#key-error")
        assert error.has_class("-visible")
        assert "too short: it needs at least 8 characters" in str(error.render())
        assert app.sessions == {} and not app.workers
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_empty_key_makes_a_new_uuid_session(make_app, fakes):
    app = make_app(fakes)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n", "enter")
        await settle(app, pilot)
        (session,) = app.sessions.values()
        assert Session.parse(session.key).slug == session.slug and len(session.key) == 36
        assert session.state == "ready"


async def test_retry_reruns_only_failed_providers(make_app, session_key):
    providers = fake_set(**{"fake-repo": FakeProvider("fake-repo", Slot.REPO, kind="repo", env={"GITHUB_REPO_URL": REPO_URL}, fail_times=1)})
    app = make_app(providers, skipped_email=False)
    talk = Conversation()
    async with app.run_test(size=SIZE, message_hook=talk) as pilot:
        await provision(pilot, session_key)
        assert panels(app)["fake-repo"].panel.status is Status.FAILED
        assert app.screen.check_action("retry", ()) is True

        before = len(talk.messages)
        await pilot.press("r")
        await settle(app, pilot)

        assert {n: p.panel.status for n, p in panels(app).items()} == dict.fromkeys(providers, Status.OK)
        assert providers["fake-repo"].calls == 2
        assert providers["fake-db"].calls == 1, "an ok provider is reused, not called again"
        assert "already provisioned (reused)" in str(panels(app)["fake-db"].query_one(".panel-body").render())
        retried = [type(m.event).__name__ for m in talk.messages[before:] if isinstance(m, SessionEventReceived)]
        assert retried[0] == "WorkStarted" and retried[-1] == "WorkEnded"
        assert app.sessions[session_key].state == "ready"
        assert app.screen.check_action("retry", ()) is None, "nothing left to retry"


async def test_env_viewer_masks_reveals_and_copies(make_app, fakes, session_key, monkeypatch):
    from tui_fakes import FAKE_API_KEY, FAKE_DB_PASSWORD

    app = make_app(fakes)
    copied: list[str] = []
    monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
    async with app.run_test(size=SIZE) as pilot:
        await provision(pilot, session_key)
        await pilot.press("e")
        await pilot.pause()
        table = app.screen.query_one("#env-table", DataTable)

        def value(name: str) -> str:
            return str(table.get_cell(name, "value"))

        assert FAKE_DB_PASSWORD not in value("DATABASE_URL") and "app:••••@db.fake.internal:5432" in value("DATABASE_URL")
        assert value("FAKE_API_KEY") == "sk_••••"
        assert value("PGHOST") == "db.fake.internal"

        table.move_cursor(row=list(app.screen.env).index("FAKE_API_KEY"))
        await pilot.press("x")
        assert value("FAKE_API_KEY") == FAKE_API_KEY
        assert FAKE_DB_PASSWORD not in value("DATABASE_URL"), "x reveals the selected row only"
        await pilot.press("x")
        assert value("FAKE_API_KEY") == "sk_••••"

        await pilot.press("X")
        assert FAKE_DB_PASSWORD in value("DATABASE_URL") and value("FAKE_API_KEY") == FAKE_API_KEY
        await pilot.press("X")
        assert FAKE_DB_PASSWORD not in value("DATABASE_URL")

        await pilot.press("c")
        assert copied == [FAKE_API_KEY]
        await pilot.press("C")
        assert copied[-1].startswith("# Generated by mk0r-tui") and f"FAKE_API_KEY={FAKE_API_KEY}" in copied[-1]
        await pilot.pause()
        assert any("FAKE_API_KEY: sent to the terminal's clipboard" in n for n in notifications(app))
        assert any(n.startswith("The whole .env") and "sent to the terminal's clipboard" in n for n in notifications(app))
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_open_repo_opens_github_url(make_app, fakes, session_key, monkeypatch):
    app = make_app(fakes)
    opened: list[str] = []
    monkeypatch.setattr(app, "open_url", lambda url, **kw: opened.append(url))
    async with app.run_test(size=SIZE) as pilot:
        await provision(pilot, session_key)
        await pilot.press("o")
        assert opened == [REPO_URL]


async def test_open_repo_shows_local_repo_path(make_app, session_key, monkeypatch):
    providers = fake_set(**{"fake-repo": FakeProvider("fake-repo", Slot.REPO, kind="bare-repo", env={"LOCAL_GIT_REPO": "/srv/repos/mk0r-x.git"})})
    app = make_app(providers)
    opened: list[str] = []
    monkeypatch.setattr(app, "open_url", lambda url, **kw: opened.append(url))
    async with app.run_test(size=SIZE) as pilot:
        await provision(pilot, session_key)
        await pilot.press("o")
        await pilot.pause()
        assert opened == []
        assert type(app.screen).__name__ == "RepoPathScreen"
        assert app.screen.query_one("#repo-path", Input).value == "/srv/repos/mk0r-x.git"


async def test_teardown_needs_the_slug_then_panels_go(make_app, fakes, session_key):
    app = make_app(fakes)
    talk = Conversation()
    slug = session_key[:12]
    async with app.run_test(size=SIZE, message_hook=talk) as pilot:
        await provision(pilot, session_key)
        await pilot.press("t")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, TeardownScreen)
        assert app.focused is modal.query_one("#cancel", Button)
        listed = modal.query_one("#doomed", DataTable)
        live = app.runtime.ledger.resources(session_key, live_only=True)
        assert listed.row_count == len(live) == 4
        assert {str(listed.get_row_at(i)[2]) for i in range(listed.row_count)} == {f"mk0r-{slug}"}

        delete = modal.query_one("#delete", Button)
        assert delete.disabled
        await pilot.press(*"nope", "enter")  # typing goes to the slug field even from Cancel
        assert modal.query_one("#confirm-slug", Input).value == "nope"
        await pilot.pause()
        assert app.screen is modal and delete.disabled
        assert all(not f.deleted for f in fakes.values())

        modal.query_one("#confirm-slug", Input).value = ""
        await pilot.press(*slug)
        await pilot.pause()
        assert not delete.disabled
        await pilot.click("#delete")
        await settle(app, pilot)

        assert isinstance(app.screen, DashboardScreen)
        for name in ("fake-analytics", "fake-db", "fake-repo", "fake-target"):
            assert fakes[name].deleted == [f"mk0r-{slug}"]
            assert panels(app)[name].panel.status is Status.GONE
        assert app.sessions[session_key].state == "deleted"
        assert app.screen.query_one("#detail").has_class("-dimmed")
        assert app.runtime.ledger.resources(session_key, live_only=True) == []
        for name in ("fake-db", "fake-repo"):
            kinds = talk.kinds(session_key, name)
            assert kinds.index("TeardownStarted") < kinds.index("ResourceDeleted")
        assert app.screen.check_action("teardown", ()) is None


async def test_teardown_cancel_deletes_nothing(make_app, fakes, session_key):
    app = make_app(fakes)
    async with app.run_test(size=SIZE) as pilot:
        await provision(pilot, session_key)
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("enter")  # focus is on Cancel
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        assert all(not f.deleted for f in fakes.values())
        assert "cancelled: nothing deleted" in " ".join(notifications(app))


async def test_teardown_failure_shows_the_error_in_its_panel(make_app, session_key):
    providers = fake_set(**{"fake-db": FakeProvider("fake-db", Slot.DATABASE, kind="database", teardown_error="database is in use")})
    app = make_app(providers)
    async with app.run_test(size=SIZE) as pilot:
        await provision(pilot, session_key)
        app.start_teardown(session_key)
        await settle(app, pilot)
        db = panels(app)["fake-db"]
        assert db.panel.status is Status.FAILED
        assert "teardown: DELETE /databases/database-" in db.panel.error and "database is in use" in db.panel.error
        assert panels(app)["fake-repo"].panel.status is Status.GONE
        assert app.sessions[session_key].state == "teardown_incomplete"


async def test_no_teardown_while_provisioning(make_app, session_key):
    gate = asyncio.Event()
    providers = fake_set(**{"fake-db": FakeProvider("fake-db", Slot.DATABASE, kind="database", gate=gate)})
    app = make_app(providers)
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(Session.parse(session_key))
        await wait_until(lambda: db_running(app, session_key), pilot=pilot)
        assert app.sessions[session_key].busy == "provisioning"
        assert panels(app)["fake-db"].panel.status is Status.RUNNING
        assert app.screen.check_action("teardown", ()) is None
        assert app.screen.check_action("retry", ()) is None
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        gate.set()
        await settle(app, pilot)
        assert app.screen.check_action("teardown", ()) is True


async def test_read_only_hides_every_mutating_action(make_app, fakes, session_key):
    from mk0r_tui.engine.orchestrator import provision_services

    prepared = make_app(fakes)
    await provision_services(prepared.runtime, Session.parse(session_key), prepared.runtime.plan())
    app = make_app(fakes, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.screen.query_one(SessionList).selected_key == session_key
        footer_keys = {b.binding.action for b in app.active_bindings.values() if app.screen.check_action(b.binding.action, ()) is not False}
        for action in ("new_session", "retry", "teardown"):
            assert app.screen.check_action(action, ()) is False
            assert action not in footer_keys
        assert app.screen.check_action("env", ()) is True
        await pilot.press("n")
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen) and not app.workers
        assert app.start_provision(Session.new()) is None and app.start_teardown(session_key) is None


async def test_quit_while_busy_asks_then_drains(make_app, session_key):
    gate = asyncio.Event()
    providers = fake_set(**{"fake-db": FakeProvider("fake-db", Slot.DATABASE, kind="database", gate=gate)})
    app = make_app(providers)
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(Session.parse(session_key))
        await wait_until(lambda: db_running(app, session_key), pilot=pilot)
        await pilot.press("q")
        await pilot.pause()
        from mk0r_tui.tui.screens.confirm_quit import ConfirmQuitScreen

        assert isinstance(app.screen, ConfirmQuitScreen)
        assert app.focused.id == "stay"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen) and not app._exit

        await pilot.press("ctrl+c")
        await pilot.pause()
        assert not app._exit, "the first Ctrl+C lets in-flight work finish"
        assert any("Ctrl+C again to exit now" in n for n in notifications(app))
        gate.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app._exit and app.return_code == 0
    assert app.runtime.ledger.get_session(session_key).state == "ready"


async def test_second_ctrl_c_exits_and_names_what_may_be_orphaned(make_app, session_key, capsys):
    gate = asyncio.Event()
    providers = fake_set(**{"fake-db": FakeProvider("fake-db", Slot.DATABASE, kind="database", gate=gate)})
    app = make_app(providers)
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(Session.parse(session_key))
        await wait_until(lambda: db_running(app, session_key), pilot=pilot)
        await pilot.press("ctrl+c")
        await pilot.pause()
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app._exit and app.return_code == 130
    message = " ".join(capsys.readouterr().err.split())
    assert f"fake-db database mk0r-{session_key[:12]} (pending)" in message
    assert "mk0r-tui orphans" in message


async def test_quit_when_idle_exits_at_once(make_app, fakes):
    app = make_app(fakes)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await pilot.pause()
        assert app._exit


async def test_switching_selection_keeps_other_sessions_events(make_app):
    gate = asyncio.Event()
    providers = fake_set(**{"fake-db": FakeProvider("fake-db", Slot.DATABASE, kind="database", gate=gate)})
    app = make_app(providers)
    first, second = Session.parse("first-session-aa"), Session.parse("second-session-bb")
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(first)
        await wait_until(lambda: db_running(app, first.key), pilot=pilot)
        app.start_provision(second)
        await wait_until(lambda: db_running(app, second.key), pilot=pilot)
        session_list = app.screen.query_one(SessionList)
        assert session_list.selected_key == second.key
        assert session_list.shown_keys == (second.key, first.key), "newest first"
        gate.set()
        await settle(app, pilot)
        # events of `first` arrived while `second` was selected
        assert app.sessions[first.key].state == "ready"
        session_list.move_cursor(row=1)
        await pilot.pause()
        assert {p.panel.status for p in panels(app).values()} == {Status.OK, Status.SKIPPED}
        log_text = "\n".join(line.text for line in app.screen.query_one("#event-log").lines)
        assert "fake-db: ok in" in log_text and "all providers settled" in log_text


async def test_progress_bursts_collapse(make_app, fakes):
    """Queued progress lines of one provider collapse to the newest; other events never do."""
    from mk0r_tui.core.events import ProviderProgressed

    app = make_app(fakes)
    talk = Conversation()
    key = "burst-session-1"
    async with app.run_test(size=SIZE, message_hook=talk) as pilot:
        app.post_message(SessionEventReceived(WorkStarted(session=key, kind="provision", slug="burst-sessio", plan=(("fake-db", Slot.DATABASE),))))
        app.post_message(SessionEventReceived(ProviderStarted(session=key, provider="fake-db", slot=Slot.DATABASE)))
        for step in range(200):
            app.post_message(SessionEventReceived(ProviderProgressed(session=key, provider="fake-db", message=f"step {step}")))
        await pilot.pause()
        progressed = [e for e in talk.events(key) if isinstance(e, ProviderProgressed)]
        assert len(progressed) < 10
        assert progressed[-1].message == "step 199"
        assert app.sessions[key].panel("fake-db").message == "step 199"
        assert [type(e).__name__ for e in talk.events(key)][:2] == ["WorkStarted", "ProviderStarted"]


async def test_twenty_sessions_at_once_stay_responsive(make_app):
    """20 sessions × 4 providers, 50 progress lines each, all at once: everything settles and
    the event loop never stalls for long (checked by a probe task measuring its own lag)."""
    import time

    providers = fake_set(**{
        name: FakeProvider(name, slot, kind=kind, progress=50)
        for name, slot, kind in (("fake-analytics", Slot.ANALYTICS, "tag"), ("fake-db", Slot.DATABASE, "database"), ("fake-repo", Slot.REPO, "repo"))
    })
    app = make_app(providers, skipped_email=False)
    lags: list[float] = []

    async def probe() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - before - 0.01)

    async with app.run_test(size=SIZE) as pilot:
        probing = asyncio.create_task(probe())
        started = time.perf_counter()
        for index in range(20):
            app.start_provision(Session.parse(f"load-{index:02d}-session"))
        await settle(app, pilot)
        elapsed = time.perf_counter() - started
        probing.cancel()
        assert all(s.state == "ready" for s in app.sessions.values()) and len(app.sessions) == 20
        assert app.screen.query_one(SessionList).row_count == 20
        # generous bounds: they catch a hang or a UI that blocks the loop, not a slow machine
        # (bench/dashboard.py measures the real figures)
        assert elapsed < 60, elapsed
        assert max(lags) < 5.0, f"the event loop stalled {max(lags):.2f}s"


async def test_orphans_and_keys_screens_open(make_app, fakes):
    app = make_app(fakes)
    async with app.run_test(size=SIZE) as pilot:
        for key, name in (("O", "OrphansScreen"), ("K", "KeysScreen")):
            await pilot.press(key)
            await pilot.pause()
            assert type(app.screen).__name__ == name
            app.pop_screen()
            await pilot.pause()


async def test_command_palette_offers_only_applicable_actions(make_app, fakes, session_key):
    from mk0r_tui.tui.app import DashboardCommands

    app = make_app(fakes)
    async with app.run_test(size=SIZE) as pilot:
        await provision(pilot, session_key)
        provider = DashboardCommands(app.screen)
        titles = [hit.text for hit in [h async for h in provider.discover()]]
        name = f"mk0r-{Session.parse(session_key).slug}"
        assert f"Tear down {name}" in titles and "New session" in titles
        assert f"Retry {name}" not in titles, "nothing failed"
        hits = [h async for h in provider.search("tear down")]
        assert hits and hits[0].text == f"Tear down mk0r-{Session.parse(session_key).slug}"
        await hits[0].command()
        await pilot.pause()
        assert isinstance(app.screen, TeardownScreen)


async def test_help_lists_every_dashboard_key(make_app, fakes):
    from mk0r_tui.tui.screens.help import HelpScreen

    app = make_app(fakes)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        from mk0r_tui.tui.screens.help import key_label

        keys = {key_label(b) for _, bindings in app.screen.sections for b in bindings}
        assert {"n", "r", "e", "o", "t", "O", "K", "/", "q", "?", "x", "X", "c", "C", "j", "k", "A", "S", "N"} <= keys


async def test_filter_narrows_the_session_list(make_app, fakes):
    from mk0r_tui.engine.orchestrator import provision_services

    prepared = make_app(fakes)
    for key in ("alpha-session-1", "bravo-session-2"):
        await provision_services(prepared.runtime, Session.parse(key), prepared.runtime.plan())
    app = make_app(fakes)
    async with app.run_test(size=SIZE) as pilot:
        session_list = app.screen.query_one(SessionList)
        assert session_list.row_count == 2
        await pilot.press("slash", *"bravo")
        await pilot.pause()
        assert session_list.shown_keys == ("bravo-session-2",)
        await pilot.press("escape")
        await pilot.pause()
        assert session_list.row_count == 2


def test_styles_are_found_and_shipped():
    import tomllib
    from pathlib import Path

    from mk0r_tui.tui.app import Mk0rApp, styles_dir

    names = {p.name for p in Mk0rApp.CSS_PATH}
    assert {"global.tcss", "dashboard.tcss", "env.tcss", "modals.tcss"} <= names
    assert Mk0rApp.CSS_PATH[0].name == "global.tcss"
    assert all(Path(p).parent == styles_dir() for p in Mk0rApp.CSS_PATH)
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]["styles"] == "mk0r_tui/styles"


async def test_a_worker_that_raises_settles_the_session_and_says_why(make_app, fakes, session_key):
    """provision_services itself failing (here: a provider nobody registered) must not leave the
    session looking busy: the worker's error arrives through Worker.StateChanged."""
    app = make_app(fakes)
    broken = Plan((PlanStep("fake-db", Slot.DATABASE), PlanStep("no-such-provider", Slot.DATABASE)), PlanStep("fake-target", Slot.TARGET))
    app.runtime.plan = lambda target=None: broken
    talk = Conversation()
    async with app.run_test(size=SIZE, message_hook=talk) as pilot:
        await provision(pilot, session_key)
        session = app.sessions[session_key]
        assert session.busy is None and session.state != "provisioning"
        assert {p.status for p in session.panels} == {Status.FAILED}
        assert all("no-such-provider" in p.error for p in session.panels)
        assert any("no-such-provider" in n for n in notifications(app))
        errored = [m for m in talk.messages if isinstance(m, Worker.StateChanged) and m.state is WorkerState.ERROR]
        assert errored and talk.kinds(session_key)[-1] == "WorkEnded"
        assert app.screen.check_action("retry", ()) is True


async def test_no_keyring_is_said_once_and_env_keys_still_count(make_app, fakes, monkeypatch):
    """The test machine has no keyring backend (conftest): the dashboard says so plainly."""
    monkeypatch.setenv("RESEND_PROVISIONING_KEY", "re_from_the_environment_123")
    app = make_app(fakes)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        said = [n for n in notifications(app) if "no OS keyring" in n]
        assert len(said) == 1 and "environment variables" in said[0]
        assert app.runtime.credentials.get("RESEND_PROVISIONING_KEY").source == "env"
