"""Keys the operator types are never lost or sent to the wrong widget, whatever the UI is busy
with (issue 16): a `/filter` typed in one burst, `n` + Enter repeated, `q`/Esc inside screens,
`j`/`k` movement, and feedback for a key that does nothing now."""

from __future__ import annotations

import asyncio

from pilot_kit import settle
from textual import events
from textual.widgets import Input
from tui_fakes import FakeProvider, fake_set
from waiting import wait_until

from mk0r_tui.core.models import Session, Slot
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


async def test_ten_new_sessions_typed_in_one_burst_while_sessions_provision_make_ten(make_app):
    """`n`, Enter ten times, all queued at once while five sessions are held mid-provision: ten
    new sessions, no dialog left open holding stray `n`s."""
    gate = asyncio.Event()
    app = make_app(fake_set(**{"fake-db": FakeProvider("fake-db", Slot.DATABASE, kind="database", gate=gate)}))
    async with app.run_test(size=SIZE) as pilot:
        for index in range(5):
            app.start_provision(Session.parse(f"busy{index:04d}-held"))
        await wait_until(lambda: len(app.busy_sessions) == 5, pilot=pilot, what="five sessions provisioning")
        burst(app, *["n", "enter"] * 10)
        await wait_until(lambda: len(app.sessions) == 15, pilot=pilot, what="ten new sessions")
        assert isinstance(app.screen, DashboardScreen), "no dialog is left open"
        gate.set()
        await settle(app, pilot)
        assert len(app.sessions) == 15 and all(s.state == "ready" for s in app.sessions.values())


async def test_keys_typed_right_after_n_land_in_the_new_session_field(make_app):
    app = make_app(fake_set())
    async with app.run_test(size=SIZE) as pilot:
        burst(app, "n", *"typedahead-1", "enter")
        await wait_until(lambda: "typedahead-1" in app.sessions, pilot=pilot, what="the typed key's session")
        await settle(app, pilot)
        assert list(app.sessions) == ["typedahead-1"] and app.sessions["typedahead-1"].state == "ready"


async def test_q_and_escape_go_back_in_every_screen_and_only_the_dashboard_q_quits(make_app, session_key, memory_keyring):
    app = make_app(fake_set())
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(Session.parse(session_key))
        await settle(app, pilot)
        for opener in ("K", "O", "e", "question_mark"):
            for back in ("q", "escape"):
                await pilot.press(opener)
                await wait_until(lambda: not isinstance(app.screen, DashboardScreen), pilot=pilot, what=f"{opener} to open a screen")
                opened = type(app.screen).__name__
                await pilot.press(back)
                await wait_until(lambda: isinstance(app.screen, DashboardScreen), pilot=pilot,
                                 what=f"{back} to leave {opened}")
                assert app.is_running, f"{back} in {opened} quit the app"
        await pilot.press("q")
        await wait_until(lambda: not app.is_running, pilot=pilot, what="the dashboard's q to quit")


async def test_j_and_k_move_the_cursor_and_k_no_longer_leaves_the_dashboard(make_app):
    app = make_app(fake_set())
    async with app.run_test(size=SIZE) as pilot:
        for key in ("aaaaaaaa-first", "bbbbbbbb-second", "cccccccc-third"):
            app.start_provision(Session.parse(key))
            await settle(app, pilot)
        session_list = app.screen.query_one(SessionList)
        session_list.move_cursor(row=0)
        await pilot.pause()
        top = session_list.selected_key
        await pilot.press("j", "j")
        assert session_list.cursor_row == 2 and app.screen.selected_key == session_list.shown_keys[2]
        await pilot.press("k")
        assert session_list.cursor_row == 1
        await pilot.press("k")
        assert session_list.selected_key == top and isinstance(app.screen, DashboardScreen)


async def test_a_key_that_does_nothing_now_says_why(make_app, session_key):
    app = make_app(fake_set())
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(Session.parse(session_key))
        await settle(app, pilot)
        app.start_teardown(session_key)
        await settle(app, pilot)
        assert app.sessions[session_key].deleted
        app.clear_notifications()
        for key in ("r", "e", "o", "t"):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, DashboardScreen)
        said = [n.message for n in app._notifications]
        assert len(said) == 4 and all(f"mk0r-{Session.parse(session_key).slug} is deleted" in m for m in said), said


async def test_a_wrong_slug_and_enter_in_the_teardown_modal_says_why(make_app, session_key):
    from mk0r_tui.tui.screens.teardown import TeardownScreen

    app = make_app(fake_set())
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(Session.parse(session_key))
        await settle(app, pilot)
        await pilot.press("t")
        await pilot.press(*"wrong", "enter")
        await pilot.pause()
        assert isinstance(app.screen, TeardownScreen)
        mismatch = app.screen.query_one("#slug-mismatch")
        assert mismatch.has_class("-visible") and "'wrong' is not the slug" in str(mismatch.render())
        await pilot.press(*("backspace",) * 5)
        assert not mismatch.has_class("-visible")


async def test_a_stale_cancelled_toast_never_sits_over_teardown_finished(make_app, session_key):
    app = make_app(fake_set())
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(Session.parse(session_key))
        await settle(app, pilot)
        slug = Session.parse(session_key).slug
        await pilot.press("t", "escape")
        await pilot.pause()
        assert any("cancelled" in n.message for n in app._notifications)
        await pilot.press("t", *slug, "enter")
        await settle(app, pilot)
        said = [n.message for n in app._notifications]
        assert any("finished: session deleted" in m for m in said), said
        assert not any("cancelled" in m for m in said), said


async def test_o_on_a_local_repo_shows_its_path_to_copy(make_app, session_key, monkeypatch):
    from mk0r_tui.tui.screens.repo_path import RepoPathScreen

    repo = FakeProvider("fake-repo", Slot.REPO, kind="repo", env={"LOCAL_GIT_REPO": "/srv/mk0r/repos/demo.git"})
    app = make_app(fake_set(**{"fake-repo": repo}))
    copied: list[str] = []
    monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(Session.parse(session_key))
        await settle(app, pilot)
        await pilot.press("o")
        assert isinstance(app.screen, RepoPathScreen)
        assert app.screen.query_one("#repo-path", Input).value == "/srv/mk0r/repos/demo.git"
        await pilot.press("c")
        assert copied == ["/srv/mk0r/repos/demo.git"]
        assert any("sent to the terminal's clipboard" in n.message for n in app._notifications)
        assert not any("Copied" in n.message for n in app._notifications)
        await pilot.press("q")
        assert isinstance(app.screen, DashboardScreen)


async def test_env_copy_says_sent_to_the_terminal_not_copied(make_app, session_key, monkeypatch):
    app = make_app(fake_set())
    monkeypatch.setattr(app, "copy_to_clipboard", lambda text: None)
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(Session.parse(session_key))
        await settle(app, pilot)
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("c", "C")
        said = [n.message for n in app._notifications]
        assert len([m for m in said if "sent to the terminal's clipboard" in m]) == 2, said
        assert not any(m.startswith("Copied") for m in said), said


async def test_the_palette_lists_the_selected_sessions_actions_by_name(make_app, session_key):
    from mk0r_tui.tui.app import DashboardCommands

    app = make_app(fake_set())
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(Session.parse(session_key))
        await settle(app, pilot)
        name = f"mk0r-{Session.parse(session_key).slug}"
        await pilot.press("ctrl+p")
        await pilot.pause()
        provider = DashboardCommands(app.screen_stack[0], None)
        titles = [hit.text async for hit in provider.discover()]
        for entry in (f"Tear down {name}", f"Show .env of {name}", f"Open repository of {name}"):
            assert entry in titles, titles
        assert f"Retry {name}" not in titles, "nothing to retry: a ready session"
        await pilot.press("escape")


def test_the_teardown_modal_lists_a_sessions_resources_in_one_order_whatever_order_they_were_made():
    """Providers run concurrently, so the ledger's ids (the order intents arrived) differ from run
    to run; the confirmation reads the same every time: by provider, kind, name."""
    from mk0r_tui.core.ledger import ResourceRow
    from mk0r_tui.tui.screens.teardown import TeardownScreen

    rows = [ResourceRow(i, "k", provider, kind, "mk0r-x", None, None, "created")
            for i, (provider, kind) in enumerate([("local-mail", "mailbox"), ("local-git", "bare-repo"),
                                                  ("local-folder", "app-folder"), ("local-postgres", "role"),
                                                  ("local-postgres", "database")])]
    one = TeardownScreen("x", "k", rows).resources
    other = TeardownScreen("x", "k", list(reversed(rows))).resources
    assert [(r.provider, r.kind) for r in one] == [(r.provider, r.kind) for r in other] == [
        ("local-folder", "app-folder"), ("local-git", "bare-repo"), ("local-mail", "mailbox"),
        ("local-postgres", "database"), ("local-postgres", "role")]
