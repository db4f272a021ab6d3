"""Ledgers for tests on both backends.

`pg_database(admin)` makes a fresh database on the session's embedded Postgres and gives its
URL; `test_ledger_location(home)` is where the test's own ledger lives: the SQLite file under
`home`, or, when the run is the Postgres pass (`MK0R_TEST_LEDGER=postgres`), `MK0R_LEDGER_URL`
(a fresh database per test, set by conftest's autouse fixture)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg

from mk0r_tui.core.ledger import Ledger

#: the second pass of the suite: every test's ledger on Postgres
POSTGRES_PASS = os.environ.get("MK0R_TEST_LEDGER", "sqlite").lower() in ("postgres", "postgresql", "pg")


def admin_url(admin, dbname: str = "postgres") -> str:
    return f"postgresql://{admin.user}:{quote(admin.password, safe='')}@{admin.host}:{admin.port}/{dbname}"


@contextlib.contextmanager
def pg_database(admin, prefix: str = "ledger") -> Iterator[str]:
    """A fresh, empty database for one test; dropped (connections and all) after it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url(admin, name)
    finally:
        with psycopg.connect(admin_url(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_ledger_location(home: Path) -> str | Path:
    """The ledger a CLI or a Runtime under data dir `home` opens in this pass."""
    url = os.environ.get("MK0R_LEDGER_URL")
    return url if url else Path(home) / "ledger.sqlite3"


def open_test_ledger(home: Path) -> Ledger:
    return Ledger(test_ledger_location(home))


test_ledger_location.__test__ = False  # type: ignore[attr-defined]  # not a test, despite its name
