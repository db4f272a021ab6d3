"""The orphans screen: the scan lists leftovers and pending rows, marking and a confirmation
delete exactly the marked ones (with progress per row), cancel deletes nothing, filters hide
rows, read-only hides the destructive keys. Plus a snapshot with a frozen clock."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from fakes import registry_of
from screen_host import DiscoverOnly, ScreenHost
from textual.widgets import DataTable, Input, Select, Static

from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.models import FoundResource, Session, Slot
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.tui.screens._support import ConfirmDeleteScreen, human_age
from mk0r_tui.tui.screens.orphans import OrphansScreen, orphan_key

LEFTOVER = "mk0r-zzzzzzzz"
LEFTOVER_KEY = orphan_key("local-git", "bare-repo", LEFTOVER)


@pytest.fixture
def runtime_with_postgres(mk0r_home):
    """`runtime_with_postgres(fake)`: a runtime whose local-postgres is `fake` (the real local-git
    and local-folder stay), so a test never sees or deletes another test's databases."""
    made: list[Runtime] = []

    def make(postgres: DiscoverOnly) -> Runtime:
        made.append(Runtime(registry=registry_of(postgres)))
        return made[-1]

    yield make
    for rt in made:
        rt.close()


@pytest.fixture
def orphan_runtime(runtime_with_postgres):
    return runtime_with_postgres(DiscoverOnly("local-postgres"))


@pytest.fixture
def leftover_repo(mk0r_home) -> Path:
    path = mk0r_home / "repos" / f"{LEFTOVER}.git"
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([shutil.which("git") or "git", "init", "--bare", "--quiet", str(path)], check=True)
    return path


@pytest.fixture
def pending_row(orphan_runtime, session_key):
    """A crash between intent and create: a pending ledger row, nothing upstream."""
    session = Session.parse(session_key)
    orphan_runtime.ledger.ensure_session(session)
    return orphan_runtime.ledger.intend(session.key, "local-git", "bare-repo", session.resource_name)


def screen_messages(messages: list) -> list[str]:
    """The screen's own messages in order (each once: they also bubble to the app), deletion
    progress named by its event."""
    names, seen = [], set()
    for message in messages:
        if id(message) in seen:
            continue
        seen.add(id(message))
        if isinstance(message, OrphansScreen.DeletionProgressed):
            names.append(f"DeletionProgressed:{type(message.event).__name__}:{message.event.resource.name}")
        elif isinstance(message, (OrphansScreen.ScanFinished, OrphansScreen.DeletionFinished)):
            names.append(type(message).__name__)
    return names


async def settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def table_keys(screen: OrphansScreen) -> list[str]:
    return [str(key.value) for key in screen.query_one(DataTable).rows]


async def put_cursor_on(pilot, screen: OrphansScreen, key: str) -> None:
    table = screen.query_one(DataTable)
    table.move_cursor(row=table.get_row_index(key))
    await pilot.pause()


def host(runtime: Runtime, *, read_only: bool = False) -> ScreenHost:
    return ScreenHost(lambda: OrphansScreen(runtime, read_only=read_only))


def test_human_age_reads_like_an_operator_would_say_it():
    assert [human_age(s) for s in (None, 0, 59, 300, 3 * 3600 + 5, 2 * 86400 + 7)] == ["?", "0s", "59s", "5m", "3h", "2d"]


async def test_scan_lists_pending_row_and_leftover_then_deletes_only_the_marked_one(
    orphan_runtime, leftover_repo, pending_row
):
    messages: list = []
    app = host(orphan_runtime)
    async with app.run_test(size=(120, 30), message_hook=messages.append) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, OrphansScreen)
        pending_key = orphan_key("local-git", "bare-repo", pending_row.name)
        assert set(table_keys(screen)) == {LEFTOVER_KEY, pending_key}
        assert screen.rows[pending_key].orphan.reason.startswith("pending:")
        assert screen.rows[pending_key].orphan.ledger_id == pending_row.id
        assert "ledger owns it" in screen.rows[LEFTOVER_KEY].orphan.reason
        scanned = str(screen.query_one("#orphans-scanned", Static).render())
        assert "local-git" in scanned and "local-postgres" in scanned
        assert leftover_repo.exists(), "the scan itself deletes nothing"

        await put_cursor_on(pilot, screen, LEFTOVER_KEY)
        await pilot.press("space")
        assert screen.rows[LEFTOVER_KEY].marked and not screen.rows[pending_key].marked
        await pilot.press("d")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, ConfirmDeleteScreen)
        assert app.focused is not None and app.focused.id == "confirm-cancel"
        assert len(modal.items) == 1 and LEFTOVER in modal.items[0] and str(leftover_repo) in modal.items[0]

        await pilot.press("right", "enter")
        await settle(pilot)
        assert app.screen is screen
        assert not leftover_repo.exists()
        assert screen.rows[LEFTOVER_KEY].status == "deleted"
        assert str(screen.query_one(DataTable).get_row(LEFTOVER_KEY)[-1]).startswith("deleted · ")
        assert screen.rows[pending_key].status == ""
        assert orphan_runtime.ledger.resource(pending_row.id).state == "pending"
        name_cell = screen.query_one(DataTable).get_row(LEFTOVER_KEY)[3]
        assert {"dim", "strike"} <= set(" ".join(str(span.style) for span in name_cell.spans).split()), "the row dims when gone"
        assert "1 deleted" in screen.status_text

    assert screen_messages(messages) == [
        "ScanFinished",
        f"DeletionProgressed:TeardownStarted:{LEFTOVER}",
        f"DeletionProgressed:ResourceDeleted:{LEFTOVER}",
        "DeletionFinished",
    ]


async def test_deleting_a_pending_row_whose_resource_never_appeared_reports_already_gone(
    orphan_runtime, pending_row
):
    app = host(orphan_runtime)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("a", "d", "right", "enter")
        await settle(pilot)
        key = orphan_key("local-git", "bare-repo", pending_row.name)
        assert screen.rows[key].status == "already gone"
    assert orphan_runtime.ledger.resource(pending_row.id).state == "deleted"


async def test_cancel_deletes_nothing(orphan_runtime, leftover_repo):
    messages: list = []
    app = host(orphan_runtime)
    async with app.run_test(size=(120, 30), message_hook=messages.append) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("a", "d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDeleteScreen)
        await pilot.press("enter")  # focus is on Cancel
        await settle(pilot)
        assert app.screen is screen
        assert leftover_repo.exists()
        assert screen.rows[LEFTOVER_KEY].marked and screen.rows[LEFTOVER_KEY].status == ""
        assert "nothing was deleted" in screen.status_text

        await pilot.press("d", "escape")
        await settle(pilot)
        assert leftover_repo.exists()
    assert screen_messages(messages) == ["ScanFinished"]


async def test_leaving_the_screen_does_not_cancel_a_deletion_in_flight(runtime_with_postgres):
    gate = asyncio.Event()
    found = FoundResource("local-postgres", "database", "mk0r_slowdb", "mk0r_slowdb", None)
    slow = DiscoverOnly("local-postgres", found=[found], gate=gate)
    app = host(runtime_with_postgres(slow))
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        await put_cursor_on(pilot, screen, orphan_key("local-postgres", "database", "mk0r_slowdb"))
        await pilot.press("space", "d", "right", "enter")
        await pilot.pause()
        assert screen.deleting and screen.check_action("rescan", ()) is None
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, OrphansScreen)
        gate.set()
        await settle(pilot)
        assert slow.torn_down == ["mk0r_slowdb"]
        assert any("1 deleted" in n.message for n in app._notifications)


async def test_filters_by_name_and_by_age(orphan_runtime, leftover_repo, pending_row):
    app = host(orphan_runtime)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert len(table_keys(screen)) == 2
        await pilot.press("slash")
        assert app.focused is screen.query_one("#orphans-name-filter", Input)
        await pilot.press(*"zzzz")
        assert table_keys(screen) == [LEFTOVER_KEY]
        assert "1 shown" in screen.status_text

        await pilot.press("escape")  # leaves the filter, not the screen
        assert app.screen is screen and isinstance(app.focused, DataTable)
        await pilot.press("a")
        assert [row.key for row in screen.rows.values() if row.marked] == [LEFTOVER_KEY], "mark all = all visible"

        screen.query_one("#orphans-name-filter", Input).value = ""
        screen.query_one("#orphans-age-filter", Select).value = 3600.0
        await pilot.pause()
        assert table_keys(screen) == [], "both were made seconds ago"
        screen.query_one("#orphans-age-filter", Select).value = 0.0
        await pilot.pause()
        assert len(table_keys(screen)) == 2

        await pilot.press("escape")
        assert not isinstance(app.screen, OrphansScreen)


async def test_read_only_hides_marking_and_deleting(orphan_runtime, leftover_repo):
    app = host(orphan_runtime, read_only=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert LEFTOVER_KEY in table_keys(screen)
        for action in ("toggle_mark", "mark_all", "delete_marked"):
            assert screen.check_action(action, ()) is False
        assert screen.check_action("rescan", ()) is True
        footer_actions = {active.binding.action for active in screen.active_bindings.values()}
        assert "rescan" in footer_actions
        assert not {"toggle_mark", "mark_all", "delete_marked"} & footer_actions
        await pilot.press("space", "a", "d")
        await pilot.pause()
        assert app.screen is screen
        assert not any(row.marked for row in screen.rows.values())
        assert leftover_repo.exists()


async def test_a_failing_discovery_is_a_warning_not_a_failed_scan(runtime_with_postgres, leftover_repo):
    broken = DiscoverOnly("local-postgres", error=ProviderError("connection refused", call="connect"))
    app = host(runtime_with_postgres(broken))
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        warnings = screen.query_one("#orphans-warnings", Static)
        assert warnings.display
        assert "local-postgres: discovery failed" in str(warnings.render())
        assert "connection refused" in str(warnings.render())
        assert LEFTOVER_KEY in table_keys(screen), "the other providers were still scanned"


FROZEN = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


def snapshot_runtime() -> Runtime:
    """Providers with fixed answers and fixed ages, and a pending row two days old."""
    now = FROZEN.timestamp()
    providers = {
        "local-postgres": DiscoverOnly("local-postgres", found=[
            FoundResource("local-postgres", "database", "mk0r_7c1e0a9b2f44", "mk0r_7c1e0a9b2f44", now - 3 * 3600),
            FoundResource("local-postgres", "role", "mk0r_7c1e0a9b2f44", "mk0r_7c1e0a9b2f44", now - 3 * 3600),
        ]),
        "local-git": DiscoverOnly("local-git", Slot.REPO, error=ProviderError("permission denied", call="list repos")),
        "local-folder": DiscoverOnly("local-folder", Slot.TARGET, found=[
            FoundResource("local-folder", "app-folder", "mk0r-old-demo-app", "/srv/mk0r/apps/old-demo-app", None),
            FoundResource("local-folder", "app-folder", "mk0r-e2e-42", "/srv/mk0r/apps/e2e-42", now - 300),
        ]),
    }
    runtime = Runtime(registry=registry_of(*providers.values()))
    with time_machine.travel(FROZEN.timestamp() - 2 * 86400, tick=False):
        session = Session.parse("snapshot-crashed-session")
        runtime.ledger.ensure_session(session)
        runtime.ledger.intend(session.key, "local-git", "bare-repo", session.resource_name)
    return runtime


def test_orphans_snapshot(snap_compare, mk0r_home):
    runtime = snapshot_runtime()

    async def marked_one(pilot) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("down", "space")

    try:
        with time_machine.travel(FROZEN, tick=False):
            assert snap_compare(host(runtime), terminal_size=(120, 30), run_before=marked_one)
    finally:
        runtime.close()


async def test_foreign_rows_are_shown_after_this_ledgers_and_never_marked_by_mark_all(runtime_with_postgres, leftover_repo):
    """A resource that may be another ledger's (a provider with no owner mark, as Neon, and a
    name no session here has) is listed apart, after this ledger's, and `a` skips it."""
    foreign = FoundResource("local-postgres", "database", "mk0r-someone-else", "prj-1", None)
    unmarked = DiscoverOnly("local-postgres", found=[foreign])
    unmarked.owner_marks = "none"  # as on Neon: only the name says whose it is
    runtime = runtime_with_postgres(unmarked)
    foreign_key = orphan_key("local-postgres", "database", "mk0r-someone-else")
    app = host(runtime)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, OrphansScreen)
        assert screen.rows[foreign_key].orphan.foreign and not screen.rows[LEFTOVER_KEY].orphan.foreign
        assert table_keys(screen)[-1] == foreign_key  # apart: after this ledger's rows
        await pilot.press("a")
        assert screen.rows[LEFTOVER_KEY].marked and not screen.rows[foreign_key].marked
        assert "not in this ledger" in str(screen.query_one(DataTable).get_row(foreign_key)[-1])
