"""The journal: every run's events in the ledger, written by whoever runs it, read by anyone.

Writing (`JournalWriter`, one per runtime): `provision_services` and `teardown_session` wrap
their sink once with `wrap`, so the CLI, the dashboard, the library call (and later the
service) all write the same journal. Progress lines are buffered and written as one
transaction per burst on the next turn of the event loop, a burst's lines of one provider
collapsed to the newest (the panels show only the newest anyway); every other event is written
at once, with whatever is buffered before it (one small transaction, ~0.2 ms here), so a run
that returned is whole in the journal and a loop blocked right after never delays the news.

Reading (`JournalSource`): `since(id)` and `wait(id, timeout)`. `SqliteJournal` polls the
ledger file on its own connection with `PRAGMA data_version` (it changes only when another
connection commits, so an idle poll reads no row); a Postgres source would implement `wait`
with `LISTEN/NOTIFY` and `since` with the same query. `follow` turns a source into batches.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from mk0r_tui.core.events import Event, EventSink, ProviderProgressed, event_fields
from mk0r_tui.core.ledger import JournalRow, Ledger, journal_query, journal_row
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
    """Where journal entries are read from. SQLite today (`SqliteJournal`); a Postgres ledger
    would implement the same two calls with one query and `LISTEN/NOTIFY`."""

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


def follow(
    source: JournalSource, after: int, *, session: str | None = None, stop: threading.Event | None = None,
    batch: int = 1000,
) -> Iterator[list[JournalRow]]:
    """Batches of entries after `after`, as they are appended, until `stop` is set. The first
    batches are what is already there (`--since` resumes a reader)."""
    cursor = after
    while stop is None or not stop.is_set():
        rows = source.since(cursor, session=session, limit=batch)
        if rows:
            cursor = rows[-1].id
            yield rows
            if len(rows) == batch:
                continue
        source.wait(1.0, stop=stop)


__all__ = ["POLL_S", "JournalSource", "JournalWriter", "SqliteJournal", "follow"]
