"""Team mode's commands (issue 12): `ledger copy` SQLite ↔ Postgres without losing a row,
`ledger migrate` / `status`, and `ledger serve-local` (the embedded Postgres as a team ledger,
loopback by default, scram and one role when it listens elsewhere). Real servers, real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from mk0r_tui.core.ledger import COLUMNS, SCHEMA_VERSION, TABLES, Ledger
from mk0r_tui.core.models import ProviderResult, ResourceState, Session, Slot, Status

pytestmark = pytest.mark.sqlite_only("each test names its own ledgers (files and databases) explicitly")


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mk0r_tui", *args], capture_output=True, text=True, timeout=timeout,
                          env=env or os.environ.copy(), stdin=subprocess.DEVNULL)


def populate(ledger: Ledger) -> None:
    """A bit of everything: sessions in several states, resources with meta and hand-off,
    runs, a journal whose newest rows were pruned (its counter is ahead of its max id), a stale
    lease, and text with quotes and non-ASCII."""
    for i in range(5):
        key = f"cp{i}-00000000"
        ledger.ensure_session(Session(key=key, slug=key[:12]), target="local-folder")
        row = ledger.intend(key, "neon", "project", f"mk0r-{key}", {"region": "eu", "note": "ünïcode 'quoted'"})
        ledger.mark_created(row.id, f"proj-{i}", url=f"https://console/{i}", meta={"branch": "main"})
        if i == 2:
            ledger.set_handoff(row.id, "transferred", owner="alice", detail={"request": "r-2"})
        ledger.record_run(key, ProviderResult("neon", Slot.DATABASE, Status.OK, 100.25 + i, 1, note="adopted"))
        ledger.append_journal([(1_765_000_000.5 + i, key, key[:12], "*", "RunStarted", '{"kind": "provision"}', "w")])
        ledger.set_session_state(key, "ready", env_file=f"/apps/{key}/.env")
    gone = ledger.intend("cp4-00000000", "github", "repo", "mk0r-gone")
    ledger.mark_state(gone.id, ResourceState.DELETED, error="404 already gone")
    ledger.set_session_state("cp4-00000000", "deleted")
    ledger.append_journal([(1.0, "cp4-00000000", "cp4-0000000", "*", "SessionTornDown", "{}", "w")] * 3)
    ledger.prune_journal(older_than=2.0)  # the three newest ids are gone, their counter is not
    ledger.acquire_lease("mk0r-cp0-0000000", "cp0-00000000", "provision", "tok", stale_s=15)
    ledger._write("UPDATE leases SET heartbeat_at = heartbeat_at - 3600")  # its owner is long gone
    # the warm pool's rows (a ready item with its sealed env, a claimed one) travel too
    ledger._write("INSERT INTO pool_items (id, provider, state, created_at, ready_at, secret, updated_at)"
                  " VALUES ('pool-00000a1', 'neon', 'ready', 10.5, 11.5, 'gAAAA-sealed', 11.5)")
    ledger._write("INSERT INTO pool_items (id, provider, state, created_at, ready_at, claimed_by, claimed_at, claim_ms,"
                  " finish, finish_attempts, updated_at) VALUES ('pool-00000b2', 'github', 'claimed', 1.0, 2.0,"
                  " 'cp1-00000000', 3.0, 4.25, 'done', 1, 3.0)")


def dump(ledger: Ledger) -> dict[str, list[tuple]]:
    out = {}
    for table in TABLES:
        columns = COLUMNS[table]
        order = "id" if "id" in columns else columns[0]
        out[table] = [tuple(r[c] for c in columns) for r in ledger._read(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")]
    return out


def test_copy_sqlite_to_postgres_and_back_loses_no_row(tmp_path, pg_ledger_url):
    first = tmp_path / "first.sqlite3"
    with Ledger(first) as ledger:
        populate(ledger)
        original = dump(ledger)
        last_journal_id = ledger._backend.last_id("journal")
    assert last_journal_id > max(r[0] for r in original["journal"])  # the pruned ids
    there = cli("ledger", "copy", "--from", str(first), "--to", pg_ledger_url, "--json")
    assert there.returncode == 0, there.stderr
    report = json.loads(there.stdout)
    assert report["rows"] == {t: len(rows) for t, rows in original.items()} and report["rows"]["sessions"] == 5
    assert pg_ledger_url.split("@")[0].split(":")[-1] not in there.stdout + there.stderr  # the password is masked
    with Ledger(pg_ledger_url) as team:
        assert dump(team) == original
        team.append_journal([(5.0, "cp1-00000000", "cp1-0000000", "*", "RunStarted", "{}", "w")])
        assert team.journal()[-1].id == last_journal_id + 1  # ids only grow, across the move too
        team._write("DELETE FROM journal WHERE id = ?", (last_journal_id + 1,))
        assert team.ledger_id == dict(original["ledger_meta"])["ledger_id"]
        assert team.resources("cp2-00000000")[0].handoff == "transferred"
    back = tmp_path / "back.sqlite3"
    returned = cli("ledger", "copy", "--from", pg_ledger_url, "--to", str(back))
    assert returned.returncode == 0, returned.stderr
    assert returned.stdout.startswith("copied postgresql://postgres:••••@")
    with Ledger(back) as again:
        assert dump(again) == original
        assert again._backend.last_id("journal") == last_journal_id + 1  # the row appended (and deleted) there counts


def test_copy_refuses_a_non_empty_destination_unless_replace(tmp_path, pg_ledger_url):
    source = tmp_path / "source.sqlite3"
    with Ledger(source) as ledger:
        populate(ledger)
        original = dump(ledger)
    with Ledger(pg_ledger_url) as team:
        team.ensure_session(Session(key="theirs-00000001", slug="theirs-00000"))
    refused = cli("ledger", "copy", "--from", str(source), "--to", pg_ledger_url)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "is not empty (1 sessions); pass --replace" in refused.stderr and "Traceback" not in refused.stderr
    with Ledger(pg_ledger_url) as team:
        assert [s.key for s in team.list_sessions()] == ["theirs-00000001"]  # untouched
    replaced = cli("ledger", "copy", "--from", str(source), "--to", pg_ledger_url, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    with Ledger(pg_ledger_url) as team:
        assert dump(team) == original


def test_copy_refuses_a_source_with_a_run_in_progress(tmp_path, pg_ledger_url):
    source = tmp_path / "busy.sqlite3"
    with Ledger(source) as ledger:
        ledger.ensure_session(Session(key="busy-00000001", slug="busy-0000000"))
        ledger.acquire_lease("mk0r-busy-0000000", "busy-00000001", "provision", "tok", stale_s=15)
        refused = cli("ledger", "copy", "--from", str(source), "--to", pg_ledger_url)
    assert refused.returncode == 2 and "run(s) in progress" in refused.stderr, refused.stderr
    assert cli("ledger", "copy", "--from", str(tmp_path / "missing.sqlite3"), "--to", pg_ledger_url).returncode == 2


def test_migrate_and_status_on_postgres(pg_ledger_url, tmp_path):
    env = {**os.environ, "MK0R_LEDGER_URL": pg_ledger_url, "MK0R_HOME": str(tmp_path / "home")}
    password = pg_ledger_url.split("@")[0].split(":")[-1]
    with Ledger(pg_ledger_url) as ledger:
        ledger.acquire_lease("mk0r-mig-00000001", "mig-00000001", "provision", "t", stale_s=15)
    with psycopg.connect(pg_ledger_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE leases DROP COLUMN host_id")
        conn.execute("UPDATE ledger_schema SET version = 4")
    old = cli("sessions", "--json", env=env)
    assert old.returncode == 2 and "run `mk0r-tui ledger migrate`" in old.stderr and password not in old.stderr
    migrated = cli("ledger", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert f"migrated schema 4 → {SCHEMA_VERSION}" in migrated.stdout and password not in migrated.stdout
    assert "up to date" in cli("ledger", "migrate", env=env).stdout
    status = cli("ledger", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert (data["backend"], data["schema_version"], data["live_leases"]) == ("postgres", SCHEMA_VERSION, 1)
    assert "••••" in data["ledger"] and password not in status.stdout
    with psycopg.connect(pg_ledger_url, autocommit=True) as conn:
        conn.execute("UPDATE ledger_schema SET version = %s", (SCHEMA_VERSION + 1,))
    newer = cli("ledger", "migrate", env=env)
    assert newer.returncode == 2 and "newer than this mk0r-tui reads" in newer.stderr and newer.stderr.count("\n") == 1
    bad = cli("sessions", env={**env, "MK0R_LEDGER_URL": "mysql://u:sekrit@h/db"})
    assert bad.returncode == 2 and "sekrit" not in bad.stderr and "postgresql://" in bad.stderr


def test_serve_local_is_a_team_ledger_on_loopback_and_admits_only_its_role_elsewhere(tmp_path):
    # outside pytest's basetemp (as conftest's shared server): as root, the server runs as a
    # system user that must traverse its parents, and a concurrent pytest run re-tightens
    # /tmp/pytest-of-<user> to 0700 under it
    import shutil
    import tempfile

    outside = Path(tempfile.mkdtemp(prefix="mk0r-test-team-"))
    folder = outside / "team-ledger"
    env = {**os.environ, "MK0R_HOME": str(tmp_path / "home")}
    env.pop("MK0R_LEDGER_URL", None)
    try:
        started = cli("ledger", "serve-local", "--dir", str(folder), env=env)
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip().removeprefix("MK0R_LEDGER_URL=")
        assert url.startswith("postgresql://mk0r_ledger:") and "@127.0.0.1:" in url
        password = url.split("@")[0].split(":")[-1]
        assert password not in started.stderr and "••••" in started.stderr
        assert oct(os.stat(folder / "ledger.json").st_mode & 0o777) == "0o600"
        with Ledger(url) as team:  # created at the current schema by serve-local
            assert team.opened_version == SCHEMA_VERSION
            team.ensure_session(Session(key="team-00000001", slug="team-0000000"))
        again = cli("ledger", "serve-local", "--dir", str(folder), env=env)  # running: the same URL
        assert again.returncode == 0 and again.stdout.strip() == started.stdout.strip()
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"

        # another address (127.0.0.2: still loopback, so this test opens nothing to a network)
        remote = cli("ledger", "serve-local", "--dir", str(folder), "--listen", "127.0.0.2", env=env)
        assert remote.returncode == 0, remote.stderr
        remote_url = remote.stdout.strip().removeprefix("MK0R_LEDGER_URL=")
        assert "@127.0.0.2:" in remote_url
        with Ledger(remote_url) as team:
            assert [s.key for s in team.list_sessions()] == ["team-00000001"]
        port = remote_url.rsplit(":", 1)[1].split("/")[0]
        with pytest.raises(psycopg.OperationalError):  # its password is required
            psycopg.connect(f"postgresql://mk0r_ledger:wrong@127.0.0.2:{port}/mk0r_ledger", connect_timeout=5).close()
        admin_pw = (folder / "admin.pw").read_text().strip()
        with psycopg.connect(f"postgresql://postgres:{admin_pw}@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1,127.0.0.2"
            # from anywhere but loopback: only the ledger role, only its database, only scram
            # (a client here always comes from 127.0.0.1, so the rules are read, not dialled)
            rules = conn.execute(
                "SELECT database, user_name, auth_method FROM pg_hba_file_rules WHERE address IN ('0.0.0.0', '::')"
            ).fetchall()
            assert sorted(rules) == [(["mk0r_ledger"], ["mk0r_ledger"], "scram-sha-256")] * 2
            assert conn.execute("SELECT has_database_privilege('public', 'mk0r_ledger', 'CONNECT')").fetchone()[0] is False
        back = cli("ledger", "serve-local", "--dir", str(folder), env=env)  # loopback again
        assert back.returncode == 0, back.stderr
        assert back.stdout.strip() == started.stdout.strip()  # the loopback URL again
        with pytest.raises(psycopg.OperationalError):  # restarted (pg_ctl waits): 127.0.0.2 no longer listens
            psycopg.connect(remote_url, connect_timeout=5).close()
    finally:
        stopped = cli("ledger", "serve-local", "--dir", str(folder), "--stop", env=env)
        shutil.rmtree(outside, ignore_errors=True)
    assert stopped.returncode == 0 and "stopped" in stopped.stderr


def test_copy_reports_the_same_ledger_as_a_usage_error(tmp_path):
    path = tmp_path / "same.sqlite3"
    Ledger(path).close()
    same = cli("ledger", "copy", "--from", str(path), "--to", str(path))
    assert same.returncode == 2 and "the same ledger" in same.stderr


def test_a_sqlite_ledger_named_by_path_is_opened_not_a_url(tmp_path):
    weird = cli("ledger", "copy", "--from", "mysql://x@h/db", "--to", str(tmp_path / "x.sqlite3"))
    assert weird.returncode == 2 and "not a ledger" in weird.stderr
    assert not Path(tmp_path / "x.sqlite3").exists()
