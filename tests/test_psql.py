"""The local profile's Postgres work goes through `psql` (providers/psql.py): the SCRAM secret it
stores, how errors and half-done scripts come back, that nothing secret reaches a command line,
and that a role someone else made is refused without leaving an intent behind. Real server: the
session's embedded Postgres."""

from __future__ import annotations

import asyncio
import base64
import socket

import psycopg
import pytest

from mk0r_tui.core.models import Session, Status
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.teardown import teardown_session
from mk0r_tui.providers import psql
from mk0r_tui.providers.embedded_pg import binary
from mk0r_tui.providers.psql import PsqlRun, ScriptError, Target, scram_sha_256_secret


def admin_target(pg_admin) -> Target:
    return Target(pg_admin.host, pg_admin.port, pg_admin.user, pg_admin.password)


@pytest.mark.parametrize("password", ["a", "correct-horse_battery_staple", "Zx9-_" * 10, "p@ss w0rd!~"])
def test_the_scram_secret_is_libpqs_byte_for_byte(pg_admin, password):
    """libpq's PQencryptPasswordConn draws its own salt: recomputed with that salt and iteration
    count, ours must be the same string."""
    with psycopg.connect(pg_admin.dsn()) as conn:
        theirs = conn.pgconn.encrypt_password(password.encode(), b"anyone", b"scram-sha-256").decode()
    head, _, _keys = theirs.partition("$")[2].partition("$")
    iterations, salt = head.split(":")
    assert scram_sha_256_secret(password, salt=base64.b64decode(salt), iterations=int(iterations)) == theirs
    assert scram_sha_256_secret(password) != scram_sha_256_secret(password)  # a fresh salt each time


@pytest.mark.parametrize("password", ["", "pässword", "tab\there"])
def test_a_password_saslprep_could_change_is_refused(password):
    with pytest.raises(ValueError):
        scram_sha_256_secret(password)


async def test_a_failing_statement_gives_its_sqlstate_message_and_the_markers_passed(pg_admin):
    script = f"\\echo {psql.MARK}first\nSELECT 1/0;\n\\echo {psql.MARK}second\n"
    with pytest.raises(ScriptError) as caught:
        await psql.run(binary("psql"), admin_target(pg_admin), script, call="test")
    assert caught.value.sqlstate == "22012"
    assert caught.value.marks == ["first"]
    assert str(caught.value) == "test: division by zero"


async def test_rows_come_back_split_and_markers_apart(pg_admin):
    out = await psql.run(binary("psql"), admin_target(pg_admin),
                         f"SELECT 'a', 1 UNION ALL SELECT 'b\tc', 2;\n\\echo {psql.MARK}done\n", call="test")
    assert out.rows == [["a", "1"], ["b", "c", "2"]]  # a tab inside a value is the caller's to avoid
    assert out.marks == ["done"]


async def test_no_server_and_a_wrong_password_are_connection_errors_that_say_where(pg_admin):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(ScriptError) as refused:
            await psql.run(binary("psql"), Target("127.0.0.1", port, "postgres", "x"), "SELECT 1;\n", call="test")
    assert refused.value.call == "connect"
    assert refused.value.args[0].startswith(f"cannot connect to Postgres at 127.0.0.1:{port}: ")
    assert "refused" in refused.value.args[0].lower()

    wrong = Target(pg_admin.host, pg_admin.port, pg_admin.user, "not-the-password")
    with pytest.raises(ScriptError) as denied:
        await psql.run(binary("psql"), wrong, "SELECT 1;\n", call="test")
    assert denied.value.call == "connect"
    assert "password authentication failed" in denied.value.args[0]
    assert "not-the-password" not in str(denied.value)


async def test_a_cancelled_script_kills_psql(pg_admin):
    run = await PsqlRun(binary("psql"), admin_target(pg_admin), call="test").start()
    task = asyncio.create_task(run.run("SELECT pg_sleep(60);\n"))
    deadline = asyncio.get_running_loop().time() + 30
    with psycopg.connect(pg_admin.dsn(), autocommit=True) as conn:
        while not conn.execute("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'").fetchone():
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert run.proc is not None and run.proc.returncode is not None


async def test_the_sessions_password_reaches_psql_only_as_a_scram_secret_on_stdin(runtime, session_key, monkeypatch):
    seen: list[tuple[tuple[str, ...], dict[str, str]]] = []
    scripts: list[str] = []
    real_exec, real_run = asyncio.create_subprocess_exec, PsqlRun.run

    async def spying_exec(*argv, **kwargs):
        seen.append((tuple(argv), dict(kwargs.get("env") or {})))
        return await real_exec(*argv, **kwargs)

    async def spying_run(self, script):
        scripts.append(script)
        return await real_run(self, script)

    monkeypatch.setattr(psql.asyncio, "create_subprocess_exec", spying_exec)
    monkeypatch.setattr(PsqlRun, "run", spying_run)
    report = await provision_services(runtime, Session.parse(session_key), runtime.plan())
    assert report.ok, [(r.name, r.error) for r in report.results]
    password = report.env["PGPASSWORD"]
    psql_calls = [(argv, env) for argv, env in seen if argv[0].endswith("/psql")]
    assert psql_calls
    for argv, env in psql_calls:
        assert not any(password in a for a in argv) and "SCRAM-SHA-256$" not in " ".join(argv)
        assert password not in env.values() and not any(k.startswith("PG") and k not in (
            "PGPASSWORD", "PGPASSFILE", "PGSYSCONFDIR", "PGCLIENTENCODING") for k in env)
    assert scripts and all(password not in s for s in scripts)
    assert any("PASSWORD 'SCRAM-SHA-256$4096:" in s for s in scripts)
    await teardown_session(runtime, session_key)


async def test_a_role_someone_else_made_is_refused_and_no_intent_is_left(runtime, session_key, pg_admin):
    name = Session.parse(session_key).pg_identifier
    with psycopg.connect(pg_admin.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{name}"')
    try:
        report = await provision_services(runtime, Session.parse(session_key), runtime.plan())
        result = next(r for r in report.results if r.name == "local-postgres")
        assert result.status is Status.FAILED
        assert f"role {name} already exists and the ledger does not say it is this session's" in (result.error or "")
        rows = runtime.ledger.resources(session_key, provider="local-postgres", live_only=True)
        assert rows == []  # both intents closed: nothing of this session's to tear down there
        await teardown_session(runtime, session_key)
        with psycopg.connect(pg_admin.dsn()) as conn:  # the other role is untouched
            assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None
    finally:
        with psycopg.connect(pg_admin.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{name}"')
