"""The one small Protocol every provider implements, and the context it is handed.

A provider makes one kind of service for a session (a database, an email sender, a repo, an
analytics tag) or delivers the result somewhere (a target: a local folder, a sandbox). It:
- `provision(ctx)`: records its intent in the ledger through `ctx.intend` *before* each create
  call, records the remote id through `ctx.created` after it, and returns env vars; it must be
  idempotent (a second call for the same session adopts what the ledger says it made);
- `teardown(resource)`: deletes one resource; returns False when it was already gone;
- `discover()`: lists resources named `mk0r-*` that exist on the provider now.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Protocol, runtime_checkable

from mk0r_tui.core.config import Settings
from mk0r_tui.core.events import EventSink, ProviderProgressed, ProviderRetrying
from mk0r_tui.core.ledger import Ledger, ResourceRow
from mk0r_tui.core.models import FoundResource, ProviderResult, ProvisionOutcome, Session, Slot


@runtime_checkable
class Provider(Protocol):
    name: ClassVar[str]
    slot: ClassVar[Slot]
    #: env vars it produces, in order (for reuse checks and the agent's instructions)
    env_keys: ClassVar[tuple[str, ...]]

    async def provision(self, ctx: "ProvisionContext") -> ProvisionOutcome: ...

    async def teardown(self, resource: ResourceRow) -> bool: ...

    async def discover(self) -> list[FoundResource]: ...

    async def aclose(self) -> None: ...


@dataclass
class ProvisionContext:
    """What a provider may use while provisioning one session."""

    session: Session
    provider: str
    settings: Settings
    ledger: Ledger
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

    def intend(self, kind: str, name: str, meta: dict[str, Any] | None = None) -> ResourceRow:
        """Commit the intent to create `name` before the create call (crash safety)."""
        return self.ledger.intend(self.session.key, self.provider, kind, name, meta)

    def created(
        self, row: ResourceRow, remote_id: str | None, *, url: str | None = None, meta: dict[str, Any] | None = None
    ) -> ResourceRow:
        assert row.id is not None
        return self.ledger.mark_created(row.id, remote_id, url=url, meta=meta)

    def existing(self, kind: str, name: str) -> ResourceRow | None:
        """This session's live ledger row for (kind, name), if a previous run recorded one."""
        return self.ledger.live_resource(self.session.key, self.provider, kind, name)

    def owned_by_other_session(self, kind: str, name: str) -> str | None:
        return self.ledger.claimed_by_other_session(self.session.key, self.provider, kind, name)
