"""The ledger (see `ledger.py`): one interface, two backends (SQLite file, shared Postgres).

Every name callers used from the single-module `core/ledger.py` is re-exported here, so no
import changes: `from mk0r_tui.core.ledger import Ledger, ResourceRow, ...`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mk0r_tui.core.ledger.backends import (
    JOURNAL_CHANNEL,
    connect_direct,
    is_postgres_url,
    mask_url,
)
from mk0r_tui.core.ledger.ledger import Ledger
from mk0r_tui.core.ledger.rows import (
    HOST,
    HOST_ID,
    LIVE_STATES,
    JournalRow,
    LeaseRow,
    LedgerError,
    ResourceRow,
    RunRow,
    SessionRow,
    journal_query,
    journal_row,
    pid_alive,
)
from mk0r_tui.core.ledger.schema import COLUMNS, MIGRATIONS, SCHEMA, SCHEMA_VERSION, TABLES

if TYPE_CHECKING:
    from mk0r_tui.core.config import Settings


def ledger_location(settings: Settings) -> str:
    """Where `settings` put the ledger: `MK0R_LEDGER_URL` if set, else the SQLite file under the data dir."""
    return settings.ledger_url or str(settings.ledger_path)


def open_ledger(settings: Settings, *, migrate: bool | None = None) -> Ledger:
    """The ledger `settings` name: Postgres when `MK0R_LEDGER_URL` is a postgresql:// URL, else
    the SQLite file under the data dir (created with it)."""
    if settings.ledger_url:
        return Ledger(settings.ledger_url, migrate=migrate)
    settings.ensure_data_dir()
    return Ledger(settings.ledger_path, migrate=migrate)


__all__ = [
    "COLUMNS", "HOST", "HOST_ID", "JOURNAL_CHANNEL", "LIVE_STATES", "MIGRATIONS", "SCHEMA", "SCHEMA_VERSION", "TABLES",
    "JournalRow", "LeaseRow", "Ledger", "LedgerError", "ResourceRow", "RunRow", "SessionRow",
    "connect_direct", "is_postgres_url", "journal_query", "journal_row", "ledger_location", "mask_url",
    "open_ledger", "pid_alive",
]
