"""The ledger: a durable record (SQLite, WAL) of sessions, every resource, and every run.

Crash safety rests on one rule: a provider's *intent* (session, provider, kind, the name it is
about to create) is committed before the create call is sent. A process killed between the
intent and the answer leaves a `pending` row, which teardown and orphan discovery understand.
No secret value is ever written here.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mk0r_tui.core.envfile import scrub
from mk0r_tui.core.errors import ConfigError, UsageError
from mk0r_tui.core.events import Event, event_from_fields
from mk0r_tui.core.models import POOL_KEY_PREFIX, RESOURCE_PREFIX, ProviderResult, ResourceRef, ResourceState, Session
from mk0r_tui.core.states import HANDOFF_LEFT, SessionPhase, changed_hands, owner_gone_state

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    key         TEXT PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    state       TEXT NOT NULL,
    target      TEXT,
    env_file    TEXT
);
CREATE TABLE IF NOT EXISTS resources (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_key TEXT NOT NULL REFERENCES sessions(key),
    provider    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    remote_id   TEXT,
    url         TEXT,
    state       TEXT NOT NULL,
    meta        TEXT NOT NULL DEFAULT '{}',
    error       TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS resources_session ON resources(session_key);
CREATE INDEX IF NOT EXISTS resources_lookup ON resources(provider, kind, name);
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_key TEXT NOT NULL,
    provider    TEXT NOT NULL,
    slot        TEXT NOT NULL,
    status      TEXT NOT NULL,
    latency_ms  REAL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    note        TEXT,
    finished_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_session ON runs(session_key);
CREATE INDEX IF NOT EXISTS runs_provider ON runs(provider, finished_at);
"""

#: the schema version this code reads and writes (`PRAGMA user_version`). A ledger with a lower
#: version is migrated forward on open by `MIGRATIONS`; a higher one (a newer mk0r-tui) is refused.
SCHEMA_VERSION = 4

#: every column each table must have; a ledger missing one is damaged (or from another program)
COLUMNS = {
    "sessions": ("key", "slug", "created_at", "updated_at", "state", "target", "env_file"),
    "resources": (
        "id", "session_key", "provider", "kind", "name", "remote_id", "url", "state", "meta", "error",
        "created_at", "updated_at", "handoff", "handoff_owner", "handoff_detail",
    ),
    "runs": ("id", "session_key", "provider", "slot", "status", "latency_ms", "attempts", "error", "note", "finished_at"),
    "journal": ("id", "at", "session", "slug", "provider", "kind", "fields", "origin"),
    "leases": ("name", "session_key", "kind", "host", "pid", "started_at", "heartbeat_at", "token"),
    "ledger_meta": ("key", "value"),
}


def _migrate_0_to_1(db: sqlite3.Connection) -> None:
    """Version 0 is a fresh file or a ledger from before versioning (today's tables, no
    version): create whatever is missing. A later version adds `_migrate_1_to_2` and so on."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def _migrate_add_journal(db: sqlite3.Connection) -> None:
    """The journal: every event of every run, whoever ran it (CLI, dashboard, library), in the
    order written (`id` only grows: AUTOINCREMENT never reuses a pruned id). `fields` is the
    event's own fields as JSON (core/events.event_fields), scrubbed; `origin` names the writing
    process's journal writer, so a dashboard skips what it applied itself."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS journal ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, session TEXT NOT NULL, slug TEXT NOT NULL,"
        " provider TEXT NOT NULL, kind TEXT NOT NULL, fields TEXT NOT NULL DEFAULT '{}', origin TEXT NOT NULL DEFAULT '')"
    )
    db.execute("CREATE INDEX IF NOT EXISTS journal_session ON journal(session, id)")
    db.execute("CREATE INDEX IF NOT EXISTS journal_at ON journal(at)")


HANDOFF_COLUMNS = (("handoff", "TEXT"), ("handoff_owner", "TEXT"), ("handoff_detail", "TEXT NOT NULL DEFAULT '{}'"))


def _migrate_handoff(db: sqlite3.Connection) -> None:
    """Hand-off (issue 18): each resource's hand-off word (`core/states.py` HANDOFF_*), its
    new owner and the details to follow it (claim link, request id, expiry; never a secret).
    SQLite has no ADD COLUMN IF NOT EXISTS: columns already there are left alone."""
    have = {r[1] for r in db.execute("PRAGMA table_info(resources)")}
    for column, decl in HANDOFF_COLUMNS:
        if column not in have:
            db.execute(f"ALTER TABLE resources ADD COLUMN {column} {decl}")




def _migrate_add_leases(db: sqlite3.Connection) -> None:
    """Runs have an owner that other processes can see: a lease per session name (who runs it,
    since when, its last heartbeat), and this ledger's own id (the owner mark put on what it
    creates, so another ledger's resources are told apart from orphans)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS leases ("
        " name TEXT PRIMARY KEY, session_key TEXT NOT NULL, kind TEXT NOT NULL, host TEXT NOT NULL,"
        " pid INTEGER NOT NULL, started_at REAL NOT NULL, heartbeat_at REAL NOT NULL, token TEXT NOT NULL)"
    )
    db.execute("CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT OR IGNORE INTO ledger_meta(key, value) VALUES ('ledger_id', ?)", (secrets.token_hex(8),))


#: MIGRATIONS[v] takes a ledger from version v to v + 1, inside one transaction
MIGRATIONS = {0: _migrate_0_to_1, 1: _migrate_add_journal, 2: _migrate_handoff, 3: _migrate_add_leases}


class LedgerError(ConfigError):
    """The ledger file cannot be used: damaged, from a newer mk0r-tui, or not a database."""


LIVE_STATES = (ResourceState.PENDING.value, ResourceState.CREATED.value, ResourceState.DELETING.value)


@dataclass(frozen=True, slots=True)
class SessionRow:
    key: str
    slug: str
    created_at: float
    updated_at: float
    state: str
    target: str | None
    env_file: str | None

    @property
    def session(self) -> Session:
        return Session(key=self.key, slug=self.slug)


@dataclass(frozen=True, slots=True)
class ResourceRow:
    """A resource as the ledger knows it. `id` is None for one found only by discovery."""

    id: int | None
    session_key: str | None
    provider: str
    kind: str
    name: str
    remote_id: str | None
    url: str | None
    state: str
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    #: the hand-off word (`core/states.py`: transferred, claimed, claim_pending, invited, kept,
    #: revoked) or None; its new owner; what is needed to follow it (claim link, expiry)
    handoff: str | None = None
    handoff_owner: str | None = None
    handoff_detail: dict[str, Any] = field(default_factory=dict)

    @property
    def handed_off(self) -> bool:
        """Left (or offered to) its new owner: never deleted by teardown, never an orphan."""
        return changed_hands(self.handoff)

    @property
    def left(self) -> bool:
        """Its new owner has it (not merely offered): no longer ours at all."""
        return self.handoff in HANDOFF_LEFT

    @property
    def ref(self) -> ResourceRef:
        return ResourceRef(self.provider, self.kind, self.name, self.remote_id, self.url)

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One journal entry: an event as some process's run recorded it."""

    id: int
    at: float
    session: str
    slug: str
    provider: str
    kind: str
    fields: dict[str, Any]
    origin: str = ""

    def event(self) -> Event:
        """The very event object that was written (core/events.event_from_fields)."""
        return event_from_fields(self.kind, self.session, self.provider, self.at, self.fields)


@dataclass(frozen=True, slots=True)
class RunRow:
    session_key: str
    provider: str
    slot: str
    status: str
    latency_ms: float | None
    attempts: int
    error: str | None
    note: str | None
    finished_at: float


#: this machine's name, as leases record it (a lease of this host is checked by its pid)
HOST = socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (a zombie, killed but not yet reaped, does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """Who runs a session now: one row per session name (`mk0r-<slug>`) while a provision, a
    teardown or an orphan delete works on it."""

    name: str
    session_key: str
    kind: str  # provision | teardown | orphans
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    token: str

    def gone(self, now: float, stale_s: float) -> bool:
        """Its owner is gone: a dead process on this host, or no heartbeat for `stale_s`."""
        if self.host == HOST and not pid_alive(self.pid):
            return True
        return now - self.heartbeat_at > stale_s

    def describe(self) -> str:
        verb = {"provision": "provisioned", "teardown": "torn down"}.get(self.kind, "cleaned up (orphans)")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started_at))
        return f"being {verb} by {self.host}:{self.pid} since {since} (last heartbeat {time.time() - self.heartbeat_at:.0f}s ago)"


class Ledger:
    """Thread-safe handle on the ledger database. Every write is its own committed transaction."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._create_if_missing()
            self._check_file()
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        except OSError as exc:
            raise ConfigError(f"cannot open the ledger at {self.path}: {exc.strerror or exc}. Set MK0R_HOME to a writable folder.") from None
        except sqlite3.Error as exc:
            raise self._damaged(exc) from None
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._upgrade()
        except BaseException as exc:
            self._db.close()
            if isinstance(exc, LedgerError):
                raise
            if isinstance(exc, sqlite3.OperationalError) and _is_io_problem(exc):
                raise ConfigError(f"cannot open the ledger at {self.path}: {exc}. Set MK0R_HOME to a writable folder.") from None
            if isinstance(exc, sqlite3.Error):
                raise self._damaged(exc) from None
            raise

    # opening: create, check, migrate -------------------------------------------------------

    def _damaged(self, why: object) -> LedgerError:
        return LedgerError(
            f"the ledger {self.path} is damaged or not an mk0r-tui ledger ({why}); "
            "move it aside (it keeps the record of what exists) and run again, or set MK0R_HOME"
        )

    def _create_if_missing(self) -> None:
        """A new ledger is built under a temporary name and linked into place whole, so no other
        process ever sees a 0-byte or half-made ledger (a 0-byte one is damage, not "empty")."""
        if os.path.lexists(self.path):
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.new")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        try:
            os.chmod(tmp, 0o600)
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("BEGIN IMMEDIATE")
                for version in range(SCHEMA_VERSION):  # a new ledger gets every step, not only the first
                    MIGRATIONS[version](db)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute("COMMIT")
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                db.close()
            try:
                os.link(tmp, self.path)  # fails if another process got there first: theirs wins
            except FileExistsError:
                pass
        finally:
            for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                try:
                    os.unlink(leftover)
                except FileNotFoundError:
                    pass

    def _check_file(self) -> None:
        info = os.lstat(self.path)
        if stat.S_ISLNK(info.st_mode):
            raise LedgerError(f"the ledger {self.path} is a symbolic link; refusing to follow it (move it aside or set MK0R_HOME)")
        if not stat.S_ISREG(info.st_mode):
            raise LedgerError(f"the ledger {self.path} is not a regular file")
        if info.st_size == 0:
            raise self._damaged("the file is empty (0 bytes)")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(self.path, 0o600)

    def _upgrade(self) -> None:
        db = self._db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger {self.path} has schema version {version}, newer than this mk0r-tui reads "
                f"({SCHEMA_VERSION}); upgrade mk0r-tui"
            )
        check = db.execute("PRAGMA quick_check").fetchall()
        if [tuple(r) for r in check] != [("ok",)]:
            raise self._damaged(f"integrity check: {check[0][0]}")
        while version < SCHEMA_VERSION:
            db.execute("BEGIN IMMEDIATE")
            try:
                current = db.execute("PRAGMA user_version").fetchone()[0]
                if current == version:  # another process may have migrated meanwhile
                    MIGRATIONS[version](db)
                    db.execute(f"PRAGMA user_version = {version + 1}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            version = db.execute("PRAGMA user_version").fetchone()[0]
        for table, columns in COLUMNS.items():
            have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            missing = [c for c in columns if c not in have]
            if missing:
                raise self._damaged(f"table {table} lacks column {', '.join(missing)}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(params))
            except (sqlite3.OperationalError, sqlite3.IntegrityError) as exc:
                raise ConfigError(f"cannot write the ledger at {self.path}: {exc}") from None
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(params)).fetchall()
            except sqlite3.OperationalError as exc:
                if _is_io_problem(exc):
                    raise ConfigError(f"cannot read the ledger at {self.path}: {exc}") from None
                raise self._damaged(exc) from None
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction: what it reads no other process changes before it commits."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise ConfigError(f"cannot write the ledger at {self.path}: {exc}") from None
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise ConfigError(f"cannot write the ledger at {self.path}: {exc}") from None

    @property
    def ledger_id(self) -> str:
        """This ledger's own random id, made with it: the owner mark on what it creates."""
        rows = self._read("SELECT value FROM ledger_meta WHERE key = 'ledger_id'")
        if not rows:  # cannot happen after the migration, unless edited by hand
            with self._transaction() as db:
                db.execute("INSERT OR IGNORE INTO ledger_meta(key, value) VALUES ('ledger_id', ?)", (secrets.token_hex(8),))
            rows = self._read("SELECT value FROM ledger_meta WHERE key = 'ledger_id'")
        return str(rows[0]["value"])

    # leases: who runs a session, across processes ----------------------------------------

    def acquire_lease(self, name: str, session_key: str, kind: str, token: str, *, stale_s: float) -> LeaseRow | None:
        """Take the lease on session `name` in one transaction, if it is free or its owner is
        gone. Returns None when taken, else the live holder's row (nothing changed)."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None:
                holder = _lease_row(row)
                if holder.token != token and not holder.gone(now, stale_s):
                    return holder
            db.execute(
                "INSERT OR REPLACE INTO leases(name, session_key, kind, host, pid, started_at, heartbeat_at, token)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (name, session_key, kind, HOST, os.getpid(), now, now, token),
            )
        return None

    def beat_lease(self, name: str, token: str) -> bool:
        """Renew the heartbeat; False when the lease is no longer this token's (taken as stale)."""
        cur = self._write("UPDATE leases SET heartbeat_at = ? WHERE name = ? AND token = ?", (time.time(), name, token))
        return cur.rowcount == 1

    def release_lease(self, name: str, token: str) -> None:
        self._write("DELETE FROM leases WHERE name = ? AND token = ?", (name, token))

    def leases(self) -> list[LeaseRow]:
        return [_lease_row(r) for r in self._read("SELECT * FROM leases ORDER BY name")]

    def live_leases(self, stale_s: float) -> dict[str, LeaseRow]:
        """Session name → the lease of a run whose owner is alive."""
        now = time.time()
        return {lease.name: lease for lease in self.leases() if not lease.gone(now, stale_s)}

    def settle_owner_gone(self, stale_s: float) -> list[str]:
        """Write the owner-gone word (core/states.py: `provisioning` → `interrupted`) for every
        session that claims a run with no live lease, in one transaction with the lease check so
        a run starting meanwhile is never marked. Returns the keys changed."""
        now = time.time()
        changed: list[str] = []
        if not self._read("SELECT 1 FROM sessions WHERE state = ? LIMIT 1", (SessionPhase.PROVISIONING.value,)):
            return changed  # the common case: no run claimed, no write lock taken
        with self._transaction() as db:
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
        where = "" if include_pool else f" WHERE key NOT LIKE '{POOL_KEY_PREFIX}%'"
        sql = f"SELECT * FROM sessions{where} ORDER BY created_at DESC, rowid DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_session_row(r) for r in self._read(sql)]

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
                " VALUES (?,?,?,?,?,?,?,?)",
                (session_key, provider, kind, name, ResourceState.PENDING.value, _clean(json.dumps(meta or {})), now, now),
            )
            assert cur.lastrowid is not None  # an INSERT always sets it
            return self.resource(cur.lastrowid)

    def mark_created(
        self, resource_id: int, remote_id: str | None, *, url: str | None = None, meta: dict[str, Any] | None = None
    ) -> ResourceRow:
        with self._lock:
            current = self.resource(resource_id)
            merged = {**current.meta, **(meta or {})}
            self._write(
                "UPDATE resources SET state = ?, remote_id = ?, url = COALESCE(?, url), meta = ?, error = NULL,"
                " updated_at = ? WHERE id = ?",
                (ResourceState.CREATED.value, remote_id, _clean(url), _clean(json.dumps(merged)), time.time(), resource_id),
            )
            return self.resource(resource_id)

    def mark_state(self, resource_id: int, state: ResourceState, *, error: str | None = None) -> None:
        self._write(
            "UPDATE resources SET state = ?, error = ?, updated_at = ? WHERE id = ?",
            (state.value, _clean(error), time.time(), resource_id),
        )

    def set_handoff(
        self, resource_id: int, handoff: str | None, *, owner: str | None = None, detail: dict[str, Any] | None = None
    ) -> ResourceRow:
        """Record a resource's hand-off word, its new owner and how to follow it (no secret)."""
        self._write(
            "UPDATE resources SET handoff = ?, handoff_owner = ?, handoff_detail = ?, updated_at = ? WHERE id = ?",
            (handoff, _clean(owner), _clean(json.dumps(detail or {})), time.time(), resource_id),
        )
        return self.resource(resource_id)

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
        """(at, session, slug, provider, kind, fields JSON, origin) rows in one transaction (one
        fsync per burst, not per event). The fields are scrubbed like every other text here."""
        if not entries:
            return
        rows = [(at, session, slug, provider, kind, _clean(data) or "{}", origin) for at, session, slug, provider, kind, data, origin in entries]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "INSERT INTO journal(at, session, slug, provider, kind, fields, origin) VALUES (?,?,?,?,?,?,?)", rows
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except (sqlite3.OperationalError, sqlite3.IntegrityError) as exc:
                raise ConfigError(f"cannot write the ledger at {self.path}: {exc}") from None
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None

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

    def iter_all_text(self) -> Iterator[str]:
        """Every text value stored, for the secrets-hygiene check."""
        for table in ("sessions", "resources", "runs", "journal"):
            for row in self._read(f"SELECT * FROM {table}"):
                for value in tuple(row):
                    if isinstance(value, str):
                        yield value


def _lease_row(r: sqlite3.Row) -> LeaseRow:
    return LeaseRow(r["name"], r["session_key"], r["kind"], r["host"], int(r["pid"]), float(r["started_at"]),
                    float(r["heartbeat_at"]), r["token"])


def _session_row(r: sqlite3.Row) -> SessionRow:
    return SessionRow(r["key"], r["slug"], r["created_at"], r["updated_at"], r["state"], r["target"], r["env_file"])


def _resource_row(r: sqlite3.Row) -> ResourceRow:
    return ResourceRow(
        id=r["id"],
        session_key=r["session_key"],
        provider=r["provider"],
        kind=r["kind"],
        name=r["name"],
        remote_id=r["remote_id"],
        url=r["url"],
        state=r["state"],
        meta=_meta(r["meta"]),
        error=r["error"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        handoff=r["handoff"],
        handoff_owner=r["handoff_owner"],
        handoff_detail=_meta(r["handoff_detail"]),
    )


def _clean(text: str | None) -> str | None:
    """No secret is ever stored: free text (errors, notes, meta, URLs) is scrubbed of every
    secret this process knows (provisioning keys and provisioned values), e.g. a provider's
    error that echoes a generated password."""
    return scrub(text) if text else text


def _meta(text: str | None) -> dict[str, Any]:
    """A row's meta; one that is not a JSON object (edited by hand, damaged) reads as empty
    rather than failing every command that lists resources."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {"unreadable_meta": text}
    return value if isinstance(value, dict) else {"unreadable_meta": text}


def _is_io_problem(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("disk", "readonly", "read-only", "locked", "unable to open", "i/o"))


def journal_query(since: int, *, session: str | None = None, limit: int | None = None) -> tuple[str, list[Any]]:
    """The one journal read (the ledger's and a follower's own connection use it): entries after
    `since`, oldest first, by the primary key (and `journal_session` when a session is given)."""
    sql, params = "SELECT * FROM journal WHERE id > ?", list[Any]([since])
    if session is not None:
        sql += " AND (session = ? OR slug = ?)"
        params += [session, session.lower()]
    sql += " ORDER BY id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql, params


def journal_row(r: sqlite3.Row) -> JournalRow:
    return _journal_row(r)


def _journal_row(r: sqlite3.Row) -> JournalRow:
    try:
        data = json.loads(r["fields"] or "{}")
    except ValueError:
        data = {}
    return JournalRow(r["id"], r["at"], r["session"], r["slug"], r["provider"], r["kind"], data if isinstance(data, dict) else {}, r["origin"])


def _run_row(r: sqlite3.Row) -> RunRow:
    return RunRow(
        r["session_key"], r["provider"], r["slot"], r["status"], r["latency_ms"], r["attempts"], r["error"], r["note"], r["finished_at"]
    )
