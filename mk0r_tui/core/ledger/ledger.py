"""The ledger: a durable record of sessions, every resource, every run, who runs what now
(leases) and every event (the journal). One class, one set of SQL statements, two backends
(`backends.py`): a SQLite file under the data dir (the default, one machine) or a Postgres
database a whole team shares (`MK0R_LEDGER_URL=postgresql://…`, team mode).

Crash safety rests on one rule: a provider's *intent* (session, provider, kind, the name it is
about to create) is committed before the create call is sent. A process killed between the
intent and the answer leaves a `pending` row, which teardown and orphan discovery understand.
No secret value is ever written here.

Schema versions: SQLite migrates forward when opened (one machine, one program). Postgres is
shared by machines that may run different versions of mk0r-tui, so it is created when the
database is empty but migrated only on request (`Ledger(url, migrate=True)`, what
`mk0r-tui ledger migrate` does); an older one is refused with that advice, a newer one always.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mk0r_tui.core.errors import UsageError
from mk0r_tui.core.ledger.backends import (
    JOURNAL_LOCK,
    SCHEMA_LOCK,
    WRITE_LOCK,
    Backend,
    PostgresBackend,
    SqliteBackend,
    Written,
    is_postgres_url,
)
from mk0r_tui.core.ledger.rows import (
    HOST,
    HOST_ID,
    LIVE_STATES,
    JournalRow,
    LeaseRow,
    LedgerError,
    ResourceRow,
    RunRow,
    SessionRow,
    _clean,
    _journal_row,
    _lease_row,
    _resource_row,
    _run_row,
    _session_row,
    journal_query,
)
from mk0r_tui.core.ledger.schema import COLUMNS, MIGRATIONS, SCHEMA_VERSION, Conn
from mk0r_tui.core.models import POOL_KEY_PREFIX, RESOURCE_PREFIX, ProviderResult, ResourceState, Session
from mk0r_tui.core.states import SessionPhase, owner_gone_state


class Ledger:
    """Thread-safe handle on the ledger. Every write is its own committed transaction.

    `location` is a SQLite file's path or a `postgresql://` URL. `migrate`: None = the
    backend's rule (SQLite migrates, Postgres refuses an older schema), True = migrate forward
    now (`mk0r-tui ledger migrate`)."""

    def __init__(self, location: Path | str, *, migrate: bool | None = None) -> None:
        self._backend: Backend
        if is_postgres_url(location):
            self._backend = PostgresBackend(str(location))
        else:
            self._backend = SqliteBackend(Path(location))
        #: the schema version found on opening (before any migration) and now
        self.opened_version = SCHEMA_VERSION
        try:
            self._upgrade(migrate)
            self._backend.opened()
        except BaseException as exc:
            self._backend.close()
            raise self._backend.opening_error(exc) from None

    # where it lives ---------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """`sqlite` or `postgres`."""
        return self._backend.name

    @property
    def where(self) -> str:
        """The file's path or the URL with its password masked: safe to print."""
        return self._backend.where

    @property
    def url(self) -> str | None:
        """The Postgres URL (with its password: never print it; see `where`), None on SQLite."""
        return self._backend.url

    @property
    def path(self) -> Path:
        """The SQLite file (a Postgres ledger has none: `ConfigError` says so)."""
        if self._backend.path is None:
            from mk0r_tui.core.errors import ConfigError

            raise ConfigError(f"the ledger at {self.where} is a Postgres database, not a file")
        return self._backend.path

    @property
    def _db(self) -> Any:
        """SQLite's one connection (tests and benches reach for it)."""
        assert isinstance(self._backend, SqliteBackend)
        return self._backend.db

    @_db.setter
    def _db(self, value: Any) -> None:
        assert isinstance(self._backend, SqliteBackend)
        self._backend.db = value

    @property
    def _lock(self) -> Any:
        return self._backend.lock

    # opening: check, migrate ----------------------------------------------------------------

    def _damaged(self, why: object) -> LedgerError:
        return self._backend.damaged(why)

    @property
    def schema_version(self) -> int:
        return self._backend.version()

    def _upgrade(self, migrate: bool | None) -> None:
        backend = self._backend
        version = backend.version()
        self.opened_version = version
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger {self.where} has schema version {version}, newer than this mk0r-tui reads "
                f"({SCHEMA_VERSION}); upgrade mk0r-tui (it is never written to by an older one)"
            )
        backend.check_integrity()
        while version < SCHEMA_VERSION:
            # decided under the schema lock: another process may be creating or migrating it now
            # every step in one transaction: a ledger is at one version or the next, never between
            with backend.transaction(SCHEMA_LOCK) as db:
                current = backend.version(db)
                if current < SCHEMA_VERSION:
                    self._may_migrate(current, db, migrate)
                    for step in range(current, SCHEMA_VERSION):
                        MIGRATIONS[step](db)
                    backend.set_version(db, SCHEMA_VERSION)
            version = backend.version()
        if version > SCHEMA_VERSION:  # a newer mk0r-tui migrated it meanwhile
            raise LedgerError(f"the ledger {self.where} has schema version {version}, newer than this mk0r-tui reads ({SCHEMA_VERSION})")
        for table, columns in COLUMNS.items():
            have = backend.columns(table)
            missing = [c for c in columns if c not in have]
            if missing:
                raise self._damaged(f"table {table} lacks column {', '.join(missing)}")

    def _may_migrate(self, version: int, db: Conn, migrate: bool | None) -> None:
        """SQLite migrates on open; Postgres is created when empty, else migrated only on request."""
        backend = self._backend
        if not isinstance(backend, PostgresBackend) or migrate:
            if version == 0 and isinstance(backend, PostgresBackend) and not backend.fresh(db):
                raise self._foreign()
            return
        if version == 0:
            if backend.fresh(db):
                return
            raise self._foreign()
        raise LedgerError(
            f"the ledger {self.where} has schema version {version}, older than this mk0r-tui's "
            f"({SCHEMA_VERSION}); run `mk0r-tui ledger migrate` once (every process using it must then be this version or newer)"
        )

    def _foreign(self) -> LedgerError:
        return LedgerError(
            f"the database {self.where} has tables named like the ledger's but no ledger_schema: "
            "not an mk0r-tui ledger; use an empty database"
        )

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, params: Iterable[Any] = (), *, durable: bool = True) -> Written:
        return self._backend.write(sql, params, durable=durable)

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return self._backend.read(sql, params)

    @contextmanager
    def _transaction(self, lock: int = WRITE_LOCK, *, durable: bool = True) -> Iterator[Conn]:
        """One exclusive write transaction: what it reads no other process changes before it
        commits (SQLite: `BEGIN IMMEDIATE`; Postgres: the advisory lock `lock`)."""
        with self._backend.transaction(lock, durable=durable) as db:
            yield db

    def now(self) -> float:
        """The clock leases are judged by: this machine's on SQLite, the server's on Postgres."""
        return self._backend.now()

    @property
    def ledger_id(self) -> str:
        """This ledger's own random id, made with it: the owner mark on what it creates."""
        rows = self._read("SELECT value FROM ledger_meta WHERE key = 'ledger_id'")
        if not rows:  # cannot happen after the migration, unless edited by hand
            with self._transaction() as db:
                db.execute("INSERT INTO ledger_meta(key, value) VALUES ('ledger_id', ?) ON CONFLICT DO NOTHING", (secrets.token_hex(8),))
            rows = self._read("SELECT value FROM ledger_meta WHERE key = 'ledger_id'")
        return str(rows[0]["value"])

    # leases: who runs a session, across processes ----------------------------------------

    def acquire_lease(self, name: str, session_key: str, kind: str, token: str, *, stale_s: float) -> LeaseRow | None:
        """Take the lease on session `name` in one transaction, if it is free or its owner is
        gone. Returns None when taken, else the live holder's row (nothing changed)."""
        with self._transaction() as db:
            now = self._backend.now(db)
            row = db.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None:
                holder = _lease_row(row)
                if holder.token != token and not holder.gone(now, stale_s):
                    return holder
            db.execute(
                "INSERT INTO leases(name, session_key, kind, host, pid, started_at, heartbeat_at, token, host_id)"
                " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET session_key = excluded.session_key,"
                " kind = excluded.kind, host = excluded.host, pid = excluded.pid, started_at = excluded.started_at,"
                " heartbeat_at = excluded.heartbeat_at, token = excluded.token, host_id = excluded.host_id",
                (name, session_key, kind, HOST, os.getpid(), now, now, token, HOST_ID),
            )
        return None

    def beat_lease(self, name: str, token: str) -> bool:
        """Renew the heartbeat; False when the lease is no longer this token's (taken as stale)."""
        cur = self._write("UPDATE leases SET heartbeat_at = ? WHERE name = ? AND token = ?", (self.now(), name, token))
        return cur.rowcount == 1

    def release_lease(self, name: str, token: str) -> None:
        self._write("DELETE FROM leases WHERE name = ? AND token = ?", (name, token))

    def leases(self) -> list[LeaseRow]:
        return [_lease_row(r) for r in self._read("SELECT * FROM leases ORDER BY name")]

    def live_leases(self, stale_s: float) -> dict[str, LeaseRow]:
        """Session name → the lease of a run whose owner is alive."""
        now = self.now()
        return {lease.name: lease for lease in self.leases() if not lease.gone(now, stale_s)}

    def settle_owner_gone(self, stale_s: float) -> list[str]:
        """Write the owner-gone word (core/states.py: `provisioning` → `interrupted`) for every
        session that claims a run with no live lease, in one transaction with the lease check so
        a run starting meanwhile is never marked. Returns the keys changed."""
        changed: list[str] = []
        if not self._read("SELECT 1 FROM sessions WHERE state = ? LIMIT 1", (SessionPhase.PROVISIONING.value,)):
            return changed  # the common case: no run claimed, no write lock taken
        with self._transaction() as db:
            now = self._backend.now(db)
            claimed = db.execute(
                "SELECT key, slug, state FROM sessions WHERE state = ?", (SessionPhase.PROVISIONING.value,)
            ).fetchall()
            if not claimed:
                return changed
            live = {r["name"] for r in db.execute("SELECT * FROM leases") if not _lease_row(r).gone(now, stale_s)}
            for session in claimed:
                word = owner_gone_state(session["state"])
                if word is None or RESOURCE_PREFIX + session["slug"] in live:
                    continue
                db.execute("UPDATE sessions SET state = ?, updated_at = ? WHERE key = ?", (word.value, now, session["key"]))
                changed.append(session["key"])
        return changed

    # sessions ---------------------------------------------------------------------------

    def ensure_session(self, session: Session, target: str | None = None) -> SessionRow:
        """Record the session (once). A slug already used by another key is refused."""
        now = time.time()
        with self._lock:
            # one statement, so two processes racing on a new key never both insert: the second
            # finds the row (same key) or the slug taken (another key), never an IntegrityError
            self._write(
                "INSERT INTO sessions(key, slug, created_at, updated_at, state, target) VALUES (?,?,?,?,?,?)"
                " ON CONFLICT DO NOTHING",
                (session.key, session.slug, now, now, "provisioning", target),
            )
            row = self._read("SELECT * FROM sessions WHERE slug = ? OR key = ?", (session.slug, session.key))
            if not row or row[0]["key"] != session.key:
                owner = row[0]["key"] if row else "?"
                raise UsageError(
                    f"the slug {session.slug!r} already belongs to session {owner!r}; "
                    "session keys must differ in their first 12 characters"
                )
            if target is not None:
                self._write("UPDATE sessions SET target = ?, updated_at = ? WHERE key = ?", (target, now, session.key))
        found = self.get_session(session.key)
        assert found is not None
        return found

    def get_session(self, key_or_slug: str) -> SessionRow | None:
        rows = self._read("SELECT * FROM sessions WHERE key = ? OR slug = ?", (key_or_slug, key_or_slug.lower()))
        return _session_row(rows[0]) if rows else None

    def require_session(self, key_or_slug: str) -> SessionRow:
        row = self.get_session(key_or_slug)
        if row is None:
            raise UsageError(f"no session {key_or_slug!r} in the ledger (see `mk0r-tui sessions`)")
        return row

    def list_sessions(self, limit: int | None = None, *, include_pool: bool = False) -> list[SessionRow]:
        """Newest first; the warm pool's holding sessions (`pool-*`, engine/pool.py) only with `include_pool`."""
        where, params = ("", []) if include_pool else (" WHERE key NOT LIKE ?", [POOL_KEY_PREFIX + "%"])
        sql = f"SELECT * FROM sessions{where} ORDER BY created_at DESC, key DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_session_row(r) for r in self._read(sql, params)]

    def set_session_state(self, key: str, state: SessionPhase | str, *, env_file: str | None = None) -> None:
        state = SessionPhase(state).value  # one vocabulary (core/states.py); an unknown word is a bug
        if env_file is None:
            self._write("UPDATE sessions SET state = ?, updated_at = ? WHERE key = ?", (state, time.time(), key))
        else:
            self._write(
                "UPDATE sessions SET state = ?, env_file = ?, updated_at = ? WHERE key = ?",
                (state, env_file, time.time(), key),
            )

    # resources --------------------------------------------------------------------------

    def intend(self, session_key: str, provider: str, kind: str, name: str, meta: dict[str, Any] | None = None) -> ResourceRow:
        """Commit the intent to create `name`, before the create call. Returns the live row
        if this session already has one for (provider, kind, name): never a duplicate."""
        with self._lock:
            existing = self.live_resource(session_key, provider, kind, name)
            if existing is not None:
                return existing
            now = time.time()
            cur = self._write(
                "INSERT INTO resources(session_key, provider, kind, name, state, meta, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?) RETURNING *",  # the row itself: no second round trip
                (session_key, provider, kind, name, ResourceState.PENDING.value, _clean(json.dumps(meta or {})), now, now),
            )
            return _resource_row(cur.rows[0])

    def mark_created(
        self, resource_id: int, remote_id: str | None, *, url: str | None = None, meta: dict[str, Any] | None = None
    ) -> ResourceRow:
        with self._lock:
            current = self.resource(resource_id)
            merged = {**current.meta, **(meta or {})}
            cur = self._write(
                "UPDATE resources SET state = ?, remote_id = ?, url = COALESCE(?, url), meta = ?, error = NULL,"
                " updated_at = ? WHERE id = ? RETURNING *",
                (ResourceState.CREATED.value, remote_id, _clean(url), _clean(json.dumps(merged)), time.time(), resource_id),
            )
            if not cur.rows:
                raise KeyError(resource_id)
            return _resource_row(cur.rows[0])

    def mark_state(self, resource_id: int, state: ResourceState, *, error: str | None = None) -> None:
        self._write(
            "UPDATE resources SET state = ?, error = ?, updated_at = ? WHERE id = ?",
            (state.value, _clean(error), time.time(), resource_id),
        )

    def set_handoff(
        self, resource_id: int, handoff: str | None, *, owner: str | None = None, detail: dict[str, Any] | None = None
    ) -> ResourceRow:
        """Record a resource's hand-off word, its new owner and how to follow it (no secret)."""
        cur = self._write(
            "UPDATE resources SET handoff = ?, handoff_owner = ?, handoff_detail = ?, updated_at = ? WHERE id = ? RETURNING *",
            (handoff, _clean(owner), _clean(json.dumps(detail or {})), time.time(), resource_id),
        )
        if not cur.rows:
            raise KeyError(resource_id)
        return _resource_row(cur.rows[0])

    def note_error(self, resource_id: int, error: str) -> None:
        self._write("UPDATE resources SET error = ?, updated_at = ? WHERE id = ?", (_clean(error), time.time(), resource_id))

    def resource(self, resource_id: int) -> ResourceRow:
        rows = self._read("SELECT * FROM resources WHERE id = ?", (resource_id,))
        if not rows:
            raise KeyError(resource_id)
        return _resource_row(rows[0])

    def live_resource(self, session_key: str, provider: str, kind: str, name: str) -> ResourceRow | None:
        rows = self._read(
            f"SELECT * FROM resources WHERE session_key = ? AND provider = ? AND kind = ? AND name = ?"
            f" AND state IN ({','.join('?' * len(LIVE_STATES))}) ORDER BY id DESC LIMIT 1",
            (session_key, provider, kind, name, *LIVE_STATES),
        )
        return _resource_row(rows[0]) if rows else None

    def resources(
        self, session_key: str | None = None, *, provider: str | None = None, live_only: bool = False
    ) -> list[ResourceRow]:
        clauses, params = [], []
        if session_key is not None:
            clauses.append("session_key = ?")
            params.append(session_key)
        if provider is not None:
            clauses.append("provider = ?")
            params.append(provider)
        if live_only:
            clauses.append(f"state IN ({','.join('?' * len(LIVE_STATES))})")
            params.extend(LIVE_STATES)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return [_resource_row(r) for r in self._read(f"SELECT * FROM resources {where} ORDER BY id", params)]

    def claims_by_other_sessions(self, session_key: str, names: Iterable[str]) -> dict[tuple[str, str, str], str]:
        """(provider, kind, name) → the key of another session holding a live row for one of
        `names`: one query, for what a provisioning run may be about to create."""
        wanted = tuple(names)
        if not wanted:
            return {}
        rows = self._read(
            f"SELECT provider, kind, name, session_key FROM resources WHERE session_key != ?"
            f" AND name IN ({','.join('?' * len(wanted))}) AND state IN ({','.join('?' * len(LIVE_STATES))})",
            (session_key, *wanted, *LIVE_STATES),
        )
        return {(r["provider"], r["kind"], r["name"]): r["session_key"] for r in rows}

    # runs -------------------------------------------------------------------------------

    def record_run(self, session_key: str, result: ProviderResult) -> None:
        """One provider's result of a run, not durable on its own (as the journal: on SQLite no
        fsync of its own): the run ends with the session's state, a durable commit whose flush
        of the WAL carries these rows to disk too."""
        self._write(
            "INSERT INTO runs(session_key, provider, slot, status, latency_ms, attempts, error, note, finished_at)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (
                session_key,
                result.name,
                result.slot.value,
                result.status.value,
                result.latency_ms,
                result.attempts,
                _clean(result.error),
                _clean(result.note),
                time.time(),
            ),
            durable=False,
        )

    def latest_runs(self, session_key: str) -> dict[str, RunRow]:
        rows = self._read(
            "SELECT * FROM runs WHERE id IN (SELECT MAX(id) FROM runs WHERE session_key = ? GROUP BY provider)"
            " ORDER BY id",
            (session_key,),
        )
        return {r["provider"]: _run_row(r) for r in rows}

    def latest_runs_all(self) -> dict[str, dict[str, RunRow]]:
        rows = self._read("SELECT * FROM runs WHERE id IN (SELECT MAX(id) FROM runs GROUP BY session_key, provider)")
        out: dict[str, dict[str, RunRow]] = {}
        for r in rows:
            out.setdefault(r["session_key"], {})[r["provider"]] = _run_row(r)
        return out

    def latency_history(self, provider: str, limit: int = 40) -> list[float]:
        rows = self._read(
            "SELECT latency_ms FROM runs WHERE provider = ? AND status = 'ok' AND latency_ms IS NOT NULL"
            " AND attempts > 0 ORDER BY id DESC LIMIT ?",
            (provider, limit),
        )
        return [float(r["latency_ms"]) for r in reversed(rows)]

    # journal ----------------------------------------------------------------------------

    def append_journal(self, entries: Sequence[tuple[float, str, str, str, str, str, str]]) -> None:
        """(at, session, slug, provider, kind, fields JSON, origin) rows in one transaction. The
        journal is a view of the run (the ledger's rows are the record), so its commits do not
        wait for the disk: an intent queued behind a burst of events on the writer thread used to
        wait for one fsync per burst. The fields are scrubbed like every other text here."""
        if not entries:
            return
        rows = [(at, session, slug, provider, kind, _clean(data) or "{}", origin) for at, session, slug, provider, kind, data, origin in entries]
        # its own lock on Postgres: ids are handed out and committed in one order, so a follower
        # reading `id > cursor` never passes an id whose transaction commits later
        with self._transaction(JOURNAL_LOCK, durable=False) as db:
            db.executemany("INSERT INTO journal(at, session, slug, provider, kind, fields, origin) VALUES (?,?,?,?,?,?,?)", rows)
            self._backend.journal_appended(db)

    def journal(self, since: int = 0, *, session: str | None = None, limit: int | None = None) -> list[JournalRow]:
        """Entries with id > `since`, oldest first; `session` is a key or a slug."""
        sql, params = journal_query(since, session=session, limit=limit)
        return [_journal_row(r) for r in self._read(sql, params)]

    def journal_max_id(self) -> int:
        rows = self._read("SELECT MAX(id) FROM journal")
        return int(rows[0][0] or 0)

    def journal_of_current_run(self, session: str, upto: int) -> list[JournalRow]:
        """The entries of the session's latest run (from its last `RunStarted`), up to id `upto`:
        what a dashboard opened mid-run replays to show where that run is."""
        rows = self._read(
            "SELECT MAX(id) FROM journal WHERE session = ? AND kind = 'RunStarted' AND id <= ?", (session, upto)
        )
        start = rows[0][0]
        if start is None:
            return []
        found = self._read("SELECT * FROM journal WHERE session = ? AND id >= ? AND id <= ? ORDER BY id", (session, start, upto))
        return [_journal_row(r) for r in found]

    def prune_journal(self, older_than: float) -> int:
        """Delete journal entries written before `older_than` (epoch seconds) of sessions the
        ledger records as deleted; a live session's entries are never touched."""
        cur = self._write(
            "DELETE FROM journal WHERE at < ? AND session IN (SELECT key FROM sessions WHERE state = 'deleted')",
            (older_than,),
        )
        return int(cur.rowcount)

    def prune_deleted_sessions(self, deleted_before: float) -> list[str]:
        """Forget sessions torn down (state `deleted`) before `deleted_before` (epoch seconds):
        their session, resource, run, lease and journal rows. One whose every resource is not
        `deleted` (a row a later run added) or whose lease is held stays. Returns their keys."""
        with self._transaction() as db:
            keys = [r[0] for r in db.execute(
                "SELECT key FROM sessions s WHERE state = 'deleted' AND updated_at < ?"
                " AND NOT EXISTS (SELECT 1 FROM resources r WHERE r.session_key = s.key AND r.state != 'deleted')"
                " AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.session_key = s.key)",
                (deleted_before,),
            ).fetchall()]
            for key in keys:
                for sql in ("DELETE FROM resources WHERE session_key = ?", "DELETE FROM runs WHERE session_key = ?",
                            "DELETE FROM journal WHERE session = ?", "DELETE FROM sessions WHERE key = ?"):
                    db.execute(sql, (key,))
        return keys

    def iter_all_text(self) -> Iterator[str]:
        """Every text value stored, for the secrets-hygiene check."""
        for table in ("sessions", "resources", "runs", "journal"):
            for row in self._read(f"SELECT * FROM {table}"):
                for value in tuple(row):
                    if isinstance(value, str):
                        yield value

