"""One runner per session across processes: the lease a provision, a teardown or an orphan delete
holds on a session name (`mk0r-<slug>`) for its whole run.

The lease lives in the ledger (core/ledger.py, table `leases`): who holds it (host, pid, when it
started, a random token) and its heartbeat, renewed every `MK0R_LEASE_STALE_S / 3` seconds while
the run works. It is taken in one `BEGIN IMMEDIATE` transaction when it is free or its owner is
gone (a dead pid on this host, or no heartbeat for `MK0R_LEASE_STALE_S`); otherwise the caller
waits, polling, up to `MK0R_LEASE_WAIT_S`, then fails with one line naming the holder. This is
where "in flight" comes from for every process: orphan discovery never lists what a live lease
covers, and every screen shows a session whose run has no live lease as owner-gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator

from mk0r_tui.core.errors import Mk0rError, UsageError
from mk0r_tui.core.ledger import LeaseRow, Ledger
from mk0r_tui.core.offload import LedgerWriter

log = logging.getLogger("mk0r_tui.lease")

#: how often a waiting run asks again
POLL_S = 0.1


class SessionBusy(UsageError):
    """Another live run holds the session (exit 2)."""

    def __init__(self, name: str, holder: LeaseRow) -> None:
        super().__init__(f"session {holder.session_key} ({name}) is {holder.describe()}; wait for it, or try again later")
        self.holder = holder


async def _heartbeat(ledger: Ledger, name: str, token: str, every_s: float, writer: LedgerWriter) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            if not await writer.run(ledger.beat_lease, name, token):
                log.warning("the lease on %s was taken by another run (no heartbeat for too long?)", name)
                return
        except Mk0rError as exc:  # a ledger that cannot be written: the run's own writes will say so
            log.warning("heartbeat of %s failed: %s", name, exc)


@contextlib.asynccontextmanager
async def session_lease(
    ledger: Ledger, name: str, session_key: str, kind: str, *, stale_s: float, wait_s: float,
    writer: LedgerWriter | None = None,
) -> AsyncIterator[LeaseRow | None]:
    """Hold the lease on session `name` for the block: wait up to `wait_s` for a live holder,
    then raise `SessionBusy`. The heartbeat beats every `stale_s / 3`; released in `finally`.
    Every lease write is done by `writer`'s thread (core/offload.py), never on the event loop."""
    writer = writer or LedgerWriter()
    token = secrets.token_hex(8)
    deadline = time.monotonic() + wait_s
    while True:
        holder = await writer.run(ledger.acquire_lease, name, session_key, kind, token, stale_s=stale_s)
        if holder is None:
            break
        if time.monotonic() >= deadline:
            raise SessionBusy(name, holder)
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
    beat = asyncio.create_task(_heartbeat(ledger, name, token, max(0.2, stale_s / 3), writer))
    try:
        yield None
    finally:
        beat.cancel()
        with contextlib.suppress(BaseException):
            await beat
        try:
            await writer.run_to_end(ledger.release_lease, name, token)
        except Mk0rError as exc:  # left behind: it goes stale by itself
            log.warning("releasing the lease on %s failed: %s", name, exc)


def try_lease(ledger: Ledger, name: str, session_key: str, kind: str, *, stale_s: float) -> str | LeaseRow:
    """Take the lease on `name` without waiting: the token when taken, else the live holder."""
    token = secrets.token_hex(8)
    holder = ledger.acquire_lease(name, session_key, kind, token, stale_s=stale_s)
    return token if holder is None else holder
