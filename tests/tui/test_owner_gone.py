"""A session whose run's owner dies in another process turns `interrupted` on an open dashboard
within a few seconds (it re-reads the leases), and the dashboard, `sessions --json` and the
ledger agree on the word."""

from __future__ import annotations

from tui_fakes import fake_set
from tui_scenarios import provisioning_elsewhere
from waiting import wait_until

from mk0r_tui.cli import sessions_json
from mk0r_tui.core.models import Session


async def test_a_run_whose_owner_dies_elsewhere_turns_interrupted_on_the_open_dashboard(make_app):
    app = make_app(fake_set())
    ledger = app.runtime.ledger
    session = Session.parse("ownergone001-test")
    with provisioning_elsewhere(ledger, session) as owner:
        app.load_ledger()
        async with app.run_test(size=(160, 48)) as pilot:
            assert app.sessions[session.key].state == "provisioning"  # its owner is alive
            owner.kill()
            owner.wait()
            await wait_until(lambda: app.sessions[session.key].state == "interrupted", pilot=pilot, timeout=10,
                             what="the dashboard to show the owner gone")
    assert ledger.get_session(session.key).state == "interrupted"
    assert next(s["state"] for s in sessions_json(app.runtime) if s["session"] == session.key) == "interrupted"
