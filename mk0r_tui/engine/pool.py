"""The warm pool (issue 14): a session's backend in milliseconds, whatever the providers' latency.

Per poolable provider (`Provider.poolable`: neon, resend, github, local-postgres, local-git) the
pool keeps `MK0R_POOL_SIZE` (or `MK0R_POOL_SIZE_<PROVIDER>`) items *ready*: that provider's
resources made ahead of time by its own `provision`, for a holding session `pool-<7 hex>`, so
every resource is named `mk0r-pool-<7 hex>` and is an ordinary ledger row (core/pool_store.py).

This module is what a provisioning run needs of the pool, and the per-process bookkeeping:
- `claim_into`: called by the orchestrator for each provider of a session that has no rows of
  its own yet; one transaction moves a ready item to the session; the provider's
  `pool_claimed` makes local items the session's (a local database renamed, new password) and the
  orchestrator writes the `.env` as for any result (`from_pool`). A failed claim falls back to
  creating, as without a pool.
- `run_providers` / `ClaimStandIn`: a slot a ready item serves as is needs no provider instance.
- `after_provision`: the renames after a claimed run (the keeper, else a detached `pool finish`).

Filling, finishing the renames, draining, status and the keeper are `pool_upkeep.py`'s: a
provision loads none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mk0r_tui.core import pool_store as store
from mk0r_tui.core.config import Settings, load_settings
from mk0r_tui.core.errors import ConfigError
from mk0r_tui.core.ledger import Ledger, ResourceRow
from mk0r_tui.core.models import RESOURCE_PREFIX, FoundResource, ProvisionOutcome, Session, Slot
from mk0r_tui.core.plan import Plan
from mk0r_tui.core.pool_crypto import PoolCipher
from mk0r_tui.core.provider import Provider, ProvisionContext, SessionResources
from mk0r_tui.core.render import describe_error
from mk0r_tui.engine.runtime import Runtime

if TYPE_CHECKING:
    from mk0r_tui.engine.pool_upkeep import PoolKeeper

log = logging.getLogger("mk0r_tui.pool")

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


@contextlib.contextmanager
def keeper_running(runtime: Runtime, keeper: PoolKeeper) -> Iterator[None]:
    """While `keeper` runs, this process's claims wake it and leave their renames to it."""
    state = _state(runtime)
    state.keeper = keeper
    try:
        yield
    finally:
        if state.keeper is keeper:
            state.keeper = None


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


class RunClaims:
    """One run's claims (`plan_claims`): the ready item of every slot the pool may serve, all taken
    in one transaction on the ledger's writer thread when the first slot asks (`claim_into`): a
    run the pool serves whole commits its claims once, not once per slot."""

    def __init__(self, runtime: Runtime, session: Session, names: Sequence[str]) -> None:
        self._runtime = runtime
        self._session = session
        self.names = tuple(names)
        self._taken: asyncio.Future[dict[str, tuple[store.PoolItem, list[ResourceRow]]]] | None = None

    async def take(self, name: str) -> tuple[store.PoolItem | None, list[ResourceRow]]:
        """`name`'s item (and its rows, now the session's), or (None, []) when none was ready.
        A failed transaction raises for every slot that asks (each then creates)."""
        if self._taken is None:
            runtime = self._runtime
            fresher_than = time.time() - runtime.settings.pool_max_age_s
            self._taken = asyncio.ensure_future(
                runtime.writer.run(_take_all, runtime.ledger, self.names, self._session.key, fresher_than))
        taken = await asyncio.shield(self._taken)  # a slot cancelled meanwhile leaves the others their items
        return taken.get(name, (None, []))


def plan_claims(runtime: Runtime, chosen: Sequence[Provider | None], resources: SessionResources) -> RunClaims | None:
    """The run's claims: its poolable providers with no rows of this session yet (a stand-in, or
    a built provider whose pool has a ready item: one read), or None when the pool serves no
    slot of this run."""
    candidates = [p for p in chosen if p is not None and p.poolable and not resources.rows(p.name)]
    if not candidates:
        return None
    # a stand-in is chosen only for a provider with a ready item (`run_providers`): no read for those
    ready = set() if all(isinstance(p, ClaimStandIn) for p in candidates) else store.ready_providers(runtime.ledger)
    names = [p.name for p in candidates if isinstance(p, ClaimStandIn) or p.name in ready]
    return RunClaims(runtime, resources.session, names) if names else None


def _take_all(ledger: Ledger, providers: Sequence[str], session_key: str, fresher_than: float,
              ) -> dict[str, tuple[store.PoolItem, list[ResourceRow]]]:
    """On the writer thread: a ready item of each provider for the session, in one transaction,
    and the rows now the session's (none ready: a cheap read first, no write lock)."""
    ready = store.ready_providers(ledger)
    wanted = [p for p in providers if p in ready]
    if not wanted:
        return {}
    items = store.claim_many(ledger, wanted, session_key, fresher_than=fresher_than)
    if not items:
        return {}
    rows = ledger.resources(session_key, live_only=True)
    return {p: (item, [r for r in rows if r.provider == p]) for p, item in items.items()}


async def claim_into(runtime: Runtime, resources: SessionResources, provider: Provider, ctx: ProvisionContext,
                     claims: RunClaims | None = None) -> ProvisionOutcome | None:
    """The provider's part of the session from a ready item (taken with the run's other `claims`
    when it is one of them), or None (no item, a session that already has rows of its own, or a
    claim that failed: the caller creates as without a pool)."""
    if not provider.poolable or resources.rows(provider.name):
        return None
    ledger = runtime.ledger
    session = resources.session
    started = time.perf_counter()
    try:
        # the claim's transaction on the ledger's writer thread, like every write of a run: the
        # event loop (the other providers, the dashboard) never waits on its commit
        if claims is None or provider.name not in claims.names:  # a slot the run's claims did not foresee
            claims = RunClaims(runtime, session, (provider.name,))
        item, rows = await claims.take(provider.name)
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


def claim_latency_ms(runtime: Runtime) -> list[float]:
    """This process's claim times (the dashboard's p50/p95), newest last."""
    return list(_state(runtime).claim_ms)
