"""What keeps the dashboard fast at start and under load (bench/dashboard.py and
bench/modal_open.py measure the times; these tests pin the mechanisms):

- the first frame's imports leave psycopg out (the queue panel asks only where a queue is);
- the footer's keys are styled once each in the first frame (not compact-on, compact-off);
- the session list writes only the cells that changed and keeps only the current renders;
- behind another screen the dashboard does not repaint; it catches up when the screen closes;
- the dashboard settles the garbage collector for a long-lived UI.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import time

import pytest
from tui_scenarios import LIVE, READY, live_events, seed_ledger
from waiting import wait_until

from mk0r_tui.core.events import ProviderProgressed
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.providers import DEFAULT_REGISTRY
from mk0r_tui.tui.app import GC_YOUNG_THRESHOLD, Mk0rApp
from mk0r_tui.tui.messages import SessionEventReceived
from mk0r_tui.tui.widgets.session_list import SessionList

SIZE = (160, 48)


@pytest.fixture
def seeded(mk0r_home):
    runtimes: list[Runtime] = []

    def make() -> Mk0rApp:
        runtime = Runtime(registry=DEFAULT_REGISTRY)
        runtimes.append(runtime)
        seed_ledger(runtime, time.time())
        return Mk0rApp(runtime)

    yield make
    for runtime in runtimes:
        runtime.close()


def test_the_first_frames_modules_leave_psycopg_out():
    """psycopg costs ~80 ms of import; the dashboard's first frame only asks `queue_location`."""
    code = (
        "import sys\n"
        "import mk0r_tui.tui.app, mk0r_tui.tui.screens.dashboard, mk0r_tui.engine.jobs_view\n"
        "from mk0r_tui.engine.jobs_view import queue_location\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'psycopg'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_footer_keys_are_styled_once_each_in_the_first_frame(seeded, monkeypatch):
    from textual.widgets._footer import FooterKey

    restyled: dict[str, int] = {}
    original = FooterKey.update_node_styles

    def counted(self, animate: bool = True) -> None:
        restyled[self.description] = restyled.get(self.description, 0) + 1
        original(self, animate)

    monkeypatch.setattr(FooterKey, "update_node_styles", counted)
    app = seeded()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        keys = [key for key in app.screen.query(FooterKey) if key.description]
        assert {"New", "Quit", "Help"} <= {key.description for key in keys}
        # wide: no key is compact; none gained and lost `-compact` on its way in
        assert not any(key.has_class("-compact") for key in keys if not key.has_class("-command-palette"))
        twice = {name: count for name, count in restyled.items() if count > 1}
        assert twice == {}


async def test_the_list_writes_only_changed_cells_and_keeps_only_current_renders(seeded, monkeypatch):
    app = seeded()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one(SessionList)
        writes: list[tuple[str, str]] = []
        update_cell = SessionList.update_cell

        def counted(self, row_key, column_key, value, *, update_width=False):
            writes.append((str(row_key.value if hasattr(row_key, "value") else row_key), str(column_key)))
            return update_cell(self, row_key, column_key, value, update_width=update_width)

        monkeypatch.setattr(SessionList, "update_cell", counted)
        session = app.sessions[READY.key]
        assert table.update_session(session) is True
        assert writes == []  # nothing changed: nothing written, nothing to render again

        for event in live_events(time.time()):
            app.post_message(SessionEventReceived(event))
        await wait_until(lambda: LIVE.key in table.shown_keys, pilot=pilot, what="the live session's row")
        for i in range(40):  # a stream of progress lines: the glyphs and state stay as they are
            app.post_message(SessionEventReceived(ProviderProgressed(session=LIVE.key, provider="local-git", message=f"step {i}")))
            await pilot.pause()
        await wait_until(lambda: app.sessions[LIVE.key].panel("local-git").message == "step 39", pilot=pilot)
        assert [w for w in writes if w[0] == LIVE.key and w[1] != "age"] == []

        await pilot.pause()
        visible_cells = (len(table.shown_keys) + 1) * len(table.columns)
        # Textual keys renders by an update counter; what an earlier count rendered is dropped
        assert len(table._cell_render_cache) <= visible_cells
        assert len(table._line_cache) <= len(table.shown_keys) + 1


async def test_behind_a_modal_the_dashboard_waits_and_then_catches_up(seeded, monkeypatch):
    from mk0r_tui.tui.screens.help import HelpScreen

    app = seeded()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for event in live_events(time.time()):
            app.post_message(SessionEventReceived(event))
        await wait_until(lambda: app.screen.selected_key == LIVE.key or LIVE.key in app.screen.query_one(SessionList).shown_keys,
                         pilot=pilot, what="the live session's row")
        dashboard = app.dashboard
        app.screen.query_one(SessionList).move_cursor(row=app.screen.query_one(SessionList).shown_keys.index(LIVE.key))
        await wait_until(lambda: dashboard.selected_key == LIVE.key and dashboard.provider_panels, pilot=pilot)

        updates: list[str] = []
        update_session = SessionList.update_session
        monkeypatch.setattr(SessionList, "update_session", lambda self, s: (updates.append(s.key), update_session(self, s))[1])

        await pilot.press("question_mark")
        await wait_until(lambda: isinstance(app.screen, HelpScreen), pilot=pilot, what="the help modal")
        for i in range(5):
            app.post_message(SessionEventReceived(ProviderProgressed(session=LIVE.key, provider="local-git", message=f"behind {i}")))
        await wait_until(lambda: app.sessions[LIVE.key].panel("local-git").message == "behind 4", pilot=pilot)
        await pilot.pause()
        # the state is reduced, but nothing behind the modal was repainted
        assert updates == []
        git = next(p for p in dashboard.provider_panels if p.panel is not None and p.panel.provider == "local-git")
        assert git.panel.message != "behind 4"
        assert not any("behind 4" in line.text for line in dashboard._event_log.log_lines)

        await pilot.press("escape")
        await wait_until(lambda: app.screen is dashboard, pilot=pilot, what="the dashboard back")
        await wait_until(lambda: LIVE.key in updates, pilot=pilot, what="the catch-up repaint")
        git = next(p for p in dashboard.provider_panels if p.panel is not None and p.panel.provider == "local-git")
        assert git.panel.message == "behind 4"
        # the log shows every line the app kept meanwhile, the last one included
        shown = [line.text for line in dashboard._event_log.log_lines]
        assert shown == [line.text for line in sorted(app.logs[LIVE.key], key=lambda line: line.at)]
        assert any("behind 4" in text for text in shown)


async def test_the_dashboard_settles_the_garbage_collector(seeded):
    app = seeded()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await wait_until(lambda: app.dashboard._detail_shown, pilot=pilot)
        assert gc.get_threshold()[0] >= GC_YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
