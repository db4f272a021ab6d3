"""The warm pool through the real CLI, against the fake upstream (issue 14):

- canary: the secrets of pooled items are nowhere in the clear on disk but in the claiming
  session's `.env` (not the ledger, its WAL, the log), before and after the claim;
- `provision --json` says `"from_pool": true`, and the finisher it starts renames in the background;
- `pool status --json` has the issue's shape;
- SIGKILL during `pool fill` leaves nothing `orphans` cannot find, and `pool drain` empties the fake.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from crashkit import cli_command, cli_env, cli_json, run_cli, upstream_resources
from ledgerkit import open_test_ledger
from waiting import wait_until_sync

from fakeupstream import FakeUpstream
from mk0r_tui.core import pool_store as store
from mk0r_tui.core.config import load_settings
from mk0r_tui.core.envfile import is_secret
from mk0r_tui.core.pool_crypto import PoolCipher

pytestmark = pytest.mark.slow

POOLED = ("neon", "resend", "github")


def files_under(home: Path, *, skip: tuple[str, ...]) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in home.rglob("*")
            if p.is_file() and not any(part in skip for part in p.relative_to(home).parts)
            and "postgres" not in p.relative_to(home).parts}


def sealed_secrets(home: Path) -> list[str]:
    """Every secret value of every pooled item, opened with the data dir's pool key."""
    ledger = open_test_ledger(home)
    try:
        cipher = PoolCipher(load_settings(home=home, no_keyring=True))
        values = []
        for item in store.items(ledger):
            if item.secret:
                values += [v for k, v in cipher.open(item.secret).items() if is_secret(k, v) and len(v) >= 8]
        return values
    finally:
        ledger.close()


def test_pooled_secrets_are_never_in_the_clear_and_a_claim_reports_from_pool(tmp_path, monkeypatch):
    home = tmp_path / "home"
    with FakeUpstream(config={"latency_ms": 5, "neon_operation_ms": 0}) as fake:
        env = cli_env(fake, home, MK0R_POOL_SIZE="1", MK0R_TARGET="local")
        proc = run_cli(env, "pool", "fill", "--wait")
        assert proc.returncode == 0, proc.stderr
        status = cli_json(env, "pool", "status", "--json")
        for name in POOLED:
            entry = status["providers"][name]
            assert {k: entry[k] for k in ("target", "ready", "filling", "claimed_total")} == {
                "target": 1, "ready": 1, "filling": 0, "claimed_total": 0}
            assert isinstance(entry["oldest_age_s"], float)
        secrets = sealed_secrets(home)
        assert len(secrets) >= 4  # a Neon password (and the URLs holding it), a Resend key
        for path, data in files_under(home, skip=("pool.key",)).items():
            for secret in secrets:
                assert secret.encode() not in data, f"a pooled secret in the clear in {path}"

        report = cli_json(env, "provision", "--json", "--session", "canary-session-0001")
        providers = {p["name"]: p for p in report["providers"]}
        assert all(providers[n]["from_pool"] is True for n in POOLED)
        assert providers["posthog"]["from_pool"] is False
        assert all(secret not in json.dumps(report) for secret in secrets)  # --json masks
        # the finisher `provision` started renames everything in the background
        ledger = open_test_ledger(home)
        try:
            wait_until_sync(lambda: not store.unfinished_claims(ledger), timeout=60, what="the detached finisher")
        finally:
            ledger.close()
        state = fake.state()
        assert [r["full_name"].split("/")[1] for r in state["github"]] == ["mk0r-canary-sessi"]
        env_file = home / "apps" / "canary-sessi" / ".env"
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"
        written = env_file.read_text()
        assert all(secret in written for secret in secrets if "canary" not in secret)
        assert "mk0r-canary-sessi.git" in written
        for path, data in files_under(home, skip=("pool.key", "apps")).items():
            for secret in secrets:
                assert secret.encode() not in data, f"a claimed secret in the clear in {path}"
        assert run_cli(env, "teardown", "canary-session-0001", "--yes").returncode == 0
        assert upstream_resources(fake.state()) == []


def test_sigkill_during_fill_leaves_nothing_orphans_cannot_find(tmp_path):
    home = tmp_path / "home"
    config = {"latency_ms": {"neon": 3000, "resend": 3000, "github": 3000, "posthog": 10},
              "latency_mode": "split", "neon_operation_ms": 0}
    with FakeUpstream(config=config) as fake:
        env = cli_env(fake, home, MK0R_POOL_SIZE="2", MK0R_TARGET="local", MK0R_POOL_FILL_CONCURRENCY="2")
        proc = subprocess.Popen(cli_command("pool", "fill", "--wait"), env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            # killed once creates were committed upstream but before any answer arrived
            wait_until_sync(lambda: len(upstream_resources(fake.state())) >= 3, timeout=60, what="creates committed upstream")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        upstream = upstream_resources(fake.state())
        assert upstream, "the kill came before any create"
        ledger = open_test_ledger(home)
        try:
            live = {(r.provider, r.kind, r.remote_id) for r in ledger.resources(live_only=True) if r.state == "created"}
            pending = [r for r in ledger.resources(live_only=True) if r.state == "pending"]
            assert pending, "no intent was left pending"
            assert all(r.session_key.startswith("pool-") for r in ledger.resources(live_only=True))
        finally:
            ledger.close()
        orphans = cli_json(env, "orphans", "--json")
        reported = {(o["provider"], o["kind"], o["name"]) for o in orphans} | {
            (o["provider"], o["kind"], o["id"]) for o in orphans}
        for res in upstream:
            known = (res.provider, res.kind, res.remote_id) in live
            assert known or (res.provider, res.kind, res.name) in reported or (res.provider, res.kind, res.remote_id) in reported, (
                f"{res} is neither recorded nor reported by orphans: {orphans}")
        status = cli_json(env, "pool", "status", "--json")
        assert sum(p["abandoned"] for p in status["providers"].values()) >= 1
        assert sum(p["filling"] for p in status["providers"].values()) == 0
        drained = run_cli(env, "pool", "drain", "--yes", "--json")
        assert drained.returncode == 0, drained.stderr
        assert upstream_resources(fake.state()) == []
        assert cli_json(env, "orphans", "--json") == []
