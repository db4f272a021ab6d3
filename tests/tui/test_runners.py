"""The dashboard shows which host and process runs each session (issue 12): the ledger's live
leases, whoever holds them, in the list (wide layout) and in the selected session's title; a
released lease leaves both within the dashboard's lease check."""

from __future__ import annotations

from tui_fakes import fake_set
from tui_scenarios import provisioning_elsewhere
from waiting import wait_until

from mk0r_tui.core.ledger import HOST
from mk0r_tui.core.models import Session
from mk0r_tui.tui.widgets.session_list import SessionList


async def test_the_host_and_pid_running_a_session_show_in_the_list_and_title(make_app):
    app = make_app(fake_set())
    ledger = app.runtime.ledger
    session = Session.parse("runnerxx0001-test")
    with provisioning_elsewhere(ledger, session) as other:
        app.load_ledger()
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause()
            session_list = app.screen.query_one(SessionList)
            runner = f"{HOST}:{other.pid}"
            assert str(session_list.get_cell(session.key, "runner")) == runner
            assert f"run by {runner}" in str(app.screen.query_one("#session-title").render())
            ledger._write("DELETE FROM leases")  # the run ended
            await wait_until(lambda: str(session_list.get_cell(session.key, "runner")) == "", pilot=pilot, timeout=10,
                             what="the released lease to leave the list")
            assert "run by" not in str(app.screen.query_one("#session-title").render())


async def test_this_dashboards_own_run_says_so(make_app):
    import asyncio

    from tui_fakes import FakeProvider

    from mk0r_tui.core.models import Slot

    gate = asyncio.Event()
    app = make_app(fake_set(**{"fake-db": FakeProvider("fake-db", Slot.DATABASE, kind="database", gate=gate)}))
    async with app.run_test(size=(160, 48)) as pilot:
        session = Session.parse("runnerxx0002-test")
        app.start_provision(session)
        session_list = app.screen.query_one(SessionList)
        await wait_until(lambda: session.key in session_list.shown_keys
                         and str(session_list.get_cell(session.key, "runner")) == "this dashboard", pilot=pilot, timeout=10,
                         what="the list to name this dashboard as the runner")
        gate.set()
        await app.workers.wait_for_complete()


async def test_timers_that_fire_while_the_app_closes_do_not_crash_it(make_app):
    """The lease check (2 s) and the age refresh (10 s) can fire after the dashboard's widgets
    are gone, while the app closes: they do nothing then."""
    app = make_app(fake_set())
    session = Session.parse("closingx0001-test")
    async with app.run_test(size=(160, 48)) as pilot:
        app.start_provision(session)
        await app.workers.wait_for_complete()
        await pilot.pause()
        dashboard = app.dashboard
    assert not dashboard.query(SessionList), "the widgets are gone once the app closed"
    dashboard.runners_changed()
    dashboard.refresh_ages()
    dashboard.sessions_changed({session.key})
    dashboard.theme_changed()
