"""The two places a ledger lives: a SQLite file (the default, one machine) and a Postgres
database (team mode: many processes and machines). Each backend owns only what differs: how to
connect, its write lock, where it keeps the schema version, its column listing, its clock and
its errors. The SQL itself is written once (`ledger.py`, `schema.py`).

| | SQLite | Postgres |
| --- | --- | --- |
| placeholders | `?` | `%s` (translated by `pg_sql`) |
| an exclusive write transaction | `BEGIN IMMEDIATE` | a transaction that first takes `pg_advisory_xact_lock(WRITE_LOCK)` |
| journal appends | `BEGIN IMMEDIATE` | `pg_advisory_xact_lock(JOURNAL_LOCK)`, so ids commit in the order they are given (a follower reading `id > cursor` never skips a late commit), then `pg_notify(JOURNAL_CHANNEL, max id)` |
| schema version | `PRAGMA user_version` | the one row of `ledger_schema` |
| the clock of leases | this machine's | the server's (`clock_timestamp()`), so machines agree on staleness |
| connections | one, under a lock | a `psycopg_pool` pool (autocommit; a transaction per exclusive write) |

The Postgres advisory locks use the two-key form with class id `LOCK_CLASS` ("mk0"); anything
else sharing the database must not use that class id.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from mk0r_tui.core.envfile import remember_secrets
from mk0r_tui.core.errors import ConfigError
from mk0r_tui.core.ledger.rows import LedgerError
from mk0r_tui.core.ledger.schema import MIGRATIONS, SCHEMA_VERSION, Conn, Cursor

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

#: advisory lock keys on Postgres: (LOCK_CLASS, x)
LOCK_CLASS = 0x6D6B30  # "mk0"
WRITE_LOCK = 1
JOURNAL_LOCK = 2
SCHEMA_LOCK = 3

#: the channel a Postgres ledger notifies on after every journal append (payload: the new max id)
JOURNAL_CHANNEL = "mk0r_journal"

MASK = "••••"


def is_postgres_url(location: object) -> bool:
    return isinstance(location, str) and location.split("://", 1)[0].lower() in ("postgresql", "postgres")


def mask_url(url: str) -> str:
    """The URL with its password (in the user part or a `password=` parameter) masked: what every
    message, log line and screen shows of a ledger URL."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostpart = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{MASK}@{hostpart}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, MASK if k.lower() == "password" else v) for k, v in pairs], safe=MASK)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "postgresql://(unreadable URL)"


def url_passwords(url: str) -> list[str]:
    """The passwords a ledger URL carries (remembered as secrets, so `scrub` masks them anywhere)."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password"]
    except ValueError:
        pass
    return [p for p in found if p]


# -- SQLite -------------------------------------------------------------------------------------


def _is_io_problem(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("disk", "readonly", "read-only", "locked", "unable to open", "i/o"))


class SqliteConn:
    """A SQLite connection as a migration or a transaction sees it (`schema.Conn`)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cursor: Cursor = self.db.execute(sql, tuple(params))
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.db.executemany(sql, rows)

    def columns(self, table: str) -> set[str]:
        return {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}


class Written:
    """What a write returns: rows changed, and the rows of its RETURNING clause."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rowcount: int, rows: list[Any]) -> None:
        self.rowcount = rowcount
        self.rows = rows


class SqliteBackend:
    """SQLite (WAL, synchronous=FULL): one connection, serialised by a lock."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self.url: str | None = None
        self.lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._create_if_missing()
            self._check_file()
            self.db: Any = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        except OSError as exc:
            raise ConfigError(f"cannot open the ledger at {self.path}: {exc.strerror or exc}. Set MK0R_HOME to a writable folder.") from None
        except sqlite3.Error as exc:
            raise self.damaged(exc) from None
        try:
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
        except BaseException as exc:
            self.db.close()
            raise self.opening_error(exc) from None

    def opened(self) -> None:
        """Nothing to hand over: one connection throughout."""

    def opening_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, LedgerError):
            return exc
        if isinstance(exc, sqlite3.OperationalError) and _is_io_problem(exc):
            return ConfigError(f"cannot open the ledger at {self.path}: {exc}. Set MK0R_HOME to a writable folder.")
        if isinstance(exc, sqlite3.Error):
            return self.damaged(exc)
        return exc

    def damaged(self, why: object) -> LedgerError:
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
                    MIGRATIONS[version](SqliteConn(db))
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
            raise self.damaged("the file is empty (0 bytes)")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(self.path, 0o600)

    # schema ---------------------------------------------------------------------------------

    def version(self, conn: Conn | None = None) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def set_version(self, conn: Conn, version: int) -> None:
        conn.execute(f"PRAGMA user_version = {int(version)}")

    def fresh(self, conn: Conn | None = None) -> bool:
        """Nothing in it yet: a new file is made at the current version, so never."""
        return False

    def check_integrity(self) -> None:
        check = self.db.execute("PRAGMA quick_check").fetchall()
        if [tuple(r) for r in check] != [("ok",)]:
            raise self.damaged(f"integrity check: {check[0][0]}")

    def columns(self, table: str) -> set[str]:
        return SqliteConn(self.db).columns(table)

    # statements -----------------------------------------------------------------------------

    def now(self, conn: Conn | None = None) -> float:
        return time.time()

    @contextmanager
    def _writing(self, durable: bool) -> Iterator[None]:
        """The connection, alone; not `durable`: what commits meanwhile gets no fsync of its own
        (`synchronous=NORMAL`; the WAL keeps it atomic and safe from a killed process), and the
        next durable commit's flush of the WAL carries it to disk."""
        with self.lock:
            if durable or self.db.in_transaction:  # inside a transaction its commit decides
                yield
                return
            self.db.execute("PRAGMA synchronous=NORMAL")
            try:
                yield
            finally:
                self.db.execute("PRAGMA synchronous=FULL")

    def write(self, sql: str, params: Iterable[Any] = (), *, durable: bool = True) -> Written:
        """One statement, its own transaction (`durable`: see `_writing`)."""
        with self._writing(durable):
            try:
                cur = self.db.execute(sql, tuple(params))
                rows = cur.fetchall() if cur.description else []
                return Written(cur.rowcount, rows)
            except (sqlite3.OperationalError, sqlite3.IntegrityError) as exc:
                raise ConfigError(f"cannot write the ledger at {self.path}: {exc}") from None
            except sqlite3.DatabaseError as exc:
                raise self.damaged(exc) from None

    def read(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        with self.lock:
            try:
                rows: list[Any] = self.db.execute(sql, tuple(params)).fetchall()
                return rows
            except sqlite3.OperationalError as exc:
                if _is_io_problem(exc):
                    raise ConfigError(f"cannot read the ledger at {self.path}: {exc}") from None
                raise self.damaged(exc) from None
            except sqlite3.DatabaseError as exc:
                raise self.damaged(exc) from None

    @contextmanager
    def transaction(self, lock: int = WRITE_LOCK, *, durable: bool = True) -> Iterator[Conn]:
        """One `BEGIN IMMEDIATE` transaction: what it reads no other process changes before it
        commits (SQLite has one write lock: `lock` only matters on Postgres). `durable`: see
        `_writing`."""
        with self._writing(durable):
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise ConfigError(f"cannot write the ledger at {self.path}: {exc}") from None
            try:
                yield SqliteConn(self.db)
            except BaseException as exc:
                self.db.execute("ROLLBACK")
                if isinstance(exc, (sqlite3.OperationalError, sqlite3.IntegrityError)):
                    raise ConfigError(f"cannot write the ledger at {self.path}: {exc}") from None
                if isinstance(exc, sqlite3.DatabaseError):
                    raise self.damaged(exc) from None
                raise
            try:
                self.db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise ConfigError(f"cannot write the ledger at {self.path}: {exc}") from None

    def last_id(self, table: str) -> int:
        """The highest id `table` ever handed out (AUTOINCREMENT's memory, pruned rows included)."""
        rows = self.read("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,))
        return int(rows[0][0]) if rows else 0

    def set_last_id(self, conn: Conn, table: str, value: int) -> None:
        """The next id of `table` will be above `value` (never lowered)."""
        conn.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?", (value, table))
        conn.execute(
            "INSERT INTO sqlite_sequence(name, seq) SELECT ?, ? WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?)",
            (table, value, table),
        )

    def journal_appended(self, conn: Conn) -> None:
        """A follower sees SQLite's commit through `PRAGMA data_version`: nothing to send."""

    def close(self) -> None:
        with self.lock:
            self.db.close()


# -- Postgres -----------------------------------------------------------------------------------

_DDL = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
)


@functools.lru_cache(maxsize=512)
def pg_sql(sql: str) -> str:
    """The ledger's SQL (SQLite spelling) as Postgres reads it: `%` escaped, `?` → `%s`, and the
    two DDL words that differ. None of the ledger's statements has a `?` inside a literal."""
    sql = sql.replace("%", "%%").replace("?", "%s")
    for pattern, replacement in _DDL:
        sql = pattern.sub(replacement, sql)
    return sql


class PgRow(tuple[Any, ...]):
    """A Postgres row readable like `sqlite3.Row`: by position and by column name."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> PgRow:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def pg_rows(cursor: Any) -> Any:
    """A psycopg row factory making `PgRow`s."""
    index = {c.name: i for i, c in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(values, index)

    return make


class PgConn:
    """A psycopg connection as a migration or a transaction sees it (`schema.Conn`)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cursor: Cursor = self.conn.execute(pg_sql(sql), tuple(params) or None)
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(pg_sql(sql), list(rows))

    def columns(self, table: str) -> set[str]:
        return {
            r[0]
            for r in self.conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s",
                (table,),
            )
        }


def pg_error_text(exc: BaseException, url: str) -> str:
    """psycopg's message on one line, with no password of the URL in it."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for password in url_passwords(url):
        text = text.replace(password, MASK)
    return text


def connect_direct(url: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """One direct (unpooled) connection to a Postgres ledger, rows as `PgRow`s; a failure is one
    clear `ConfigError` with the URL masked."""
    import psycopg

    remember_secrets(url_passwords(url))
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10, row_factory=pg_rows)
    except psycopg.Error as exc:
        raise ConfigError(f"cannot reach the ledger at {mask_url(url)}: {pg_error_text(exc, url)}") from None


def _tables(conn: psycopg.Connection[Any]) -> set[str]:
    """The tables of the current schema, read from `pg_tables` with the statement's snapshot.
    Not `to_regclass`: that asks the relation cache, which may still hold "no such table" from
    before another process's commit (it is refreshed only when a relation lock is taken), so a
    process that waited for the schema lock saw some tables of a just-created ledger but not its
    `ledger_schema`."""
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").fetchall()
    return {str(r[0]) for r in rows}


def _sequence_of(table: str) -> str:
    """The identity sequence of `table`'s `id` (Postgres names it `<table>_id_seq`)."""
    if table not in ("resources", "runs", "journal"):
        raise ValueError(table)
    return f"{table}_id_seq"


class PostgresBackend:
    """A Postgres database shared by every process and machine of a team (`MK0R_LEDGER_URL`)."""

    name = "postgres"

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        self.url: str | None = url
        self._url = url
        self.where = mask_url(url)
        self.path: Path | None = None
        self.lock = threading.RLock()  # only for Ledger's compound steps; statements use the pool
        self._opening: psycopg.Connection[Any] | None = connect_direct(url)
        self._pool_size = pool_size
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._closed = False
        self._pool_now()  # its first connection is made in the background while the opening one checks the schema

    def opened(self) -> None:
        """The schema is checked: from now on every statement goes through the pool."""
        if self._opening is not None:
            self._opening.close()
            self._opening = None

    def _pool_now(self) -> psycopg_pool.ConnectionPool[Any]:
        if self._pool is None:
            with self.lock:
                if self._pool is None:
                    from psycopg_pool import ConnectionPool

                    self._pool = ConnectionPool(
                        self._url,
                        min_size=1,
                        max_size=self._pool_size,
                        kwargs={"autocommit": True, "row_factory": pg_rows, "connect_timeout": 10},
                        timeout=30,
                        name="mk0r-ledger",
                        open=True,
                    )
        return self._pool

    @contextmanager
    def _conn_raw(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; psycopg's errors pass through as they are."""
        if self._closed:
            raise ConfigError(f"the ledger at {self.where} is closed")
        with self._pool_now().connection() as conn:
            yield conn

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; psycopg's errors become one clear line (URL masked)."""
        import psycopg
        import psycopg_pool

        try:
            with self._conn_raw() as conn:
                yield conn
        except psycopg_pool.PoolTimeout as exc:
            raise ConfigError(f"cannot reach the ledger at {self.where}: {pg_error_text(exc, self._url)}") from None
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
            raise self.damaged(pg_error_text(exc, self._url)) from None
        except psycopg.Error as exc:
            raise ConfigError(f"cannot write the ledger at {self.where}: {pg_error_text(exc, self._url)}") from None

    def opening_error(self, exc: BaseException) -> BaseException:
        import psycopg

        if isinstance(exc, psycopg.Error):
            return ConfigError(f"cannot open the ledger at {self.where}: {pg_error_text(exc, self._url)}")
        return exc

    def damaged(self, why: object) -> LedgerError:
        return LedgerError(f"the ledger at {self.where} is damaged or not an mk0r-tui ledger ({why}); use another database or restore it")

    # schema ---------------------------------------------------------------------------------

    @contextmanager
    def _any_conn(self) -> Iterator[psycopg.Connection[Any]]:
        if self._opening is not None:
            yield self._opening
        else:
            with self._conn() as conn:
                yield conn

    def version(self, conn: Conn | None = None) -> int:
        sql = "SELECT version FROM ledger_schema"
        if isinstance(conn, PgConn):
            if "ledger_schema" not in _tables(conn.conn):
                return 0
            row = conn.conn.execute(sql).fetchone()
            return int(row[0]) if row else 0
        with self._any_conn() as c:
            return self.version(PgConn(c))

    def set_version(self, conn: Conn, version: int) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS ledger_schema (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), version INTEGER NOT NULL)"
        )
        conn.execute(
            "INSERT INTO ledger_schema(one, version) VALUES (TRUE, ?) ON CONFLICT (one) DO UPDATE SET version = excluded.version",
            (int(version),),
        )

    def fresh(self, conn: Conn | None = None) -> bool:
        """No ledger table yet: a new team ledger, created at once at the current version."""
        if isinstance(conn, PgConn):
            return not (_tables(conn.conn) & {"sessions", "ledger_schema"})
        with self._any_conn() as c:
            return not (_tables(c) & {"sessions", "ledger_schema"})

    def check_integrity(self) -> None:
        """The server keeps its own pages whole; there is no file of ours to check."""

    def columns(self, table: str) -> set[str]:
        with self._any_conn() as c:
            return PgConn(c).columns(table)

    # statements -----------------------------------------------------------------------------

    def now(self, conn: Conn | None = None) -> float:
        """The server's clock: every machine judges a heartbeat by the same one."""
        sql = "SELECT extract(epoch from clock_timestamp())::float8"
        if conn is not None:
            return float(conn.execute(sql).fetchone()[0])
        with self._conn() as c:
            row = c.execute(sql).fetchone()
            return float(row[0]) if row else time.time()

    def write(self, sql: str, params: Iterable[Any] = (), *, durable: bool = True) -> Written:
        """One statement, its own transaction (`durable` changes nothing here: a commit waits
        for the server's WAL flush, one round trip on the server's disk)."""
        with self._conn() as c:
            cur = c.execute(pg_sql(sql), tuple(params) or None)
            rows = cur.fetchall() if cur.description else []
            return Written(cur.rowcount, rows)

    def read(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """A read is retried once on a connection the server dropped (a restart, an idle
        timeout): the pool hands out connections unchecked (a check is one more round trip per
        statement) and discards the broken one when it comes back."""
        import psycopg
        import psycopg_pool

        try:
            with self._conn_raw() as c:
                return c.execute(pg_sql(sql), tuple(params) or None).fetchall()
        except psycopg_pool.PoolTimeout as exc:
            raise ConfigError(f"cannot reach the ledger at {self.where}: {pg_error_text(exc, self._url)}") from None
        except psycopg.OperationalError:
            pass  # a dropped connection: once more, on another one
        with self._conn() as c:  # errors said plainly this time
            return c.execute(pg_sql(sql), tuple(params) or None).fetchall()

    @contextmanager
    def transaction(self, lock: int = WRITE_LOCK, *, durable: bool = True) -> Iterator[Conn]:
        """A transaction that first takes the advisory lock `lock` (held to its end): every
        transaction taking the same lock runs alone, as `BEGIN IMMEDIATE` does on SQLite. Not
        `durable`: an asynchronous commit (`SET LOCAL synchronous_commit = off`: no wait for the
        WAL flush; a server crash may lose it, never half of it)."""
        with self._any_conn() if lock == SCHEMA_LOCK else self._conn() as c:
            import psycopg

            try:
                with c.transaction():
                    if not durable:
                        c.execute("SET LOCAL synchronous_commit = off")
                    c.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, lock))
                    yield PgConn(c)
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
                raise self.damaged(pg_error_text(exc, self._url)) from None
            except psycopg.Error as exc:
                raise ConfigError(f"cannot write the ledger at {self.where}: {pg_error_text(exc, self._url)}") from None

    def last_id(self, table: str) -> int:
        """The highest id `table`'s identity ever handed out (pruned rows included)."""
        rows = self.read(f"SELECT last_value, is_called FROM {_sequence_of(table)}")
        return int(rows[0][0]) if rows and rows[0][1] else 0

    def set_last_id(self, conn: Conn, table: str, value: int) -> None:
        """The next id of `table` will be above `value` (never lowered)."""
        if value > 0:
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST(?, (SELECT last_value FROM {_sequence_of(table)})))", (value,))

    def journal_appended(self, conn: Conn) -> None:
        """Tell every follower (LISTEN) the new max id; delivered when the transaction commits."""
        conn.execute(f"SELECT pg_notify('{JOURNAL_CHANNEL}', (SELECT MAX(id) FROM journal)::text)")

    def close(self) -> None:
        self._closed = True
        if self._opening is not None:
            self._opening.close()
            self._opening = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None


Backend = SqliteBackend | PostgresBackend
