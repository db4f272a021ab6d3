"""Shared fixtures. Every test gets its own data dir, no keyring and no provisioning keys,
so nothing on the developer's machine leaks in. One embedded Postgres serves the whole run
(each test uses its own session keys, so their databases never collide)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from apispec import *  # noqa: F403  (the respx_spec fixture)

from mk0r_tui.core.credentials import KEY_NAMES
from mk0r_tui.providers import DEFAULT_REGISTRY

CLOUD_ENV = KEY_NAMES + (
    "MK0R_LOCAL_POSTGRES_URL", "MK0R_PROFILE", "MK0R_TARGET", "NEON_ORG_ID", "RESEND_DOMAIN_ID",
    "GITHUB_OWNER", "POSTHOG_HOST", "E2B_DOMAIN", "E2B_API_URL",
)


@pytest.fixture(scope="session")
def shared_postgres_dir() -> Path:
    """Outside pytest's basetemp on purpose: pytest prunes old basetemps, and a concurrent
    run pruning ours would pull the data dir from under a live server."""
    import shutil
    import tempfile

    from mk0r_tui.providers.embedded_pg import EmbeddedPostgres

    path = Path(tempfile.mkdtemp(prefix="mk0r-test-pg-"))
    yield path
    EmbeddedPostgres(path).stop()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_admin(shared_postgres_dir):
    """The session's embedded Postgres (started on first use): its superuser's address."""
    from mk0r_tui.providers.embedded_pg import EmbeddedPostgres

    return EmbeddedPostgres(shared_postgres_dir).ensure_running()


@pytest.fixture
def pg_ledger_url(pg_admin):
    """A fresh, empty database on the embedded Postgres for a team-mode ledger."""
    from ledgerkit import pg_database

    with pg_database(pg_admin) as url:
        yield url


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch, shared_postgres_dir, request) -> Path:
    """MK0R_HOME in tmp, keyring off (the fail backend), no cloud keys. In the Postgres pass
    (`MK0R_TEST_LEDGER=postgres`) every test also gets a fresh ledger database, named by
    MK0R_LEDGER_URL (subprocesses inherit it), unless marked `sqlite_only`."""
    home = tmp_path / "mk0r-home"
    monkeypatch.setenv("MK0R_HOME", str(home))
    monkeypatch.setenv("MK0R_POSTGRES_DIR", str(shared_postgres_dir))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    for name in CLOUD_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MK0R_LEDGER_URL", raising=False)
    from ledgerkit import POSTGRES_PASS

    if POSTGRES_PASS and request.node.get_closest_marker("sqlite_only") is None:
        url = request.getfixturevalue("pg_ledger_url")
        monkeypatch.setenv("MK0R_LEDGER_URL", url)
    return home


@pytest.fixture(autouse=True)
def stop_mail_catchers(tmp_path):
    """A local-profile provision starts a mail catcher daemon under its data dir and keeps it
    warm; a test's data dirs live in its tmp_path, so stop every catcher found there after it."""
    yield
    from mk0r_tui.providers.mail_catcher import MailCatcher

    for state in [*tmp_path.glob("*/mail/catcher.json"), *tmp_path.glob("*/*/mail/catcher.json")]:
        MailCatcher(state.parent).stop()


@pytest.fixture
def mk0r_home(isolated_env) -> Path:
    return isolated_env


@pytest.fixture
def session_key() -> str:
    """A fresh key whose 12-character slug is unique in this run."""
    return uuid.uuid4().hex[:12] + "-test"


@pytest.fixture
async def runtime(mk0r_home):
    from mk0r_tui.engine.runtime import Runtime

    rt = Runtime(registry=DEFAULT_REGISTRY)
    yield rt
    await rt.aclose()
    rt.close()


class MemoryKeyring:
    """A working keyring backend in a dict, so tests never touch the machine's real one."""

    priority = 1

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        if (service, username) not in self.store:
            raise PasswordDeleteError(username)
        del self.store[(service, username)]


@pytest.fixture
def memory_keyring():
    import keyring
    from keyring.backend import KeyringBackend

    previous = keyring.get_keyring()
    backend = type("MemoryKeyringBackend", (MemoryKeyring, KeyringBackend), {})()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def pytest_collection_modifyitems(config, items):
    """The Postgres pass skips what is about the SQLite file itself (it ran in the SQLite pass)."""
    from ledgerkit import POSTGRES_PASS

    if not POSTGRES_PASS:
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            why = marker.args[0] if marker.args else marker.kwargs.get("reason", "about the SQLite ledger file")
            item.add_marker(pytest.mark.skip(reason=f"sqlite-only: {why}"))


def pytest_terminal_summary(terminalreporter):
    """Print what tests recorded as `record_property("summary", text)` (figures such as the
    crash harness's kill count), also from xdist workers, whose stdout is not shown."""
    summaries = [
        value
        for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
        if getattr(report, "when", "call") == "call"
        for name, value in getattr(report, "user_properties", [])
        if name == "summary"
    ]
    if summaries:
        terminalreporter.section("figures")
        for text in summaries:
            terminalreporter.write_line(text)
