"""The one function that decides what a provisioning run does (see core/plan.py)."""

from __future__ import annotations

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.errors import UsageError
from mk0r_tui.core.models import Slot
from mk0r_tui.core.plan import Plan, PlanStep
from mk0r_tui.providers import ProviderSpec, Registry


def _pick(registry: Registry, slot: Slot, settings: Settings, credentials: Credentials) -> PlanStep:
    """The cloud provider when its key is present (and the profile allows it), else the local
    one, else skipped with the reason."""
    candidates = [s for s in registry.providers if s.slot is slot]
    for spec in candidates:
        if spec.cloud and settings.profile == "local":
            continue
        if not spec.cloud and settings.profile == "cloud" and spec.key_name is None and slot is not Slot.ANALYTICS:
            continue
        if spec.key_name is None or credentials.get(spec.key_name).present:
            return PlanStep(spec.name, slot)
    if settings.profile == "local":
        reason = f"no local provider for {slot.value} (profile is local)"
    else:
        reason = registry.missing_key_hints.get(slot, f"no provider for {slot.value}")
    return PlanStep(candidates[0].name if candidates else slot.value, slot, skipped=reason)


def _target(registry: Registry, settings: Settings, credentials: Credentials, requested: str | None) -> ProviderSpec:
    """`local`: the local target; `e2b`: the sandbox target; `auto`: the sandbox when its key
    (E2B_API_KEY) is set and the profile allows it, else the local folder."""
    wanted = requested or settings.target
    if wanted not in ("auto", "local", "e2b"):
        raise UsageError(f"unknown target {wanted!r}: choose auto, local or e2b")
    local = [t for t in registry.targets if not t.cloud]
    cloud = [t for t in registry.targets if t.cloud]
    if wanted == "e2b" and cloud:
        return cloud[0]
    if wanted == "auto" and settings.profile != "local":
        for spec in cloud:
            if spec.key_name is None or credentials.get(spec.key_name).present:
                return spec
    if not local:
        raise UsageError(f"no {'local ' if wanted != 'e2b' else ''}target is registered")
    return local[0]


def resolve_plan(registry: Registry, settings: Settings, credentials: Credentials, target: str | None = None) -> Plan:
    providers = tuple(_pick(registry, slot, settings, credentials) for slot in registry.slots)
    chosen = _target(registry, settings, credentials, target)
    return Plan(providers, PlanStep(chosen.name, Slot.TARGET))
