"""`h`: the hand-off modal driven with Pilot, on fakes that offer the providers' hand-off calls
(the GitHub and Neon calls themselves are tested against their specs in tests/test_handoff.py)."""

from __future__ import annotations

import time

from textual.widgets import Button, Checkbox, Input
from textual.worker import WorkerFailed
from tui_fakes import FakeProvider, fake_set
from waiting import wait_until

from mk0r_tui.core.models import HandoffAnswer, Session, Slot
from mk0r_tui.tui.screens.dashboard import DashboardScreen
from mk0r_tui.tui.screens.handoff import HandoffScreen
from mk0r_tui.tui.widgets.provider_panel import panel_body

SIZE = (160, 48)
CLAIM = "https://console.neon.tech/app/claim?p=fake-project&tr=fake-request"


class HandingRepo(FakeProvider):
    handoff_calls = frozenset({"transfer"})

    def __init__(self) -> None:
        super().__init__("fake-repo", Slot.REPO, kind="repo", env={"GITHUB_REPO_URL": "https://github.com/octo/x"})
        self.transfers: list[str] = []

    async def transfer(self, row, new_owner: str, *, new_name: str | None = None) -> HandoffAnswer:
        self.transfers.append(new_owner)
        return HandoffAnswer("transferred", new_owner, None, {"url": f"https://github.com/{new_owner}/{row.name}"})


class HandingDb(FakeProvider):
    handoff_calls = frozenset({"transfer_request", "follow_claim", "transfer_to_org"})

    def __init__(self) -> None:
        super().__init__("fake-db", Slot.DATABASE, kind="database", env={"DATABASE_URL": "postgresql://a@h/d"})
        self.claimed = False

    async def transfer_request(self, row, *, ttl_s: int) -> HandoffAnswer:
        return HandoffAnswer("claim_pending", None, CLAIM, {"request_id": "fake-request", "expires": "2026-12-03T01:00:00+00:00"})

    async def follow_claim(self, row) -> HandoffAnswer:
        if not self.claimed:
            return HandoffAnswer("claim_pending", None, CLAIM, dict(row.handoff_detail))
        return HandoffAnswer("claimed", "creator-org", None, dict(row.handoff_detail))

    async def transfer_to_org(self, row, org_id: str) -> HandoffAnswer:
        return HandoffAnswer("transferred", org_id)


async def settle(app, pilot) -> None:
    try:
        await app.workers.wait_for_complete()
    except WorkerFailed:
        pass
    for _ in range(3):
        await pilot.pause()


def body(app, provider: str) -> str:
    panel = next(p for p in app.screen.provider_panels if p.panel.provider == provider)
    return panel_body(panel.panel, time.time()).plain


async def type_into(pilot, selector: str, text: str) -> None:
    pilot.app.screen.query_one(selector).focus()
    await pilot.press(*text)


async def test_h_hands_off_after_the_slug_is_typed_and_the_panels_say_so(make_app, session_key):
    repo, db = HandingRepo(), HandingDb()
    app = make_app(fake_set(**{"fake-repo": repo, "fake-db": db}))
    slug = Session.parse(session_key).slug
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(Session.parse(session_key))
        await settle(app, pilot)

        await pilot.press("h")
        assert isinstance(app.screen, HandoffScreen)
        await type_into(pilot, "#github-org", "acme")
        app.screen.query_one("#neon-claim", Checkbox).focus()
        await pilot.press("space")
        await pilot.pause()
        preview = str(app.screen.query_one("#handoff-preview").render())
        assert "transfer repo-" in preview and "to acme" in preview and "claim link" in preview
        assert app.screen.query_one("#handoff", Button).disabled  # not before the slug
        await type_into(pilot, "#confirm-slug", slug[:-1])
        assert app.screen.query_one("#handoff", Button).disabled
        await pilot.press(slug[-1])
        assert not app.screen.query_one("#handoff", Button).disabled
        await pilot.press("enter")

        await wait_until(lambda: isinstance(app.screen, DashboardScreen) and "handed off → acme" in body(app, "fake-repo"), pilot=pilot)
        assert repo.transfers == ["acme"]
        assert "claim pending (expires 2026-12-03T01:00:00+00:00)" in body(app, "fake-db")
        assert CLAIM in body(app, "fake-db")
        rows = {r.provider: r for r in app.runtime.ledger.resources(session_key)}
        assert (rows["fake-repo"].handoff, rows["fake-repo"].handoff_owner) == ("transferred", "acme")
        assert rows["fake-db"].handoff == "claim_pending"

        # the dashboard follows the pending claim: once the recipient took it, the panel says so
        db.claimed = True
        app.follow_handoffs()
        await wait_until(lambda: "handed off → creator-org" in body(app, "fake-db"), pilot=pilot)
        assert app.sessions[session_key].state == "handed_off"


async def test_h_cancelled_changes_nothing_and_a_read_only_dashboard_has_no_h(make_app, session_key):
    repo = HandingRepo()
    app = make_app(fake_set(**{"fake-repo": repo}))
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(Session.parse(session_key))
        await settle(app, pilot)
        await pilot.press("h")
        await type_into(pilot, "#github-user", "alice")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen) and repo.transfers == []
        assert all(r.handoff is None for r in app.runtime.ledger.resources(session_key))

    reader = make_app(fake_set(**{"fake-repo": HandingRepo()}), read_only=True)
    async with reader.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert reader.screen.check_action("handoff", ()) is False
        await pilot.press("h")
        await pilot.pause()
        assert isinstance(reader.screen, DashboardScreen)
        assert not any(isinstance(w, Input) for w in reader.screen.query(Input) if w.id == "github-user")
