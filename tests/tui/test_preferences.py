"""The dashboard's settings file (issue 16): theme, default target and footer keys, read at start;
the theme picked in the dashboard persists; written atomically with mode 0600."""

from __future__ import annotations

import stat

from tui_fakes import fake_set
from waiting import wait_until

from mk0r_tui.core.config import load_settings
from mk0r_tui.tui.preferences import Preferences, preferences_path, read_preferences, render_preferences
from mk0r_tui.tui.screens.new_session import NewSessionScreen
from mk0r_tui.tui.widgets.footer import DebouncedFooter

SIZE = (160, 48)


def test_the_file_lives_in_the_data_home_or_the_platforms_config_dir(mk0r_home, monkeypatch):
    assert preferences_path(load_settings()) == mk0r_home / "dashboard.toml"
    monkeypatch.delenv("MK0R_HOME")
    path = preferences_path(load_settings())
    assert path.name == "dashboard.toml" and "mk0r-tui" in str(path.parent)


def test_what_is_written_reads_back_the_same(tmp_path):
    path = tmp_path / "dashboard.toml"
    wanted = Preferences(theme='odd "theme"\\name', default_target="local", footer_keys=("new_session", "teardown"))
    path.write_text(render_preferences(wanted))
    assert read_preferences(path) == (wanted, None)


def test_a_broken_file_is_reported_and_the_defaults_stand(tmp_path):
    path = tmp_path / "dashboard.toml"
    path.write_text('default_target = "mars"\ncolour = 3\n')
    preferences, problem = read_preferences(path)
    assert preferences == Preferences()
    assert problem is not None and "default_target must be one of auto, local, e2b" in problem and "'colour'" in problem
    path.write_text("theme = \n")
    assert read_preferences(path)[0] == Preferences() and "not read" in read_preferences(path)[1]


async def test_the_chosen_theme_persists_atomically_with_mode_0600(make_app, mk0r_home):
    app = make_app(fake_set())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert not (mk0r_home / "dashboard.toml").exists(), "nothing chosen, nothing written"
        app.theme = "nord"
        await pilot.pause()
    path = mk0r_home / "dashboard.toml"
    assert read_preferences(path) == (Preferences(theme="nord"), None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".dashboard.toml")], "no temp file left"

    again = make_app(fake_set())
    async with again.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert again.theme == "nord"


async def test_default_target_and_footer_keys_come_from_the_file(make_app, mk0r_home, monkeypatch):
    mk0r_home.mkdir(parents=True, exist_ok=True)
    (mk0r_home / "dashboard.toml").write_text('default_target = "local"\nfooter_keys = ["new_session"]\n')
    monkeypatch.delenv("MK0R_TARGET", raising=False)
    app = make_app(fake_set())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        footer = app.screen.query_one(DebouncedFooter)
        shown = [binding.action for binding, _, _ in footer._entries()]
        assert shown == ["new_session", "quit", "help"], shown  # q and ? always stay
        await pilot.press("n")
        assert isinstance(app.screen, NewSessionScreen) and app.screen.default_target == "local"


async def test_an_unknown_theme_in_the_file_is_a_warning_not_a_crash(make_app, mk0r_home):
    mk0r_home.mkdir(parents=True, exist_ok=True)
    (mk0r_home / "dashboard.toml").write_text('theme = "no-such-theme"\n')
    app = make_app(fake_set())
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: any("unknown theme 'no-such-theme'" in n.message for n in app._notifications), pilot=pilot,
                         what="the warning")
        assert app.theme != "no-such-theme"
