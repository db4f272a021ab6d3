"""core/envmodel.py: settings declared as pydantic fields, read from the environment without pydantic."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

from mk0r_tui.core.config import Settings, load_settings
from mk0r_tui.core.envmodel import AliasChoices, EnvModel, Field, SettingsValidationError, field_validator
from mk0r_tui.core.errors import ConfigError


class Knobs(EnvModel):
    """A new setting is declared exactly as it was on the pydantic model."""

    home: Path | None = Field(None, validation_alias=AliasChoices("T_HOME"))
    mode: Literal["a", "b"] = Field("a", validation_alias=AliasChoices("T_MODE"))
    rate: float = Field(2.0, validation_alias=AliasChoices("T_RATE"))
    tries: int = Field(5, ge=1, le=20, validation_alias=AliasChoices("T_TRIES", "T_TRIES_OLD"))
    quiet: bool = Field(False, validation_alias=AliasChoices("T_QUIET"))
    name: str | None = Field(None, validation_alias=AliasChoices("T_NAME"))

    @field_validator("rate")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"must be above 0 (got {value})")
        return value

    @field_validator("home", mode="before")
    @classmethod
    def _absolute(cls, value: object) -> object:
        if value is not None and not Path(str(value)).is_absolute():
            raise ValueError("is relative")
        return value


def test_values_come_from_the_environment_coerced_and_the_constructor_wins(monkeypatch):
    monkeypatch.setenv("T_HOME", "/srv/x")
    monkeypatch.setenv("t_mode", "b")  # names match case-insensitively, as pydantic-settings did
    monkeypatch.setenv("T_RATE", "2.5")
    monkeypatch.setenv("T_TRIES_OLD", " 7 ")
    monkeypatch.setenv("T_QUIET", "yes")
    knobs = Knobs(rate=9)
    assert (knobs.home, knobs.mode, knobs.rate, knobs.tries, knobs.quiet, knobs.name) == (Path("/srv/x"), "b", 9.0, 7, True, None)
    assert Knobs(T_TRIES="3").tries == 3  # an alias in the constructor counts as given
    assert list(Knobs.model_fields) == ["home", "mode", "rate", "tries", "quiet", "name"]
    assert Knobs.model_fields["tries"].validation_alias.choices == ["T_TRIES", "T_TRIES_OLD"]


def test_every_problem_is_reported_under_the_name_it_came_from(monkeypatch):
    monkeypatch.setenv("T_TRIES", "21")
    monkeypatch.setenv("T_MODE", "c")
    with pytest.raises(SettingsValidationError) as caught:
        Knobs(rate="nan", home="rel", quiet="maybe")
    messages = {err["loc"][0]: err["msg"] for err in caught.value.errors()}
    assert messages == {
        "T_TRIES": "Input should be less than or equal to 20",
        "T_MODE": "Input should be 'a' or 'b'",
        "rate": "Value error, must be above 0 (got nan)",
        "home": "Value error, is relative",
        "quiet": "Input should be a valid boolean, unable to interpret input",
    }


def test_instances_are_frozen_and_model_copy_applies_an_update():
    knobs = Knobs()
    with pytest.raises(TypeError, match="frozen"):
        knobs.rate = 3.0  # type: ignore[misc]
    copy = knobs.model_copy(update={"name": "x"})
    assert copy.name == "x" and knobs.name is None and copy == Knobs(name="x") and copy != knobs


def test_load_settings_names_the_variable_in_one_config_error(monkeypatch):
    monkeypatch.setenv("MK0R_MAX_ATTEMPTS", "0")
    with pytest.raises(ConfigError, match=r"^bad configuration: MK0R_MAX_ATTEMPTS: Input should be greater than or equal to 1$"):
        load_settings()
    monkeypatch.delenv("MK0R_MAX_ATTEMPTS")
    assert load_settings(max_attempts=3).max_attempts == 3 and isinstance(Settings(), Settings)


def test_reading_the_settings_imports_no_pydantic():
    code = ("import sys; from mk0r_tui.core.config import load_settings; load_settings().data_dir;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_settings', 'pydantic_core')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_model_fields_set_names_what_was_given_explicitly(monkeypatch):
    """The dashboard's settings file fills only what the environment left at its default
    (tui/app.py default_target asks model_fields_set, as it would of a pydantic model)."""
    from mk0r_tui.core.config import load_settings

    monkeypatch.setenv("MK0R_TARGET", "e2b")
    monkeypatch.delenv("MK0R_PROFILE", raising=False)
    settings = load_settings()
    assert "target" in settings.model_fields_set and "profile" not in settings.model_fields_set
    assert "profile" in settings.model_copy(update={"profile": "local"}).model_fields_set
