"""SVG snapshots of every dashboard screen, under a frozen clock with no cursor blink; and the
proof that no secret value reaches any of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input
from tui_fakes import FAKE_SECRETS, FAKE_SMTP_PASSWORD, fake_set
from tui_scenarios import LIVE, PARTIAL, READY, live_events

from mk0r_tui.core.models import Session
from mk0r_tui.tui.messages import SessionEventReceived
from mk0r_tui.tui.widgets.session_list import SessionList

SIZE = (150, 44)
SNAPSHOT_DIR = Path(__file__).parent / "__snapshots__" / Path(__file__).stem
# snapshots show a machine with a keyring (no "no keyring" notice on screen); seeded_app, frozen: conftest
pytestmark = pytest.mark.usefixtures("working_keyring")


def select(key: str):
    async def run_before(pilot) -> None:
        await pilot.pause()
        session_list = pilot.app.screen.query_one(SessionList)
        session_list.move_cursor(row=session_list.shown_keys.index(key), animate=False)
        await pilot.pause()

    return run_before


def still_cursor(pilot) -> None:
    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_dashboard_mid_provision(snap_compare, seeded_app, frozen):
    app = seeded_app()

    async def run_before(pilot) -> None:
        await pilot.pause()
        for event in live_events(frozen):
            app.post_message(SessionEventReceived(event))
        await pilot.pause()
        app.dashboard.select_when_shown(LIVE.key)
        await pilot.pause()
        app._tick()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_dashboard_all_ok(snap_compare, seeded_app):
    assert snap_compare(seeded_app(), terminal_size=SIZE, run_before=select(READY.key))


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_dashboard_with_a_failure(snap_compare, seeded_app):
    assert snap_compare(seeded_app(), terminal_size=SIZE, run_before=select(PARTIAL.key))


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_dashboard_read_only(snap_compare, seeded_app):
    assert snap_compare(seeded_app(read_only=True), terminal_size=SIZE, run_before=select(READY.key))


def test_env_viewer_masked(snap_compare, seeded_app):
    async def run_before(pilot) -> None:
        await select(READY.key)(pilot)
        await pilot.press("e")
        await pilot.pause()

    assert snap_compare(seeded_app(), terminal_size=SIZE, run_before=run_before)


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_teardown_modal(snap_compare, seeded_app):
    async def run_before(pilot) -> None:
        await select(READY.key)(pilot)
        await pilot.press("t")
        await pilot.pause()
        still_cursor(pilot)

    assert snap_compare(seeded_app(), terminal_size=SIZE, run_before=run_before)


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_new_session_modal_with_a_bad_key(snap_compare, seeded_app):
    async def run_before(pilot) -> None:
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        still_cursor(pilot)
        await pilot.press(*"Bad Key!", "enter")
        await pilot.pause()

    assert snap_compare(seeded_app(), terminal_size=SIZE, run_before=run_before)


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_help_screen(snap_compare, seeded_app):
    assert snap_compare(seeded_app(), terminal_size=SIZE, press=["question_mark"])


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_quit_while_busy_modal(snap_compare, seeded_app, frozen):
    app = seeded_app()

    async def run_before(pilot) -> None:
        await pilot.pause()
        for event in live_events(frozen):
            app.post_message(SessionEventReceived(event))
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_stored_snapshots_hold_no_secret():
    """Every accepted snapshot of this module was made from a ledger and .env full of fake secrets."""
    svgs = sorted(SNAPSHOT_DIR.glob("*.svg"))
    assert len(svgs) >= 9
    for svg in svgs:
        text = svg.read_text(encoding="utf-8")
        for secret in (*FAKE_SECRETS, FAKE_SMTP_PASSWORD):
            assert secret not in text, f"{secret!r} appears in {svg.name}"


async def test_no_secret_reaches_any_screen(make_app, session_key):
    """Provision through fake providers that hand out recognisable secrets, then look at every
    screen the operator can open without an explicit reveal: none shows a secret."""
    providers = fake_set()
    app = make_app(providers)
    screens: dict[str, str] = {}
    async with app.run_test(size=SIZE) as pilot:
        app.start_provision(Session.parse(session_key))
        await app.workers.wait_for_complete()
        await pilot.pause()
        screens["dashboard"] = app.export_screenshot()
        await pilot.press("e")
        await pilot.pause()
        env_table = app.screen.query_one("#env-table")
        assert env_table.row_count == 5
        screens["env"] = app.export_screenshot()
        await pilot.press("escape", "t")
        await pilot.pause()
        screens["teardown"] = app.export_screenshot()
        await pilot.press("escape", "question_mark")
        await pilot.pause()
        screens["help"] = app.export_screenshot()
        await pilot.press("escape")
    env_file = Path(app.sessions[session_key].env_file).read_text()
    assert all(secret in env_file for secret in FAKE_SECRETS), "the fakes did hand out the secrets"
    for name, svg in screens.items():
        for secret in FAKE_SECRETS:
            assert secret not in svg, f"{secret!r} shown on the {name} screen"
