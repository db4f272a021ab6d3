"""The warm pool against the fake upstream (issue 14): real providers, real HTTP on loopback.

Claims give a session its Neon project, Resend segment + key and GitHub repo from the pool; the
renames after the `.env` (and their repair when one fails); `pool drain` + `teardown` leave the
fake empty; pooled items are never orphans."""

from __future__ import annotations

import pytest
from crashkit import upstream_resources
from poolkit import FAKE_CONFIG, POOLED, fake, runtime  # noqa: F401  (fixtures)

from mk0r_tui.core import pool_store as store
from mk0r_tui.core.envfile import read_env_file
from mk0r_tui.core.models import Session
from mk0r_tui.engine import pool_upkeep
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.teardown import find_orphans, teardown_session

pytestmark = pytest.mark.slow





def names(state: dict) -> dict[str, list[str]]:
    return {
        "neon": [p["name"] for p in state["neon"]],
        "segments": [s["name"] for s in state["resend"]["segments"]],
        "keys": [k["name"] for k in state["resend"]["api_keys"]],
        "repos": [r["full_name"].split("/", 1)[1] for r in state["github"]],
    }


async def test_a_claim_gives_every_pooled_provider_and_the_renames_follow_the_env(runtime, fake, session_key):
    made = await pool_upkeep.fill(runtime, {p: 1 for p in POOLED})
    assert made == {p: 1 for p in POOLED}
    items = {i.provider: i.id for i in store.items(runtime.ledger, states=(store.READY,))}
    assert set(items) == set(POOLED)
    # ready items are neither sessions nor orphans
    assert runtime.ledger.list_sessions() == []
    assert (await find_orphans(runtime, older_than_s=0, providers=list(POOLED))).orphans == []

    session = Session.parse(session_key)
    requests_before = fake.state()["requests"]["all"]["total"]
    report = await provision_services(runtime, session, runtime.plan())
    assert report.ok
    by_name = {r.name: r for r in report.results}
    assert all(by_name[p].from_pool for p in POOLED) and not by_name["posthog"].from_pool
    assert all(by_name[p].to_json()["from_pool"] is True for p in POOLED)
    # the claim sent no create: only PostHog's capture went upstream
    after = fake.state()["requests"]
    assert after["all"]["total"] - requests_before == after["posthog"]["total"]

    env = read_env_file(runtime.settings.env_file_for(session.slug))
    repo_item = items["github"]
    assert env["GITHUB_REPO"].endswith(f"/mk0r-{repo_item}")  # meanwhile: the pool's name (GitHub redirects it)
    assert env["DATABASE_URL"] and env["RESEND_API_KEY"].startswith("re_")

    outcomes = await pool_upkeep.finish_claims(runtime, session.key)
    assert {o.provider for o in outcomes} == set(POOLED) and all(o.error is None for o in outcomes)
    upstream = names(fake.state())
    assert upstream == {"neon": [session.resource_name], "segments": [f"{session.resource_name} Users"],
                        "keys": [session.resource_name], "repos": [session.resource_name]}
    renamed = read_env_file(runtime.settings.env_file_for(session.slug))
    assert renamed["GITHUB_REPO"].endswith(f"/{session.resource_name}")
    assert renamed["GIT_REMOTE_URL"].endswith(f"/{session.resource_name}.git")
    assert renamed["DATABASE_URL"] == env["DATABASE_URL"]  # Neon's URI does not name the project
    assert renamed["RESEND_API_KEY"] == env["RESEND_API_KEY"]
    rows = {(r.provider, r.kind): r for r in runtime.ledger.resources(session.key, live_only=True)}
    assert rows[("github", "repo")].remote_id.endswith(f"/{session.resource_name}")
    assert rows[("resend", "segment")].name == f"{session.resource_name} Users"
    assert pool_upkeep.status(runtime)["unfinished_claims"] == []
    assert pool_upkeep.status(runtime)["providers"]["neon"] == {
        "target": 1, "ready": 0, "filling": 0, "claimed_total": 1, "oldest_age_s": None, "abandoned": 0, "failed": 0}
    assert (await find_orphans(runtime, older_than_s=0, providers=list(POOLED))).orphans == []

    report = await teardown_session(runtime, session.key)
    assert report.ok
    assert upstream_resources(fake.state()) == []


async def test_a_failed_rename_is_visible_and_the_keeper_repairs_it(runtime, fake, session_key, monkeypatch):
    await pool_upkeep.fill(runtime, {"github": 1})
    session = Session.parse(session_key)
    await provision_services(runtime, session, runtime.plan())
    pooled_env = read_env_file(runtime.settings.env_file_for(session.slug))
    fake.control(faults=[{"provider": "github", "method": "PATCH", "status": 422, "times": 1}])

    (outcome,) = await pool_upkeep.finish_claims(runtime, session.key)
    assert outcome.error and "422" in outcome.error
    # visible: in `pool status` and as a line on the session's github panel (through the journal)
    (unfinished,) = pool_upkeep.status(runtime)["unfinished_claims"]
    assert unfinished["session"] == session.key and unfinished["finish"] == "failed" and unfinished["attempts"] == 1
    lines = [r.fields.get("message", "") for r in runtime.ledger.journal(session=session.key) if r.provider == "github"]
    assert any("rename to" in line and "failed" in line for line in lines)
    # the .env is never wrong meanwhile: it names the repository as it still is upstream
    assert read_env_file(runtime.settings.env_file_for(session.slug)) == pooled_env
    assert names(fake.state())["repos"] == [pooled_env["GITHUB_REPO"].split("/", 1)[1]]

    monkeypatch.setattr(pool_upkeep, "FINISH_RETRY_S", 0.0)
    keeper = pool_upkeep.PoolKeeper(runtime)
    await keeper.finish_turn()
    assert pool_upkeep.status(runtime)["unfinished_claims"] == []
    assert names(fake.state())["repos"] == [session.resource_name]
    assert read_env_file(runtime.settings.env_file_for(session.slug))["GITHUB_REPO"].endswith(f"/{session.resource_name}")
    lines = [r.fields.get("message", "") for r in runtime.ledger.journal(session=session.key) if r.provider == "github"]
    assert lines[-1] == f"pool: renamed to {session.resource_name}"
    await teardown_session(runtime, session.key)
    await pool_upkeep.drain(runtime)
    assert upstream_resources(fake.state()) == []


async def test_drain_and_teardown_leave_the_fake_upstream_empty(runtime, fake, session_key):
    await pool_upkeep.fill(runtime, {p: 2 for p in POOLED})
    assert len(upstream_resources(fake.state())) == 2 * 4  # project, segment, key, repo per pair
    session = Session.parse(session_key)
    report = await provision_services(runtime, session, runtime.plan())
    assert all(r.from_pool for r in report.results if r.name in POOLED)
    drained = await pool_upkeep.drain(runtime)
    assert len(drained) == 3
    assert pool_upkeep.levels(runtime) == {}
    await pool_upkeep.finish_claims(runtime)
    assert (await teardown_session(runtime, session.key)).ok
    assert upstream_resources(fake.state()) == []
    assert (await find_orphans(runtime, older_than_s=0, providers=list(POOLED))).orphans == []


async def test_stale_items_are_recycled_not_claimed(runtime, fake, session_key):
    await pool_upkeep.fill(runtime, {"neon": 1})
    (item,) = store.items(runtime.ledger, states=(store.READY,))
    runtime.ledger._write("UPDATE pool_items SET ready_at = ready_at - 1e9 WHERE id = ?", (item.id,))
    session = Session.parse(session_key)
    report = await provision_services(runtime, session, runtime.plan())
    assert not {r.name: r for r in report.results}["neon"].from_pool
    assert await pool_upkeep.recycle(runtime) == [item.id]
    assert [p["name"] for p in fake.state()["neon"]] == [session.resource_name]
    await teardown_session(runtime, session.key)
