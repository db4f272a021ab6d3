"""Providers, one module each, picked from one registry.

Adding a provider means adding its module and one `ProviderSpec` line in `REGISTRY`.
For each slot the first spec whose provisioning key is present wins; a local fallback needs
no key; a slot left with nothing is *skipped*, with the reason.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.models import Slot

if TYPE_CHECKING:
    from mk0r_tui.providers.base import Provider


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    slot: Slot
    factory: str  # "module:Class", imported only when used
    key_name: str | None = None  # the provisioning key that enables it; None = local, always there
    cloud: bool = False

    def build(self, settings: Settings, credentials: Credentials) -> "Provider":
        module_name, _, attr = self.factory.partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
        return cls(settings=settings, credentials=credentials)


@dataclass(frozen=True, slots=True)
class Skipped:
    slot: Slot
    reason: str
    name: str  # the provider that would fill the slot


REGISTRY: tuple[ProviderSpec, ...] = (
    ProviderSpec("posthog", Slot.ANALYTICS, "mk0r_tui.providers.posthog:PostHogProvider"),
    ProviderSpec("neon", Slot.DATABASE, "mk0r_tui.providers.neon:NeonProvider", "NEON_PROVISIONING_KEY", cloud=True),
    ProviderSpec("local-postgres", Slot.DATABASE, "mk0r_tui.providers.local_postgres:LocalPostgresProvider"),
    ProviderSpec("resend", Slot.EMAIL, "mk0r_tui.providers.resend:ResendProvider", "RESEND_PROVISIONING_KEY", cloud=True),
    ProviderSpec("local-mail", Slot.EMAIL, "mk0r_tui.providers.local_mail:LocalMailProvider"),
    ProviderSpec("github", Slot.REPO, "mk0r_tui.providers.github:GitHubProvider", "GITHUB_PROVISIONING_TOKEN", cloud=True),
    ProviderSpec("local-git", Slot.REPO, "mk0r_tui.providers.local_git:LocalGitProvider"),
)

TARGETS: tuple[ProviderSpec, ...] = (
    ProviderSpec("e2b", Slot.TARGET, "mk0r_tui.targets.e2b:E2BTarget", "E2B_API_KEY", cloud=True),
    ProviderSpec("local-folder", Slot.TARGET, "mk0r_tui.targets.local:LocalFolderTarget"),
)

SLOT_ORDER = (Slot.ANALYTICS, Slot.DATABASE, Slot.EMAIL, Slot.REPO)

MISSING_KEY_HINT = {
    Slot.DATABASE: "set NEON_PROVISIONING_KEY",
    Slot.EMAIL: "set RESEND_PROVISIONING_KEY",
    Slot.REPO: "set GITHUB_PROVISIONING_TOKEN",
    Slot.ANALYTICS: "set POSTHOG_PROJECT_KEY",
}


def spec_named(name: str) -> ProviderSpec:
    for spec in REGISTRY + TARGETS:
        if spec.name == name:
            return spec
    raise KeyError(name)


def select_providers(
    settings: Settings, credentials: Credentials
) -> list[ProviderSpec | Skipped]:
    """One choice per slot, in SLOT_ORDER: the cloud provider when its key is present (and the
    profile allows it), else the local one, else Skipped with the reason."""
    chosen: list[ProviderSpec | Skipped] = []
    for slot in SLOT_ORDER:
        candidates = [s for s in REGISTRY if s.slot is slot]
        pick: ProviderSpec | None = None
        for spec in candidates:
            if spec.cloud and settings.profile == "local":
                continue
            if not spec.cloud and settings.profile == "cloud" and spec.key_name is None and slot is not Slot.ANALYTICS:
                continue
            if spec.key_name is None or credentials.get(spec.key_name).present:
                pick = spec
                break
        if pick is not None:
            chosen.append(pick)
        elif settings.profile == "local":
            chosen.append(Skipped(slot, f"no local provider for {slot.value} (profile is local)", candidates[0].name))
        else:
            chosen.append(Skipped(slot, MISSING_KEY_HINT[slot], candidates[0].name))
    return chosen


def select_target(settings: Settings, credentials: Credentials, requested: str | None = None) -> ProviderSpec:
    """`auto` picks e2b when E2B_API_KEY is set, else the local folder."""
    wanted = requested or settings.target
    if wanted == "local":
        return spec_named("local-folder")
    if wanted == "e2b":
        return spec_named("e2b")
    e2b = spec_named("e2b")
    if settings.profile != "local" and credentials.get("E2B_API_KEY").present:
        return e2b
    return spec_named("local-folder")
