"""Fake providers for orchestrator tests: they follow the Protocol and the ledger rules
(intent before create) but make nothing real."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import ClassVar

from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import FoundResource, ProvisionOutcome, ResourceRef, Slot
from mk0r_tui.core.plan import Plan, PlanStep
from mk0r_tui.core.provider import Provider, ProvisionContext
from mk0r_tui.providers import DEFAULT_REGISTRY, ProviderSpec, Registry


def registry_of(
    *providers: Provider, base: Registry | None = DEFAULT_REGISTRY, hints: Mapping[Slot, str] | None = None
) -> Registry:
    """A registry whose specs build exactly these instances (each under its own name), before
    the specs of `base` that they do not replace. Tests hand it to the Runtime they build: the
    fakes enter through the registry, as the real providers do."""
    known = {s.name: s for s in base.specs} if base else {}

    def spec(p: Provider) -> ProviderSpec:
        """The instance stands in for the real spec of that name (same key, same cloud flag)."""
        real = known.get(p.name)
        factory = lambda _settings, _credentials, p=p: p  # noqa: E731
        if real is not None:
            return replace(real, factory=factory)
        return ProviderSpec(p.name, p.slot, factory)

    by_name = {p.name: p for p in providers}

    def merged(base_specs: tuple[ProviderSpec, ...], targets: bool) -> tuple[ProviderSpec, ...]:
        """The base's specs in their order, each replaced by an instance of its name, then the
        instances the base does not know (in the order given)."""
        kept = [spec(by_name[s.name]) if s.name in by_name else s for s in base_specs]
        new = [spec(p) for p in providers if p.name not in known and (p.slot is Slot.TARGET) == targets]
        return tuple(kept + new)

    extra = {} if base is None else dict(base.missing_key_hints)
    return Registry(
        merged(base.providers if base else (), targets=False),
        merged(base.targets if base else (), targets=True),
        missing_key_hints={**extra, **(hints or {})},
    )


def plan_of(items: Iterable[Provider | PlanStep | str], target: Provider | str) -> Plan:
    """A plan that runs exactly `items` (instances, names, or already-skipped steps), then `target`.
    Names must be resolvable by the runtime's registry."""
    def step(item: Provider | PlanStep | str) -> PlanStep:
        if isinstance(item, PlanStep):
            return item
        if isinstance(item, str):
            return PlanStep(item, DEFAULT_REGISTRY.spec(item).slot)
        return PlanStep(item.name, item.slot)

    return Plan(tuple(step(i) for i in items), step(target))


def skipped_step(slot: Slot, reason: str, name: str) -> PlanStep:
    return PlanStep(name, slot, skipped=reason)


class FakeProvider(Provider):
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
        row = await ctx.intend(self.kind, name)
        if self.hang:
            await asyncio.Event().wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        remote_id = self.store.setdefault(name, f"{self.name}-{len(self.store) + 1}")
        await ctx.created(row, remote_id)
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
