"""The ledger's schema, written once for both backends (SQLite and Postgres).

Every statement here is plain SQL that both dialects read; the few words that differ are
translated by the Postgres connection (`backends.pg_sql`): `?` placeholders become `%s`,
`REAL` becomes `DOUBLE PRECISION` (Postgres' REAL is 4 bytes: a timestamp would lose its
seconds), `INTEGER PRIMARY KEY AUTOINCREMENT` becomes an identity column (`BY DEFAULT`, so
`ledger copy` keeps ids). Conflicts are spelled `ON CONFLICT … DO NOTHING/UPDATE`, which both
read. A migration gets a `Conn` (execute, executemany, columns) and never sees which backend
it runs on.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol


class Cursor(Protocol):
    """What both drivers' cursors offer to the ledger's code."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Any: ...


class Conn(Protocol):
    """One connection inside one transaction, whatever the backend."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def columns(self, table: str) -> set[str]: ...


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

#: the schema version this code reads and writes (SQLite: `PRAGMA user_version`; Postgres: the
#: `ledger_schema` row). A lower one is migrated forward by `MIGRATIONS` (SQLite on open;
#: Postgres only by `mk0r-tui ledger migrate`); a higher one (a newer mk0r-tui) is refused.
SCHEMA_VERSION = 5

#: every column each table must have; a ledger missing one is damaged (or from another program)
COLUMNS = {
    "sessions": ("key", "slug", "created_at", "updated_at", "state", "target", "env_file"),
    "resources": (
        "id", "session_key", "provider", "kind", "name", "remote_id", "url", "state", "meta", "error",
        "created_at", "updated_at", "handoff", "handoff_owner", "handoff_detail",
    ),
    "runs": ("id", "session_key", "provider", "slot", "status", "latency_ms", "attempts", "error", "note", "finished_at"),
    "journal": ("id", "at", "session", "slug", "provider", "kind", "fields", "origin"),
    "leases": ("name", "session_key", "kind", "host", "pid", "started_at", "heartbeat_at", "token", "host_id"),
    "ledger_meta": ("key", "value"),
}

#: the tables `ledger copy` moves, parents first (resources refer to sessions)
TABLES = ("sessions", "resources", "runs", "journal", "leases", "ledger_meta")


def _migrate_0_to_1(db: Conn) -> None:
    """Version 0 is a fresh ledger or one from before versioning (today's tables, no
    version): create whatever is missing."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def _migrate_add_journal(db: Conn) -> None:
    """The journal: every event of every run, whoever ran it (CLI, dashboard, library), in the
    order written (`id` only grows: AUTOINCREMENT / an identity never reuses a pruned id).
    `fields` is the event's own fields as JSON (core/events.event_fields), scrubbed; `origin`
    names the writing process's journal writer, so a dashboard skips what it applied itself."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS journal ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, session TEXT NOT NULL, slug TEXT NOT NULL,"
        " provider TEXT NOT NULL, kind TEXT NOT NULL, fields TEXT NOT NULL DEFAULT '{}', origin TEXT NOT NULL DEFAULT '')"
    )
    db.execute("CREATE INDEX IF NOT EXISTS journal_session ON journal(session, id)")
    db.execute("CREATE INDEX IF NOT EXISTS journal_at ON journal(at)")


HANDOFF_COLUMNS = (("handoff", "TEXT"), ("handoff_owner", "TEXT"), ("handoff_detail", "TEXT NOT NULL DEFAULT '{}'"))


def _migrate_handoff(db: Conn) -> None:
    """Hand-off (issue 18): each resource's hand-off word (`core/states.py` HANDOFF_*), its
    new owner and the details to follow it (claim link, request id, expiry; never a secret).
    Columns already there are left alone (SQLite has no ADD COLUMN IF NOT EXISTS)."""
    have = db.columns("resources")
    for column, decl in HANDOFF_COLUMNS:
        if column not in have:
            db.execute(f"ALTER TABLE resources ADD COLUMN {column} {decl}")


def _migrate_add_leases(db: Conn) -> None:
    """Runs have an owner that other processes can see: a lease per session name (who runs it,
    since when, its last heartbeat), and this ledger's own id (the owner mark put on what it
    creates, so another ledger's resources are told apart from orphans)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS leases ("
        " name TEXT PRIMARY KEY, session_key TEXT NOT NULL, kind TEXT NOT NULL, host TEXT NOT NULL,"
        " pid INTEGER NOT NULL, started_at REAL NOT NULL, heartbeat_at REAL NOT NULL, token TEXT NOT NULL)"
    )
    db.execute("CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(
        "INSERT INTO ledger_meta(key, value) VALUES ('ledger_id', ?) ON CONFLICT DO NOTHING", (secrets.token_hex(8),)
    )


def _migrate_lease_host_id(db: Conn) -> None:
    """Team mode (issue 12): a lease names its machine by more than its host name
    (`rows.HOST_ID`: host name, boot id, pid namespace), so a pid is only ever checked on the
    machine that wrote it. Two containers both called `localhost` with pid 1 are different
    machines; only the heartbeat tells whether the other one is alive."""
    if "host_id" not in db.columns("leases"):
        db.execute("ALTER TABLE leases ADD COLUMN host_id TEXT NOT NULL DEFAULT ''")


#: MIGRATIONS[v] takes a ledger from version v to v + 1, inside one transaction
MIGRATIONS: dict[int, Callable[[Conn], None]] = {
    0: _migrate_0_to_1, 1: _migrate_add_journal, 2: _migrate_handoff, 3: _migrate_add_leases, 4: _migrate_lease_host_id,
}
