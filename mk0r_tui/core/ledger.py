"""The ledger: a durable record (SQLite, WAL) of sessions, every resource, and every run.

Crash safety rests on one rule: a provider's *intent* (session, provider, kind, the name it is
about to create) is committed before the create call is sent. A process killed between the
intent and the answer leaves a `pending` row, which teardown and orphan discovery understand.
No secret value is ever written here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from mk0r_tui.core.errors import ConfigError, UsageError
from mk0r_tui.core.models import ProviderResult, ResourceRef, ResourceState, Session
from mk0r_tui.core.states import SessionPhase

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

    @property
    def ref(self) -> ResourceRef:
        return ResourceRef(self.provider, self.kind, self.name, self.remote_id, self.url)

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


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


class Ledger:
    """Thread-safe handle on the ledger database. Every write is its own committed transaction."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the ledger at {self.path}: {exc}. Set MK0R_HOME to a writable folder.") from None
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(params))
            except sqlite3.OperationalError as exc:
                raise ConfigError(f"cannot write the ledger at {self.path}: {exc}") from None

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    # sessions ---------------------------------------------------------------------------

    def ensure_session(self, session: Session, target: str | None = None) -> SessionRow:
        """Record the session (once). A slug already used by another key is refused."""
        now = time.time()
        with self._lock:
            row = self._read("SELECT * FROM sessions WHERE slug = ?", (session.slug,))
            if row and row[0]["key"] != session.key:
                raise UsageError(
                    f"the slug {session.slug!r} already belongs to session {row[0]['key']!r}; "
                    "session keys must differ in their first 12 characters"
                )
            if not row:
                self._write(
                    "INSERT INTO sessions(key, slug, created_at, updated_at, state, target) VALUES (?,?,?,?,?,?)",
                    (session.key, session.slug, now, now, "provisioning", target),
                )
            elif target is not None:
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

    def list_sessions(self, limit: int | None = None) -> list[SessionRow]:
        sql = "SELECT * FROM sessions ORDER BY created_at DESC, rowid DESC"
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
                (session_key, provider, kind, name, ResourceState.PENDING.value, json.dumps(meta or {}), now, now),
            )
            return self.resource(int(cur.lastrowid))

    def mark_created(
        self, resource_id: int, remote_id: str | None, *, url: str | None = None, meta: dict[str, Any] | None = None
    ) -> ResourceRow:
        with self._lock:
            current = self.resource(resource_id)
            merged = {**current.meta, **(meta or {})}
            self._write(
                "UPDATE resources SET state = ?, remote_id = ?, url = COALESCE(?, url), meta = ?, error = NULL,"
                " updated_at = ? WHERE id = ?",
                (ResourceState.CREATED.value, remote_id, url, json.dumps(merged), time.time(), resource_id),
            )
            return self.resource(resource_id)

    def mark_state(self, resource_id: int, state: ResourceState, *, error: str | None = None) -> None:
        self._write(
            "UPDATE resources SET state = ?, error = ?, updated_at = ? WHERE id = ?",
            (state.value, error, time.time(), resource_id),
        )

    def note_error(self, resource_id: int, error: str) -> None:
        self._write("UPDATE resources SET error = ?, updated_at = ? WHERE id = ?", (error, time.time(), resource_id))

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
                result.error,
                result.note,
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

    def iter_all_text(self) -> Iterator[str]:
        """Every text value stored, for the secrets-hygiene check."""
        for table in ("sessions", "resources", "runs"):
            for row in self._read(f"SELECT * FROM {table}"):
                for value in tuple(row):
                    if isinstance(value, str):
                        yield value


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
        meta=json.loads(r["meta"] or "{}"),
        error=r["error"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _run_row(r: sqlite3.Row) -> RunRow:
    return RunRow(
        r["session_key"], r["provider"], r["slot"], r["status"], r["latency_ms"], r["attempts"], r["error"], r["note"], r["finished_at"]
    )
