"""One `Ledger` interface, two backends (issue 12): every public method behaves the same on the
SQLite file and on a Postgres database (the session's embedded server); what differs (versions,
locks, the clock, ids under concurrency) is tested on Postgres against the real server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from mk0r_tui.core.config import load_settings
from mk0r_tui.core.envfile import scrub
from mk0r_tui.core.errors import ConfigError, UsageError
from mk0r_tui.core.ledger import (
    HOST,
    HOST_ID,
    SCHEMA_VERSION,
    LeaseRow,
    Ledger,
    LedgerError,
    ResourceRow,
    mask_url,
    open_ledger,
)
from mk0r_tui.core.models import ProviderResult, ResourceState, Session, Slot, Status

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def location(request, tmp_path):
    """Where a fresh ledger lives on each backend."""
    if request.param == "sqlite":
        return tmp_path / "ledger.sqlite3"
    return request.getfixturevalue("pg_ledger_url")


@pytest.fixture
def ledger(location):
    with Ledger(location) as opened:
        yield opened


def session(key: str) -> Session:
    return Session(key=key, slug=key[:12])


def test_sessions_are_recorded_once_and_a_taken_slug_is_refused(ledger):
    a = ledger.ensure_session(session("alpha-0000001"), target="local-folder")
    assert (a.key, a.slug, a.state, a.target) == ("alpha-0000001", "alpha-000000", "provisioning", "local-folder")
    again = ledger.ensure_session(session("alpha-0000001"))
    assert again.created_at == a.created_at  # the same row, not a second one
    with pytest.raises(UsageError, match="already belongs to session 'alpha-0000001'"):
        ledger.ensure_session(Session(key="alpha-0000002", slug="alpha-000000"))
    ledger.ensure_session(session("bravo-0000001"))
    ledger.set_session_state("alpha-0000001", "ready", env_file="/x/.env")
    assert [s.key for s in ledger.list_sessions()] == ["bravo-0000001", "alpha-0000001"]  # newest first
    assert [s.key for s in ledger.list_sessions(limit=1)] == ["bravo-0000001"]
    row = ledger.get_session("ALPHA-000000")  # a slug, any case
    assert row is not None and (row.state, row.env_file) == ("ready", "/x/.env")
    assert isinstance(row.created_at, float) and row.created_at == pytest.approx(time.time(), abs=60)
    with pytest.raises(UsageError, match="no session 'nope'"):
        ledger.require_session("nope")
    with pytest.raises(ValueError):
        ledger.set_session_state("alpha-0000001", "not-a-word")


def test_timestamps_keep_their_microseconds(ledger):
    """Postgres' REAL is 4 bytes: a timestamp stored in one would lose its seconds."""
    ledger.ensure_session(session("clock-0000001"))
    at = 1_765_000_000.123456
    ledger.append_journal([(at, "clock-0000001", "clock-000000", "neon", "ProviderStarted", '{"slot": "database"}', "o")])
    (row,) = ledger.journal()
    assert row.at == at


def test_resources_intent_created_states_and_handoff(ledger):
    ledger.ensure_session(session("res-00000001"))
    ledger.ensure_session(session("res-00000002"))
    first = ledger.intend("res-00000001", "neon", "project", "mk0r-res-0000000", {"region": "eu"})
    assert isinstance(first.id, int) and first.state == ResourceState.PENDING.value and first.meta == {"region": "eu"}
    assert ledger.intend("res-00000001", "neon", "project", "mk0r-res-0000000").id == first.id  # never a duplicate
    made = ledger.mark_created(first.id, "proj-1", url="https://x/1", meta={"branch": "main"})
    assert (made.state, made.remote_id, made.url, made.meta) == ("created", "proj-1", "https://x/1", {"region": "eu", "branch": "main"})
    other = ledger.intend("res-00000002", "github", "repo", "mk0r-shared-name")
    assert ledger.claims_by_other_sessions("res-00000001", ["mk0r-shared-name", "mk0r-none"]) == {
        ("github", "repo", "mk0r-shared-name"): "res-00000002"
    }
    ledger.note_error(other.id, "boom 500")
    ledger.mark_state(other.id, ResourceState.DELETED)
    assert ledger.live_resource("res-00000002", "github", "repo", "mk0r-shared-name") is None
    assert ledger.claims_by_other_sessions("res-00000001", ["mk0r-shared-name"]) == {}
    handed = ledger.set_handoff(first.id, "transferred", owner="alice", detail={"request": "r-1"})
    assert (handed.handoff, handed.handoff_owner, handed.handoff_detail, handed.handed_off) == ("transferred", "alice", {"request": "r-1"}, True)
    assert [r.id for r in ledger.resources()] == [first.id, other.id]
    assert [r.id for r in ledger.resources("res-00000001")] == [first.id]
    assert [r.id for r in ledger.resources(provider="github")] == [other.id]
    assert [r.id for r in ledger.resources(live_only=True)] == [first.id]
    with pytest.raises(KeyError):
        ledger.resource(10_000)
    assert isinstance(ledger.resource(first.id), ResourceRow)


def test_runs_latest_per_provider_and_latency_history(ledger):
    ledger.ensure_session(session("runs-0000001"))
    for ms in (100.0, 200.0, 300.5):
        ledger.record_run("runs-0000001", ProviderResult("neon", Slot.DATABASE, Status.OK, ms, 1))
    ledger.record_run("runs-0000001", ProviderResult("github", Slot.REPO, Status.FAILED, 5.0, 2, error="403 nope"))
    latest = ledger.latest_runs("runs-0000001")
    assert set(latest) == {"neon", "github"} and latest["neon"].latency_ms == 300.5 and latest["github"].error == "403 nope"
    assert ledger.latest_runs_all()["runs-0000001"]["neon"].latency_ms == 300.5
    assert ledger.latency_history("neon") == [100.0, 200.0, 300.5]
    assert ledger.latency_history("neon", limit=2) == [200.0, 300.5]


def test_journal_order_current_run_and_prune(ledger):
    ledger.ensure_session(session("jour-0000001"))
    ledger.ensure_session(session("jour-0000002"))
    rows = [
        (1.0, "jour-0000001", "jour-0000001"[:12], "*", "RunStarted", '{"kind": "provision"}', "w1"),
        (2.0, "jour-0000001", "jour-0000001"[:12], "neon", "ProviderStarted", '{"slot": "database"}', "w1"),
        (3.0, "jour-0000002", "jour-0000002"[:12], "*", "RunStarted", '{"kind": "provision"}', "w2"),
        (4.0, "jour-0000001", "jour-0000001"[:12], "*", "RunStarted", '{"kind": "teardown"}', "w1"),
        (5.0, "jour-0000001", "jour-0000001"[:12], "neon", "TeardownStarted", "{}", "w1"),
    ]
    ledger.append_journal(rows[:2])
    ledger.append_journal(rows[2:])
    got = ledger.journal()
    assert [r.at for r in got] == [1.0, 2.0, 3.0, 4.0, 5.0] and [r.origin for r in got][:3] == ["w1", "w1", "w2"]
    assert [r.id for r in got] == sorted(r.id for r in got)
    assert ledger.journal_max_id() == got[-1].id
    assert [r.at for r in ledger.journal(got[1].id)] == [3.0, 4.0, 5.0]
    assert [r.at for r in ledger.journal(session="JOUR-0000002")] == [3.0]
    assert [r.at for r in ledger.journal(limit=2)] == [1.0, 2.0]
    assert [r.at for r in ledger.journal_of_current_run("jour-0000001", got[-1].id)] == [4.0, 5.0]
    assert ledger.journal_of_current_run("nobody", got[-1].id) == []
    ledger.set_session_state("jour-0000001", "deleted")
    assert ledger.prune_journal(older_than=4.5) == 3  # the deleted session's old rows only
    assert [r.at for r in ledger.journal()] == [3.0, 5.0]
    ledger.append_journal([(6.0, "jour-0000002", "jour-0000002"[:12], "*", "SessionProvisioned", "{}", "w2")])
    assert ledger.journal()[-1].id > got[-1].id  # a pruned id is never handed out again


def test_leases_one_holder_heartbeat_release_and_an_owner_gone(ledger):
    ledger.ensure_session(session("lease-000001"))
    assert ledger.acquire_lease("mk0r-lease-000001", "lease-000001", "provision", "tok-a", stale_s=15) is None
    holder = ledger.acquire_lease("mk0r-lease-000001", "lease-000001", "teardown", "tok-b", stale_s=15)
    assert isinstance(holder, LeaseRow) and (holder.token, holder.host, holder.pid, holder.kind) == ("tok-a", HOST, os.getpid(), "provision")
    assert holder.local and not holder.gone(ledger.now(), 15)
    assert "being provisioned by" in holder.describe()
    first_beat = holder.heartbeat_at
    assert ledger.beat_lease("mk0r-lease-000001", "tok-a") and not ledger.beat_lease("mk0r-lease-000001", "tok-b")
    assert ledger.leases()[0].heartbeat_at >= first_beat
    assert set(ledger.live_leases(15)) == {"mk0r-lease-000001"}
    assert ledger.settle_owner_gone(15) == []  # a live lease: the session keeps its word
    ledger.release_lease("mk0r-lease-000001", "tok-b")  # not its holder: nothing happens
    assert len(ledger.leases()) == 1
    ledger.release_lease("mk0r-lease-000001", "tok-a")
    assert ledger.leases() == []
    assert ledger.settle_owner_gone(15) == ["lease-000001"]  # provisioning, no lease: interrupted
    assert ledger.get_session("lease-000001").state == "interrupted"


def test_a_stale_lease_is_taken_over_and_its_old_holder_loses_its_heartbeat(ledger):
    assert ledger.acquire_lease("mk0r-stale-00001", "stale-00001", "provision", "old", stale_s=15) is None
    ledger._write("UPDATE leases SET heartbeat_at = heartbeat_at - 60")
    assert ledger.live_leases(15) == {}
    assert ledger.acquire_lease("mk0r-stale-00001", "stale-00001", "provision", "new", stale_s=15) is None
    assert not ledger.beat_lease("mk0r-stale-00001", "old")
    assert [lease.token for lease in ledger.leases()] == ["new"]


def test_another_machines_lease_is_judged_by_its_heartbeat_never_by_a_pid_here(ledger):
    """Containers share names (`localhost`) and pids (1): a pid is only checked on the machine
    that wrote it. A lease whose pid is dead *here* but that another machine wrote, with a fresh
    heartbeat, is live; the same lease written here is gone."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert ledger.acquire_lease("mk0r-remote-0001", "remote-0001", "provision", "tok", stale_s=15) is None
    ledger._write("UPDATE leases SET pid = ?, host_id = 'another-machine'", (dead.pid,))
    (remote,) = ledger.leases()
    assert remote.host == HOST and not remote.local and not remote.gone(ledger.now(), 15)
    assert ledger.acquire_lease("mk0r-remote-0001", "remote-0001", "provision", "mine", stale_s=15) is not None
    ledger._write("UPDATE leases SET host_id = ?", (HOST_ID,))
    assert ledger.leases()[0].local and ledger.leases()[0].gone(ledger.now(), 15)
    assert ledger.acquire_lease("mk0r-remote-0001", "remote-0001", "provision", "mine", stale_s=15) is None


def test_the_ledger_id_is_made_once_and_survives_reopening(location):
    with Ledger(location) as first:
        made = first.ledger_id
    with Ledger(location) as again:
        assert again.ledger_id == made and len(made) == 16
        assert again.schema_version == SCHEMA_VERSION


def test_secrets_are_scrubbed_before_they_are_stored(ledger):
    from mk0r_tui.core.envfile import remember_secrets

    remember_secrets(["hunter2-ledger-secret"])
    ledger.ensure_session(session("scrub-000001"))
    row = ledger.intend("scrub-000001", "neon", "project", "mk0r-scrub", {"echo": "pw hunter2-ledger-secret"})
    ledger.note_error(row.id, "failed with hunter2-ledger-secret")
    assert not any("hunter2-ledger-secret" in text for text in ledger.iter_all_text())


def test_open_ledger_picks_the_backend_from_the_setting(tmp_path, pg_ledger_url, monkeypatch):
    monkeypatch.setenv("MK0R_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MK0R_LEDGER_URL", raising=False)
    with open_ledger(load_settings()) as local:
        assert local.backend == "sqlite" and local.path == tmp_path / "home" / "ledger.sqlite3"
    monkeypatch.setenv("MK0R_LEDGER_URL", pg_ledger_url)
    with open_ledger(load_settings()) as team:
        assert team.backend == "postgres" and team.url == pg_ledger_url
        assert "••••" in team.where and pg_ledger_url.split(":")[2].split("@")[0] not in team.where
        with pytest.raises(ConfigError, match="is a Postgres database, not a file"):
            _ = team.path
    monkeypatch.setenv("MK0R_LEDGER_URL", "mysql://root:pw@h/db")
    with pytest.raises(ConfigError, match="MK0R_LEDGER_URL|ledger_url") as err:
        load_settings()
    assert "pw@" not in str(err.value)


# -- Postgres only: versions, errors, concurrency -----------------------------------------------


def test_a_newer_postgres_schema_is_refused_and_never_written_to(pg_ledger_url):
    with Ledger(pg_ledger_url) as ledger:
        ledger.ensure_session(session("newer-000001"))
    with psycopg.connect(pg_ledger_url, autocommit=True) as conn:
        conn.execute("UPDATE ledger_schema SET version = %s", (SCHEMA_VERSION + 1,))
        before = conn.execute("SELECT count(*), max(updated_at) FROM sessions").fetchone()
    with pytest.raises(LedgerError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this mk0r-tui reads") as err:
        Ledger(pg_ledger_url)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
    with psycopg.connect(pg_ledger_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*), max(updated_at) FROM sessions").fetchone() == before
        assert conn.execute("SELECT version FROM ledger_schema").fetchone()[0] == SCHEMA_VERSION + 1


def test_an_older_postgres_schema_is_migrated_only_when_asked(pg_ledger_url):
    with Ledger(pg_ledger_url) as ledger:
        ledger.acquire_lease("mk0r-old-0000001", "old-0000001", "provision", "t", stale_s=15)
    with psycopg.connect(pg_ledger_url, autocommit=True) as conn:  # as version 4 left it
        conn.execute("ALTER TABLE leases DROP COLUMN host_id")
        conn.execute("UPDATE ledger_schema SET version = 4")
    with pytest.raises(LedgerError, match=r"schema version 4, older .* run `mk0r-tui ledger migrate`"):
        Ledger(pg_ledger_url)
    with Ledger(pg_ledger_url, migrate=True) as ledger:
        assert (ledger.opened_version, ledger.schema_version) == (4, SCHEMA_VERSION)
        (lease,) = ledger.leases()
        assert lease.host_id == "" and lease.local  # a lease from before: judged by its host name
    with Ledger(pg_ledger_url) as ledger:
        assert ledger.opened_version == SCHEMA_VERSION


def test_a_database_with_foreign_tables_of_the_same_names_is_refused(pg_ledger_url):
    with psycopg.connect(pg_ledger_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE sessions (id int)")
    with pytest.raises(LedgerError, match="not an mk0r-tui ledger"):
        Ledger(pg_ledger_url)


def test_an_unreachable_or_wrong_password_is_one_line_without_the_password(pg_ledger_url, pg_admin):
    wrong = pg_ledger_url.replace(f":{pg_ledger_url.split(':')[2].split('@')[0]}@", ":not-the-password-xyz@")
    with pytest.raises(ConfigError) as err:
        Ledger(wrong)
    text = str(err.value)
    assert text.startswith("cannot reach the ledger at postgresql://postgres:••••@") and "not-the-password-xyz" not in text
    assert "\n" not in text and err.value.exit_code == 2
    assert "not-the-password-xyz" not in scrub("url " + wrong)  # remembered: masked in any later log line
    with pytest.raises(ConfigError, match="cannot reach the ledger"):
        Ledger(f"postgresql://u:p@127.0.0.1:{closed_port()}/x")


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mask_url_masks_both_spellings_of_a_password():
    assert mask_url("postgresql://team:s3cr%40t@db.lan:5432/mk0r?sslmode=require") == "postgresql://team:••••@db.lan:5432/mk0r?sslmode=require"
    assert "hunter2" not in mask_url("postgresql://db.lan/mk0r?user=team&password=hunter2")
    assert mask_url("postgresql://db.lan/mk0r") == "postgresql://db.lan/mk0r"


def test_racing_processes_take_one_lease_on_postgres(pg_ledger_url):
    """Eight ledgers (each its own pool, as eight processes would have) race for one lease:
    exactly one takes it, the others are told who holds it."""
    Ledger(pg_ledger_url).close()
    go = threading.Barrier(8)
    results: list[object] = []

    def race(i: int) -> None:
        with Ledger(pg_ledger_url) as mine:
            go.wait()
            results.append(mine.acquire_lease("mk0r-race-000001", "race-000001", "provision", f"tok-{i}", stale_s=15))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is None]
    assert len(results) == 8 and len(winners) == 1
    holders = {r.token for r in results if isinstance(r, LeaseRow)}
    assert len(holders) == 1


def test_concurrent_journal_writers_never_let_a_follower_skip_an_id(pg_ledger_url):
    """Ids are handed out and committed in one order (the journal lock): a follower reading
    `id > cursor` as it goes ends with every row, none skipped by a later commit of a lower id."""
    Ledger(pg_ledger_url).close()
    writers, bursts = 4, 40
    done = threading.Event()
    seen: list[int] = []

    def write(w: int) -> None:
        with Ledger(pg_ledger_url) as mine:
            for b in range(bursts):
                mine.append_journal([(time.time(), f"s{w}", f"s{w}", "p", "ProviderStarted", "{}", f"w{w}")] * 3)

    def follow() -> None:
        with Ledger(pg_ledger_url) as reader:
            cursor = 0
            while True:
                finished = done.is_set()
                for row in reader.journal(cursor):
                    seen.append(row.id)
                    cursor = row.id
                if finished:
                    return

    follower = threading.Thread(target=follow)
    follower.start()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    follower.join()
    with Ledger(pg_ledger_url) as ledger:
        every = [r.id for r in ledger.journal()]
    assert len(every) == writers * bursts * 3
    assert seen == every


OPEN = r"""
import sys, time
from mk0r_tui.core.ledger import Ledger
while time.time() < float(sys.argv[2]):
    time.sleep(0.005)
with Ledger(sys.argv[1]) as ledger:
    print(ledger.opened_version, ledger.schema_version)
"""


def test_processes_opening_a_fresh_postgres_ledger_at_once_all_get_it(pg_ledger_url):
    """One creates the schema under the schema lock; the others wait for it and find it whole
    (they once saw some of its tables through a stale relation cache and refused it)."""
    start = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-c", OPEN, pg_ledger_url, start], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err for _, err in outs]
    assert all(out.split()[1] == str(SCHEMA_VERSION) for out, _ in outs)


def test_a_non_durable_write_inside_an_open_sqlite_transaction_joins_it(tmp_path):
    """A run record (not durable on its own: `synchronous=NORMAL` for its commit) written inside
    a transaction someone opened on the connection (the benches batch their fills so) joins that
    transaction, whose commit decides: SQLite refuses to change the safety level inside one."""
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        ledger.ensure_session(session("abcdef123456-x"), target="local-folder")
        db = ledger._db
        db.execute("BEGIN")
        ledger.record_run("abcdef123456-x", ProviderResult("neon", Slot.DATABASE, Status.OK, 10.0, 1))
        db.execute("ROLLBACK")
        assert ledger.latest_runs("abcdef123456-x") == {}  # it was the transaction's
        ledger.record_run("abcdef123456-x", ProviderResult("neon", Slot.DATABASE, Status.OK, 10.0, 1))
        assert set(ledger.latest_runs("abcdef123456-x")) == {"neon"}
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again after its own commit
