"""Provider budgets shared by every process that shares a data dir or a ledger (issues 12, 17).

The providers count their limits per key or per team, not per process: GitHub wants mutating
requests one at a time per token with a gap (counted start to start) and at most 80 repo creates
a minute and 500 an hour; Resend allows 2 requests/s per team; Neon 700 requests/min per key;
and the operator sets how many requests each provider may have in flight. Two processes that
each kept those limits on their own broke them together. Here they are kept in a database that
every process already shares, not in a new server:

- `SqlBudgetStore` on SQLite: its own small file `<data dir>/budgets.sqlite3` (WAL), every
  decision in one `BEGIN IMMEDIATE` transaction: every process on one machine.
- the same store on Postgres when `MK0R_LEDGER_URL` is set: three `mk0r_budget_*` tables the
  store creates itself in that database, every decision in one transaction under one
  transaction-scoped advisory lock, time from the server's clock: every process on every machine.
- on SQLite `:memory:` with an injected clock (`memory_store`): one process, for tests that
  drive time with a fake clock.

A `Rule` names a budget key and what it allows: `slots` holders at once, starts at least
`gap_s` apart (start to start), at most `limit` starts in any `span` seconds (sliding windows).
A request asks for all its rules at once (`Budgets.acquire`): granted together or not at all.
Budget keys name the provider and a hash of the key (`budget_key`): never the key itself.

Waiters take a ticket (a row), so a waiter knows how many are ahead of it across processes
("waiting for GitHub's rate limit (3 ahead)"), and tickets are served first come first served.
Within a process only the first waiter of a lane asks the store again (the others wait on a
local lock), so 100 sessions waiting cost one poll, not a hundred. A holder or ticket whose
process died (same host, dead pid) or that outlived its lease is dropped by the next decision.

Time spent waiting for a budget does not spend a provider's timeout: `budget_timeout` is
`asyncio.timeout` with a pause (`PausableTimeout`) that every wait in `Budgets.acquire` takes
through a context variable. And `outlive` keeps a create whose session gave up (timeout,
cancel) running until its answer comes back, so the answer is still recorded
(`settle_late_answers`, awaited by the orchestrator before it returns).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the provider's clock and late answers live apart (a run the pool serves loads only those);
# re-exported here for every caller of the budgets
from mk0r_tui.core.budget_clock import PausableTimeout as PausableTimeout
from mk0r_tui.core.budget_clock import budget_timeout as budget_timeout
from mk0r_tui.core.budget_clock import late_answers as late_answers
from mk0r_tui.core.budget_clock import outlive as outlive
from mk0r_tui.core.budget_clock import settle_late_answers as settle_late_answers
from mk0r_tui.core.budget_clock import timeout_paused
from mk0r_tui.core.ledger.rows import pid_alive

log = logging.getLogger("mk0r_tui.budgets")

#: a waiter that only a release can let through (a slot) asks again this often, across processes
SLOT_POLL_S = 0.05
#: a waiter behind another process's waiter asks again at least this often
QUEUE_POLL_S = 0.05
#: a ticket not refreshed for this long belongs to a process that is gone
TICKET_LEASE_S = 10.0
#: the longest a first waiter sleeps before asking again (refreshing its tickets)
MAX_SLEEP_S = 2.0
#: how often a process drops rows of dead processes and starts older than every window
PURGE_EVERY_S = 1.0
#: starts are kept this long (the longest window: GitHub's hour)
DEFAULT_HORIZON_S = 3600.0


@dataclass(frozen=True, slots=True)
class Rule:
    """What one budget key allows a request that asks for it."""

    key: str
    #: holders at once (requests in flight, mutations one at a time); None: no limit
    slots: int | None = None
    #: seconds between two starts, start to start
    gap_s: float = 0.0
    #: (span seconds, starts): at most `starts` starts in any `span` seconds
    windows: tuple[tuple[float, int], ...] = ()
    #: a slot held longer than this is taken back (its holder hung or died elsewhere)
    lease_s: float = 120.0
    #: the slot is given back when the request has left (its bytes written), not at its answer:
    #: a rate's next request waits until the previous one really went, then its gap
    until_sent: bool = False

    @property
    def counts_starts(self) -> bool:
        return self.gap_s > 0 or bool(self.windows)


def budget_key(provider: str, secret: str | None, what: str) -> str:
    """`provider:<hash of the key>:what`: the budget of one key, never the key in the clear."""
    digest = hashlib.sha256(f"mk0r-budget:{secret or ''}".encode()).hexdigest()[:16]
    return f"{provider}:{digest}:{what}"


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    #: when not granted: seconds until asking again is worth it
    wait_s: float = 0.0
    #: waiters ahead of this one in its lane, in every process
    ahead: int = 0
    holds: tuple[int, ...] = ()
    ticket: int | None = None
    #: slots given back when the request has left (`Rule.until_sent`)
    send_holds: tuple[int, ...] = ()
    #: the start rows this grant wrote, and this process's clock (`SqlBudgetStore.local`) then
    starts: tuple[int, ...] = ()
    local_at: float = 0.0


def _holder() -> tuple[str, int, str]:
    return socket.gethostname(), os.getpid(), uuid.uuid4().hex[:12]


# -- the store -------------------------------------------------------------------------------


SCHEMA = (
    "CREATE TABLE IF NOT EXISTS mk0r_budget_starts (id {pk}, key TEXT NOT NULL, "
    "at DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS mk0r_budget_starts_key ON mk0r_budget_starts (key, at)",
    "CREATE TABLE IF NOT EXISTS mk0r_budget_slots (id {pk}, key TEXT NOT NULL, host TEXT NOT NULL, "
    "pid INTEGER NOT NULL, holder TEXT NOT NULL, expires DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS mk0r_budget_slots_key ON mk0r_budget_slots (key)",
    "CREATE TABLE IF NOT EXISTS mk0r_budget_tickets (id {pk}, lane TEXT NOT NULL, host TEXT NOT NULL, "
    "pid INTEGER NOT NULL, holder TEXT NOT NULL, expires DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS mk0r_budget_tickets_lane ON mk0r_budget_tickets (lane, id)",
)
#: a lane's background twin (the warm pool's refill, `core.provider.background_work`): served
#: only while no request of the lane itself waits, so a session's own creates always go first
BACKGROUND = ":background"


def background_lane(lane: str) -> str:
    return lane + BACKGROUND


def _front_lane(lane: str) -> str | None:
    """The lane whose waiters a background lane gives way to (None: a foreground lane)."""
    return lane[: -len(BACKGROUND)] if lane.endswith(BACKGROUND) else None


#: the advisory lock every Postgres budget decision takes (a constant: "mk0r" "budg")
PG_LOCK = 0x6D6B3072_62756467


class SqlBudgetStore:
    """The budget tables on SQLite (a file, or `:memory:` with an injected clock) or Postgres.
    Synchronous; one connection; thread-safe (a lock), so `Budgets` may run it in a thread."""

    def __init__(self, *, sqlite_path: Path | str | None = None, postgres_url: str | None = None,
                 now: Callable[[], float] | None = None) -> None:
        self.host, self.pid, self.holder = _holder()
        self._lock = threading.Lock()
        self._now = now
        #: this process's clock for "how long after its grant did a request leave"
        self.local: Callable[[], float] = now or time.time
        self._last_purge = float("-inf")
        self._tx_now = 0.0
        self.horizon_s = DEFAULT_HORIZON_S
        self.postgres = postgres_url is not None
        if postgres_url is not None:
            import psycopg

            self._pg = psycopg.connect(postgres_url, autocommit=True)
            with self._pg.transaction():
                self._pg.execute("SELECT pg_advisory_xact_lock(%s::bigint)", (PG_LOCK,))
                for statement in SCHEMA:
                    self._pg.execute(statement.format(pk="BIGSERIAL PRIMARY KEY"))
        else:
            path = str(sqlite_path or ":memory:")
            if path != ":memory:":
                from mk0r_tui.core.paths import refuse_link

                refuse_link(Path(path))
                fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
                os.close(fd)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            # a budget lost to a power cut costs one burst of pacing, not a row of the ledger
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            for statement in SCHEMA:
                self._db.execute(statement.format(pk="INTEGER PRIMARY KEY AUTOINCREMENT"))  # ids never reused

    # one transaction, whichever database
    @contextmanager
    def _tx(self, *, lock: bool = True) -> Iterator[Callable[..., list[tuple[Any, ...]]]]:
        """One transaction. On Postgres, `lock` takes the budgets' advisory lock (every decision
        does; a release by id need not) and reads the server's clock in the same round trip."""
        with self._lock:
            if self.postgres:
                with self._pg.transaction():
                    if lock:
                        row = self._pg.execute("SELECT pg_advisory_xact_lock(%s::bigint), "
                                               "extract(epoch from clock_timestamp())", (PG_LOCK,)).fetchone()
                        self._tx_now = float(row[1]) if row is not None else time.time()

                    def run_pg(sql: str, *args: Any) -> list[tuple[Any, ...]]:
                        cursor = self._pg.execute(sql.replace("?", "%s"), args)
                        return list(cursor.fetchall()) if cursor.description else []

                    yield run_pg
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                def run(sql: str, *args: Any) -> list[tuple[Any, ...]]:
                    return list(self._db.execute(sql, args).fetchall())

                yield run
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _clock(self, run: Callable[..., list[tuple[Any, ...]]]) -> float:
        if self._now is not None:
            return self._now()
        if self.postgres:  # one clock for every machine: the server's, read with the lock
            return self._tx_now
        return time.time()

    def _purge(self, run: Callable[..., list[tuple[Any, ...]]], now: float) -> None:
        if now - self._last_purge < PURGE_EVERY_S:
            return
        self._last_purge = now
        run("DELETE FROM mk0r_budget_slots WHERE expires < ?", now)
        run("DELETE FROM mk0r_budget_tickets WHERE expires < ?", now)
        run("DELETE FROM mk0r_budget_starts WHERE at < ?", now - self.horizon_s)
        for table in ("mk0r_budget_slots", "mk0r_budget_tickets"):
            for (pid,) in run(f"SELECT DISTINCT pid FROM {table} WHERE host = ? AND pid <> ?", self.host, self.pid):
                if not pid_alive(int(pid)):
                    run(f"DELETE FROM {table} WHERE host = ? AND pid = ?", self.host, int(pid))

    def _read(self, run: Callable[..., list[tuple[Any, ...]]], lane: str, ticket: int | None, rules: Sequence[Rule],
              now: float) -> tuple[int, int, float]:
        """Everything a decision reads, in one statement (one round trip on Postgres): the
        waiters ahead, those of other processes, and the wait every rule asks for."""
        parts: list[str] = []
        args: list[Any] = []
        # a background request gives way to every waiter of its foreground lane, this process's too
        front = _front_lane(lane)
        yielding = " + (SELECT count(*) FROM mk0r_budget_tickets WHERE lane = ?)" if front is not None else ""
        if ticket is None:
            parts.append(f"((SELECT count(*) FROM mk0r_budget_tickets WHERE lane = ?){yielding})")
            args += [lane] + ([front] if front is not None else [])
        else:
            parts.append(f"((SELECT count(*) FROM mk0r_budget_tickets WHERE lane = ? AND id < ?){yielding})")
            args += [lane, ticket] + ([front] if front is not None else [])
            parts.append(f"((SELECT count(*) FROM mk0r_budget_tickets WHERE lane = ? AND id < ? AND holder <> ?){yielding})")
            args += [lane, ticket, self.holder] + ([front] if front is not None else [])
        checks: list[tuple[str, Rule, float]] = []
        for rule in rules:
            if rule.slots is not None:
                parts.append("(SELECT count(*) FROM mk0r_budget_slots WHERE key = ?)")
                args.append(rule.key)
                checks.append(("slots", rule, 0.0))
            if rule.gap_s > 0:
                parts.append("(SELECT max(at) FROM mk0r_budget_starts WHERE key = ?)")
                args.append(rule.key)
                checks.append(("gap", rule, 0.0))
            for span, limit in rule.windows:
                # the limit-th most recent start inside the window: when it leaves, one more may start
                parts.append("(SELECT at FROM mk0r_budget_starts WHERE key = ? AND at > ? ORDER BY at DESC LIMIT 1 OFFSET ?)")
                args += [rule.key, now - span, limit - 1]
                checks.append(("window", rule, span))
        row = run("SELECT " + ", ".join(parts), *args)[0]
        ahead = int(row[0])
        blocking = ahead if ticket is None else int(row[1])
        values = row[1:] if ticket is None else row[2:]
        wait = 0.0
        for (kind, rule, span), value in zip(checks, values):
            if kind == "slots" and rule.slots is not None and int(value) >= rule.slots:
                wait = max(wait, SLOT_POLL_S)
            elif kind == "gap" and value is not None:
                wait = max(wait, float(value) + rule.gap_s - now)
            elif kind == "window" and value is not None:
                wait = max(wait, float(value) + span - now)
        return ahead, blocking, max(wait, 0.0)

    def acquire(self, lane: str, rules: Sequence[Rule], ticket: int | None = None, *, queue: bool = True) -> Decision:
        """Grant every rule now, or say how long to wait. A waiter (`queue`) gets a ticket, which
        later calls pass back; a ticket is served only when no older live ticket waits in its lane."""
        with self._tx() as run:
            now = self._clock(run)
            self._purge(run, now)
            # only other processes' tickets hold this one back: this process's own waiters are
            # ordered by its local lock (and the one asking holds it)
            ahead, blocking, wait = self._read(run, lane, ticket, rules, now)
            if blocking == 0 and wait <= 0:
                holds: list[int] = []
                send_holds: list[int] = []
                starts: list[int] = []
                for rule in rules:
                    if rule.slots is not None:
                        rows = run("INSERT INTO mk0r_budget_slots (key, host, pid, holder, expires) VALUES (?, ?, ?, ?, ?) "
                                   "RETURNING id", rule.key, self.host, self.pid, self.holder, now + rule.lease_s)
                        (send_holds if rule.until_sent else holds).append(int(rows[0][0]))
                    if rule.counts_starts:
                        rows = run("INSERT INTO mk0r_budget_starts (key, at) VALUES (?, ?) RETURNING id", rule.key, now)
                        starts.append(int(rows[0][0]))
                if ticket is not None:
                    run("DELETE FROM mk0r_budget_tickets WHERE id = ?", ticket)
                return Decision(True, holds=tuple(holds), send_holds=tuple(send_holds), starts=tuple(starts),
                                local_at=self.local())
            if blocking > 0:
                wait = max(wait, QUEUE_POLL_S)
            if queue and ticket is None:
                rows = run("INSERT INTO mk0r_budget_tickets (lane, host, pid, holder, expires) VALUES (?, ?, ?, ?, ?) "
                           "RETURNING id", lane, self.host, self.pid, self.holder, now + TICKET_LEASE_S)
                ticket = int(rows[0][0])
            elif ticket is not None:  # the first waiter keeps every ticket of its process alive
                run("UPDATE mk0r_budget_tickets SET expires = ? WHERE holder = ?", now + TICKET_LEASE_S, self.holder)
            return Decision(False, wait_s=wait, ahead=ahead, ticket=ticket)

    def enqueue(self, lane: str) -> tuple[int, int]:
        """A ticket for a waiter that waits behind this process's own first waiter: (ticket, ahead)."""
        with self._tx() as run:
            now = self._clock(run)
            ahead = int(run("SELECT count(*) FROM mk0r_budget_tickets WHERE lane = ?", lane)[0][0])
            rows = run("INSERT INTO mk0r_budget_tickets (lane, host, pid, holder, expires) VALUES (?, ?, ?, ?, ?) "
                       "RETURNING id", lane, self.host, self.pid, self.holder, now + TICKET_LEASE_S)
            return int(rows[0][0]), ahead

    def release(self, holds: Sequence[int], starts: Sequence[int] = (), sent_after_s: float = 0.0) -> None:
        """Give slots back. `starts`/`sent_after_s`: the request went out this long after its
        grant (a busy event loop between the two): its starts are moved to when it really left,
        so the next one's gap is counted from there (a mutation's slot is held until then)."""
        if not holds and not (starts and sent_after_s > 0):
            return
        # under the budgets' lock like every decision: a release touches several rows, and the
        # purge (expired slots and starts, in its own order) runs under that lock; without it
        # the two could each hold a row the other wanted (Postgres: "deadlock detected", seen
        # once in CI as an `orphans` discovery failing beside a racing provision)
        with self._tx() as run:
            for hold in holds:
                run("DELETE FROM mk0r_budget_slots WHERE id = ?", hold)
            if sent_after_s > 0:
                for start in starts:
                    run("UPDATE mk0r_budget_starts SET at = at + ? WHERE id = ?", sent_after_s, start)

    def leave(self, ticket: int) -> None:
        with self._tx(lock=False) as run:
            run("DELETE FROM mk0r_budget_tickets WHERE id = ?", ticket)

    def starts(self, key: str) -> list[float]:
        """Every start recorded for `key` (tests, benches)."""
        with self._tx() as run:
            return [float(r[0]) for r in run("SELECT at FROM mk0r_budget_starts WHERE key = ? ORDER BY at", key)]

    def close(self) -> None:
        with self._lock:
            if self.postgres:
                self._pg.close()
            else:
                self._db.close()


# -- waiting without spending a provider's timeout, late answers: core/budget_clock.py ----------


# -- the asynchronous face -------------------------------------------------------------------


@dataclass
class _Lane:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0
    woken: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class Grant:
    holds: tuple[int, ...]
    lane: str
    waited_s: float = 0.0
    starts: tuple[int, ...] = ()
    send_holds: tuple[int, ...] = ()
    #: the send slots were given back and the starts moved (once)
    left: bool = False
    #: the store's local clock at the grant (taken in the store call, not when the waiting task
    #: resumed: a busy loop resumes it late), and when the request really left
    granted_at: float = 0.0
    clock: Callable[[], float] = time.time
    sent_at: float | None = None

    def sent(self) -> None:
        """Call when the request's bytes go out (the latest call counts)."""
        self.sent_at = self.clock()


class Budgets:
    """One process's door to a budget store. `threaded`: store calls run in one worker thread
    (a file or a server: never on the event loop); otherwise inline (`:memory:`, fake clocks)."""

    def __init__(self, store: SqlBudgetStore, *, threaded: bool = True,
                 sleep: Callable[[float], Any] | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.threaded = threaded
        self._sleep = sleep
        self._monotonic = monotonic
        self._executor = _executor() if threaded else None
        self.users = 0
        self._lanes: dict[tuple[int, str], _Lane] = {}

    def _lane(self, lane: str) -> _Lane:
        key = (id(asyncio.get_running_loop()), lane)  # the CLI may run several loops
        found = self._lanes.get(key)
        if found is None:
            found = self._lanes[key] = _Lane()
        return found

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._executor is None:
            return fn(*args, **kwargs)
        future = self._executor.submit(lambda: fn(*args, **kwargs))
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            future.add_done_callback(self._undo)
            raise

    def _undo(self, future: Future[Any]) -> None:
        """A call whose caller was cancelled: give back what it got."""
        if future.cancelled() or future.exception() is not None:
            return
        result = future.result()
        if isinstance(result, Decision):
            if result.holds or result.send_holds:
                self._submit(self.store.release, result.holds + result.send_holds)
            if result.ticket is not None and not result.granted:
                self._submit(self.store.leave, result.ticket)
        elif isinstance(result, tuple) and len(result) == 2:  # enqueue's (ticket, ahead)
            self._submit(self.store.leave, result[0])

    def _submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._executor is None:
            fn(*args)
        else:
            self._executor.submit(fn, *args)

    async def _nap(self, lane: _Lane, seconds: float) -> None:
        seconds = min(max(seconds, 0.001), MAX_SLEEP_S)
        if self._sleep is not None:
            await self._sleep(seconds)
            return
        try:
            await asyncio.wait_for(lane.woken.wait(), seconds)
        except TimeoutError:
            pass

    async def acquire(self, lane: str, rules: Sequence[Rule], *, label: str,
                      report: Callable[[str], None] | None = None) -> Grant:
        """Every rule granted at once; waits (FIFO, across processes) until they are. The wait is
        reported as "waiting for {label} (n ahead)" and does not spend a `budget_timeout`."""
        local = self._lane(lane)
        if local.waiting == 0 and not local.lock.locked():
            decision = await self._call(self.store.acquire, lane, rules, None, queue=False)
            if decision.granted:
                return Grant(decision.holds, lane, 0.0, decision.starts, decision.send_holds, False, decision.local_at,
                             self.store.local)
        started = self._monotonic()
        with timeout_paused():
            ticket, ahead = await self._call(self.store.enqueue, lane)
            said: int | None = None
            try:
                if report is not None:
                    report(f"waiting for {label} ({ahead} ahead)")
                    said = ahead
                local.waiting += 1
                try:
                    await local.lock.acquire()
                finally:
                    local.waiting -= 1
                try:
                    while True:
                        decision = await self._call(self.store.acquire, lane, rules, ticket)
                        if decision.granted:
                            ticket = None
                            return Grant(decision.holds, lane, self._monotonic() - started, decision.starts,
                                         decision.send_holds, False, decision.local_at, self.store.local)
                        if report is not None and decision.ahead != said:
                            report(f"waiting for {label} ({decision.ahead} ahead)")
                            said = decision.ahead
                        await self._nap(local, decision.wait_s)
                finally:
                    local.lock.release()
            finally:
                if ticket is not None:
                    self._submit(self.store.leave, ticket)

    def left(self, grant: Grant) -> None:
        """The request's bytes are out: give back its send slots and move its starts to now."""
        grant.sent()
        self._leave(grant, ())

    def _leave(self, grant: Grant, holds: tuple[int, ...]) -> None:
        late = 0.0
        if not grant.left:
            grant.left = True
            holds = grant.send_holds + holds
            late = (grant.sent_at - grant.granted_at) if grant.sent_at is not None else 0.0
            late = late if late > 0.001 else 0.0
        if holds or (grant.starts and late):
            self._submit(self.store.release, holds, grant.starts if late else (), late)
        try:
            lane = self._lane(grant.lane)
        except RuntimeError:  # no running loop: nobody local to wake
            return
        lane.woken.set()
        lane.woken = asyncio.Event()

    def release(self, grant: Grant) -> None:
        """Give the slots back (never awaited: safe in a `finally` of a cancelled task)."""
        self._leave(grant, grant.holds)

    def close(self) -> None:
        """Close the store after every call already queued (a release included)."""
        if self._executor is not None:
            self._executor.submit(self.store.close)
        else:
            self.store.close()


# -- one door per data dir or ledger, per process ---------------------------------------------


_shared: dict[str, Budgets] = {}
_shared_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """One worker thread for every store of the process: calls run in the order they are made."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(1, thread_name_prefix="mk0r-budgets")
        return _pool


def shared_budgets(data_dir: Path, ledger_url: str | None) -> Budgets:
    """The process's budgets for this data dir (SQLite file) or this Postgres ledger; every
    caller gives it back with `release_shared` (the last one closes the store)."""
    where = ledger_url or str(data_dir)
    with _shared_lock:
        found = _shared.get(where)
    if found is None:
        if ledger_url:
            store = SqlBudgetStore(postgres_url=ledger_url)
        else:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            store = SqlBudgetStore(sqlite_path=data_dir / "budgets.sqlite3")
        with _shared_lock:
            found = _shared.get(where)
            if found is None:
                found = _shared[where] = Budgets(store)
                store = None  # type: ignore[assignment]
        if store is not None:
            store.close()
    with _shared_lock:
        found.users += 1
    return found


def release_shared(budgets: Budgets) -> None:
    with _shared_lock:
        budgets.users -= 1
        if budgets.users > 0:
            return
        for where, held in list(_shared.items()):
            if held is budgets:
                del _shared[where]
    budgets.close()


def memory_budgets(now: Callable[[], float], sleep: Callable[[float], Any]) -> Budgets:
    """One process's budgets on an injected clock (tests with a fake clock)."""
    return Budgets(SqlBudgetStore(now=now), threaded=False, sleep=sleep, monotonic=now)
