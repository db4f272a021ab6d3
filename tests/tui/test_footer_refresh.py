"""The footer is refreshed when an action's availability changes, not on every event.

Found by bench/dashboard.py: `refresh_bindings` (a Footer recompose) on every repaint made a
2,000 events/s burst back the message queue up by seconds, and key presses waited behind it.
"""

from __future__ import annotations

from tui_fakes import fake_set

from mk0r_tui.core.events import ProviderFailed, ProviderProgressed, ProviderStarted
from mk0r_tui.core.models import ProviderResult, Session, Slot, Status
from mk0r_tui.tui.messages import SessionEventReceived
from mk0r_tui.tui.state import WorkEnded, WorkStarted

SIZE = (160, 48)


async def test_a_burst_of_progress_leaves_the_footer_alone_and_a_failure_offers_retry(make_app, session_key):
    providers = fake_set()
    app = make_app(providers)
    session = Session.parse(session_key)
    plan = (("fake-db", Slot.DATABASE), ("fake-repo", Slot.REPO))
    async with app.run_test(size=SIZE) as pilot:
        post = lambda event: app.post_message(SessionEventReceived(event))  # noqa: E731
        post(WorkStarted(session=session.key, kind="provision", plan=plan, slug=session.slug, target="fake-target"))
        for provider, slot in plan:
            post(ProviderStarted(session=session.key, provider=provider, slot=slot))
        app.dashboard.select_when_shown(session.key)
        await pilot.pause()
        screen = app.screen
        assert screen.selected_key == session.key
        assert screen.check_action("retry", ()) is None

        refreshes: list[int] = []
        original = screen.refresh_bindings
        screen.refresh_bindings = lambda: (refreshes.append(1), original())[1]
        for i in range(300):
            post(ProviderProgressed(session=session.key, provider="fake-db", message=f"step {i}"))
        await pilot.pause()
        assert app.sessions[session.key].panel("fake-db").message == "step 299"
        assert refreshes == []

        failed = ProviderResult("fake-db", Slot.DATABASE, Status.FAILED, 10.0, 1, error="upstream said no")
        post(ProviderFailed(session=session.key, provider="fake-db", result=failed))
        post(WorkEnded(session=session.key, kind="provision", state="failed"))
        await pilot.pause()
        assert screen.check_action("retry", ()) is True
        assert len(refreshes) >= 1
