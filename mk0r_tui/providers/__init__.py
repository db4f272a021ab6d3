"""Providers, one module each, and the registry that lists them.

Adding a provider means adding its module and one `ProviderSpec` line in `PROVIDERS`. Which
spec fills each slot in a run is decided by `engine.plan.resolve_plan`; the entry points (CLI,
dashboard) hand `DEFAULT_REGISTRY` to the runtime, tests hand a registry of fakes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.models import Slot

if TYPE_CHECKING:
    from mk0r_tui.core.provider import Provider

#: "module:Class" (imported only when the provider is first used) or a callable building it
Factory = str | Callable[[Settings, Credentials], "Provider"]


MISSING_KEY_HINT = {
    Slot.DATABASE: "set NEON_PROVISIONING_KEY",
    Slot.EMAIL: "set RESEND_PROVISIONING_KEY",
    Slot.REPO: "set GITHUB_PROVISIONING_TOKEN",
    Slot.ANALYTICS: "set POSTHOG_PROJECT_KEY",
}


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    slot: Slot
    factory: Factory
    key_name: str | None = None  # the provisioning key that enables it; None = local, always there
    cloud: bool = False
    #: the warm pool hands its items over as they are (its `pool_claimed` is the contract's
    #: default): a claim needs no instance, so a run that claims builds none (engine/pool.py)
    claims_as_is: bool = False

    def build(self, settings: Settings, credentials: Credentials) -> Provider:
        if callable(self.factory):
            return self.factory(settings, credentials)
        module_name, _, attr = self.factory.partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
        provider: Provider = cls(settings=settings, credentials=credentials)
        return provider


@dataclass(frozen=True, slots=True)
class Registry:
    """Every provider and target a runtime may use, in the order the plan considers them."""

    providers: tuple[ProviderSpec, ...]
    targets: tuple[ProviderSpec, ...]
    #: the slots a plan fills, in the order their panels show
    slots: tuple[Slot, ...] = (Slot.ANALYTICS, Slot.DATABASE, Slot.EMAIL, Slot.REPO)
    #: what a skipped slot's panel says: the key that would fill it
    missing_key_hints: Mapping[Slot, str] = field(default_factory=lambda: dict(MISSING_KEY_HINT))

    @property
    def specs(self) -> tuple[ProviderSpec, ...]:
        return self.providers + self.targets

    def spec(self, name: str) -> ProviderSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def uses_of(self, key_name: str) -> list[ProviderSpec]:
        return [spec for spec in self.specs if spec.key_name == key_name]


PROVIDERS: tuple[ProviderSpec, ...] = (
    ProviderSpec("posthog", Slot.ANALYTICS, "mk0r_tui.providers.posthog:PostHogProvider"),
    ProviderSpec("neon", Slot.DATABASE, "mk0r_tui.providers.neon:NeonProvider", "NEON_PROVISIONING_KEY", cloud=True, claims_as_is=True),
    ProviderSpec("local-postgres", Slot.DATABASE, "mk0r_tui.providers.local_postgres:LocalPostgresProvider"),
    ProviderSpec("resend", Slot.EMAIL, "mk0r_tui.providers.resend:ResendProvider", "RESEND_PROVISIONING_KEY", cloud=True, claims_as_is=True),
    ProviderSpec("local-mail", Slot.EMAIL, "mk0r_tui.providers.local_mail:LocalMailProvider"),
    ProviderSpec("github", Slot.REPO, "mk0r_tui.providers.github:GitHubProvider", "GITHUB_PROVISIONING_TOKEN", cloud=True, claims_as_is=True),
    ProviderSpec("local-git", Slot.REPO, "mk0r_tui.providers.local_git:LocalGitProvider"),
)

TARGETS: tuple[ProviderSpec, ...] = (
    ProviderSpec("e2b", Slot.TARGET, "mk0r_tui.targets.e2b:E2BTarget", "E2B_API_KEY", cloud=True),
    ProviderSpec("local-folder", Slot.TARGET, "mk0r_tui.targets.local:LocalFolderTarget"),
)

DEFAULT_REGISTRY = Registry(PROVIDERS, TARGETS)
