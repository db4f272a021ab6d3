"""The warm pool's upkeep: everything about the pool except a run's claim (engine/pool.py).

- `fill_one` / `fill`: one item, under the holding session's lease (a fill that dies leaves pending
  rows and a `filling` item whose lease is gone: `orphans` and `pool drain` understand both). The
  item's env is sealed (core/pool_crypto) before it is stored.
- `finish_claims`: after the `.env`, the finishing touches (`Provider.pool_rename`: the GitHub
  repo, the Neon project, the Resend segment and key get the session's `mk0r-<slug>` name), under
  the session's lease; the `.env` is rewritten with what changed (GitHub's URLs). A failure is
  recorded on the item (`pool status`, a line on the session's panel) and retried by every keeper.
- `drain` / `recycle`, `levels` / `status` (`pool status --json`).
- `PoolKeeper`: the refill behind the claims in a long-lived process (the dashboard, `mk0r-tui
  pool keep`, the service): tops each pool up, recycles items older than `MK0R_POOL_MAX_AGE` and
  what a dead fill left, finishes claims. Its creates wait while a session of this process is
  being provisioned, run at most `MK0R_POOL_FILL_CONCURRENCY` at once per provider, go through the
  providers' shared clients (so GitHub's create budget counts them) and are marked background work
  (`core.provider.background_work`).

Apart from the claim so that a provision (the CLI's pool-served one above all) loads none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mk0r_tui.core import pool_store as store
from mk0r_tui.core.envfile import read_env_file
from mk0r_tui.core.errors import ConfigError
from mk0r_tui.core.events import EventSink, ProviderProgressed, null_sink
from mk0r_tui.core.models import POOL_KEY_PREFIX, RESOURCE_PREFIX, Session
from mk0r_tui.core.provider import ProvisionContext, SessionResources, background_work
from mk0r_tui.core.render import describe_error
from mk0r_tui.core.states import SessionPhase
from mk0r_tui.engine.pool import cipher, keeper_running, poolable, pooled_providers, sessions_idle
from mk0r_tui.engine.runtime import Runtime

log = logging.getLogger("mk0r_tui.pool")

#: how often an idle keeper looks again (a claim in this process wakes it at once)
KEEPER_INTERVAL_S = 5.0
#: a failed finishing rename is tried again after this many seconds, times its attempts (capped)
FINISH_RETRY_S = 2.0
FINISH_RETRY_MAX_S = 60.0


def new_holding_session() -> Session:
    """`pool-<7 hex>`: a 12-character key, so its slug is itself and its names `mk0r-pool-<7 hex>`."""
    key = POOL_KEY_PREFIX + secrets.token_hex(4)[:7]
    return Session(key=key, slug=key)  # not Session.parse: that prefix is refused for sessions


# -- fill ----------------------------------------------------------------------------------

async def fill_one(runtime: Runtime, provider_name: str) -> store.PoolItem | None:
    """Make one ready item of `provider_name`; None when its create failed (what it made is
    deleted at once; a crash leaves it for `pool drain` and `orphans`)."""
    ledger = runtime.ledger
    provider = runtime.provider(provider_name)
    if not provider.poolable:
        raise ConfigError(f"{provider_name} cannot be pooled")
    seal = cipher(runtime)
    session = new_holding_session()
    ledger.ensure_session(session, target=None)
    store.begin_fill(ledger, session.key, provider_name)
    token = background_work.set(True)
    failed: str | None = None
    try:
        async with runtime.lease(session.resource_name, session.key, "provision"):
            resources = SessionResources(ledger, session)
            ctx = ProvisionContext(session=session, provider=provider_name, settings=runtime.settings,
                                   resources=resources, sink=null_sink)
            try:
                async with asyncio.timeout(provider.timeout_s or runtime.settings.provider_timeout_s):
                    outcome = await provider.provision(ctx)
            except asyncio.CancelledError:
                store.set_state(ledger, session.key, store.FAILED, error="interrupted while filling")
                ledger.set_session_state(session.key, SessionPhase.INTERRUPTED)
                raise
            except Exception as exc:
                failed = "timed out" if isinstance(exc, TimeoutError) else describe_error(exc, runtime.secrets())
                log.warning("pool fill of %s failed: %s", provider_name, failed)
                store.set_state(ledger, session.key, store.FAILED, error=failed)
                ledger.set_session_state(session.key, SessionPhase.FAILED)
            else:
                store.fill_done(ledger, session.key, seal.seal(outcome.env))
                ledger.set_session_state(session.key, SessionPhase.READY)
    finally:
        background_work.reset(token)
    if failed is not None:
        await _drain_items(runtime, [store.item_of(ledger, session.key)])
        return None
    return store.item_of(ledger, session.key)


async def fill(runtime: Runtime, sizes: dict[str, int], *, sink: EventSink = null_sink,
               concurrency: int | None = None) -> dict[str, int]:
    """Top each provider's pool up to `sizes[provider]` ready items (counting live fills);
    returns how many items each one made. Providers fill side by side, each at most
    `concurrency` (default MK0R_POOL_FILL_CONCURRENCY) creates at once."""
    made: dict[str, int] = {p: 0 for p in sizes}
    limit = concurrency or runtime.settings.pool_fill_concurrency

    async def one_provider(name: str, size: int) -> None:
        level = levels(runtime).get(name, Level())
        missing = max(0, size - level.ready - level.filling)
        if missing <= 0:
            return
        gate = asyncio.Semaphore(limit)

        async def one() -> None:
            async with gate:
                await sessions_idle(runtime)  # a session's own creates go first
                item = await fill_one(runtime, name)
                if item is not None:
                    made[name] += 1
                    sink(ProviderProgressed(session=item.id, provider=name, message=f"pool: {item.id} ready"))

        async with asyncio.TaskGroup() as group:
            for _ in range(missing):
                group.create_task(one())

    async with asyncio.TaskGroup() as group:
        for name, size in sizes.items():
            group.create_task(one_provider(name, size))
    return made


# -- finishing touches ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FinishOutcome:
    item: str
    provider: str
    session: str
    renamed: tuple[str, ...]
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {"item": self.item, "provider": self.provider, "session": self.session,
                "renamed": list(self.renamed), "error": self.error}


def final_name(item_id: str, row_name: str, session: Session) -> str | None:
    """`mk0r-pool-<id>` (+ a suffix such as " Users") → `mk0r-<slug>` (+ the same suffix)."""
    prefix = RESOURCE_PREFIX + item_id
    if not row_name.startswith(prefix):
        return None
    return session.resource_name + row_name[len(prefix):]


def _due(item: store.PoolItem, now: float, updated: dict[str, float]) -> bool:
    if item.finish != store.FINISH_FAILED:
        return True
    wait = min(FINISH_RETRY_MAX_S, FINISH_RETRY_S * max(1, item.finish_attempts))
    return now - updated.get(item.id, 0.0) >= wait


async def finish_claims(runtime: Runtime, session_key: str | None = None, *, sink: EventSink = null_sink,
                        retry_failed: bool = True) -> list[FinishOutcome]:
    """Rename what claims took (unfinished or failed ones), session by session under its lease;
    rewrite each session's `.env` with the values that changed. Returns what each item did."""
    ledger = runtime.ledger
    pending = [i for i in store.unfinished_claims(ledger) if session_key is None or i.claimed_by == session_key]
    if not retry_failed:
        pending = [i for i in pending if i.finish != store.FINISH_FAILED]
    by_session: dict[str, list[store.PoolItem]] = {}
    for item in pending:
        if item.claimed_by:
            by_session.setdefault(item.claimed_by, []).append(item)
    outcomes: list[FinishOutcome] = []
    for key, session_items in by_session.items():
        outcomes += await _finish_session(runtime, key, session_items, sink)
    return outcomes


async def _finish_session(runtime: Runtime, key: str, session_items: Sequence[store.PoolItem], sink: EventSink) -> list[FinishOutcome]:
    ledger = runtime.ledger
    found = ledger.get_session(key)
    if found is None or found.state in (SessionPhase.DELETED.value, SessionPhase.TEARING_DOWN.value):
        for item in session_items:
            store.finish_result(ledger, item.id, error=None)  # nothing of it is left to rename
        return []
    session = found.session
    outcomes: list[FinishOutcome] = []
    async with runtime.lease(session.resource_name, key, "provision"):
        journal = runtime.journal.wrap(session.slug, sink)
        env_changes: dict[str, str] = {}
        for item in session_items:
            renamed: list[str] = []
            error: str | None = None
            try:
                provider = runtime.provider(item.provider)
                rows = [r for r in ledger.resources(key, provider=item.provider, live_only=True)
                        if final_name(item.id, r.name, session) is not None]
                for row in rows:
                    new_name = final_name(item.id, row.name, session)
                    assert new_name is not None and row.id is not None
                    change = await provider.pool_rename(row, new_name)
                    if change is None:
                        continue
                    store.rename_resource(ledger, row.id, new_name, change.remote_id, change.url)
                    env_changes.update(change.env)
                    renamed.append(new_name)
            except Exception as exc:
                error = describe_error(exc, runtime.secrets())
            outcomes.append(FinishOutcome(item.id, item.provider, key, tuple(renamed), error))
        if env_changes:
            try:
                env = _rewrite_env(runtime, session, env_changes)
                if env is not None and found.target:
                    await _redeliver(runtime, session, found.target, env, journal)
            except Exception as exc:  # the renamed names still redirect: the .env stays usable, retried
                why = f"the .env could not be delivered again: {describe_error(exc, runtime.secrets())}"
                outcomes = [FinishOutcome(o.item, o.provider, o.session, o.renamed, o.error or why) for o in outcomes]
        # done only once the .env says the new names: a reader never sees "done" with an old .env
        for outcome in outcomes:
            store.finish_result(ledger, outcome.item, error=outcome.error)
            if outcome.error is None:
                message = f"pool: renamed to {session.resource_name}" if outcome.renamed else "pool: nothing to rename"
            else:
                message = f"pool: rename to {session.resource_name} failed ({outcome.error}); retried by the pool keeper"
            journal(ProviderProgressed(session=key, provider=outcome.provider, message=message))
    return outcomes


def _rewrite_env(runtime: Runtime, session: Session, changes: dict[str, str]) -> dict[str, str] | None:
    """The operator's `.env` with the renamed values (through its one writer; the local-folder
    target's `.env` is that same file); returns the env it holds now (None: there is none)."""
    from mk0r_tui.engine.orchestrator import write_operator_env

    path = runtime.settings.env_file_for(session.slug)
    current = read_env_file(path)
    if not current:
        return None
    updated = {**current, **{k: v for k, v in changes.items() if k in current}}
    if updated != current:
        write_operator_env(runtime.settings, session, updated)
    return updated


async def _redeliver(runtime: Runtime, session: Session, target: str, env: dict[str, str], sink: EventSink) -> None:
    """What the renames changed, delivered again through the session's target (the sandbox's
    `.env`, its and the local folder's git `origin`, the agent files): until now they held the
    pool's names. A failed delivery raises: the finish is retried (the keeper), as a failed rename."""
    from mk0r_tui.core.models import Status
    from mk0r_tui.engine.orchestrator import redeliver

    result = await redeliver(runtime, session, target, env, sink=sink)
    if result.status is not Status.OK:
        raise ConfigError(f"{target}: {result.error or 'not delivered'}")


# -- drain, recycle ------------------------------------------------------------------------

async def _drain_items(runtime: Runtime, found: Sequence[store.PoolItem | None]) -> list[str]:
    """Delete the resources of unclaimed items (marked `draining` first, so no claim takes one)."""
    from mk0r_tui.engine.teardown import teardown_session

    ledger = runtime.ledger
    taken = store.take_for_drain(ledger, [i.id for i in found if i is not None])
    done: list[str] = []
    for item in taken:
        try:
            report = await teardown_session(runtime, item.id)
        except Exception as exc:
            store.set_state(ledger, item.id, store.DRAINING, error=describe_error(exc, runtime.secrets()))
            continue
        if report.ok:
            store.set_state(ledger, item.id, store.DRAINED)
            done.append(item.id)
        else:
            store.set_state(ledger, item.id, store.DRAINING, error="; ".join(o.error or o.outcome for o in report.outcomes if o.error))
    return done


def drainable(runtime: Runtime, *, providers: Sequence[str] | None = None) -> list[store.PoolItem]:
    """Every unclaimed item no fill is working on: ready, failed, draining, and filling ones whose
    holding session's lease is gone (a fill that died)."""
    live = runtime.ledger.live_leases(runtime.settings.lease_stale_s)
    return [
        i for i in store.items(runtime.ledger, states=(store.READY, store.FAILED, store.DRAINING, store.FILLING))
        if (providers is None or i.provider in providers) and not (i.state == store.FILLING and store.live(i, live))
    ]


async def drain(runtime: Runtime, *, providers: Sequence[str] | None = None) -> list[str]:
    return await _drain_items(runtime, drainable(runtime, providers=providers))


async def recycle(runtime: Runtime) -> list[str]:
    """Items too old to claim (`MK0R_POOL_MAX_AGE`), failed ones, and what dead fills left."""
    now = time.time()
    live = runtime.ledger.live_leases(runtime.settings.lease_stale_s)
    stale = [
        i for i in store.items(runtime.ledger, states=(store.READY, store.FAILED, store.FILLING))
        if (i.state == store.READY and (i.ready_at or 0) < now - runtime.settings.pool_max_age_s)
        or i.state == store.FAILED
        or (i.state == store.FILLING and not store.live(i, live))
    ]
    return await _drain_items(runtime, stale)


# -- status --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Level:
    ready: int = 0
    filling: int = 0
    abandoned: int = 0
    failed: int = 0
    oldest_ready_at: float | None = None


def levels(runtime: Runtime) -> dict[str, Level]:
    live = runtime.ledger.live_leases(runtime.settings.lease_stale_s)
    counts: dict[str, dict[str, Any]] = {}
    for item in store.items(runtime.ledger, states=(store.READY, store.FILLING, store.FAILED, store.DRAINING)):
        c = counts.setdefault(item.provider, {"ready": 0, "filling": 0, "abandoned": 0, "failed": 0, "oldest": None})
        if item.state == store.READY:
            c["ready"] += 1
            if c["oldest"] is None or (item.ready_at or 0) < c["oldest"]:
                c["oldest"] = item.ready_at
        elif item.state == store.FILLING:
            c["filling" if store.live(item, live) else "abandoned"] += 1
        else:
            c["failed"] += 1
    return {p: Level(c["ready"], c["filling"], c["abandoned"], c["failed"], c["oldest"]) for p, c in counts.items()}


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


def status(runtime: Runtime) -> dict[str, Any]:
    """`pool status --json`: {"providers": {name: {target, ready, filling, claimed_total,
    oldest_age_s, ...}}, "unfinished_claims": [...], "claim_ms": {p50, p95}}."""
    now = time.time()
    found = levels(runtime)
    claimed = store.claimed_total(runtime.ledger)
    providers: dict[str, Any] = {}
    for name in pooled_providers(runtime):
        level = found.get(name, Level())
        providers[name] = {
            "target": runtime.settings.pool_target(name),
            "ready": level.ready,
            "filling": level.filling,
            "claimed_total": claimed.get(name, 0),
            "oldest_age_s": None if level.oldest_ready_at is None else round(now - level.oldest_ready_at, 1),
            "abandoned": level.abandoned,
            "failed": level.failed,
        }
    unfinished = [
        {"item": i.id, "provider": i.provider, "session": i.claimed_by, "finish": i.finish, "error": i.finish_error,
         "attempts": i.finish_attempts}
        for i in store.unfinished_claims(runtime.ledger)
    ]
    latencies = store.claim_latencies(runtime.ledger)
    return {
        "providers": providers,
        "unfinished_claims": unfinished,
        "claim_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "n": len(latencies)},
    }


# -- the keeper ----------------------------------------------------------------------------

class PoolKeeper:
    """The refill in a long-lived process: `await keeper.run()` until cancelled. One per runtime;
    claims in this process wake it, and it finishes their renames."""

    def __init__(self, runtime: Runtime, *, sink: EventSink = null_sink, interval_s: float = KEEPER_INTERVAL_S) -> None:
        self.runtime = runtime
        self.sink = sink
        self.interval_s = interval_s
        self._finish_wake = asyncio.Event()
        self._refill_wake = asyncio.Event()
        self._finish_updated: dict[str, float] = {}
        #: what it is doing now, per provider ("filling 2/5"); the dashboard's pool panel shows it
        self.activity: dict[str, str] = {}
        self.errors: list[str] = []
        self.ticks = 0

    def wake(self) -> None:
        self._finish_wake.set()
        self._refill_wake.set()

    async def run(self) -> None:
        """Two loops side by side: finishing claims (woken by each claim here) and the refill."""
        with keeper_running(self.runtime, self):
            async with asyncio.TaskGroup() as group:
                group.create_task(self._loop(self.finish_turn, self._finish_wake))
                group.create_task(self._loop(self.refill_turn, self._refill_wake))

    async def _loop(self, turn: Any, wake: asyncio.Event) -> None:
        while True:
            wake.clear()
            try:
                await turn()
            except Exception as exc:  # a keeper never dies of one bad turn
                text = describe_error(exc, self.runtime.secrets())
                self.errors.append(text)
                log.warning("pool keeper: %s", text)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.interval_s)

    async def tick(self) -> None:
        """One turn of both loops (tests, `pool fill --wait`)."""
        await self.finish_turn()
        await self.refill_turn()

    async def finish_turn(self) -> None:
        runtime = self.runtime
        now = time.time()
        due = [i for i in store.unfinished_claims(runtime.ledger) if _due(i, now, self._finish_updated)]
        for key in sorted({i.claimed_by for i in due if i.claimed_by}):
            for outcome in await finish_claims(runtime, key, sink=self.sink):
                self._finish_updated[outcome.item] = time.time()

    async def refill_turn(self) -> None:
        self.ticks += 1
        runtime = self.runtime
        for line in await refresh_facts(runtime, self.errors):
            log.info("pool keeper: %s", line)
        await recycle(runtime)
        sizes = {p: runtime.settings.pool_target(p) for p in poolable(runtime)}
        sizes = {p: n for p, n in sizes.items() if n > 0}
        if not sizes:
            return
        found = levels(runtime)
        for name, size in sizes.items():
            level = found.get(name, Level())
            self.activity[name] = f"filling {size - level.ready}" if level.ready < size else "full"
        await fill(runtime, sizes, sink=self.sink)
        found = levels(runtime)
        for name, size in sizes.items():
            self.activity[name] = "full" if found.get(name, Level()).ready >= size else "behind"


async def refresh_facts(runtime: Runtime, errors: list[str] | None = None) -> list[str]:
    """Every running provider's `refresh_pool_facts` (PostHog's key check, core/pool_facts.py),
    as background work; what each did, failures logged (and added to `errors`)."""
    if not runtime.settings.pool_on:
        return []
    lines: list[str] = []
    for step in runtime.plan().providers:
        if not step.runs:
            continue
        token = background_work.set(True)
        try:
            line = await runtime.provider(step.name).refresh_pool_facts()
        except Exception as exc:  # the next turn tries again; a claim meanwhile checks in its run
            text = f"{step.name}: {describe_error(exc, runtime.secrets())}"
            log.warning("pool fact: %s", text)
            if errors is not None:
                errors.append(text)
            continue
        finally:
            background_work.reset(token)
        if line:
            lines.append(line)
    return lines


