"""The screenshot check (`scripts/export_screenshots.py --check`, a CI step) compares what the
pictures say, not their pixels: a changed word fails it, a different latency or time does not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def exporter():
    spec = importlib.util.spec_from_file_location("export_screenshots", REPO / "scripts" / "export_screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_readme_picture_exists_and_the_readme_shows_the_80x24_one():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    import re

    pictures = re.findall(r"\]\((screenshots/[^)]+)\)", readme)
    assert "screenshots/dashboard-80x24.svg" in pictures
    missing = [p for p in pictures if not (REPO / p).exists()]
    assert not missing, missing


def test_the_committed_pictures_have_text_the_check_can_read():
    module = exporter()
    for svg in (REPO / "screenshots").glob("*.svg"):
        lines = module.svg_text(svg.read_text(encoding="utf-8"))
        assert any("mk0r" in line for line in lines), svg.name


def test_a_changed_word_fails_the_check_a_changed_time_does_not(tmp_path):
    module = exporter()
    committed, fresh = tmp_path / "committed", tmp_path / "fresh"
    committed.mkdir()
    fresh.mkdir()
    original = (REPO / "screenshots" / "dashboard-all-ok.svg").read_text(encoding="utf-8")
    (committed / "dashboard-all-ok.svg").write_text(original, encoding="utf-8")

    retimed = original.replace("ok&#160;in", "ok&#160;in", 1)
    import re

    retimed = re.sub(r"(\d\d):(\d\d):(\d\d)", "23:59:59", retimed)
    (fresh / "dashboard-all-ok.svg").write_text(retimed, encoding="utf-8")
    assert module.changed_pictures(committed, fresh) == []

    (fresh / "dashboard-all-ok.svg").write_text(original.replace("Teardown", "Destroy"), encoding="utf-8")
    problems = module.changed_pictures(committed, fresh)
    assert len(problems) == 1 and problems[0].startswith("dashboard-all-ok.svg: its text changed"), problems

    (fresh / "new-picture.svg").write_text(original, encoding="utf-8")
    (committed / "gone.svg").write_text(original, encoding="utf-8")
    problems = module.changed_pictures(committed, fresh)
    assert any("new picture" in p for p in problems) and any("no longer makes it" in p for p in problems)
