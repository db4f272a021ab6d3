"""The lean path of a provision that the warm pool serves whole (bench/pool.py part 2): a slot
whose ready item is handed over as it is (`ProviderSpec.claims_as_is`) builds no provider, so
the CLI's `provision` loads no HTTP stack, no TLS context, no pydantic, no Postgres driver; and
a claim that falls through still creates, through the provider built then."""

from __future__ import annotations

import json
import subprocess

import pytest
from crashkit import KEYS, PYTHON, cli_env, run_cli, upstream_resources
from ledgerkit import POSTGRES_PASS
from poolkit import FAKE_CONFIG, POOLED, fake, runtime  # noqa: F401  (fixtures)

from fakeupstream import FakeUpstream
from mk0r_tui.core import pool_store as store
from mk0r_tui.core.models import Session
from mk0r_tui.core.provider import SessionResources
from mk0r_tui.engine import pool, pool_upkeep
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.teardown import teardown_session

pytestmark = pytest.mark.slow

#: what a provision that claims every cloud slot must not load (the Postgres driver only when the
#: ledger itself is not on Postgres)
HEAVY = ("httpx", "pydantic", "tenacity", "certifi", "mk0r_tui.providers.http", "mk0r_tui.providers.neon",
         "mk0r_tui.providers.resend", "mk0r_tui.providers.github", "mk0r_tui.providers.local_postgres",
         # the budget store (no request waits for a budget): the orchestrator needs only core.budget_clock
         "mk0r_tui.core.budgets",
         *(() if POSTGRES_PASS else ("psycopg",)))

PROBE = (
    "import atexit, json, sys\n"
    "def report():\n"
    "    from mk0r_tui.core import tls\n"
    f"    heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
    "    sys.stderr.write('PROBE ' + json.dumps([heavy, tls._thread is not None or bool(tls._context)]) + '\\n')\n"
    "atexit.register(report)\n"
    "sys.argv = ['mk0r-tui', 'provision', '--json']\n"
    "from mk0r_tui.cli import main\n"
    "main()\n"
)


def probe(env: dict[str, str]) -> tuple[dict, list[str], bool]:
    proc = subprocess.run([PYTHON, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stderr.splitlines() if x.startswith("PROBE "))
    heavy, tls_built = json.loads(line[len("PROBE "):])
    return json.loads(proc.stdout), heavy, tls_built


def test_a_provision_the_pool_serves_whole_loads_no_http_stack(tmp_path):
    home = tmp_path / "home"
    keys = {k: v for k, v in KEYS.items() if k != "POSTHOG_PROJECT_KEY"}  # the analytics tag: no request
    with FakeUpstream(config=FAKE_CONFIG) as fake:
        env = cli_env(fake, home, keys=keys, MK0R_POOL_SIZE="2", MK0R_TARGET="local")
        filled = run_cli(env, "pool", "fill", "--wait")
        assert filled.returncode == 0, filled.stderr

        report, heavy, tls_built = probe(env)
        by_name = {p["name"]: p for p in report["providers"]}
        assert report["ok"] and all(by_name[p]["from_pool"] for p in POOLED)
        assert heavy == [] and tls_built is False

        # no ready item left for one slot: that slot's provider is built and creates (the HTTP stack loads)
        drained = run_cli(env, "pool", "drain", "--yes", "--provider", "github")
        assert drained.returncode == 0, drained.stderr
        report, heavy, _ = probe(env)
        by_name = {p["name"]: p for p in report["providers"]}
        assert report["ok"] and by_name["github"]["from_pool"] is False and by_name["neon"]["from_pool"] is True
        assert "httpx" in heavy and "mk0r_tui.providers.github" in heavy and "mk0r_tui.providers.neon" not in heavy
        assert "mk0r_tui.core.budgets" in heavy  # a create waits for GitHub's budget


def test_a_spec_that_claims_as_is_is_a_poolable_provider_with_the_default_claim():
    """`claims_as_is` may skip building the provider only where its claim would do nothing."""
    from mk0r_tui.core.provider import Provider
    from mk0r_tui.providers import DEFAULT_REGISTRY

    flagged = [s for s in DEFAULT_REGISTRY.specs if s.claims_as_is]
    assert {s.name for s in flagged} == set(POOLED)
    for spec in flagged:
        assert isinstance(spec.factory, str)
        module, _, attr = spec.factory.partition(":")
        cls = getattr(__import__(module, fromlist=[attr]), attr)
        assert cls.poolable and cls.pool_claimed is Provider.pool_claimed, spec.name




async def test_a_claim_that_falls_through_creates_through_the_provider_built_then(runtime, fake, session_key, monkeypatch):
    await pool_upkeep.fill(runtime, {p: 1 for p in POOLED})
    session = Session.parse(session_key)
    resources = store.ready_providers(runtime.ledger)
    assert resources == set(POOLED)
    # another process takes every item between the run's plan and its claims
    monkeypatch.setattr(store, "claim_many", lambda *a, **k: {})
    report = await provision_services(runtime, session, runtime.plan())
    assert report.ok, report.errors
    by_name = {r.name: r for r in report.results}
    assert not any(by_name[p].from_pool for p in POOLED)
    made = {u.name for u in upstream_resources(fake.state())}
    assert {session.resource_name, f"{session.resource_name} Users"} <= made
    monkeypatch.undo()
    assert (await teardown_session(runtime, session.key)).ok
    await pool_upkeep.drain(runtime)
    assert upstream_resources(fake.state()) == []


async def test_with_a_ready_pool_the_target_prepares_before_the_claims(runtime, fake, session_key):
    """A run the pool serves starts the target's `prepare` (the local folder's `git init`, another
    process) first, so that it works while the claims' transactions and the items' decryption
    run: its intent is written before any claim (one writer thread, first in first out). Without a
    pool it starts last (no provider's first request waits behind it)."""
    await pool_upkeep.fill(runtime, {p: 1 for p in POOLED})
    session = Session.parse(session_key)
    report = await provision_services(runtime, session, runtime.plan())
    assert report.ok, report.errors
    assert all(r.from_pool for r in report.results if r.name in POOLED)
    folder = next(r for r in runtime.ledger.resources(session.key) if r.provider == "local-folder")
    claimed = [i.claimed_at for i in store.items(runtime.ledger, states=(store.CLAIMED,)) if i.claimed_by == session.key]
    assert len(claimed) == len(POOLED)
    assert folder.created_at < min(c for c in claimed if c is not None)

    # the pool empty now: a run is not served by it (its target prepares after the providers start)
    providers = [runtime.provider(p) for p in POOLED]
    assert pool.plan_claims(runtime, providers, SessionResources(runtime.ledger, Session.new())) is None
    # refilled, it serves a new session, not one whose slots have rows of their own (it reuses them)
    await pool_upkeep.fill(runtime, {p: 1 for p in POOLED})
    claims = pool.plan_claims(runtime, providers, SessionResources(runtime.ledger, Session.new()))
    assert claims is not None and sorted(claims.names) == sorted(POOLED)
    assert pool.plan_claims(runtime, providers, await SessionResources.load(runtime.ledger, session, runtime.writer)) is None
    await pool_upkeep.finish_claims(runtime)
    assert (await teardown_session(runtime, session.key)).ok
    await pool_upkeep.drain(runtime)
    assert upstream_resources(fake.state()) == []


async def test_a_run_the_pool_serves_takes_every_item_in_one_transaction(runtime, fake, session_key, monkeypatch):
    """The slots a ready pool serves take their items together (`pool.RunClaims`): one
    transaction, one commit, however many slots; each slot still reports its own item."""
    await pool_upkeep.fill(runtime, {p: 1 for p in POOLED})
    calls: list[tuple[str, ...]] = []
    claim_many = store.claim_many

    def spy(ledger, providers, key, **kw):
        calls.append(tuple(providers))
        return claim_many(ledger, providers, key, **kw)

    monkeypatch.setattr(store, "claim_many", spy)
    session = Session.parse(session_key)
    report = await provision_services(runtime, session, runtime.plan())
    assert report.ok, report.errors
    by_name = {r.name: r for r in report.results}
    assert all(by_name[p].from_pool for p in POOLED)
    assert len(calls) == 1 and sorted(calls[0]) == sorted(POOLED)
    items = {i.provider: i for i in store.items(runtime.ledger, states=(store.CLAIMED,)) if i.claimed_by == session.key}
    assert sorted(items) == sorted(POOLED)
    for p in POOLED:  # each slot's rows are the session's, under its item's name
        assert any(r.name.startswith(f"mk0r-{items[p].id}") for r in runtime.ledger.resources(session.key, provider=p))
    monkeypatch.undo()
    await pool_upkeep.finish_claims(runtime)
    assert (await teardown_session(runtime, session.key)).ok
    assert upstream_resources(fake.state()) == []


async def test_when_the_claims_transaction_fails_every_slot_creates(runtime, fake, session_key, monkeypatch):
    """A ledger that refuses the claims' transaction (busy, broken) costs the pool, not the run:
    each slot creates as without a pool, and the items stay ready for the next session."""
    from mk0r_tui.core.errors import ConfigError

    await pool_upkeep.fill(runtime, {p: 1 for p in POOLED})

    def refuse(*a, **k):
        raise ConfigError("the ledger is locked (test)")

    monkeypatch.setattr(store, "claim_many", refuse)
    session = Session.parse(session_key)
    report = await provision_services(runtime, session, runtime.plan())
    assert report.ok, report.errors
    assert not any(r.from_pool for r in report.results)
    assert store.ready_providers(runtime.ledger) == set(POOLED)
    monkeypatch.undo()
    assert (await teardown_session(runtime, session.key)).ok
    await pool_upkeep.drain(runtime)
    assert upstream_resources(fake.state()) == []

