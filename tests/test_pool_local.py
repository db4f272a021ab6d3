"""The warm pool on the local profile (issue 14): real embedded Postgres, real bare git repos.

A claimed local database must accept the `DATABASE_URL` of the session's `.env`, and the pool's
name, role and password must work for no one afterwards."""

from __future__ import annotations

import psycopg
import pytest

from mk0r_tui.core import pool_store as store
from mk0r_tui.core.config import load_settings
from mk0r_tui.core.envfile import read_env_file
from mk0r_tui.core.errors import UsageError
from mk0r_tui.core.models import Session
from mk0r_tui.engine import pool, pool_upkeep
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.engine.teardown import find_orphans, teardown_session
from mk0r_tui.providers import DEFAULT_REGISTRY

pytestmark = pytest.mark.slow


def local_runtime(**overrides) -> Runtime:
    settings = load_settings(**{"profile": "local", "target": "local", "pool_size": 1, **overrides})
    return Runtime(settings, registry=DEFAULT_REGISTRY)


async def test_a_claimed_local_database_takes_the_env_url_and_the_pool_name_works_for_no_one(session_key):
    runtime = local_runtime()
    try:
        made = await pool_upkeep.fill(runtime, {"local-postgres": 1, "local-git": 1})
        assert made == {"local-postgres": 1, "local-git": 1}
        (item,) = store.items(runtime.ledger, provider="local-postgres", states=(store.READY,))
        pooled_env = pool.cipher(runtime).open(item.secret)
        old_ident = "mk0r_" + item.id.replace("-", "_")
        assert pooled_env["PGUSER"] == old_ident
        # the pooled database works before the claim, with the pool's own password
        with psycopg.connect(pooled_env["DATABASE_URL"]) as conn:
            assert conn.execute("select current_user").fetchone()[0] == old_ident

        session = Session.parse(session_key)
        report = await provision_services(runtime, session, runtime.plan())
        by_name = {r.name: r for r in report.results}
        assert by_name["local-postgres"].from_pool and by_name["local-git"].from_pool
        assert not by_name["local-mail"].from_pool  # not poolable: created as today

        env = read_env_file(runtime.settings.env_file_for(session.slug))
        assert env["PGUSER"] == env["PGDATABASE"] == session.pg_identifier
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            assert conn.execute("select current_user, current_database()").fetchone() == (
                session.pg_identifier, session.pg_identifier)
            conn.execute("create table t (x int)")
        # the old name, role and password: refused for everyone
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pooled_env["DATABASE_URL"], connect_timeout=5).close()
        old_role_new_db = pooled_env["DATABASE_URL"].rsplit("/", 1)[0] + "/" + session.pg_identifier
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(old_role_new_db, connect_timeout=5).close()
        # the bare repo was renamed into the session's name and the .env points at it
        assert env["LOCAL_GIT_REPO"].endswith(f"{session.resource_name}.git")
        assert (runtime.settings.repos_dir / f"{session.resource_name}.git" / "HEAD").exists()
        # the ledger rows follow: the session owns them under its own names, the item is claimed
        rows = {(r.provider, r.kind): r.name for r in runtime.ledger.resources(session.key, live_only=True)}
        assert rows[("local-postgres", "database")] == session.pg_identifier
        assert rows[("local-git", "bare-repo")] == session.resource_name
        assert store.item_of(runtime.ledger, item.id).claimed_by == session.key
        # nothing of the pool is an orphan, and the pool's holding sessions are not sessions
        scan = await find_orphans(runtime)  # (the embedded Postgres is shared with other tests: only ours count)
        ours = {session.pg_identifier, old_ident, session.resource_name}
        assert [o for o in scan.orphans if o.name in ours or o.name.startswith(("mk0r-pool-", "mk0r_pool_"))
                and o.name[5:].replace("_", "-") in {i.id for i in store.items(runtime.ledger)}] == []
        assert [s.key for s in runtime.ledger.list_sessions()] == [session.key]

        report = await teardown_session(runtime, session.key)
        assert report.ok
        assert not (runtime.settings.repos_dir / f"{session.resource_name}.git").exists()
    finally:
        await pool_upkeep.drain(runtime)
        await runtime.aclose()
        runtime.close()


async def test_without_a_ready_item_the_slot_creates_as_today_and_drain_empties_the_pool(session_key):
    runtime = local_runtime(pool_size=0)
    try:
        session = Session.parse(session_key)
        report = await provision_services(runtime, session, runtime.plan())
        assert report.ok and not any(r.from_pool for r in report.results)
        # a ready repo item, then drain: its bare repo is gone and its item drained
        await pool_upkeep.fill(runtime, {"local-git": 2})
        ready = store.items(runtime.ledger, provider="local-git", states=(store.READY,))
        assert len(ready) == 2
        drained = await pool_upkeep.drain(runtime)
        assert sorted(drained) == sorted(i.id for i in ready)
        assert not list(runtime.settings.repos_dir.glob("mk0r-pool-*"))
        assert pool_upkeep.levels(runtime) == {}
        await teardown_session(runtime, session.key)
    finally:
        await runtime.aclose()
        runtime.close()


def test_session_keys_may_not_take_the_pool_prefix():
    with pytest.raises(UsageError, match="reserves"):
        Session.parse("pool-1234567")
