"""The dashboard at 80×24 and 160×48 (issue 16): nothing cut (the list's columns collapse,
panels stack, the footer keeps `q` and `?`), help scrolls to its end, every modal fits, the
event log keeps every word through wrapping and resizes. SVG snapshots under a frozen clock
next to the assertions on the widgets' geometry."""

from __future__ import annotations

import functools

import pytest
from textual.containers import VerticalScroll
from textual.widgets import Button, Input
from textual.widgets._footer import FooterKey
from tui_scenarios import PARTIAL, READY

from mk0r_tui.tui.screens.dashboard import DashboardScreen
from mk0r_tui.tui.widgets.event_log import EventLog
from mk0r_tui.tui.widgets.provider_panel import ProviderPanel
from mk0r_tui.tui.widgets.session_list import SessionList

SMALL = (80, 24)
LARGE = (160, 48)
PARTIAL_ERROR = "connect → cannot connect to Postgres at 127.0.0.1:5432: connection refused (check MK0R_LOCAL_POSTGRES_URL)"
pytestmark = pytest.mark.usefixtures("working_keyring")


@pytest.fixture
def seeded_app(seeded_app):
    """The snapshot scenes' ledger (conftest); the partial session's teardown left something behind."""
    return functools.partial(seeded_app, partial_state="teardown_incomplete")


def select(key: str):
    async def run_before(pilot) -> None:
        await pilot.pause()
        session_list = pilot.app.screen.query_one(SessionList)
        session_list.move_cursor(row=session_list.shown_keys.index(key), animate=False)
        await pilot.pause()
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False

    return run_before


def then(*steps):
    async def run_before(pilot) -> None:
        for step in steps:
            if callable(step):
                await step(pilot)
            else:
                await pilot.press(step)
            await pilot.pause()
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False

    return run_before


def inside(widget, width: int, height: int) -> bool:
    region = widget.region
    return region.width > 0 and region.right <= width and region.bottom <= height


# -- snapshots -----------------------------------------------------------------------------


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_snapshot_dashboard_80x24(snap_compare, seeded_app):
    assert snap_compare(seeded_app(), terminal_size=SMALL, run_before=select(READY.key))


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_snapshot_dashboard_80x24_failure(snap_compare, seeded_app):
    assert snap_compare(seeded_app(), terminal_size=SMALL, run_before=select(PARTIAL.key))


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_snapshot_dashboard_160x48_teardown_incomplete(snap_compare, seeded_app):
    assert snap_compare(seeded_app(), terminal_size=LARGE, run_before=select(PARTIAL.key))


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_snapshot_help_scrolled_to_its_end_80x24(snap_compare, seeded_app):
    assert snap_compare(seeded_app(), terminal_size=SMALL, run_before=then(select(READY.key), "question_mark", "end"))


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_snapshot_help_160x48(snap_compare, seeded_app):
    assert snap_compare(seeded_app(), terminal_size=LARGE, run_before=then(select(READY.key), "question_mark"))


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_snapshot_teardown_modal_80x24(snap_compare, seeded_app):
    assert snap_compare(seeded_app(), terminal_size=SMALL, run_before=then(select(READY.key), "t"))


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_snapshot_teardown_modal_160x48(snap_compare, seeded_app):
    assert snap_compare(seeded_app(), terminal_size=LARGE, run_before=then(select(READY.key), "t"))


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_snapshot_new_session_modal_80x24(snap_compare, seeded_app):
    assert snap_compare(seeded_app(), terminal_size=SMALL, run_before=then(select(READY.key), "n"))


def test_snapshot_env_viewer_80x24(snap_compare, seeded_app):
    assert snap_compare(seeded_app(), terminal_size=SMALL, run_before=then(select(READY.key), "e"))


@pytest.mark.sqlite_only("the one-machine scene: on a team ledger the dashboard adds the job queue's line (tests/tui/test_queue_panel.py)")
def test_snapshot_filter_without_a_match_80x24(snap_compare, seeded_app):
    assert snap_compare(seeded_app(), terminal_size=SMALL, run_before=then(select(READY.key), "slash", *"zzz"))


# -- geometry and behaviour ----------------------------------------------------------------


@pytest.mark.parametrize("size", [SMALL, (100, 30), (120, 35), LARGE])
async def test_nothing_is_cut(seeded_app, size):
    """The footer's `q` and `?` are on screen, the list needs no sideways scroll (its columns
    collapse), panels are wide enough to read, and the title is whole."""
    app = seeded_app()
    width, height = size
    async with app.run_test(size=size) as pilot:
        await select(PARTIAL.key)(pilot)
        screen = app.screen
        keys = {key.key: key for key in screen.query(FooterKey)}
        assert {"q", "question_mark"} <= set(keys), sorted(keys)
        assert all(inside(key, width, height) for key in keys.values()), "a footer key is off screen"
        session_list = screen.query_one(SessionList)
        assert session_list.max_scroll_x == 0, f"the list scrolls sideways at {size}"
        assert "age" in {str(c.key.value) for c in session_list.columns.values()}
        panels = list(screen.query(ProviderPanel))
        assert panels and all(p.region.width >= 30 for p in panels), [p.region.width for p in panels]
        title = screen.query_one("#session-title")
        text = str(title.render())
        assert PARTIAL.key in text and len(text) <= title.region.width * title.region.height, "the title is cut"


async def test_the_160x48_list_keeps_its_age_column_beside_teardown_incomplete(seeded_app):
    app = seeded_app()
    async with app.run_test(size=LARGE) as pilot:
        await select(PARTIAL.key)(pilot)
        session_list = app.screen.query_one(SessionList)
        assert "teardown incomplete" in str(session_list.get_cell(PARTIAL.key, "state"))
        widths = {str(key.value): column.get_render_width(session_list) for key, column in session_list.columns.items()}
        names = list(widths)
        age_right = sum(widths[name] for name in names[: names.index("age") + 1])
        assert age_right <= session_list.scrollable_content_region.width, widths
        assert session_list.max_scroll_x == 0


async def test_help_scrolls_to_its_end_with_down_pagedown_and_end(seeded_app):
    app = seeded_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        body = app.screen.query_one("#help-body", VerticalScroll)
        assert body.max_scroll_y > 0, "help fits at 80x24: nothing to prove"
        await pilot.press("down")
        await pilot.pause()
        assert body.scroll_y == 1
        await pilot.press("pagedown")
        await pilot.pause()
        assert body.scroll_y > 1
        await pilot.press("end")
        await pilot.pause()
        assert body.scroll_y == body.max_scroll_y and body.scroll_x == 0
        await pilot.press("home", "j", "j")
        await pilot.pause()
        assert body.scroll_y == 2


async def test_every_modal_fits_80x24(seeded_app):
    """The teardown modal of a session with five resources, the new-session and quit modals:
    their buttons are on screen."""
    app = seeded_app()
    async with app.run_test(size=SMALL) as pilot:
        await select(READY.key)(pilot)
        await pilot.press("t")
        await pilot.pause()
        assert app.screen.query_one("#doomed").row_count == 5
        buttons = list(app.screen.query(Button))
        assert {b.id for b in buttons} == {"cancel", "delete"}
        assert all(inside(b, *SMALL) for b in buttons), [b.region for b in buttons]
        await pilot.press("escape")
        for opener in ("n", "h"):
            await pilot.press(opener)
            await pilot.pause()
            buttons = [b for b in app.screen.query(Button) if b.display]
            assert buttons and all(inside(b, *SMALL) for b in buttons), (opener, [b.region for b in buttons])
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, DashboardScreen)


def log_text(log: EventLog) -> str:
    return " ".join(" ".join(strip.text.split()) for strip in log.lines)


async def test_the_event_log_keeps_every_word_through_wrapping_and_resizes(seeded_app):
    app = seeded_app()
    async with app.run_test(size=LARGE) as pilot:
        await select(PARTIAL.key)(pilot)
        log = app.screen.query_one(EventLog)
        for size in (SMALL, (120, 35), (100, 30), LARGE, SMALL):
            await pilot.resize_terminal(*size)
            await pilot.pause()
            await pilot.pause()
            width = log.scrollable_content_region.width
            assert all(strip.cell_length <= width for strip in log.lines), f"a line is wider than the log at {size}"
            assert PARTIAL_ERROR in log_text(log), f"the error lost words at {size}"


async def test_the_event_log_keeps_time_order(seeded_app, frozen):
    from mk0r_tui.tui.log_lines import LogLine

    app = seeded_app()
    async with app.run_test(size=LARGE) as pilot:
        await select(READY.key)(pilot)
        log = app.screen.query_one(EventLog)
        now = frozen
        log.append(LogLine(now + 10, "later line"))
        log.append(LogLine(now + 5, "earlier line, arrived late"))
        await pilot.pause()
        texts = [line.text for line in log.log_lines]
        assert texts.index("earlier line, arrived late") < texts.index("later line")
        ats = [line.at for line in log.log_lines]
        assert ats == sorted(ats)


async def test_filter_finds_provider_statuses_and_says_no_match(seeded_app):
    app = seeded_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        await pilot.press("slash", *"failed")
        await pilot.pause()
        assert app.screen.query_one(SessionList).shown_keys == (PARTIAL.key,), "the partial session's database failed"
        await pilot.press(*(("backspace",) * 6), *"zzz")
        await pilot.pause()
        hint = app.screen.query_one(".empty-hint")
        assert "No session matches 'zzz'" in str(hint.render()) and "No sessions yet" not in str(hint.render())
        assert app.screen.query_one("#sidebar").border_subtitle.startswith("no match")
        await pilot.press("escape")
        await pilot.pause()
        assert len(app.screen.query_one(SessionList).shown_keys) == 3


async def test_sorting_by_state_slug_and_age_like_k9s(seeded_app):
    app = seeded_app()
    async with app.run_test(size=LARGE) as pilot:
        await pilot.pause()
        session_list = app.screen.query_one(SessionList)
        states = lambda: [app.sessions[k].state for k in session_list.shown_keys]  # noqa: E731
        assert states() == ["ready", "teardown_incomplete", "deleted"], "newest first"
        await pilot.press("S")
        assert states() == ["deleted", "ready", "teardown_incomplete"]
        await pilot.press("S")
        assert states() == ["teardown_incomplete", "ready", "deleted"]
        await pilot.press("N")
        slugs = [app.sessions[k].slug for k in session_list.shown_keys]
        assert slugs == sorted(slugs)
        await pilot.press("A", "A")
        assert states() == ["deleted", "teardown_incomplete", "ready"], "oldest first"
        assert "age ▲" in [str(c.label) for c in session_list.columns.values()]
        assert isinstance(app.screen, DashboardScreen)


async def test_an_optional_side_panel_has_its_place_beside_the_detail_pane(seeded_app):
    from textual.widgets import Static

    app = seeded_app()
    async with app.run_test(size=LARGE) as pilot:
        await pilot.pause()
        column = app.screen.query_one("#side-panels")
        assert not column.display, "no side panel, no column"
        app.dashboard.add_side_panel(Static("pool: 3 warm", id="pool-panel"))
        await pilot.pause()
        panel = app.screen.query_one("#pool-panel")
        detail = app.screen.query_one("#detail")
        assert column.display and panel.region.x >= detail.region.right and inside(panel, *LARGE)
        await pilot.resize_terminal(*SMALL)
        await pilot.pause()
        assert not column.display, "an 80-column terminal has no room for it"
