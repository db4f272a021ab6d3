"""The README stays true to the code, and the wheel ships what the installed app needs."""

import re
import zipfile
from pathlib import Path

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import KEY_NAMES

ROOT = Path(__file__).resolve().parents[1]


def documented_variables() -> set[str]:
    text = (ROOT / "README.md").read_text()
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", text))


def test_every_setting_and_key_is_in_the_readme_configuration_table():
    documented = documented_variables()
    aliases = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        aliases.update(getattr(alias, "choices", [alias]) if alias else [])
    per_provider = {a for a in aliases if a.startswith("MK0R_CONCURRENCY_")}
    missing = sorted((aliases - per_provider | set(KEY_NAMES)) - documented)
    assert not missing, f"README configuration table lacks {missing}"
    assert "MK0R_CONCURRENCY_NEON" in (ROOT / "README.md").read_text()


def test_the_wheel_ships_the_styles(tmp_path):
    from hatchling.builders.wheel import WheelBuilder

    wheel = next(iter(WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n for n in names if n.startswith("mk0r_tui/styles/") and n.endswith(".tcss")}
    expected = {f"mk0r_tui/styles/{p.name}" for p in (ROOT / "styles").glob("*.tcss")}
    assert expected and shipped == expected
    assert "mk0r_tui/tui/web_page.html" in names, "mk0r-tui web serves this page"
    assert not any(n.startswith("tests/") for n in names)
