"""The journal: every run's events in the ledger, written by whoever runs it, read by anyone.

Writing (`JournalWriter`, one per runtime): `provision_services` and `teardown_session` wrap
their sink once with `wrap`, so the CLI, the dashboard, the library call (and later the
service) all write the same journal. Progress lines are buffered and written as one
transaction per burst on the next turn of the event loop, a burst's lines of one provider
collapsed to the newest (the panels show only the newest anyway); every other event is written
at once, with whatever is buffered before it (one small transaction, ~0.2 ms here), so a run
that returned is whole in the journal and a loop blocked right after never delays the news.

Reading (`JournalSource`): `since(id)` and `wait(id, timeout)`; `open_source(ledger)` gives the
one for the ledger's backend. `SqliteJournal` polls the ledger file on its own connection with
`PRAGMA data_version` (it changes only when another connection commits, so an idle poll reads
no row). `PostgresJournal` (team mode) holds a direct connection of its own (not a pooled one:
LISTEN belongs to a session, and a pool would hand it to someone else or reset it) that
`LISTEN`s on the ledger's channel; every journal append `NOTIFY`s it (payload: the new max id)
when it commits, and `since` is the same query. NOTIFY has no replay: after a lost connection
the source reconnects, listens again and reports "maybe new rows", so the reader re-queries
`since` its cursor and misses nothing. `follow` turns a source into batches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from mk0r_tui.core.errors import ConfigError
from mk0r_tui.core.events import Event, EventSink, ProviderProgressed, event_fields
from mk0r_tui.core.ledger import JOURNAL_CHANNEL, JournalRow, Ledger, connect_direct, journal_query, journal_row, mask_url
from mk0r_tui.core.offload import LedgerWriter

log = logging.getLogger("mk0r_tui.journal")

#: how often a follower looks at the ledger file: the bound on event-to-screen is this plus a repaint
POLL_S = 0.05


class JournalWriter:
    """Buffers the events of this process's runs and writes them in bursts. `origin` marks every
    row this writer wrote, so this process's dashboard does not apply its own events twice."""

    def __init__(self, ledger: Ledger, *, origin: str | None = None, writer: LedgerWriter | None = None) -> None:
        self.ledger = ledger
        #: who writes the bursts: the runtime's writer thread (off the event loop, in order);
        #: None writes them on the caller's thread (a plain call, a test)
        self.writer = writer
        self.origin = origin or uuid.uuid4().hex[:16]
        self.enabled = True
        self._buffer: list[tuple[str, Event] | None] = []
        self._progress_at: dict[tuple[str, str], int] = {}
        self._scheduled = False
        self._lock = threading.Lock()

    def wrap(self, slug: str, sink: EventSink) -> EventSink:
        """`sink`, with every event also journaled (first: a reader never sees a panel ahead of
        the journal)."""
        if not self.enabled:
            return sink

        def journaled(event: Event) -> None:
            self.append(slug, event)
            sink(event)

        return journaled

    def append(self, slug: str, event: Event) -> None:
        with self._lock:
            key = (event.session, event.provider)
            if isinstance(event, ProviderProgressed):
                older = self._progress_at.get(key)
                if older is not None:
                    self._buffer[older] = None  # collapsed: the newer line replaces it
                self._progress_at[key] = len(self._buffer)
            else:
                self._progress_at.pop(key, None)
            self._buffer.append((slug, event))
            schedule = not self._scheduled
            self._scheduled = True
        if not isinstance(event, ProviderProgressed):
            # handed to the writer now, with whatever progress is buffered before it: a loop
            # blocked right after (a client's TLS set-up, a git call) must not hold the news back
            self.flush()
            return
        if schedule:
            import asyncio

            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (a plain call): write now
                self.flush()

    def flush(self) -> None:
        """Hand what is buffered to the writer thread (or write it here without one): one
        transaction, off the event loop. `drain` (or the runtime's writer) waits for it."""
        if self.writer is None:
            self._write_buffered()
        else:
            self.writer.submit(self._write_buffered)

    def drain(self) -> None:
        """Write what is buffered and wait until every burst handed over is in the ledger."""
        self.flush()
        if self.writer is not None:
            self.writer.drain_sync()

    def _write_buffered(self) -> None:
        """Write what is buffered, in one transaction. A journal write that fails is logged and
        dropped: the journal is a view of the run, never a reason for the run to fail."""
        with self._lock:
            buffered, self._buffer = self._buffer, []
            self._progress_at.clear()
            self._scheduled = False
        entries = [
            (event.at, event.session, slug, event.provider, type(event).__name__, json.dumps(event_fields(event), default=str), self.origin)
            for slug, event in (b for b in buffered if b is not None)
        ]
        if not entries:
            return
        try:
            self.ledger.append_journal(entries)
        except Exception as exc:
            log.warning("journal: %d event(s) not written: %s", len(entries), exc)


class JournalSource(Protocol):
    """Where journal entries are read from: `SqliteJournal` or `PostgresJournal` (`open_source`)."""

    def since(self, after: int, *, session: str | None = None, limit: int | None = None) -> list[JournalRow]: ...

    def wait(self, timeout: float, *, stop: threading.Event | None = None) -> bool:
        """Block up to `timeout` seconds (or until `stop`) for a sign that entries may have been appended."""
        ...

    def close(self) -> None: ...


class SqliteJournal:
    """Reads the journal of a SQLite ledger on a connection of its own (never the ledger's, so a
    follower thread never waits on the process's writes)."""

    def __init__(self, path: Path | str, *, poll_s: float = POLL_S) -> None:
        self.path = Path(path)
        self.poll_s = poll_s
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._version = self._data_version()

    def _data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def since(self, after: int, *, session: str | None = None, limit: int | None = None) -> list[JournalRow]:
        sql, params = journal_query(after, session=session, limit=limit)
        return [journal_row(r) for r in self._db.execute(sql, params).fetchall()]

    def wait(self, timeout: float, *, stop: threading.Event | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            version = self._data_version()
            if version != self._version:
                self._version = version
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if stop is not None:
                if stop.wait(min(self.poll_s, left)):
                    return False
            else:
                time.sleep(min(self.poll_s, left))

    def close(self) -> None:
        self._db.close()


class PostgresJournal:
    """Reads the journal of a Postgres ledger on a direct connection of its own that LISTENs on
    `JOURNAL_CHANNEL`: `wait` returns as soon as another process's append commits (no polling,
    on any machine). A lost connection is retried (every `retry_s`) and, once back, reported as
    a possible change: NOTIFY has no replay, so the caller re-queries `since` its cursor."""

    def __init__(self, url: str, *, retry_s: float = 0.5) -> None:
        self.url = url
        self.retry_s = retry_s
        self._conn: Any = None
        self._connect()

    def _connect(self) -> None:
        conn = connect_direct(self.url)
        try:
            conn.execute(f"LISTEN {JOURNAL_CHANNEL}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _reconnect(self) -> bool:
        with contextlib.suppress(Exception):
            if self._conn is not None:
                self._conn.close()
        self._conn = None
        try:
            self._connect()
        except ConfigError as exc:
            log.warning("journal follower: %s (retrying)", exc)
            return False
        return True

    def since(self, after: int, *, session: str | None = None, limit: int | None = None) -> list[JournalRow]:
        import psycopg

        from mk0r_tui.core.ledger.backends import pg_sql

        sql, params = journal_query(after, session=session, limit=limit)
        for attempt in (1, 2):
            try:
                if self._conn is None:
                    self._connect()
                return [journal_row(r) for r in self._conn.execute(pg_sql(sql), params).fetchall()]
            except psycopg.OperationalError as exc:
                if attempt == 2 or not self._reconnect():
                    raise ConfigError(f"cannot read the journal at {mask_url(self.url)}: {' '.join(str(exc).split())}") from None
        return []  # not reached

    def wait(self, timeout: float, *, stop: threading.Event | None = None) -> bool:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or (stop is not None and stop.is_set()):
                return False
            if self._conn is None:
                if self._reconnect():
                    return True  # back: what was appended meanwhile was never notified
                (stop.wait if stop is not None else time.sleep)(min(self.retry_s, left))
                continue
            try:
                # slices, so a `stop` is seen within 0.1 s; a notification ends a slice at once
                notes = self._conn.notifies(timeout=min(left, 0.1 if stop is not None else left), stop_after=1)
                try:
                    woken = next(notes, None) is not None
                finally:
                    notes.close()  # it holds the connection's lock until closed
                if woken:
                    for _ in self._conn.notifies(timeout=0):  # drain the rest of the burst (not nested: it holds a lock)
                        pass
                    return True
            except psycopg.OperationalError:
                self._conn = None  # lost: reconnect on the next turn, then say "maybe new rows"

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def open_source(ledger: Ledger) -> JournalSource:
    """The journal reader for `ledger`'s backend, on a connection of its own."""
    if ledger.url is not None:
        return PostgresJournal(ledger.url)
    return SqliteJournal(ledger.path)


def follow(
    source: JournalSource, after: int, *, session: str | None = None, stop: threading.Event | None = None,
    batch: int = 1000,
) -> Iterator[list[JournalRow]]:
    """Batches of entries after `after`, as they are appended, until `stop` is set. The first
    batches are what is already there (`--since` resumes a reader)."""
    cursor = after
    while stop is None or not stop.is_set():
        try:
            rows = source.since(cursor, session=session, limit=batch)
        except ConfigError as exc:  # a shared ledger out of reach: keep following, it comes back
            log.warning("journal follower: %s", exc)
            source.wait(1.0, stop=stop)
            continue
        if rows:
            cursor = rows[-1].id
            yield rows
            if len(rows) == batch:
                continue
        source.wait(1.0, stop=stop)


__all__ = ["POLL_S", "JournalSource", "JournalWriter", "PostgresJournal", "SqliteJournal", "follow", "open_source"]
