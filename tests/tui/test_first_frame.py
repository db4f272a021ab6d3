"""Start-up: the first frame holds the header, every session row and the footer's keys; the
detail pane (panels, event log, latency history from the ledger) is mounted right after it, in
one pass; and the footer is rebuilt only when the keys it shows change (bench/dashboard.py
measures the time)."""

from __future__ import annotations

from collections import deque

import pytest
from textual.widgets._footer import FooterKey
from tui_scenarios import DELETED, PARTIAL, READY, seed_ledger
from waiting import wait_until

from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.providers import DEFAULT_REGISTRY
from mk0r_tui.tui.app import Mk0rApp
from mk0r_tui.tui.log_lines import LogLine
from mk0r_tui.tui.screens.dashboard import DashboardScreen
from mk0r_tui.tui.widgets.footer import DebouncedFooter
from mk0r_tui.tui.widgets.session_list import SessionList

SIZE = (150, 44)


@pytest.fixture
def seeded(mk0r_home):
    runtimes: list[Runtime] = []

    def make(*, read_only: bool = False) -> Mk0rApp:
        runtime = Runtime(registry=DEFAULT_REGISTRY)
        runtimes.append(runtime)
        seed_ledger(runtime, 1_747_215_000.0)
        return Mk0rApp(runtime, read_only=read_only)

    yield make
    for runtime in runtimes:
        runtime.close()


@pytest.fixture
def footer_recomposes(monkeypatch) -> list[int]:
    """One item per footer rebuild."""
    recomposes: list[int] = []
    original_recompose = DebouncedFooter.recompose

    async def counted_recompose(self):
        recomposes.append(1)
        await original_recompose(self)

    monkeypatch.setattr(DebouncedFooter, "recompose", counted_recompose)
    return recomposes


def footer_descriptions(app) -> list[str]:
    return [key.description for key in app.screen.query(DebouncedFooter).first().query(FooterKey)]


async def test_the_first_frame_has_rows_and_keys_and_the_detail_follows_in_one_pass(seeded, monkeypatch, footer_recomposes):
    app = seeded()
    frames: list[object] = []
    display = app._display
    app._display = lambda screen, update: (frames.append(update) if update is not None else None, display(screen, update))[1]
    when_detail_mounts: dict = {}
    show_detail = DashboardScreen._show_detail

    def recorded_show_detail(self) -> None:
        when_detail_mounts.update(
            frames=len(frames), rows=self.query_one(SessionList).row_count, keys=footer_descriptions(self.app),
            panels=len(self.query(".panel-status")), logs_backfilled=bool(self.app.logs),
        )
        show_detail(self)

    monkeypatch.setattr(DashboardScreen, "_show_detail", recorded_show_detail)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        # before the detail pane: a frame is out, with every row and every key, and nothing else yet
        assert when_detail_mounts["frames"] >= 1
        assert when_detail_mounts["rows"] == 3
        assert when_detail_mounts["keys"] == footer_descriptions(app)
        assert {"New", "Retry", ".env", "Repo", "Teardown", "Orphans", "Keys", "Filter", "Quit", "Help"} <= set(
            when_detail_mounts["keys"])
        assert when_detail_mounts["panels"] == 0 and not when_detail_mounts["logs_backfilled"]
        # the newest session is selected and its panels, log and history are there
        assert screen.selected_key == READY.key
        assert [p.panel.provider for p in screen.provider_panels] == [p.provider for p in app.sessions[READY.key].panels]
        assert any("recorded in the ledger: session ready" in line.text for line in app.logs[READY.key])
        shown = "\n".join(strip.text for strip in screen.query_one("#event-log").lines)
        assert "recorded in the ledger: session ready" in shown and "local-git: ok in 57 ms" in shown
        postgres = next(p for p in screen.provider_panels if p.panel.provider == "local-postgres")
        assert postgres._history_widget.latencies_ms[-1] == 731.0
        assert "n=11" in str(postgres._history_widget._summary.visual)
        assert footer_recomposes == []


async def test_the_footer_is_rebuilt_only_when_its_keys_change(seeded, footer_recomposes):
    app = seeded()
    recomposes = footer_recomposes
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        session_list = app.screen.query_one(SessionList)
        screen = app.screen
        assert screen.check_action("retry", ()) is None  # ready: nothing to retry, shown dimmed
        for _ in range(3):
            screen.refresh_bindings()
        await pilot.pause()
        assert recomposes == []

        session_list.move_cursor(row=session_list.shown_keys.index(PARTIAL.key), animate=False)
        await pilot.pause()
        assert screen.selected_key == PARTIAL.key and screen.check_action("retry", ()) is True
        assert len(recomposes) == 1

        def footer_key(description: str) -> FooterKey | None:  # the recompose mounts them on a later turn
            return next((key for key in screen.query(FooterKey) if key.description == description), None)

        retry = await wait_until(lambda: footer_key("Retry"), pilot=pilot, what="the rebuilt footer's Retry key")
        assert not retry.has_class("-disabled")

        session_list.move_cursor(row=session_list.shown_keys.index(DELETED.key), animate=False)
        await pilot.pause()
        assert len(recomposes) == 2

        def dimmed() -> set[str]:
            return {key.description for key in screen.query(FooterKey) if key.has_class("-disabled")}

        await wait_until(lambda: {"Retry", "Teardown", ".env"} <= dimmed(), pilot=pilot, what="the deleted session's keys dimmed")


def test_backfill_puts_recorded_lines_and_latencies_before_live_ones(seeded):
    app = seeded()
    assert app.logs == {} and app.history == {}
    live = LogLine(1_747_215_100.0, "provisioning started", "info")
    app.logs[READY.key] = deque([live])
    app.history["local-git"] = (99.0,)

    app.backfill_from_ledger()
    lines = list(app.logs[READY.key])
    assert lines[-1] == live
    assert lines[-2].text == "recorded in the ledger: session ready"
    assert any(line.level == "ok" for line in lines[:-2])
    assert app.history["local-git"][-1] == 99.0
    assert app.history["local-git"][:-1] == tuple(app.runtime.ledger.latency_history("local-git", 40))

    app.backfill_from_ledger()  # once only: a second call adds nothing
    assert list(app.logs[READY.key]) == lines
