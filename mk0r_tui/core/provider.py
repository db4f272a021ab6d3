"""The provider contract: the base class every provider implements, and what it is handed.

A provider makes one kind of service for a session (a database, an email sender, a repo, an
analytics tag) or delivers the result somewhere (a target: a local folder, a sandbox). It:
- `provision(ctx)`: records its intent through `await ctx.intend` *before* each create call, the
  remote id through `await ctx.created` after it (or `ctx.dropped` when nothing was made; all
  three are written off the event loop, each durable when its await returns), and returns
  env vars; it must be idempotent (a second call for the same session adopts what the ledger
  says it made, which `ctx.existing` tells from one read of the ledger);
- `teardown(resource)`: deletes one resource; returns False when it was already gone;
- `discover()`: lists resources named `mk0r-*` that exist on the provider now.

Optional capabilities are part of the contract, with defaults here: `check_auth` (a cheap
read-only call for `doctor`; None = this provider has none) and `timeout_s` (its own time limit
for `provision`; None = the configured provider timeout).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeVar

from mk0r_tui.core.config import Settings
from mk0r_tui.core.events import EventSink, ProviderProgressed, ProviderRetrying
from mk0r_tui.core.ledger import Ledger, ResourceRow
from mk0r_tui.core.models import FoundResource, ProviderResult, ProvisionOutcome, ResourceState, Session, Slot
from mk0r_tui.core.offload import LedgerWriter
from mk0r_tui.core.pool_store import rename_resource

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AuthCheck:
    """What a provider's `check_auth` found. `problems` are reasons the key will not do the
    whole job although it authenticates (e.g. a GitHub token without `delete_repo`)."""

    ok: bool
    detail: str
    problems: tuple[str, ...] = ()


class Provider(abc.ABC):
    """One provider (or target). Subclasses set `name`, `slot` and `env_keys` as class attributes."""

    name: str
    slot: Slot
    #: env vars it produces, in order (for reuse checks and the agent's instructions)
    env_keys: tuple[str, ...] = ()
    #: its own time limit for `provision`, or None for the configured provider timeout
    timeout_s: float | None = None
    #: how discovery tells this ledger's resources from another's: "mark" (what it creates carries
    #: `mk0r-tui ledger <id>` and `discover` returns it as `FoundResource.owner`), "local" (under
    #: this data dir: this ledger's by construction), "none" (only the name: an `mk0r-*` name no
    #: session of this ledger has is another ledger's until shown otherwise)
    owner_marks: ClassVar[str] = "none"
    #: the hand-off calls this provider implements (engine/handoff.py): "transfer", "invite",
    #: "follow_transfer" (a repo), "transfer_request", "transfer_to_org", "follow_claim" (a
    #: database), "revoke_key" (an email key); none by default
    handoff_calls: ClassVar[frozenset[str]] = frozenset()
    #: what the last `discover` could not finish (a page cap, a repeated next link): orphans says it
    discovery_warnings: Sequence[str] = ()
    #: the warm pool (engine/pool.py) may make this provider's resources ahead of time, for a
    #: holding session named `mk0r-pool-<id>`, and hand them to a session at provision time
    poolable: ClassVar[bool] = False

    @abc.abstractmethod
    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome: ...

    @abc.abstractmethod
    async def teardown(self, resource: ResourceRow) -> bool: ...

    @abc.abstractmethod
    async def discover(self) -> list[FoundResource]: ...

    async def prepare(self, ctx: ProvisionContext) -> None:  # noqa: B027  (nothing to prepare is the right default)
        """A target's work that needs no provider's result (the local folder's `git init`): the
        orchestrator runs it while the providers run, then `provision` finishes the job. It
        must be safe to skip (an error here is left for `provision` to meet and report)."""

    async def check_auth(self) -> AuthCheck | None:
        """One cheap read-only call that proves the key works; None: no check for this provider."""
        return None

    async def not_reusable(self, env: Mapping[str, str], rows: Sequence[ResourceRow]) -> str | None:
        """Asked before a second provision reuses what the ledger says exists (`rows`, all
        `created`, and the `env` on disk): None when it answers as `env` says (reused), else why
        not (the provider is run again, and its provision re-creates or repairs). A local server
        that was stopped is started here. Default: a remote resource is trusted."""
        return None

    async def aclose(self) -> None:  # noqa: B027  (closing nothing is the right default)
        """Release connections; the runtime calls it once at the end of the process."""

    async def pool_claimed(self, ctx: ProvisionContext, env: Mapping[str, str]) -> Mapping[str, str]:
        """A pooled item's resources were just claimed for `ctx.session` (their rows are in
        `ctx.resources`, still under their pool names): make them the session's where that is
        local and fast (a local database gets the session's names and a new password), before
        the `.env` is written. Returns the env the `.env` gets. Default: the pooled env as is."""
        return env

    async def pool_rename(self, row: ResourceRow, new_name: str) -> PoolRename | None:
        """A claim's finishing touch, after the `.env` is written: rename one claimed resource
        upstream to `new_name` (idempotent: already renamed is success). None: this provider
        keeps pooled names (nothing to do)."""
        return None

    async def after_env(self, ctx: ProvisionContext) -> str | None:
        """A finishing touch within the run but after the session's `.env` is written (beside the
        target's delivery, off the path to the `.env`): PostHog's bookkeeping capture once the
        warm pool vouches for its key. Returns a line for the panel and the result's note (None:
        nothing done); raising says it failed (said the same way). It must not change the env."""
        return None

    async def refresh_pool_facts(self) -> str | None:
        """Asked by the warm pool's keeper each refill turn: re-check what `provision` trusts
        from core/pool_facts.py before it is stale (PostHog: its key). None: nothing to do."""
        return None


@dataclass(frozen=True, slots=True)
class PoolRename:
    """What a finishing rename changed: the row's new remote id and URL (None: unchanged) and
    the env values that change with the name (written into the session's `.env`)."""

    remote_id: str | None = None
    url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


#: set (to True) while the warm pool refills: its requests are background work, which a client
#: may let a session's own requests go ahead of (providers/http.py's budgets count both)
background_work: ContextVar[bool] = ContextVar("mk0r_background_work", default=False)


class SessionResources:
    """What the ledger knows of one session's resources, read once per run, and the one narrow
    channel through which providers record intents, creations and drops.

    A provider asks `existing` and `owned_by_other_session` of this snapshot (no query per
    question). Every write is done by the process's `LedgerWriter` thread, never on the event
    loop: `intend` returns once the intent is committed (durable before the create call is
    sent), `created` and `dropped` once their row is written. Build it with `load` (the reads
    off the loop too); without a writer (a plain call, a test) each write runs in a worker thread."""

    def __init__(self, ledger: Ledger, session: Session, writer: LedgerWriter | None = None) -> None:
        self._ledger = ledger
        self.session = session
        self._writer = writer
        self._rows: dict[tuple[str, str, str], ResourceRow] = {
            (r.provider, r.kind, r.name): r for r in ledger.resources(session.key, live_only=True)
        }
        self._claims = ledger.claims_by_other_sessions(session.key, (session.resource_name, session.pg_identifier))

    @classmethod
    async def load(cls, ledger: Ledger, session: Session, writer: LedgerWriter) -> SessionResources:
        """Read the session's rows on the writer thread (after every write handed over before)."""
        return await writer.run(cls, ledger, session, writer)

    async def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._writer is not None:
            return await self._writer.run(fn, *args, **kwargs)
        import asyncio

        return await asyncio.to_thread(fn, *args, **kwargs)

    def existing(self, provider: str, kind: str, name: str) -> ResourceRow | None:
        return self._rows.get((provider, kind, name))

    @property
    def ledger_id(self) -> str:
        """The ledger's id: the owner mark a provider puts on what it creates, where it can."""
        return self._ledger.ledger_id

    def owned_by_other_session(self, provider: str, kind: str, name: str) -> str | None:
        return self._claims.get((provider, kind, name))

    def rows(self, provider: str) -> tuple[ResourceRow, ...]:
        return tuple(r for (p, _k, _n), r in self._rows.items() if p == provider)

    async def intend(self, provider: str, kind: str, name: str, meta: dict[str, Any] | None = None) -> ResourceRow:
        known = self._rows.get((provider, kind, name))
        if known is not None:
            return known
        row = await self._write(self._ledger.intend, self.session.key, provider, kind, name, meta)
        self._rows[(provider, kind, name)] = row
        return row

    async def created(self, row: ResourceRow, remote_id: str | None, *, url: str | None, meta: dict[str, Any] | None) -> ResourceRow:
        assert row.id is not None
        updated = await self._write(self._ledger.mark_created, row.id, remote_id, url=url, meta=meta)
        self._rows[(row.provider, row.kind, row.name)] = updated
        return updated

    async def dropped(self, row: ResourceRow, reason: str) -> None:
        """The row's resource does not exist (never created, or deleted and replaced)."""
        assert row.id is not None
        self._rows.pop((row.provider, row.kind, row.name), None)
        await self._write(self._ledger.mark_state, row.id, ResourceState.DELETED, error=reason)

    def claimed(self, rows: Sequence[ResourceRow]) -> None:
        """Rows a warm-pool claim just moved to this session (engine/pool.py)."""
        for row in rows:
            self._rows[(row.provider, row.kind, row.name)] = row

    def renamed(self, row: ResourceRow, name: str, remote_id: str | None, url: str | None = None) -> ResourceRow:
        """A claimed row's resource now carries this session's name (its row follows)."""
        assert row.id is not None
        rename_resource(self._ledger, row.id, name, remote_id, url)
        self._rows.pop((row.provider, row.kind, row.name), None)
        updated = replace(row, name=name, remote_id=remote_id or row.remote_id, url=url or row.url)
        self._rows[(row.provider, row.kind, name)] = updated
        return updated


@dataclass
class ProvisionContext:
    """What a provider may use while provisioning one session."""

    session: Session
    provider: str
    settings: Settings
    resources: SessionResources
    sink: EventSink
    previous_env: Mapping[str, str] = field(default_factory=dict)
    #: results of the other providers; only targets (which run last) see them filled
    results: tuple[ProviderResult, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    attempts: int = 0
    started: float = field(default_factory=time.monotonic)

    def progress(self, message: str) -> None:
        self.sink(ProviderProgressed(session=self.session.key, provider=self.provider, message=message))

    def attempt(self) -> int:
        """Count one attempt at the provider's main call; returns the attempt number."""
        self.attempts += 1
        return self.attempts

    def retrying(self, attempt: int, max_attempts: int, delay_s: float, reason: str) -> None:
        self.sink(
            ProviderRetrying(
                session=self.session.key,
                provider=self.provider,
                attempt=attempt,
                max_attempts=max_attempts,
                delay_s=delay_s,
                reason=reason,
            )
        )

    async def intend(self, kind: str, name: str, meta: dict[str, Any] | None = None) -> ResourceRow:
        """Commit the intent to create `name` before the create call (crash safety): returns once
        it is durable, written off the event loop. Returns the live row if this session already
        has one for (kind, name): never a duplicate."""
        return await self.resources.intend(self.provider, kind, name, meta)

    async def created(
        self, row: ResourceRow, remote_id: str | None, *, url: str | None = None, meta: dict[str, Any] | None = None
    ) -> ResourceRow:
        return await self.resources.created(row, remote_id, url=url, meta=meta)

    async def dropped(self, row: ResourceRow, reason: str) -> None:
        """Close an intent whose resource does not exist (refused, gone, or replaced)."""
        await self.resources.dropped(row, reason)

    def existing(self, kind: str, name: str) -> ResourceRow | None:
        """This session's live ledger row for (kind, name), if a previous run recorded one."""
        return self.resources.existing(self.provider, kind, name)

    def owned_by_other_session(self, kind: str, name: str) -> str | None:
        return self.resources.owned_by_other_session(self.provider, kind, name)

    @property
    def owner_mark(self) -> str:
        """`mk0r-tui ledger <id>`: what a provider writes where the resource can carry a mark."""
        return owner_mark(self.resources.ledger_id)


#: the owner mark's text; `parse_owner_mark` reads the ledger id back
OWNER_MARK_PREFIX = "mk0r-tui ledger "


def owner_mark(ledger_id: str) -> str:
    return f"{OWNER_MARK_PREFIX}{ledger_id}"


def parse_owner_mark(text: str | None) -> str | None:
    """The ledger id in a mark (e.g. a repository's description), or None when there is none."""
    if not text or not text.startswith(OWNER_MARK_PREFIX):
        return None
    return text[len(OWNER_MARK_PREFIX):].split()[0] if text[len(OWNER_MARK_PREFIX):].strip() else None
