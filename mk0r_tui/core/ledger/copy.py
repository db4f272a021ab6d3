"""`mk0r-tui ledger copy`: move every row of one ledger into another, SQLite ↔ Postgres.

Every table (`schema.TABLES`: sessions, resources, runs, journal, leases, ledger_meta with the
ledger's own id, so what it created stays recognisably its own) is copied with its ids, in one
transaction on the destination: a copy that fails leaves the destination as it was. Each table's
id counter is carried over (the journal's ids only grow, even past pruned rows: `events --since N`
resumes on the new ledger). The destination must be empty (a fresh ledger) unless `replace`
(then its rows are deleted first, in the same transaction). A source with a live lease (a run
in progress) is refused: stop the runs first, so nothing is written while it is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from mk0r_tui.core.errors import UsageError
from mk0r_tui.core.ledger.ledger import Ledger
from mk0r_tui.core.ledger.schema import COLUMNS, TABLES

#: rows read and written per statement
BATCH = 2000

#: the tables whose ids are counters
ID_TABLES = ("resources", "runs", "journal")

#: what "empty" means: a fresh ledger has its ledger_meta row (its id) and nothing else
DATA_TABLES = ("sessions", "resources", "runs", "journal", "leases", "pool_items")


@dataclass(frozen=True, slots=True)
class CopyReport:
    source: str
    destination: str
    rows: dict[str, int]

    def describe(self) -> str:
        counts = ", ".join(f"{n} {table}" for table, n in self.rows.items())
        return f"copied {self.source} → {self.destination}: {counts}"


def counts(ledger: Ledger) -> dict[str, int]:
    return {table: int(ledger._read(f"SELECT COUNT(*) FROM {table}")[0][0]) for table in TABLES}


def _order(table: str) -> str:
    return "id" if "id" in COLUMNS[table] else COLUMNS[table][0]


def copy_ledger(source: Ledger, destination: Ledger, *, replace: bool = False, stale_s: float = 15.0) -> CopyReport:
    if source.where == destination.where:
        raise UsageError("the source and the destination are the same ledger")
    live = source.live_leases(stale_s)
    if live:
        holder = next(iter(live.values()))
        raise UsageError(
            f"the source ledger has {len(live)} run(s) in progress (session {holder.session_key} is {holder.describe()}); "
            "copy when no process is provisioning or tearing down"
        )
    present = {table: n for table, n in counts(destination).items() if table in DATA_TABLES and n}
    if present and not replace:
        held = ", ".join(f"{n} {table}" for table, n in present.items())
        raise UsageError(f"the destination {destination.where} is not empty ({held}); pass --replace to delete its rows first")
    last_ids = {table: max(source._backend.last_id(table), _max_id(source, table)) for table in ID_TABLES}
    copied: dict[str, int] = {}
    with destination._transaction() as db:
        for table in reversed(TABLES):  # children first
            db.execute(f"DELETE FROM {table}")
        for table in TABLES:
            columns = COLUMNS[table]
            insert = f"INSERT INTO {table}({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            order = _order(table)
            done, offset = 0, 0
            while True:
                rows = source._read(
                    f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order} LIMIT {BATCH} OFFSET {offset}"
                )
                if not rows:
                    break
                db.executemany(insert, [tuple(r[c] for c in columns) for r in rows])
                done += len(rows)
                offset += len(rows)
            copied[table] = done
        for table, last in last_ids.items():
            destination._backend.set_last_id(db, table, last)
    after = counts(destination)
    wrong = {t: (copied[t], after[t]) for t in TABLES if copied[t] != after[t]}
    if wrong:  # cannot happen inside one transaction; said plainly if it ever does
        raise UsageError(f"the copy is incomplete: {wrong}")
    return CopyReport(source.where, destination.where, copied)


def _max_id(ledger: Ledger, table: str) -> int:
    return int(ledger._read(f"SELECT COALESCE(MAX(id), 0) FROM {table}")[0][0])
