"""One truth for a session's state: after each kind of run, the dashboard that ran it, a
dashboard opened afterwards, `sessions --json` and the ledger say the same word."""

from __future__ import annotations

import pytest
from pilot_kit import settle
from test_handoff_screen import HandingDb, HandingRepo
from tui_fakes import FakeProvider, fake_set

from mk0r_tui.cli import sessions_json
from mk0r_tui.core.models import Session, Slot
from mk0r_tui.core.plan import Plan, PlanStep
from mk0r_tui.engine.handoff import HandoffRequest
from mk0r_tui.tui.app import Mk0rApp

SIZE = (160, 48)


def failing_everywhere():
    return {name: FakeProvider(p.name, p.slot, kind=p.kind, env=p.env, fail_times=5) for name, p in fake_set().items()}


SCENARIOS = {
    "ready": (fake_set, None),
    "partial": (lambda: fake_set(**{"fake-repo": FakeProvider("fake-repo", Slot.REPO, kind="repo", fail_times=1)}), None),
    "failed": (failing_everywhere, None),
    "interrupted": (fake_set, "broken-plan"),
    "deleted": (fake_set, "teardown"),
    "teardown_incomplete": (
        lambda: fake_set(**{"fake-db": FakeProvider("fake-db", Slot.DATABASE, kind="database", teardown_error="still in use")}),
        "teardown",
    ),
    "handed_off": (lambda: fake_set(**{"fake-repo": HandingRepo(), "fake-db": HandingDb()}), "handoff"),
}


@pytest.mark.parametrize("expected", list(SCENARIOS))
async def test_the_dashboard_sessions_json_and_the_ledger_agree(expected, make_app, session_key):
    make_providers, then = SCENARIOS[expected]
    app = make_app(make_providers())
    if then == "broken-plan":
        broken = Plan((PlanStep("fake-db", Slot.DATABASE), PlanStep("no-such-provider", Slot.DATABASE)), PlanStep("fake-target", Slot.TARGET))
        app.runtime.plan = lambda target=None: broken
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(Session.parse(session_key))
        await settle(app, pilot)
        if then == "teardown":
            app.start_teardown(session_key)
            await settle(app, pilot)
        if then == "handoff":
            app._handoff(session_key, HandoffRequest(github_org="acme", neon_org="org-theirs"))
            await settle(app, pilot)
        live_word = app.sessions[session_key].state

    ledger_word = app.runtime.ledger.get_session(session_key).state
    json_word = next(s["state"] for s in sessions_json(app.runtime) if s["session"] == session_key)
    reopened = Mk0rApp(app.runtime)
    assert (live_word, reopened.sessions[session_key].state, json_word, ledger_word) == (expected,) * 4
