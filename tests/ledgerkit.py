"""Ledgers for tests on both backends.

`pg_database(admin)` makes a fresh database on the session's embedded Postgres and gives its
URL. `location_for(home)` is where the ledger of data dir `home` lives in this pass: the SQLite
file under it, or, in the Postgres pass (`MK0R_TEST_LEDGER=postgres`), a database of its own:
the test's own data dir (MK0R_HOME) uses MK0R_LEDGER_URL (a fresh database per test, set by
conftest's autouse fixture), and every other data dir a test makes gets another fresh database
(two data dirs are two ledgers on both backends), dropped after the test. `ledger_env(home)`
is what a subprocess's environment needs for it; `open_test_ledger(home)` opens it."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg

from mk0r_tui.core.ledger import Ledger

#: the second pass of the suite: every test's ledger on Postgres
POSTGRES_PASS = os.environ.get("MK0R_TEST_LEDGER", "sqlite").lower() in ("postgres", "postgresql", "pg")

#: data dir → its database, for the running test (dropped by `drop_extra_databases`)
_EXTRA: dict[str, str] = {}


def admin_url(admin, dbname: str = "postgres") -> str:
    return f"postgresql://{admin.user}:{quote(admin.password, safe='')}@{admin.host}:{admin.port}/{dbname}"


def _with_db(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, parts.fragment))


def create_database(url_on_server: str, prefix: str = "ledger") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_with_db(url_on_server, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_db(url_on_server, name)


def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(_with_db(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def pg_database(admin, prefix: str = "ledger") -> Iterator[str]:
    """A fresh, empty database for one test; dropped (connections and all) after it."""
    url = create_database(admin_url(admin), prefix)
    try:
        yield url
    finally:
        drop_database(url)


def location_for(home: Path | str) -> str | Path:
    """The ledger of data dir `home` in this pass (see the module's doc)."""
    url = os.environ.get("MK0R_LEDGER_URL")
    if not POSTGRES_PASS or not url:
        return Path(home) / "ledger.sqlite3"
    own = os.environ.get("MK0R_HOME")
    key = str(Path(home).resolve())
    if own and key == str(Path(own).resolve()):
        return url
    if key not in _EXTRA:
        _EXTRA[key] = create_database(url)
    return _EXTRA[key]


def ledger_env(home: Path | str) -> dict[str, str]:
    """The environment a subprocess with data dir `home` needs to open its ledger."""
    where = location_for(home)
    return {"MK0R_LEDGER_URL": where} if isinstance(where, str) else {}


def open_test_ledger(home: Path | str) -> Ledger:
    return Ledger(location_for(home))


def drop_extra_databases() -> None:
    while _EXTRA:
        _, url = _EXTRA.popitem()
        with contextlib.suppress(psycopg.Error):
            drop_database(url)
