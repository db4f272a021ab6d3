"""The CLI's `provision` takes its start-up objects out of the collector's reach (`gc.freeze`), so
it closes its runtime itself: the ledger's last close is its WAL checkpoint, and the next process
on the data dir must not find the run's writes left in the WAL for it to recover and checkpoint."""

from __future__ import annotations

import json
import os

from crashkit import KEYS, cli_env, run_cli

from fakeupstream import FakeUpstream


def test_provision_closes_the_ledger_before_it_exits(tmp_path):
    home = tmp_path / "home"
    keys = {k: v for k, v in KEYS.items() if k != "POSTHOG_PROJECT_KEY"}
    with FakeUpstream(config={"latency_ms": {"neon": 1, "resend": 1, "github": 1, "posthog": 1}, "neon_operation_ms": 0}) as fake:
        env = cli_env(fake, home, keys=keys, MK0R_TARGET="local")
        done = run_cli(env, "provision", "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["ok"]
        # the only connection was the provision's: its close checkpointed the WAL and removed it
        wal = home / "ledger.sqlite3-wal"
        assert not wal.exists() or wal.stat().st_size == 0
        torn = run_cli(env, "teardown", report["session"], "--yes")
        assert torn.returncode == 0, torn.stderr


def test_a_provision_that_fails_in_its_run_closes_the_ledger_too(tmp_path):
    home = tmp_path / "home"
    keys = {k: v for k, v in KEYS.items() if k != "POSTHOG_PROJECT_KEY"}
    with FakeUpstream(config={"latency_ms": {"neon": 1, "resend": 1, "github": 1, "posthog": 1}, "neon_operation_ms": 0}) as fake:
        env = cli_env(fake, home, keys=keys, MK0R_TARGET="local")
        first = run_cli(env, "provision", "--json", "--session", "abcdefabcdef-one")
        assert first.returncode == 0, first.stderr
        # the same slug for another key: refused inside the run (the session's row), exit 2
        second = run_cli(env, "provision", "--json", "--session", "abcdefabcdef-two")
        assert second.returncode == 2 and "already belongs to session" in second.stderr, second.stderr
        wal = home / "ledger.sqlite3-wal"
        assert not wal.exists() or wal.stat().st_size == 0
        torn = run_cli(env, "teardown", "abcdefabcdef-one", "--yes")
        assert torn.returncode == 0, torn.stderr


def test_provision_called_from_another_program_leaves_its_collector_alone(tmp_path, monkeypatch):
    """The collector tuning is for a process that is the command (`main`); click's runner in
    this process must find its garbage collector as it was."""
    import gc
    import logging

    from click.testing import CliRunner

    from mk0r_tui.cli import cli

    keys = {k: v for k, v in KEYS.items() if k != "POSTHOG_PROJECT_KEY"}
    logger = logging.getLogger("mk0r_tui")  # the CLI configures it for its process: give it back after
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    monkeypatch.setattr(logger, "propagate", logger.propagate)
    monkeypatch.setattr(logger, "level", logger.level)
    with FakeUpstream(config={"latency_ms": {"neon": 1, "resend": 1, "github": 1, "posthog": 1}, "neon_operation_ms": 0}) as fake:
        for name, value in cli_env(fake, tmp_path / "home", keys=keys, MK0R_TARGET="local").items():
            monkeypatch.setenv(name, value)
        frozen = gc.get_freeze_count()
        result = CliRunner().invoke(cli, ["provision", "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert gc.isenabled() and gc.get_freeze_count() == frozen
        report = json.loads(result.output)
        torn = run_cli(dict(os.environ), "teardown", report["session"], "--yes")
        assert torn.returncode == 0, torn.stderr
