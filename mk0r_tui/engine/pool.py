"""The warm pool (issue 14): a session's backend in milliseconds, whatever the providers' latency.

Per poolable provider (`Provider.poolable`: neon, resend, github, local-postgres, local-git) the
pool keeps `MK0R_POOL_SIZE` (or `MK0R_POOL_SIZE_<PROVIDER>`) items *ready*: that provider's
resources made ahead of time by its own `provision`, for a holding session `pool-<7 hex>`, so
every resource is named `mk0r-pool-<7 hex>` and is an ordinary ledger row (core/pool_store.py).

- `fill_one`: one item, under the holding session's lease (a fill that dies leaves pending rows
  and a `filling` item whose lease is gone: `orphans` and `pool drain` understand both). The
  item's env is sealed (core/pool_crypto) before it is stored.
- `claim_into`: called by the orchestrator for each provider of a session that has no rows of
  its own yet; one transaction moves a ready item to the session; the provider's
  `pool_claimed` makes local items the session's (a local database renamed, new password) and the
  orchestrator writes the `.env` as for any result (`from_pool`). A failed claim falls back to
  creating, as without a pool.
- `finish_claims`: after the `.env`, the finishing touches (`Provider.pool_rename`: the GitHub
  repo, the Neon project, the Resend segment and key get the session's `mk0r-<slug>` name), under
  the session's lease; the `.env` is rewritten with what changed (GitHub's URLs). A failure is
  recorded on the item (`pool status`, a line on the session's panel) and retried by every keeper.
- `PoolKeeper`: the refill behind the claims in a long-lived process (the dashboard, `mk0r-tui
  pool keep`, the service): tops each pool up, recycles items older than `MK0R_POOL_MAX_AGE` and
  what a dead fill left, finishes claims. Its creates wait while a session of this process is
  being provisioned, run at most `MK0R_POOL_FILL_CONCURRENCY` at once per provider, go through the
  providers' shared clients (so GitHub's create budget counts them) and are marked background work
  (`core.provider.background_work`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mk0r_tui.core import pool_store as store
from mk0r_tui.core.config import Settings, load_settings
from mk0r_tui.core.envfile import read_env_file
from mk0r_tui.core.errors import ConfigError
from mk0r_tui.core.events import EventSink, ProviderProgressed, null_sink
from mk0r_tui.core.ledger import Ledger, ResourceRow
from mk0r_tui.core.models import POOL_KEY_PREFIX, RESOURCE_PREFIX, FoundResource, ProvisionOutcome, Session, Slot
from mk0r_tui.core.plan import Plan
from mk0r_tui.core.pool_crypto import PoolCipher
from mk0r_tui.core.provider import Provider, ProvisionContext, SessionResources, background_work
from mk0r_tui.core.render import describe_error
from mk0r_tui.core.states import SessionPhase
from mk0r_tui.engine.runtime import Runtime

log = logging.getLogger("mk0r_tui.pool")

#: how often an idle keeper looks again (a claim in this process wakes it at once)
KEEPER_INTERVAL_S = 5.0
#: a failed finishing rename is tried again after this many seconds, times its attempts (capped)
FINISH_RETRY_S = 2.0
FINISH_RETRY_MAX_S = 60.0


# -- per-process bookkeeping ----------------------------------------------------------------

@dataclass
class _ProcessState:
    cipher: PoolCipher | None = None
    running_sessions: int = 0
    keeper: PoolKeeper | None = None
    claim_ms: list[float] = field(default_factory=list)
    #: (loop, event) of refills waiting for the sessions of this process to finish
    idle_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=list)


_states: weakref.WeakKeyDictionary[Runtime, _ProcessState] = weakref.WeakKeyDictionary()


def _state(runtime: Runtime) -> _ProcessState:
    found = _states.get(runtime)
    if found is None:
        found = _states[runtime] = _ProcessState()
    return found


def cipher(runtime: Runtime) -> PoolCipher:
    state = _state(runtime)
    if state.cipher is None:
        state.cipher = PoolCipher(runtime.settings)
    return state.cipher


@contextlib.contextmanager
def session_running(runtime: Runtime) -> Iterator[None]:
    """Around a session's provisioning run: the keeper's creates wait until none runs."""
    state = _state(runtime)
    state.running_sessions += 1
    try:
        yield
    finally:
        state.running_sessions -= 1
        if not state.running_sessions:
            waiters, state.idle_waiters = state.idle_waiters, []
            for loop, event in waiters:
                with contextlib.suppress(RuntimeError):  # a loop that closed meanwhile
                    loop.call_soon_threadsafe(event.set)


async def sessions_idle(runtime: Runtime) -> None:
    """Return when no session of this process is being provisioned (the refill's priority rule)."""
    state = _state(runtime)
    while state.running_sessions:
        event = asyncio.Event()
        state.idle_waiters.append((asyncio.get_running_loop(), event))
        with contextlib.suppress(TimeoutError):  # a wake-up lost to a race costs one second, never a hang
            await asyncio.wait_for(event.wait(), 1.0)


def sessions_running(runtime: Runtime) -> int:
    return _state(runtime).running_sessions


def pool_configured(settings: Settings) -> bool:
    """A pool size above 0, for all providers or one (no ledger read, no key look-up)."""
    return settings.pool_on


def poolable(runtime: Runtime) -> list[str]:
    """The providers of this runtime's plan that can be pooled (the ones that would run now)."""
    names: list[str] = []
    for step in runtime.plan().providers:
        if not step.runs:
            continue
        try:
            if runtime.provider(step.name).poolable:
                names.append(step.name)
        except Exception:  # a provider that cannot be built is not pooled; the plan says why
            continue
    return names


def pooled_providers(runtime: Runtime) -> list[str]:
    """Providers with a pool: a target above 0 among those that would run, or items left."""
    names = [p for p in poolable(runtime) if runtime.settings.pool_target(p) > 0]
    for item in store.items(runtime.ledger, states=(store.READY, store.FILLING, store.FAILED, store.DRAINING)):
        if item.provider not in names:
            names.append(item.provider)
    return names


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


# -- claim ---------------------------------------------------------------------------------

class ClaimStandIn(Provider):
    """In a run, the place of a provider that a ready pool item will serve and whose claim needs
    no instance (`ProviderSpec.claims_as_is`: the item's env goes to the `.env` as it is): a run
    that claims builds no HTTP client, loads no HTTP or TLS stack, no pydantic models (the CLI's
    `provision` with a ready pool: bench/pool.py part 2). Should the claim fall through (another
    process took the last item meanwhile, the item cannot be opened), `provision` builds the real
    provider and creates as without a pool: a provider that cannot be built then fails this slot
    only, the other slots settle as ever."""

    poolable = True

    def __init__(self, runtime: Runtime, name: str, slot: Slot) -> None:
        self.name = name
        self.slot = slot
        self._runtime = runtime

    @property
    def real(self) -> Provider:
        return self._runtime.provider(self.name)

    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome:
        return await self.real.provision(ctx)

    async def teardown(self, resource: ResourceRow) -> bool:
        return await self.real.teardown(resource)

    async def discover(self) -> list[FoundResource]:
        return await self.real.discover()


def run_providers(runtime: Runtime, plan: Plan, resources: SessionResources) -> list[Provider | None]:
    """The orchestrator's providers for the plan's steps (None: skipped): each built, except one
    that claims as is (`ProviderSpec.claims_as_is`), has a ready item in the pool and no rows of
    this session yet (a second provision reuses or repairs through the real one): a stand-in."""
    ready: set[str] | None = None
    chosen: list[Provider | None] = []
    for step in plan.providers:
        if not step.runs:
            chosen.append(None)
            continue
        try:
            spec = runtime.registry.spec(step.name)
        except KeyError:
            spec = None
        if spec is not None and spec.claims_as_is and not resources.rows(step.name):
            if ready is None:
                ready = store.ready_providers(runtime.ledger)
            if step.name in ready:
                chosen.append(ClaimStandIn(runtime, step.name, step.slot))
                continue
        chosen.append(runtime.provider(step.name))
    return chosen


def serves_run(runtime: Runtime, chosen: Sequence[Provider | None], resources: SessionResources) -> bool:
    """Whether a ready item will serve a slot of this run: a poolable provider with no rows of
    this session yet (a stand-in, or a built provider) whose pool has a ready item (one read)."""
    candidates = [p for p in chosen if p is not None and p.poolable and not resources.rows(p.name)]
    if any(isinstance(p, ClaimStandIn) for p in candidates):
        return True
    if not candidates:
        return False
    ready = store.ready_providers(runtime.ledger)
    return any(p.name in ready for p in candidates)


def _take(ledger: Ledger, provider: str, session_key: str, fresher_than: float) -> tuple[store.PoolItem | None, list[ResourceRow]]:
    """On the writer thread: a ready item of `provider` for the session, and its rows now the
    session's (nothing when none is ready: a cheap read first, no write lock)."""
    if not store.any_ready(ledger, provider):
        return None, []
    item = store.claim(ledger, provider, session_key, fresher_than=fresher_than)
    if item is None:
        return None, []
    return item, ledger.resources(session_key, provider=provider, live_only=True)

async def claim_into(runtime: Runtime, resources: SessionResources, provider: Provider, ctx: ProvisionContext) -> ProvisionOutcome | None:
    """The provider's part of the session from a ready item, or None (no item, a session that
    already has rows of its own, or a claim that failed: the caller creates as without a pool)."""
    if not provider.poolable or resources.rows(provider.name):
        return None
    ledger = runtime.ledger
    session = resources.session
    started = time.perf_counter()
    fresher_than = time.time() - runtime.settings.pool_max_age_s
    try:
        # the claim's transaction on the ledger's writer thread, like every write of a run: the
        # event loop (the other providers, the dashboard) never waits on its commit
        item, rows = await runtime.writer.run(_take, ledger, provider.name, session.key, fresher_than)
    except ConfigError as exc:  # the ledger is busy or broken: create as without a pool
        log.warning("pool claim for %s failed: %s", provider.name, exc)
        return None
    if item is None:
        return None
    state = _state(runtime)
    if state.keeper is not None:
        state.keeper.wake()
    resources.claimed(rows)
    try:
        if item.secret is None:
            raise ConfigError(f"pooled item {item.id} has no sealed env")
        env = await provider.pool_claimed(ctx, cipher(runtime).open(item.secret))
    except Exception as exc:
        why = describe_error(exc, runtime.secrets())
        log.warning("claimed pool item %s of %s could not be made the session's: %s", item.id, provider.name, why)
        store.finish_result(ledger, item.id, error=f"claim: {why}")
        ctx.progress(f"pooled {item.id} unusable ({why}); creating instead")
        return None  # its rows are the session's now: its teardown deletes them
    elapsed = (time.perf_counter() - started) * 1000
    state.claim_ms.append(elapsed)
    return ProvisionOutcome(
        env=dict(env), resources=tuple(r.ref for r in resources.rows(provider.name)),
        note=f"{store.FROM_POOL_NOTE} ({RESOURCE_PREFIX}{item.id})", from_pool=True,
    )


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


def after_provision(runtime: Runtime, session: Session) -> None:
    """A run claimed from the pool: its finishing touches go to this process's keeper, else to a
    detached `mk0r-tui pool finish` (only when this process's settings are the environment's,
    so the finisher sees the same ledger and providers), else they wait for a keeper (`pool keep`,
    the dashboard), which finishes every unfinished claim it finds."""
    state = _state(runtime)
    if state.keeper is not None:
        state.keeper.wake()
        return
    try:
        same = load_settings() == runtime.settings
    except ConfigError:
        same = False
    if not same:
        return
    try:
        subprocess.Popen(
            [sys.executable, "-m", "mk0r_tui", "pool", "finish", "--session", session.key],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, env=dict(os.environ),
        )
    except OSError as exc:
        log.warning("could not start the pool finisher: %s (a keeper will finish it)", exc)


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
        state = _state(self.runtime)
        state.keeper = self
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._loop(self.finish_turn, self._finish_wake))
                group.create_task(self._loop(self.refill_turn, self._refill_wake))
        finally:
            if state.keeper is self:
                state.keeper = None

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


def claim_latency_ms(runtime: Runtime) -> list[float]:
    """This process's claim times (the dashboard's p50/p95), newest last."""
    return list(_state(runtime).claim_ms)
