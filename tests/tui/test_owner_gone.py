"""A session whose run's owner dies in another process turns `interrupted` on an open dashboard
within a few seconds (it re-reads the leases), and the dashboard, `sessions --json` and the
ledger agree on the word."""

from __future__ import annotations

import subprocess
import sys

from tui_fakes import fake_set
from waiting import wait_until

from mk0r_tui.cli import sessions_json
from mk0r_tui.core.models import Session


async def test_a_run_whose_owner_dies_elsewhere_turns_interrupted_on_the_open_dashboard(make_app):
    app = make_app(fake_set())
    ledger = app.runtime.ledger
    session = Session.parse("ownergone001-test")
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ledger.ensure_session(session)
        ledger.set_session_state(session.key, "provisioning")
        assert ledger.acquire_lease(session.resource_name, session.key, "provision", "tok", stale_s=15) is None
        ledger._write("UPDATE leases SET pid = ?", (owner.pid,))  # the run is that other process's
        app.load_ledger()
        async with app.run_test(size=(160, 48)) as pilot:
            assert app.sessions[session.key].state == "provisioning"  # its owner is alive
            owner.kill()
            owner.wait()
            await wait_until(lambda: app.sessions[session.key].state == "interrupted", pilot=pilot, timeout=10,
                             what="the dashboard to show the owner gone")
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    assert ledger.get_session(session.key).state == "interrupted"
    assert next(s["state"] for s in sessions_json(app.runtime) if s["session"] == session.key) == "interrupted"
