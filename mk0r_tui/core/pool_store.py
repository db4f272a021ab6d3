"""The warm pool's rows in the ledger (issue 14): one row per pooled item, beside the ledger's
own tables, with every state change in one transaction.

An item is one provider's resources made ahead of time for a *holding session* whose key is
`pool-<7 hex>` (so its slug is the same and every resource is named `mk0r-pool-<7 hex>`). Its
resources are ordinary ledger rows of that holding session: intent before create, id after, so
crash safety, `orphans` and teardown treat them like any session's. A claim moves those rows to
the claiming session and the item to `claimed` in one `BEGIN IMMEDIATE` transaction: two
processes never get the same item, and an item is never lost between them.

States: `filling` (its creates run, under the holding session's lease) → `ready` → `claimed`
(→ finish `pending` → `done` | `failed`: the renames after the `.env`), or `ready`/`filling`
(owner gone)/`failed` → `draining` → `drained`. The env is stored only sealed (core/pool_crypto).

The table is the ledger's own (schema step 6, core/ledger/schema.py), so `ledger copy` moves it
with the rest. On SQLite a claim is one `BEGIN IMMEDIATE`; on Postgres one
transaction that takes the oldest ready row with `FOR UPDATE SKIP LOCKED`.
"""

from __future__ import annotations

import sqlite3
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mk0r_tui.core.envfile import scrub
from mk0r_tui.core.ledger import LIVE_STATES, LeaseRow, Ledger
from mk0r_tui.core.ledger.backends import WRITE_LOCK
from mk0r_tui.core.models import POOL_KEY_PREFIX, RESOURCE_PREFIX, ResourceState

FILLING, READY, CLAIMED, DRAINING, DRAINED, FAILED = "filling", "ready", "claimed", "draining", "drained", "failed"
FINISH_PENDING, FINISH_DONE, FINISH_FAILED = "pending", "done", "failed"
#: how a result that came from the pool begins its note (the runs table keeps it: claim latencies)
FROM_POOL_NOTE = "from the warm pool"
#: the name prefix of every pooled resource before its claim's finishing touches
POOL_NAME_PREFIX = RESOURCE_PREFIX + POOL_KEY_PREFIX


#: Postgres advisory lock keys (class "mk0", see core/ledger/backends.py) a claim may take: one per
#: claiming session, far from the ledger's own (1-3)
CLAIM_LOCK_BASE = 1 << 20
CLAIM_LOCK_SPAN = 1 << 20


@dataclass(frozen=True, slots=True)
class PoolItem:
    id: str
    provider: str
    state: str
    created_at: float
    ready_at: float | None
    claimed_by: str | None
    claimed_at: float | None
    secret: str | None
    finish: str | None
    finish_error: str | None
    finish_attempts: int
    claim_ms: float | None = None

    @property
    def holding_key(self) -> str:
        """The holding session's key (the item's id): its resources' names are `mk0r-<id>`."""
        return self.id


def _item(r: sqlite3.Row) -> PoolItem:
    return PoolItem(
        r["id"], r["provider"], r["state"], float(r["created_at"]), r["ready_at"], r["claimed_by"], r["claimed_at"],
        r["secret"], r["finish"], r["finish_error"], int(r["finish_attempts"] or 0), r["claim_ms"],
    )


def begin_fill(ledger: Ledger, item_id: str, provider: str) -> None:
    """Record the item as `filling` before any create (its holding session exists already)."""
    now = time.time()
    ledger._write(
        "INSERT INTO pool_items(id, provider, state, created_at, updated_at) VALUES (?,?,?,?,?)",
        (item_id, provider, FILLING, now, now),
    )


def fill_done(ledger: Ledger, item_id: str, sealed: str) -> None:
    now = time.time()
    ledger._write(
        "UPDATE pool_items SET state = ?, secret = ?, ready_at = ?, updated_at = ? WHERE id = ? AND state = ?",
        (READY, sealed, now, now, item_id, FILLING),
    )


def set_state(ledger: Ledger, item_id: str, state: str, *, error: str | None = None) -> None:
    ledger._write(
        "UPDATE pool_items SET state = ?, finish_error = COALESCE(?, finish_error), updated_at = ? WHERE id = ?",
        (state, scrub(error) if error else None, time.time(), item_id),
    )


def ready_providers(ledger: Ledger) -> set[str]:
    """The providers with a ready item now (one read: which slots a run may claim)."""
    return {r["provider"] for r in ledger._read("SELECT DISTINCT provider FROM pool_items WHERE state = ?", (READY,))}


def claim(ledger: Ledger, provider: str, session_key: str, *, fresher_than: float) -> PoolItem | None:
    """Take the oldest ready item of `provider` made after `fresher_than` (epoch seconds) for
    `session_key`, in one `BEGIN IMMEDIATE` transaction: the item becomes `claimed` (finish
    `pending`), its live resource rows become the session's, its holding session `deleted`."""
    return claim_many(ledger, (provider,), session_key, fresher_than=fresher_than).get(provider)


def claim_many(ledger: Ledger, providers: Sequence[str], session_key: str, *, fresher_than: float) -> dict[str, PoolItem]:
    """`claim` for each of `providers`, in one transaction: a run the pool serves whole commits
    its claims once (the providers it got an item for; the others are not in the result)."""
    started = time.perf_counter()
    now = time.time()
    postgres = ledger.backend == "postgres"
    # SQLite: `BEGIN IMMEDIATE` (one writer at a time). Postgres: the oldest ready row nobody else
    # holds (`FOR UPDATE SKIP LOCKED`), so claimers never queue behind each other; the advisory
    # lock every ledger transaction takes is keyed by this claim alone (uncontended), never the
    # ledger's shared write lock.
    lock = CLAIM_LOCK_BASE + zlib.crc32(session_key.encode()) % CLAIM_LOCK_SPAN if postgres else WRITE_LOCK
    taken: dict[str, PoolItem] = {}
    with ledger._transaction(lock) as db:
        for provider in providers:
            row = db.execute(
                "SELECT * FROM pool_items WHERE provider = ? AND state = ? AND ready_at >= ? ORDER BY ready_at, id LIMIT 1"
                + (" FOR UPDATE SKIP LOCKED" if postgres else ""),
                (provider, READY, fresher_than),
            ).fetchone()
            if row is None:
                continue
            item = _item(row)
            claim_ms = (time.perf_counter() - started) * 1000
            db.execute(
                # the sealed env goes to the claimer only: the ledger keeps no copy once it is claimed
                "UPDATE pool_items SET state = ?, claimed_by = ?, claimed_at = ?, claim_ms = ?, finish = ?, updated_at = ?,"
                " secret = NULL WHERE id = ?",
                (CLAIMED, session_key, now, claim_ms, FINISH_PENDING, now, item.id),
            )
            db.execute(
                f"UPDATE resources SET session_key = ?, updated_at = ? WHERE session_key = ?"
                f" AND state IN ({','.join('?' * len(LIVE_STATES))})",
                (session_key, now, item.id, *LIVE_STATES),
            )
            db.execute("UPDATE sessions SET state = 'deleted', updated_at = ? WHERE key = ?", (now, item.id))
            taken[provider] = PoolItem(item.id, item.provider, CLAIMED, item.created_at, item.ready_at, session_key, now,
                                       item.secret, FINISH_PENDING, None, 0, claim_ms)
    return taken


def take_for_drain(ledger: Ledger, item_ids: list[str]) -> list[PoolItem]:
    """Mark unclaimed items `draining` in one transaction (so no claim takes them meanwhile)."""
    if not item_ids:
        return []
    now = time.time()
    taken: list[PoolItem] = []
    lock_rows = " FOR UPDATE" if ledger.backend == "postgres" else ""  # waits for a claim of it in flight
    with ledger._transaction() as db:
        for item_id in item_ids:
            row = db.execute("SELECT * FROM pool_items WHERE id = ?" + lock_rows, (item_id,)).fetchone()
            if row is None or row["state"] in (CLAIMED, DRAINED):
                continue
            db.execute("UPDATE pool_items SET state = ?, updated_at = ? WHERE id = ?", (DRAINING, now, item_id))
            taken.append(_item(row))
    return taken


def items(ledger: Ledger, *, provider: str | None = None, states: tuple[str, ...] | None = None) -> list[PoolItem]:
    clauses, params = [], list[Any]()
    if provider is not None:
        clauses.append("provider = ?")
        params.append(provider)
    if states:
        clauses.append(f"state IN ({','.join('?' * len(states))})")
        params.extend(states)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return [_item(r) for r in ledger._read(f"SELECT * FROM pool_items {where} ORDER BY created_at, id", params)]


def item_of(ledger: Ledger, item_id: str) -> PoolItem | None:
    rows = ledger._read("SELECT * FROM pool_items WHERE id = ?", (item_id,))
    return _item(rows[0]) if rows else None


def claims_of(ledger: Ledger, session_key: str) -> list[PoolItem]:
    return [_item(r) for r in ledger._read("SELECT * FROM pool_items WHERE claimed_by = ? ORDER BY claimed_at", (session_key,))]


def unfinished_claims(ledger: Ledger) -> list[PoolItem]:
    return [_item(r) for r in ledger._read(
        "SELECT * FROM pool_items WHERE state = ? AND finish IN (?, ?) ORDER BY claimed_at", (CLAIMED, FINISH_PENDING, FINISH_FAILED)
    )]


def finish_result(ledger: Ledger, item_id: str, *, error: str | None) -> None:
    """The finishing touches of a claimed item: done, or failed with why (retried later)."""
    if error is None:
        ledger._write(
            "UPDATE pool_items SET finish = ?, finish_error = NULL, secret = NULL, updated_at = ? WHERE id = ?",
            (FINISH_DONE, time.time(), item_id),
        )
    else:
        ledger._write(
            "UPDATE pool_items SET finish = ?, finish_error = ?, finish_attempts = finish_attempts + 1, updated_at = ?"
            " WHERE id = ?",
            (FINISH_FAILED, scrub(error), time.time(), item_id),
        )


def rename_resource(ledger: Ledger, resource_id: int, name: str, remote_id: str | None, url: str | None) -> None:
    """A resource renamed upstream (a claim's finishing touch): its row follows."""
    ledger._write(
        "UPDATE resources SET name = ?, remote_id = COALESCE(?, remote_id), url = COALESCE(?, url), updated_at = ?"
        " WHERE id = ?",
        (name, remote_id, url, time.time(), resource_id),
    )


def claimed_total(ledger: Ledger) -> dict[str, int]:
    rows = ledger._read("SELECT provider, COUNT(*) AS n FROM pool_items WHERE state = ? GROUP BY provider", (CLAIMED,))
    return {r["provider"]: int(r["n"]) for r in rows}


def claim_latencies(ledger: Ledger, limit: int = 200) -> list[float]:
    """The latest claims' whole time per provider (claim, local renames, env), as the runs
    table records every provider's latency: no extra write on the claim's path."""
    rows = ledger._read(
        "SELECT latency_ms FROM runs WHERE note LIKE ? AND latency_ms IS NOT NULL ORDER BY id DESC LIMIT ?",
        (FROM_POOL_NOTE + "%", limit),
    )
    return [float(r["latency_ms"]) for r in rows]


def live(item: PoolItem, leases: dict[str, LeaseRow]) -> bool:
    """A `filling` item whose holding session's lease is live: its creates are running."""
    return (RESOURCE_PREFIX + item.id) in leases


def is_pool_session(key: str) -> bool:
    return key.startswith(POOL_KEY_PREFIX)


__all__ = [
    "CLAIMED", "DRAINED", "DRAINING", "FAILED", "FILLING", "FINISH_DONE", "FINISH_FAILED", "FINISH_PENDING",
    "POOL_NAME_PREFIX", "READY", "PoolItem", "ResourceState",
]
