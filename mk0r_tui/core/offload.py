"""Ledger writes off the event loop: one thread per process does them, in the order handed over.

Every ledger write is a durable transaction (SQLite: an fsync; Postgres: a round trip), so on the
event loop each one stalls every provider's requests, retries and timers (issue 17: 169 ms per CLI
run, up to 1.9 s at 100 sessions). The callers (`SessionResources`, the journal writer, the
orchestrator, the lease) hand their writes to a `LedgerWriter` instead:

- `await writer.run(fn, ...)`: the write is done (committed) when the await returns; what must be
  durable before the next step (the intent before a create call) is awaited this way;
- `writer.submit(fn, ...)`: fire and forget (a run's record, a journal burst); `drain()` waits
  for everything handed over before it and raises the first error a submitted write raised, so
  a write that failed still fails the run (at its end, not silently).

One thread, first in first out: the writes of a process are committed in the order they were
handed over (the journal's ids stay in event order), and `drain` is "everything before me is
done". The thread starts on first use; `close` waits for what is queued (at interpreter exit
concurrent.futures joins it too). It works
for any ledger whose methods may be called from another thread (SQLite's has a lock and
`check_same_thread=False`); nothing here knows which backend it is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

log = logging.getLogger("mk0r_tui.ledger")

P = ParamSpec("P")
T = TypeVar("T")


class LedgerWriter:
    """One writer thread for a process's ledger writes (see the module's docstring)."""

    def __init__(self, name: str = "mk0r-ledger-writer") -> None:
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._submitted: list[Future[Any]] = []
        self._closed = False

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._closed:
                # closed and used again (the CLI may run several loops with one runtime): a new thread
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
                self._closed = False
            return self._pool

    @property
    def thread_names(self) -> str:
        return self._name

    def in_writer_thread(self) -> bool:
        return threading.current_thread().name.startswith(self._name)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Do `fn(*args, **kwargs)` on the writer thread, after everything handed over before it;
        return its result (or raise its error) once it is done."""
        if self.in_writer_thread():  # a write made from a write: no queue to wait behind
            return fn(*args, **kwargs)
        import asyncio

        future = self._executor().submit(fn, *args, **kwargs)
        return await asyncio.wrap_future(future)

    async def run_to_end(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`run`, but a cancelled caller does not take the write back: it is done all the same
        (a lease release in a `finally` while the run is being cancelled)."""
        if self.in_writer_thread():
            return fn(*args, **kwargs)
        import asyncio

        future = self._executor().submit(fn, *args, **kwargs)
        return await asyncio.shield(asyncio.wrap_future(future))

    def submit(self, fn: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> Future[Any]:
        """Hand a write over without waiting for it; `drain` waits for it and reports its error."""
        future = self._executor().submit(fn, *args, **kwargs)
        with self._lock:
            self._submitted.append(future)
        return future

    def _take_submitted(self, *, all_of_them: bool = False) -> list[Future[Any]]:
        """The submitted writes that are done (all of them once the thread has stopped)."""
        with self._lock:
            taken = [f for f in self._submitted if all_of_them or f.done()]
            self._submitted = [f for f in self._submitted if not (all_of_them or f.done())]
        return taken

    async def drain(self) -> None:
        """Wait until every write handed over so far is done; raise the first error among the
        submitted ones (each error is raised once)."""
        await self.run(_nothing)
        _raise_first(self._take_submitted())

    def drain_sync(self) -> None:
        """`drain` for a caller with no event loop (closing a runtime)."""
        if self._pool is not None and not self._closed:
            self._executor().submit(_nothing).result()
        _raise_first(self._take_submitted())

    def close(self) -> None:
        """Wait for what is queued, then stop the thread (a later write starts a new one). Errors
        of submitted writes nobody drained are logged: closing never hides a run's outcome."""
        with self._lock:
            pool, self._closed = self._pool, True
            self._pool = None
        if pool is not None:
            pool.shutdown(wait=True)
        for future in self._take_submitted(all_of_them=True):
            exc = future.exception()
            if exc is not None:
                log.warning("a ledger write failed: %s", exc)


def _nothing() -> None:
    return None


def _raise_first(futures: list[Future[Any]]) -> None:
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    for extra in errors[1:]:
        log.warning("a ledger write failed: %s", extra)
    if errors:
        raise errors[0]


__all__ = ["LedgerWriter"]
