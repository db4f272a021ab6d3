"""The dashboard's settings file: `dashboard.toml` in the platform's config folder (platformdirs;
under `MK0R_HOME` when that is set). What the operator chooses in the dashboard stays chosen.

    theme = "textual-dark"      # any Textual theme; the dashboard writes it when you pick one (Ctrl+P)
    default_target = "auto"     # auto | local | e2b: the new-session dialog's first choice (MK0R_TARGET wins)
    footer_keys = []            # actions the footer shows, e.g. ["new_session", "teardown"]; empty = all that fit

Read with `tomllib`; written by a tiny writer (three kinds of value: strings and lists of strings),
atomically and 0600 through `core.envfile.atomic_write`. A file that cannot be read or holds
something unknown is reported once, as a warning, and the defaults stand: a preference never
stops the dashboard. Textual-free.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import platformdirs

from mk0r_tui.core.config import APP_NAME, Settings
from mk0r_tui.core.envfile import atomic_write

FILE_NAME = "dashboard.toml"
TARGETS = ("auto", "local", "e2b")
HEADER = "# mk0r-tui dashboard settings: the dashboard rewrites this file when you change a choice in it.\n"


@dataclass(frozen=True, slots=True)
class Preferences:
    theme: str | None = None
    default_target: str | None = None
    footer_keys: tuple[str, ...] = field(default_factory=tuple)

    def with_theme(self, theme: str) -> Preferences:
        return replace(self, theme=theme)


def preferences_path(settings: Settings, environ: Mapping[str, str] = os.environ) -> Path:
    """`$MK0R_HOME/dashboard.toml` when MK0R_HOME is set (tests, several profiles side by side),
    else the platform's config folder. MK0R_HOME is read from the environment itself: `Settings`
    also fills `home` from `$HOME` (pydantic's populate_by_name), which would put this file in
    the user's home folder."""
    if environ.get("MK0R_HOME") and settings.home is not None:
        return Path(settings.home).expanduser() / FILE_NAME
    return platformdirs.user_config_path(APP_NAME, appauthor=False) / FILE_NAME


def read_preferences(path: Path) -> tuple[Preferences, str | None]:
    """The preferences in `path` (defaults when it does not exist) and a one-line problem, if any."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Preferences(), None
    except (OSError, UnicodeDecodeError) as exc:
        return Preferences(), f"{path}: not read ({exc}); the defaults apply"
    import tomllib  # only when there is a file: a few ms off the first frame otherwise

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return Preferences(), f"{path}: not read ({exc}); the defaults apply"
    problems: list[str] = []
    theme = raw.pop("theme", None)
    if theme is not None and not isinstance(theme, str):
        problems.append("theme must be a string")
        theme = None
    target = raw.pop("default_target", None)
    if target is not None and target not in TARGETS:
        problems.append(f"default_target must be one of {', '.join(TARGETS)}")
        target = None
    keys = raw.pop("footer_keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        problems.append("footer_keys must be a list of action names")
        keys = []
    problems += [f"unknown setting {name!r}" for name in raw]
    problem = f"{path}: {'; '.join(problems)}" if problems else None
    return Preferences(theme, target, tuple(keys)), problem


def render_preferences(preferences: Preferences) -> str:
    """TOML for `preferences`: JSON's string escapes are TOML basic strings' escapes."""
    lines = [HEADER]
    for name, value in asdict(preferences).items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            lines.append(f"{name} = [{', '.join(json.dumps(v) for v in value)}]\n")
        else:
            lines.append(f"{name} = {json.dumps(value)}\n")
    return "".join(lines)


def write_preferences(path: Path, preferences: Preferences) -> None:
    """Atomically, mode 0600 (raises `EnvWriteError` with a one-line reason)."""
    atomic_write(path, render_preferences(preferences), mode=0o600)


__all__ = ["Preferences", "preferences_path", "read_preferences", "render_preferences", "write_preferences"]
