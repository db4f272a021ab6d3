"""The journal: every run's events in the ledger (typed, in order, never a secret), read back as
the very same event objects, followed from another connection, pruned only for deleted sessions."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

from fakes import FakeProvider, failing, plan_of, registry_of, skipped_step
from waiting import wait_until, wait_until_sync

from mk0r_tui.core.config import load_settings
from mk0r_tui.core.envfile import remember_secrets
from mk0r_tui.core.events import (
    EVENT_KINDS,
    Collector,
    ProviderFailed,
    ProviderProgressed,
    ProviderRetrying,
    ProviderSkipped,
    ProviderStarted,
    ProviderSucceeded,
    ResourceDeleted,
    RunStarted,
    SessionProvisioned,
    SessionTornDown,
    TeardownFailed,
    TeardownStarted,
    event_fields,
    event_from_fields,
)
from mk0r_tui.core.ledger import SCHEMA, Ledger
from mk0r_tui.core.models import ProviderResult, ResourceRef, Session, Slot, Status
from mk0r_tui.engine.journal import SqliteJournal, follow
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.engine.teardown import teardown_session

REF = ResourceRef("neon", "project", "mk0r-abc", "proj-1", "https://console.neon.tech/x")
RESULT = ProviderResult(
    "neon", Slot.DATABASE, Status.OK, 812.345678, 2, error=None, resources=(REF,),
    env={"DATABASE_URL": "postgresql://u:hunter2-very-secret@h/db"}, note="adopted",
)
EVERY_EVENT = [
    ProviderStarted(session="s-000000001", provider="neon", slot=Slot.DATABASE, at=1.5),
    ProviderProgressed(session="s-000000001", provider="neon", message="waiting for the project", at=2.0),
    ProviderRetrying(session="s-000000001", provider="neon", attempt=2, max_attempts=5, delay_s=0.4, reason="429", at=2.5),
    ProviderSucceeded(session="s-000000001", provider="neon", result=RESULT, at=3.0),
    ProviderFailed(session="s-000000001", provider="github", result=ProviderResult("github", Slot.REPO, Status.FAILED, 10.0, 1, error="403"), at=3.1),
    ProviderSkipped(session="s-000000001", provider="resend", result=ProviderResult("resend", Slot.EMAIL, Status.SKIPPED, note="no key"), at=3.2),
    TeardownStarted(session="s-000000001", provider="neon", resource=REF, at=4.0),
    ResourceDeleted(session="s-000000001", provider="neon", resource=REF, already_gone=True, latency_ms=31.0, at=4.1),
    TeardownFailed(session="s-000000001", provider="neon", resource=REF, error="500", at=4.2),
    SessionProvisioned(session="s-000000001", provider="*", ok=False, state="partial", env_file="/x/.env", at=5.0),
    RunStarted(session="s-000000001", provider="*", kind="provision", state="provisioning", target="local-folder", at=0.5),
    SessionTornDown(session="s-000000001", provider="*", ok=True, state="deleted", at=6.0),
]


def test_every_event_kind_round_trips_to_the_same_object_without_its_env():
    assert {type(e).__name__ for e in EVERY_EVENT} == set(EVENT_KINDS)
    for event in EVERY_EVENT:
        data = event_fields(event)
        assert "hunter2" not in repr(data)
        back = event_from_fields(type(event).__name__, event.session, event.provider, event.at, data)
        if isinstance(event, ProviderSucceeded):  # the one thing left out: the env (secret values)
            assert back == ProviderSucceeded(session=event.session, provider=event.provider, at=event.at,
                                             result=ProviderResult(**{**_fields(RESULT), "env": {}}))
        else:
            assert back == event


def _fields(result: ProviderResult) -> dict:
    return {f: getattr(result, f) for f in result.__dataclass_fields__}


def _runtime(*fakes) -> Runtime:
    return Runtime(load_settings(), registry=registry_of(*fakes))


def test_a_provision_and_a_teardown_write_their_events_in_order_and_never_a_secret(session_key):
    secret = "pw-" + session_key + "-never-stored"
    remember_secrets([secret])
    a = FakeProvider("a", Slot.DATABASE, env={"A_URL": f"postgresql://u:{secret}@h/db"})
    boom = failing("boom", Slot.REPO, message=f"upstream echoed {secret}")
    runtime = _runtime(a, boom)
    session = Session.parse(session_key)
    seen = Collector()

    async def both() -> None:
        await provision_services(runtime, session, plan_of([a, boom, skipped_step(Slot.EMAIL, "no key", "resend")], "local-folder"), sink=seen)
        await teardown_session(runtime, session.key, sink=seen)

    asyncio.run(both())
    rows = runtime.ledger.journal(0, session=session.key)
    assert [r.kind for r in rows] == [type(e).__name__ for e in seen.events]  # every event, in the order the sink saw them
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert rows[0].kind == "RunStarted" and rows[-1].kind == "SessionTornDown"
    assert {r.slug for r in rows} == {session.slug} and {r.origin for r in rows} == {runtime.journal.origin}
    assert [r.event() for r in rows if r.kind != "ProviderSucceeded"] == [e for e in seen.events if not isinstance(e, ProviderSucceeded)]
    text = "\n".join(runtime.ledger.iter_all_text())
    assert secret not in text
    failed = next(r for r in rows if r.kind == "ProviderFailed")
    assert "upstream echoed" in failed.fields["result"]["error"]


def test_a_burst_of_progress_lines_is_written_once_with_the_newest_line(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    runtime = Runtime(load_settings(), ledger=ledger, registry=registry_of())

    async def burst() -> None:
        for i in range(50):
            runtime.journal.append("slug-0000001", ProviderProgressed(session="key-0000001", provider="neon", message=f"poll {i}"))
        runtime.journal.append("slug-0000001", ProviderStarted(session="key-0000001", provider="github", slot=Slot.REPO))
        await asyncio.sleep(0)  # the loop turns: the burst is written

    asyncio.run(burst())
    rows = ledger.journal(0)
    assert [(r.kind, r.fields.get("message")) for r in rows] == [("ProviderProgressed", "poll 49"), ("ProviderStarted", None)]


def test_a_ledger_of_version_1_gains_the_journal_and_keeps_its_sessions(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.execute("INSERT INTO sessions VALUES ('old-session-1', 'old-session-1', 1, 1, 'ready', 'local-folder', NULL)")
        db.execute("PRAGMA user_version = 1")
    with Ledger(path) as ledger:
        assert ledger.require_session("old-session-1").state == "ready"
        assert ledger.journal(0) == [] and ledger.journal_max_id() == 0
    with Ledger(tmp_path / "fresh.sqlite3") as fresh:  # a new ledger gets every migration step
        assert fresh.journal_max_id() == 0


def test_a_follower_on_its_own_connection_sees_another_writers_rows_promptly(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.append_journal([(time.time(), "key-0000001", "key-0000001", "*", "RunStarted", '{"kind": "provision", "state": "provisioning"}', "x")])
    source = SqliteJournal(ledger.path)
    stop = threading.Event()
    got: list = []

    def reader() -> None:
        for batch in follow(source, 0, stop=stop):
            got.extend(batch)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    wait_until_sync(lambda: len(got) == 1, timeout=5)
    written = time.time()
    ledger.append_journal([(written, "key-0000001", "key-0000001", "neon", "ProviderStarted", '{"slot": "database"}', "x")])
    wait_until_sync(lambda: len(got) == 2, timeout=5)
    assert time.time() - written < 0.5
    assert got[1].event() == ProviderStarted(session="key-0000001", provider="neon", slot=Slot.DATABASE, at=written)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    source.close()


def test_prune_deletes_old_rows_of_deleted_sessions_only(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    for key, state in (("gone-session-1", "deleted"), ("live-session-1", "ready")):
        ledger.ensure_session(Session.parse(key))
        ledger.set_session_state(key, state)
    old, recent = time.time() - 40 * 86400, time.time()
    for key in ("gone-session-1", "live-session-1"):
        for at in (old, recent):
            ledger.append_journal([(at, key, key[:12], "*", "RunStarted", '{"kind": "provision", "state": "provisioning"}', "")])
    assert ledger.prune_journal(time.time() - 30 * 86400) == 1
    left = [(r.session, r.at) for r in ledger.journal(0)]
    assert left == [("gone-session-1", recent), ("live-session-1", old), ("live-session-1", recent)]


def test_a_run_cancelled_midway_ends_its_journal_with_the_ledgers_word(session_key):
    """A follower never keeps showing `provisioning` for a run that stopped in a live process:
    the last row says what the ledger recorded (interrupted)."""
    hang = FakeProvider("hangs", Slot.DATABASE, hang=True)
    runtime = _runtime(hang)
    session = Session.parse(session_key)

    async def cancelled() -> None:
        task = asyncio.create_task(provision_services(runtime, session, plan_of([hang], "local-folder")))
        await wait_until(lambda: runtime.ledger.resources(session.key), what="the hanging create's intent recorded")
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(cancelled())
    last = runtime.ledger.journal(0, session=session.key)[-1]
    assert (last.kind, last.fields["state"]) == ("SessionProvisioned", "interrupted")
    assert runtime.ledger.require_session(session.key).state == "interrupted"


def test_journal_commits_skip_the_fsync_and_every_other_write_keeps_it(tmp_path):
    """The journal is a view: its commits run at synchronous=NORMAL (no fsync of their own, atomic
    in the WAL), so an intent queued behind a burst of events on the writer thread waits for no
    disk flush of theirs. Every other write stays synchronous=FULL, before and after."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    db = ledger._backend.db
    said: list[str] = []
    db.set_trace_callback(said.append)
    ledger.append_journal([(time.time(), "key-0000001", "key-0000001", "*", "RunStarted", "{}", "x")])
    db.set_trace_callback(None)
    order = [s for s in said if s.startswith(("PRAGMA synchronous", "BEGIN", "COMMIT"))]
    assert order == ["PRAGMA synchronous=NORMAL", "BEGIN IMMEDIATE", "COMMIT", "PRAGMA synchronous=FULL"]
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again for the record
    ledger.ensure_session(Session.parse("key-0000001"), target="local-folder")
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2
    with Ledger(tmp_path / "ledger.sqlite3") as other:  # committed: another connection reads it
        assert [r.kind for r in other.journal(0)] == ["RunStarted"]


def test_a_runs_provider_records_skip_the_fsync_and_its_final_state_keeps_it(tmp_path):
    """A run's per-provider records are history, flushed by the run's last, durable write (the
    session's state): on SQLite they run at synchronous=NORMAL, the state write at FULL."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    session = Session.parse("key-0000001")
    ledger.ensure_session(session, target="local-folder")
    db = ledger._backend.db
    said: list[str] = []
    db.set_trace_callback(said.append)
    ledger.record_run(session.key, ProviderResult("neon", Slot.DATABASE, Status.OK, 12.0, 1, None))
    record = [s for s in said if s.startswith("PRAGMA synchronous")]
    said.clear()
    ledger.set_session_state(session.key, "ready")
    db.set_trace_callback(None)
    assert record == ["PRAGMA synchronous=NORMAL", "PRAGMA synchronous=FULL"]
    assert not [s for s in said if s.startswith("PRAGMA synchronous")]  # the state write: FULL, as set
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert ledger.latest_runs(session.key)["neon"].status == "ok"
