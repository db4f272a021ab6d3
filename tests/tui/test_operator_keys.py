"""Keys the operator types are never lost or sent to the wrong widget, whatever the UI is busy
with (issue 16): a `/filter` typed in one burst, `n` + Enter repeated, `q`/Esc inside screens,
`j`/`k` movement, and feedback for a key that does nothing now."""

from __future__ import annotations

from pilot_kit import settle
from textual import events
from textual.widgets import Input
from tui_fakes import fake_set
from waiting import wait_until

from mk0r_tui.core.models import Session
from mk0r_tui.tui.screens.dashboard import DashboardScreen
from mk0r_tui.tui.widgets.session_list import SessionList

SIZE = (80, 24)

_CHARACTER_OF = {"slash": "/", "enter": "\r", "escape": "\x1b"}


def burst(app, *keys: str) -> None:
    """Queue every key at once, as a terminal delivers a fast typist's (or a paste's) keys: no
    key waits for the previous one to be handled, unlike `pilot.press`."""
    for key in keys:
        app.post_message(events.Key(key, _CHARACTER_OF.get(key, key if len(key) == 1 else None)))


async def test_a_filter_typed_in_one_burst_filters_on_every_character(make_app):
    app = make_app(fake_set())
    async with app.run_test(size=SIZE) as pilot:
        for key in ("aaaaaaaa-sigintd", "bbbbbbbb-other"):
            app.start_provision(Session.parse(key))
        await settle(app, pilot)
        burst(app, "slash", *"sigintd")
        await wait_until(lambda: app.screen.query_one("#session-filter", Input).value == "sigintd", pilot=pilot,
                         what="the whole burst in the filter")
        assert isinstance(app.screen, DashboardScreen), "no key of the burst opened another screen"
        assert app.screen.query_one(SessionList).shown_keys == ("aaaaaaaa-sigintd",)
        assert len(app.sessions) == 2 and not app.workers, "no key of the burst started anything"
