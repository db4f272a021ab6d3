"""The read-only rule (tui/read_only.py) in the dashboard itself: `--read-only`, and every tab of
`mk0r-tui web` without `--allow-actions`. The .env viewer shows masked values only (no reveal,
no copy), and the rule is an allowlist: an action a screen gains later (hand-off `h`) is refused
in read-only without anyone having to remember to forbid it."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable
from tui_fakes import FAKE_API_KEY, FAKE_DB_PASSWORD

from mk0r_tui.core.models import Session
from mk0r_tui.tui.app import Mk0rApp
from mk0r_tui.tui.screens.dashboard import DashboardScreen
from mk0r_tui.tui.screens.env_viewer import EnvScreen
from mk0r_tui.tui.screens.help import HelpScreen

SIZE = (160, 48)


async def provisioned(make_app, fakes, key: str) -> None:
    from mk0r_tui.engine.orchestrator import provision_services

    prepared = make_app(fakes)
    await provision_services(prepared.runtime, Session.parse(key), prepared.runtime.plan())


def footer_actions(app) -> set[str]:
    return {b.binding.action for b in app.active_bindings.values() if app.screen.check_action(b.binding.action, ()) is not False}


async def test_read_only_env_viewer_has_no_reveal_and_no_copy(make_app, fakes, session_key, monkeypatch):
    await provisioned(make_app, fakes, session_key)
    app = make_app(fakes, read_only=True)
    copied: list[str] = []
    monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, EnvScreen)
        for action in ("reveal", "reveal_all", "copy_value", "copy_file"):
            assert app.screen.check_action(action, ()) is False, action
            assert action not in footer_actions(app), f"{action} is offered in the footer"
        table = app.screen.query_one("#env-table", DataTable)
        table.move_cursor(row=list(app.screen.env).index("FAKE_API_KEY"))
        await pilot.press("x", "X", "c", "C")
        await pilot.pause()
        values = [str(table.get_cell(name, "value")) for name in app.screen.env]
        assert not any(FAKE_API_KEY in v or FAKE_DB_PASSWORD in v for v in values), values
        assert app.screen.revealed == set()
        assert copied == [], "a read-only dashboard copied a secret to the clipboard"
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_the_same_keys_work_when_actions_are_on(make_app, fakes, session_key, monkeypatch):
    """The control: without read-only, x reveals and c copies (so the test above can fail)."""
    await provisioned(make_app, fakes, session_key)
    app = make_app(fakes)
    copied: list[str] = []
    monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        table = app.screen.query_one("#env-table", DataTable)
        table.move_cursor(row=list(app.screen.env).index("FAKE_API_KEY"))
        await pilot.press("x", "c")
        await pilot.pause()
        assert str(table.get_cell("FAKE_API_KEY", "value")) == FAKE_API_KEY
        assert copied == [FAKE_API_KEY]


class WithHandOff(DashboardScreen):
    """The dashboard as it will be once hand-off (`h`) lands: one more binding, nothing else."""

    BINDINGS = [*DashboardScreen.BINDINGS, Binding("h", "handoff", "Hand off", id="dashboard.handoff")]

    def action_handoff(self) -> None:
        self.app.handed_off.append(self.selected_key)


class HandOffApp(Mk0rApp):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.handed_off: list[str | None] = []

    def get_default_screen(self):
        self.dashboard = WithHandOff()
        return self.dashboard


async def test_an_action_added_later_is_refused_in_read_only_without_being_listed(make_app, fakes, session_key):
    await provisioned(make_app, fakes, session_key)
    for read_only, expected in ((True, []), (False, [session_key])):
        app = make_app(fakes, read_only=read_only, app_class=HandOffApp)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.press("h")
            await pilot.pause()
            assert app.handed_off == expected, f"read_only={read_only}"
            assert ("handoff" in footer_actions(app)) is not read_only


async def test_read_only_help_lists_no_key_it_refuses(make_app, fakes, session_key):
    await provisioned(make_app, fakes, session_key)
    app = make_app(fakes, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        listed = {b.action for _, bindings in app.screen.sections for b in bindings}
        assert not listed & {"new_session", "retry", "teardown", "reveal", "reveal_all", "copy_value", "copy_file"}, listed
        assert {"env", "close"} <= listed
