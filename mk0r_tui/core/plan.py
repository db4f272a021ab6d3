"""The plan of one provisioning run: which provider fills each slot, which are skipped and why,
and which target receives the files. Resolved once per run (`engine.plan.resolve_plan`); the
CLI prints it, the dashboard shows it as panels, the orchestrator executes it."""

from __future__ import annotations

from dataclasses import dataclass

from mk0r_tui.core.models import Slot


@dataclass(frozen=True, slots=True)
class PlanStep:
    name: str
    slot: Slot
    #: why this slot does not run (a missing key, the profile); None when it runs
    skipped: str | None = None

    @property
    def runs(self) -> bool:
        return self.skipped is None


@dataclass(frozen=True, slots=True)
class Plan:
    providers: tuple[PlanStep, ...]
    target: PlanStep

    @property
    def steps(self) -> tuple[PlanStep, ...]:
        """Every step in the order the panels show them: the providers, then the target."""
        return (*self.providers, self.target)

    @property
    def panels(self) -> tuple[tuple[str, Slot], ...]:
        return tuple((step.name, step.slot) for step in self.steps)

    @property
    def running(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps if step.runs)
