"""The keys screen: set and delete a key in the OS keyring (an in-memory backend here), the
headless fallback explained when there is no keyring, env vars shown as overriding, read-only,
and snapshots that hold no secret value."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from screen_host import ScreenHost
from textual.widgets import DataTable, Input, Static

from mk0r_tui.core.credentials import KEYRING_SERVICE
from mk0r_tui.core.envfile import mask_value
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.providers import DEFAULT_REGISTRY
from mk0r_tui.tui.screens._support import ConfirmDeleteScreen
from mk0r_tui.tui.screens.keys import KeysScreen, SetKeyScreen, key_enables

RESEND_SECRET = "re_SuperSecretResendValue1234"
GITHUB_SECRET = "ghp_TopSecretGithubToken5678"
NEON_ENV_SECRET = "neon_EnvOnlySecretValue9f3a"
NEON_KEYRING_SECRET = "neon_KeyringSecretValue0000"
ALL_SECRETS = (RESEND_SECRET, GITHUB_SECRET, NEON_ENV_SECRET, NEON_KEYRING_SECRET)




@pytest.fixture
def keys_runtime(mk0r_home):
    rt = Runtime(registry=DEFAULT_REGISTRY)
    yield rt
    rt.close()


def host(runtime: Runtime, *, read_only: bool = False) -> ScreenHost:
    return ScreenHost(lambda: KeysScreen(runtime, read_only=read_only))


async def settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def select_key(pilot, screen: KeysScreen, name: str) -> None:
    table = screen.query_one(DataTable)
    table.move_cursor(row=table.get_row_index(name))
    await pilot.pause()


def cell(screen: KeysScreen, name: str, column: str) -> str:
    return str(screen.query_one(DataTable).get_cell(name, column))


def screen_messages(messages: list) -> list[str]:
    """The screen's own messages, each once (they also bubble to the app)."""
    names, seen = [], set()
    for message in messages:
        if id(message) not in seen and type(message).__qualname__.startswith("KeysScreen."):
            seen.add(id(message))
            names.append(type(message).__name__)
    return names


def assert_no_secret(svg: str) -> None:
    for secret in ALL_SECRETS:
        assert secret not in svg
        assert secret[5:-4] not in svg, "not even the middle of a secret"


def test_each_key_says_what_it_enables():
    assert key_enables("NEON_PROVISIONING_KEY") == "neon (database)"
    assert key_enables("E2B_API_KEY") == "e2b (target)"
    assert "posthog" in key_enables("POSTHOG_PROJECT_KEY")


async def test_set_a_key_through_the_modal_stores_it_and_shows_it_masked(memory_keyring, keys_runtime):
    messages: list = []
    app = host(keys_runtime)
    async with app.run_test(size=(120, 24), message_hook=messages.append) as pilot:
        await settle(pilot)
        screen = app.screen
        assert not screen.query_one("#keys-keyring", Static).display
        assert cell(screen, "RESEND_PROVISIONING_KEY", "source") == "—"
        await select_key(pilot, screen, "RESEND_PROVISIONING_KEY")
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, SetKeyScreen)
        field = app.screen.query_one("#set-key-value", Input)
        assert app.focused is field and field.password

        await pilot.press("enter")  # empty: refused, the modal stays
        assert isinstance(app.screen, SetKeyScreen)
        await pilot.press(*RESEND_SECRET)
        assert_no_secret(app.export_screenshot())
        await pilot.press("enter")
        await settle(pilot)

        assert app.screen is screen
        assert memory_keyring.store[(KEYRING_SERVICE, "RESEND_PROVISIONING_KEY")] == RESEND_SECRET
        assert cell(screen, "RESEND_PROVISIONING_KEY", "source") == "keyring"
        assert cell(screen, "RESEND_PROVISIONING_KEY", "value") == mask_value("RESEND_PROVISIONING_KEY", RESEND_SECRET)
        assert keys_runtime.credentials.get("RESEND_PROVISIONING_KEY").source == "keyring"
        assert "saved in the keyring" in screen.status_text
        assert_no_secret(app.export_screenshot())
    assert screen_messages(messages) == ["KeysLoaded", "KeySaved", "KeysLoaded"]


async def test_delete_a_key_asks_first_and_cancel_keeps_it(memory_keyring, keys_runtime):
    memory_keyring.store[(KEYRING_SERVICE, "GITHUB_PROVISIONING_TOKEN")] = GITHUB_SECRET
    messages: list = []
    app = host(keys_runtime)
    async with app.run_test(size=(120, 24), message_hook=messages.append) as pilot:
        await settle(pilot)
        screen = app.screen
        await select_key(pilot, screen, "RESEND_PROVISIONING_KEY")
        assert screen.check_action("delete_key", ()) is None, "nothing in the keyring to delete"
        await select_key(pilot, screen, "GITHUB_PROVISIONING_TOKEN")
        assert screen.check_action("delete_key", ()) is True

        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDeleteScreen)
        assert app.focused.id == "confirm-cancel"
        assert "GITHUB_PROVISIONING_TOKEN" in app.screen.items[0]
        await pilot.press("enter")
        await settle(pilot)
        assert (KEYRING_SERVICE, "GITHUB_PROVISIONING_TOKEN") in memory_keyring.store

        await pilot.press("d", "right", "enter")
        await settle(pilot)
        assert (KEYRING_SERVICE, "GITHUB_PROVISIONING_TOKEN") not in memory_keyring.store
        assert cell(screen, "GITHUB_PROVISIONING_TOKEN", "source") == "—"
        assert cell(screen, "GITHUB_PROVISIONING_TOKEN", "set") == "✗ unset"
        assert keys_runtime.credentials.get("GITHUB_PROVISIONING_TOKEN").present is False
    assert screen_messages(messages) == ["KeysLoaded", "KeyDeleted", "KeysLoaded"]


async def test_without_a_keyring_the_env_fallback_is_explained_and_set_is_off(keys_runtime):
    app = host(keys_runtime)  # tests run with keyring's fail backend
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        banner = screen.query_one("#keys-keyring", Static)
        assert banner.display
        text = str(banner.render())
        assert "no OS keyring is available" in text and "export NEON_PROVISIONING_KEY" in text
        assert screen.check_action("set_key", ()) is None and screen.check_action("delete_key", ()) is None
        await pilot.press("s", "d")
        await pilot.pause()
        assert app.screen is screen


async def test_a_failing_keyring_write_shows_why(memory_keyring, keys_runtime, monkeypatch):
    def refuse(service, username, password):
        raise RuntimeError("the collection is locked")

    monkeypatch.setattr(memory_keyring, "set_password", refuse)
    messages: list = []
    app = host(keys_runtime)
    async with app.run_test(size=(120, 24), message_hook=messages.append) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("s", *RESEND_SECRET, "enter")
        await settle(pilot)
        assert "the collection is locked" in screen.status_text
        assert "environment variables" in screen.status_text
        assert RESEND_SECRET not in screen.status_text
    assert screen_messages(messages) == ["KeysLoaded", "KeyringFailed", "KeysLoaded"]


async def test_an_env_var_shows_as_env_and_overrides_the_keyring(memory_keyring, keys_runtime, monkeypatch):
    monkeypatch.setenv("NEON_PROVISIONING_KEY", NEON_ENV_SECRET)
    memory_keyring.store[(KEYRING_SERVICE, "NEON_PROVISIONING_KEY")] = NEON_KEYRING_SECRET
    app = host(keys_runtime)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert cell(screen, "NEON_PROVISIONING_KEY", "source") == "env"
        assert cell(screen, "NEON_PROVISIONING_KEY", "value") == mask_value("NEON_PROVISIONING_KEY", NEON_ENV_SECRET)
        assert "env wins" in cell(screen, "NEON_PROVISIONING_KEY", "note")
        assert_no_secret(app.export_screenshot())


async def test_read_only_hides_set_and_delete(memory_keyring, keys_runtime):
    memory_keyring.store[(KEYRING_SERVICE, "NEON_PROVISIONING_KEY")] = NEON_KEYRING_SECRET
    app = host(keys_runtime, read_only=True)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.check_action("set_key", ()) is False and screen.check_action("delete_key", ()) is False
        footer_actions = {active.binding.action for active in screen.active_bindings.values()}
        assert "reload" in footer_actions and not {"set_key", "delete_key"} & footer_actions
        await pilot.press("s", "d")
        await pilot.pause()
        assert app.screen is screen
        assert memory_keyring.store[(KEYRING_SERVICE, "NEON_PROVISIONING_KEY")] == NEON_KEYRING_SECRET


FROZEN = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


def snapshot(snap_compare, runtime: Runtime, *, keys: tuple[str, ...] = ()) -> None:
    """Compare a snapshot, and check the very same picture for secrets."""
    pictures: list[str] = []

    async def prepare(pilot) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
        await pilot.pause()
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False
        pictures.append(pilot.app.export_screenshot())

    with time_machine.travel(FROZEN, tick=False):
        assert snap_compare(host(runtime), terminal_size=(120, 24), run_before=prepare)
    assert pictures
    assert_no_secret(pictures[0])


def test_keys_snapshot(snap_compare, memory_keyring, keys_runtime, monkeypatch):
    monkeypatch.setenv("NEON_PROVISIONING_KEY", NEON_ENV_SECRET)
    memory_keyring.store[(KEYRING_SERVICE, "NEON_PROVISIONING_KEY")] = NEON_KEYRING_SECRET
    memory_keyring.store[(KEYRING_SERVICE, "GITHUB_PROVISIONING_TOKEN")] = GITHUB_SECRET
    snapshot(snap_compare, keys_runtime)


def test_keys_snapshot_set_modal_with_a_typed_secret(snap_compare, memory_keyring, keys_runtime):
    snapshot(snap_compare, keys_runtime, keys=("down", "s", *RESEND_SECRET))


def test_keys_snapshot_without_a_keyring(snap_compare, keys_runtime, monkeypatch):
    monkeypatch.setenv("NEON_PROVISIONING_KEY", NEON_ENV_SECRET)
    snapshot(snap_compare, keys_runtime)
