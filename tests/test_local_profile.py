"""The main job on the local profile, with real parts: an embedded Postgres that we connect to
with the DATABASE_URL we wrote, a bare git repo we push to, a .env that python-dotenv reads."""

import os
import stat
import subprocess
from pathlib import Path

import psycopg
import pytest
from dotenv import dotenv_values

from mk0r_tui.core.models import Session, Status
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.teardown import delete_orphans, find_orphans, teardown_session


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
async def provisioned(runtime, session_key):
    report = await provision_services(runtime, Session.parse(session_key), runtime.plan())
    return runtime, report


async def test_local_profile_gives_a_working_database(provisioned):
    runtime, report = provisioned
    statuses = {r.name: r.status for r in report.results}
    assert statuses == {
        "posthog": Status.OK, "local-postgres": Status.OK, "local-mail": Status.OK, "local-git": Status.OK, "local-folder": Status.OK,
    }
    env = dotenv_values(report.env_file)
    with psycopg.connect(env["DATABASE_URL"], connect_timeout=5) as conn:
        conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
        conn.execute("INSERT INTO notes (body) VALUES (%s)", ("hello from the app",))
        assert conn.execute("SELECT body FROM notes").fetchone() == ("hello from the app",)
        assert conn.execute("SELECT current_user").fetchone() == (env["PGUSER"],)
    # the libpq variables alone are enough too
    with psycopg.connect(
        host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"], password=env["PGPASSWORD"], dbname=env["PGDATABASE"]
    ) as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (1,)


async def test_the_password_really_guards_the_database(provisioned):
    _, report = provisioned
    env = dotenv_values(report.env_file)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"], password="wrong", dbname=env["PGDATABASE"])


async def test_env_file_is_private_exact_and_ignored_by_git(provisioned):
    _, report = provisioned
    path = Path(report.env_file)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert dotenv_values(path) == dict(report.env)
    assert report.env["VITE_POSTHOG_APP_ID"] == f"mk0r-{report.session.key[:12]}"
    app = path.parent
    assert git("check-ignore", ".env", cwd=app).strip() == ".env"
    assert (app / "AGENTS.md").exists() and "DATABASE_URL" in (app / "AGENTS.md").read_text()
    for secret in (report.env["PGPASSWORD"],):
        assert secret not in (app / "AGENTS.md").read_text()


async def test_git_push_from_the_app_folder_reaches_the_provisioned_repo(provisioned):
    _, report = provisioned
    app = Path(report.env_file).parent
    (app / "index.html").write_text("<h1>hi</h1>\n")
    git("add", "-A", cwd=app)
    git("-c", "user.name=Agent", "-c", "user.email=agent@example.com", "commit", "-qm", "first", cwd=app)
    git("push", "-q", "origin", "main", cwd=app)
    bare = report.env["LOCAL_GIT_REPO"]
    files = git("ls-tree", "--name-only", "-r", "main", cwd=bare).split()
    assert "index.html" in files and ".gitignore" in files
    assert ".env" not in files, ".env must never reach the repo"


async def test_second_provision_creates_nothing_and_teardown_removes_everything(provisioned, session_key):
    runtime, report = provisioned
    rows_before = [(r.provider, r.kind, r.name, r.state) for r in runtime.ledger.resources(session_key)]
    again = await provision_services(runtime, Session.parse(session_key), runtime.plan())
    assert again.ok
    assert [(r.provider, r.kind, r.name, r.state) for r in runtime.ledger.resources(session_key)] == rows_before
    assert dotenv_values(again.env_file)["DATABASE_URL"] == report.env["DATABASE_URL"]

    env = dict(report.env)
    teardown = await teardown_session(runtime, session_key)
    assert teardown.ok
    assert {(o.resource.provider, o.resource.kind) for o in teardown.outcomes} == {
        ("local-postgres", "role"), ("local-postgres", "database"), ("local-mail", "mailbox"), ("local-git", "bare-repo"),
        ("local-folder", "app-folder"),
    }
    admin = await runtime.provider("local-postgres").admin()
    with psycopg.connect(admin.dsn()) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (env["PGDATABASE"],)).fetchone() is None
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (env["PGUSER"],)).fetchone() is None
    assert not Path(env["LOCAL_GIT_REPO"]).exists()
    assert not Path(report.env_file).exists()

    second = await teardown_session(runtime, session_key)
    assert second.ok and second.outcomes == ()
    assert not (runtime.settings.mail_dir / "boxes" / f"mk0r-{session_key[:12]}").exists()
    scan = await find_orphans(runtime, providers=["local-git", "local-folder", "local-mail"])
    assert scan.orphans == []


async def test_a_leftover_database_is_an_orphan(runtime, session_key):
    """A database named like ours with no ledger row (e.g. a ledger that was lost)."""
    session = Session.parse(session_key)
    admin = await runtime.provider("local-postgres").admin()
    with psycopg.connect(admin.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{session.pg_identifier}"')
    scan = await find_orphans(runtime, providers=["local-postgres"])
    mine = [o for o in scan.orphans if o.name == session.pg_identifier]
    assert [(o.kind, o.reason) for o in mine] == [("database", "no live session in the ledger owns it")]
    outcomes = await delete_orphans(runtime, mine)
    assert [o.outcome for o in outcomes] == ["deleted"]
    with psycopg.connect(admin.dsn()) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (session.pg_identifier,)).fetchone() is None
