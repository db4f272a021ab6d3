"""The CLI as scripts and people use it: real subprocesses, exit codes, stdout vs stderr."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ledgerkit import open_test_ledger


def mk0r(*args, env=None, input=None, timeout=60):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mk0r_tui", *args], capture_output=True, text=True, env=full_env, input=input, timeout=timeout
    )


def assert_clean_failure(result, code, fragment):
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert fragment in result.stderr


@pytest.mark.parametrize("key", ["short", "has space in it", "UPPER_under_x"])
def test_bad_session_key_exits_2_before_anything_is_created(key, mk0r_home):
    result = mk0r("provision", "--session", key, "--json")
    assert_clean_failure(result, 2, "session key")
    assert result.stdout == ""
    assert not (mk0r_home / "ledger.sqlite3").exists()


def test_unwritable_data_dir_exits_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = mk0r("provision", "--session", "abcdefgh-1234", env={"MK0R_HOME": str(blocker / "home")})
    assert_clean_failure(result, 2, "cannot use the data dir")


def test_missing_git_exits_2(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    result = mk0r("provision", "--session", "abcdefgh-1234", env={"PATH": str(empty)})
    assert_clean_failure(result, 2, "git is not installed")


def test_every_command_has_help():
    for args in ([], ["provision"], ["sessions"], ["env"], ["teardown"], ["orphans"], ["local-postgres"], ["mail"], ["local-mail"]):
        result = mk0r(*args, "--help")
        assert result.returncode == 0 and "Usage:" in result.stdout, args


def test_provision_json_sessions_env_and_teardown(session_key, mk0r_home):
    result = mk0r("provision", "--session", session_key, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["session"] == session_key and data["slug"] == session_key[:12]
    assert {p["name"]: p["status"] for p in data["providers"]} == {
        "posthog": "ok", "local-postgres": "ok", "local-mail": "ok", "local-git": "ok", "local-folder": "ok",
    }
    assert {"RESEND_API_KEY", "RESEND_BASE_URL", "RESEND_API_URL", "SMTP_HOST", "SMTP_PORT", "SMTP_USER", "SMTP_PASSWORD"} <= set(data["env"])
    for p in data["providers"]:
        assert set(p) >= {"name", "slot", "status", "latency_ms", "attempts", "error", "resources"}
    password = Path(data["env_file"]).read_text()
    assert "••••" in data["env"]["DATABASE_URL"]
    real = dict(line.split("=", 1) for line in password.splitlines() if "=" in line and not line.startswith("#"))
    assert real["PGPASSWORD"] not in result.stdout + result.stderr
    for secret in ("RESEND_API_KEY", "SMTP_PASSWORD"):
        assert real[secret] and real[secret] not in result.stdout + result.stderr

    listed = json.loads(mk0r("sessions", "--json").stdout)
    assert listed[0]["session"] == session_key
    assert set(listed[0]) >= {"session", "slug", "created_at", "state", "providers"}
    assert listed[0]["state"] == "ready" and listed[0]["providers"]["local-postgres"] == "ok"

    masked = mk0r("env", session_key)
    assert masked.returncode == 0 and real["PGPASSWORD"] not in masked.stdout
    revealed = mk0r("env", session_key, "--reveal")
    assert real["PGPASSWORD"] in revealed.stdout

    refused = mk0r("teardown", session_key)
    assert_clean_failure(refused, 2, "without --yes")
    down = mk0r("teardown", session_key, "--yes", "--json")
    assert down.returncode == 0, down.stdout + down.stderr
    outcomes = json.loads(down.stdout)["resources"]
    assert {o["outcome"] for o in outcomes} == {"deleted"} and len(outcomes) == 5
    again = json.loads(mk0r("teardown", session_key, "--yes", "--json").stdout)
    assert again["ok"] and again["resources"] == []


def test_orphans_json_lists_a_pending_row(session_key, mk0r_home):
    from mk0r_tui.core.models import Session

    mk0r_home.mkdir(parents=True, exist_ok=True)
    with open_test_ledger(mk0r_home) as ledger:
        session = Session.parse(session_key)
        ledger.ensure_session(session)
        ledger.intend(session_key, "local-git", "bare-repo", session.resource_name)
    result = mk0r("orphans", "--provider", "local-git", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert [(o["provider"], o["kind"], o["name"]) for o in found] == [("local-git", "bare-repo", session.resource_name)]
    assert set(found[0]) == {"provider", "kind", "name", "id", "age_s", "reason", "foreign", "owner"}
    assert found[0]["foreign"] is False  # this ledger's own pending row
    assert mk0r("orphans", "--provider", "local-git", "--older-than", "1h", "--json").stdout.strip() == "[]"
    assert_clean_failure(mk0r("orphans", "--older-than", "soon"), 2, "bad duration")
    deleted = mk0r("orphans", "--provider", "local-git", "--delete", "--yes", "--json")
    assert deleted.returncode == 0, deleted.stderr
    assert [o["outcome"] for o in json.loads(deleted.stdout)] == ["already_gone"]
    assert json.loads(mk0r("orphans", "--provider", "local-git", "--json").stdout) == []
    assert_clean_failure(mk0r("orphans", "--provider", "nope"), 2, "unknown provider")


def test_unknown_session_is_a_usage_error(mk0r_home):
    assert_clean_failure(mk0r("env", "nope-nope-nope"), 2, "no session")


def test_the_cli_path_never_imports_textual():
    code = (
        "import sys, mk0r_tui.cli, mk0r_tui.engine.orchestrator, mk0r_tui.engine.teardown, mk0r_tui.engine.doctor, mk0r_tui.providers, mk0r_tui.targets.local;"
        "from mk0r_tui.providers import DEFAULT_REGISTRY;"
        "[__import__(s.factory.split(':')[0]) for s in DEFAULT_REGISTRY.specs];"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'textual' or m in ('rich.live', 'rich.progress'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_linter_contract_holds():
    root = Path(__file__).resolve().parents[1]
    exe = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(exe)], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEPT" in result.stdout


def test_the_ground_floor_imports_nothing_above_it_lazy_or_not():
    """grep, not only import-linter: a function-level import is still a layer crossed."""
    root = Path(__file__).resolve().parents[1] / "mk0r_tui" / "core"
    import re

    above = re.compile(r"^\s*(from|import)\s+mk0r_tui\.(providers|targets|engine|tui|cli)\b", re.M)
    crossing = {p.name: above.findall(p.read_text()) for p in root.glob("*.py")}
    assert {name: found for name, found in crossing.items() if found} == {}


def test_the_dashboard_without_a_terminal_says_so_and_exits_2(mk0r_home):
    """A script that forgot the subcommand (stdin not a TTY, stdout redirected) gets one line
    naming the commands, not a dashboard drawn into its output file until it is killed."""
    result = mk0r(timeout=30)
    assert_clean_failure(result, 2, "the dashboard needs a terminal")
    assert "provision" in result.stderr and "sessions" in result.stderr
    assert result.stdout == ""


def test_one_provision_run_resolves_its_plan_once_and_writes_its_env_once(session_key, mk0r_home, monkeypatch):
    from click.testing import CliRunner

    from mk0r_tui.cli import cli
    from mk0r_tui.engine import plan as planning

    plans, env_writes = [], []
    resolve = planning.resolve_plan
    monkeypatch.setattr(planning, "resolve_plan", lambda *a, **k: plans.append(a) or resolve(*a, **k))
    replace = os.replace

    def counting_replace(src, dst, *args, **kwargs):
        if Path(dst).name == ".env":
            env_writes.append(Path(dst))
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", counting_replace)
    logger = logging.getLogger("mk0r_tui")  # the CLI configures it for its process: give it back after
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    monkeypatch.setattr(logger, "propagate", logger.propagate)
    monkeypatch.setattr(logger, "level", logger.level)
    result = CliRunner().invoke(cli, ["provision", "--session", session_key, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(plans) == 1, "the plan is resolved once per run"
    assert env_writes == [mk0r_home / "apps" / session_key[:12] / ".env"], "one writer, one write"
