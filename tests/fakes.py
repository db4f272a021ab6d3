"""Fake providers for orchestrator tests: they follow the Protocol and the ledger rules
(intent before create) but make nothing real."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import FoundResource, ProvisionOutcome, ResourceRef, Slot
from mk0r_tui.providers.base import ProvisionContext


class FakeProvider:
    """Configurable: `delay` seconds, then fail with `error` or succeed with `env`."""

    env_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, slot: Slot, *, env: dict[str, str] | None = None, delay: float = 0.0,
                 error: Exception | None = None, hang: bool = False, kind: str = "thing") -> None:
        self.name = name
        self.slot = slot
        self.env = env or {f"{name.upper().replace('-', '_')}_URL": f"https://{name}.example/x"}
        self.env_keys = tuple(self.env)
        self.delay = delay
        self.error = error
        self.hang = hang
        self.kind = kind
        self.store: dict[str, str] = {}  # name -> remote id: what "exists upstream"
        self.calls: list[str] = []
        self.deleted: list[str] = []

    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome:
        self.calls.append(ctx.session.key)
        ctx.attempt()
        name = ctx.session.resource_name
        row = ctx.intend(self.kind, name)
        if self.hang:
            await asyncio.Event().wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        remote_id = self.store.setdefault(name, f"{self.name}-{len(self.store) + 1}")
        ctx.created(row, remote_id)
        return ProvisionOutcome(env=dict(self.env), resources=(ResourceRef(self.name, self.kind, name, remote_id),))

    async def teardown(self, resource: ResourceRow) -> bool:
        self.deleted.append(resource.name)
        return self.store.pop(resource.name, None) is not None

    async def discover(self) -> list[FoundResource]:
        return [FoundResource(self.name, self.kind, n, rid, 0.0) for n, rid in self.store.items()]

    async def aclose(self) -> None:
        return None


def failing(name: str, slot: Slot, message: str = "upstream said no") -> FakeProvider:
    return FakeProvider(name, slot, error=ProviderError(message, call="POST /things", status=500))
