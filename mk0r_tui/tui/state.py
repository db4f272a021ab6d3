"""UI-side state: immutable snapshots of each session, reduced from the core's events.

Pure and UI-agnostic (no Textual import): `reduce(session, event) -> session` is a plain function
so it can be unit-tested and stays cheap under bursts (a handful of providers per session, one
tuple rebuilt per event). The dashboard keeps one `SessionState` per session key and renders the
selected one; events of the others keep being reduced, so switching never loses anything.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from mk0r_tui.core.events import (
    Event,
    ProviderFailed,
    ProviderProgressed,
    ProviderRetrying,
    ProviderSkipped,
    ProviderStarted,
    ProviderSucceeded,
    ResourceDeleted,
    RunStarted,
    SessionProvisioned,
    SessionTornDown,
    TeardownFailed,
    TeardownStarted,
)
from mk0r_tui.core.ledger import ResourceRow, RunRow, SessionRow
from mk0r_tui.core.models import ProviderResult, ResourceRef, ResourceState, Session, Slot, Status
from mk0r_tui.core.pool_store import FROM_POOL_NOTE

SLOT_RANK = {slot: rank for rank, slot in enumerate((Slot.ANALYTICS, Slot.DATABASE, Slot.EMAIL, Slot.REPO, Slot.TARGET))}

WorkKind = Literal["provision", "teardown"]
#: what `SessionState.busy` says while a worker runs for the session
BUSY_LABEL: dict[str, str] = {"provision": "provisioning", "teardown": "tearing down"}


@dataclass(frozen=True, slots=True)
class ResourceView:
    """One resource of a panel, with where it is in its life: live, pending, deleting, gone or failed."""

    ref: ResourceRef
    state: str = "live"
    error: str | None = None
    #: `handed off → LOGIN`, `claim pending (expires …)`, `invited → LOGIN`; None before a hand-off
    handoff: str | None = None
    #: the link the recipient opens (a Neon claim link, a GitHub invitation), to copy
    handoff_url: str | None = None


@dataclass(frozen=True, slots=True)
class PanelState:
    provider: str
    slot: Slot
    status: Status = Status.WAITING
    started_at: float | None = None
    latency_ms: float | None = None
    attempts: int = 0
    retry: tuple[int, int] | None = None  # (attempt about to be made, max attempts)
    message: str | None = None  # the latest progress line or retry reason
    error: str | None = None
    note: str | None = None
    resources: tuple[ResourceView, ...] = ()
    #: its resources came from the warm pool (engine/pool.py); `pool_note`: its renames' latest word
    from_pool: bool = False
    pool_note: str | None = None

    @property
    def active(self) -> bool:
        return self.status in (Status.RUNNING, Status.RETRYING, Status.TEARING_DOWN)

    def elapsed_s(self, now: float) -> float | None:
        """Seconds since the provider started while it runs; the final latency once done."""
        if self.active and self.started_at is not None:
            return max(0.0, now - self.started_at)
        if self.latency_ms is not None:
            return self.latency_ms / 1000
        return None


@dataclass(frozen=True, slots=True)
class SessionState:
    key: str
    slug: str
    created_at: float
    state: str = "new"  # the ledger's word: provisioning, ready, partial, failed, deleted, ...
    target: str | None = None
    env_file: str | None = None
    panels: tuple[PanelState, ...] = ()
    busy: str | None = None  # "provisioning" / "tearing down" while a worker of this app runs
    updated_at: float = 0.0

    @property
    def resource_name(self) -> str:
        return Session(self.key, self.slug).resource_name

    def panel(self, provider: str) -> PanelState | None:
        for panel in self.panels:
            if panel.provider == provider:
                return panel
        return None

    @property
    def provider_names(self) -> tuple[str, ...]:
        return tuple(p.provider for p in self.panels)

    @property
    def deleted(self) -> bool:
        return self.state == "deleted"

    @property
    def can_retry(self) -> bool:
        """Something did not finish ok, and nothing runs: provisioning again retries it."""
        if self.busy or self.state in ("deleted", "tearing_down", "teardown_incomplete", "handed_off"):
            return False
        return any(p.status in (Status.FAILED, Status.WAITING) for p in self.panels) or self.state in ("failed", "partial", "interrupted")

    @property
    def can_teardown(self) -> bool:
        return not self.busy and not self.deleted


# -- UI-side events: work this app started or finished (the core does not emit these) ------


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkStarted:
    session: str
    kind: WorkKind
    #: (provider, slot) of every panel the work will touch, in order; None keeps the current panels
    plan: tuple[tuple[str, Slot], ...] | None = None
    slug: str | None = None
    target: str | None = None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkEnded:
    session: str
    kind: WorkKind
    #: the ledger's session state after the work, if known
    state: str | None = None
    error: str | None = None
    at: float = field(default_factory=time.time)


UiEvent = Event | WorkStarted | WorkEnded


def _sorted_panels(panels: Iterable[PanelState]) -> tuple[PanelState, ...]:
    return tuple(sorted(panels, key=lambda p: (SLOT_RANK.get(p.slot, 99), p.provider)))


def _with_panel(session: SessionState, panel: PanelState, at: float) -> SessionState:
    """Replace (or add) one provider's panel: a tuple rebuild of at most a handful of items."""
    panels = list(session.panels)
    for index, existing in enumerate(panels):
        if existing.provider == panel.provider:
            panels[index] = panel
            return replace(session, panels=tuple(panels), updated_at=at)
    return replace(session, panels=_sorted_panels([*panels, panel]), updated_at=at)


def _panel_for(session: SessionState, provider: str, slot: Slot = Slot.TARGET) -> PanelState:
    return session.panel(provider) or PanelState(provider, slot)


def _with_resource(panel: PanelState, ref: ResourceRef, state: str, error: str | None = None) -> PanelState:
    views = list(panel.resources)
    for index, view in enumerate(views):
        if (view.ref.kind, view.ref.name) == (ref.kind, ref.name):
            views[index] = ResourceView(ref if ref.remote_id else view.ref, state, error)
            break
    else:
        views.append(ResourceView(ref, state, error))
    return replace(panel, resources=tuple(views))


#: how a pool finishing line starts (engine/pool_upkeep.py `_finish_session`)
POOL_LINE = "pool: "


def _pooled(note: str | None) -> bool:
    return bool(note) and str(note).startswith(FROM_POOL_NOTE)


def reduce(session: SessionState, event: UiEvent) -> SessionState:
    """The next snapshot of `session` after `event`. Pure: never reads the clock or the ledger."""
    at = event.at
    match event:
        case WorkStarted(kind="provision"):
            if event.plan is not None:
                previous = {p.provider: p for p in session.panels}
                panels = tuple(
                    PanelState(name, slot, resources=previous[name].resources if name in previous else ())
                    for name, slot in event.plan
                )
            else:
                panels = tuple(PanelState(p.provider, p.slot, resources=p.resources) for p in session.panels)
            return replace(
                session, panels=_sorted_panels(panels), busy=BUSY_LABEL["provision"], state="provisioning",
                target=event.target or session.target, updated_at=at,
            )
        case WorkStarted(kind="teardown"):
            return replace(session, busy=BUSY_LABEL["teardown"], state="tearing_down", updated_at=at)
        case WorkEnded():
            panels = session.panels
            if event.kind == "teardown":
                panels = tuple(_settle_teardown(p) for p in panels)
            else:
                unfinished = (Status.RUNNING, Status.RETRYING, Status.WAITING) if event.error else (Status.RUNNING, Status.RETRYING)
                why = f"not finished: {event.error}" if event.error else "interrupted before it finished"
                panels = tuple(
                    replace(p, status=Status.FAILED, error=p.error or why) if p.status in unfinished else p
                    for p in panels
                )
            return replace(session, panels=panels, busy=None, state=event.state or session.state, updated_at=at)
        case ProviderStarted():
            panel = _panel_for(session, event.provider, event.slot)
            panel = replace(
                panel, slot=event.slot, status=Status.RUNNING, started_at=at, latency_ms=None, attempts=0,
                retry=None, message=None, error=None, note=None,
            )
            return _with_panel(session, panel, at)
        case ProviderProgressed() if event.message.startswith(POOL_LINE) and not _panel_for(session, event.provider).active:
            # a claim's finishing touch (a rename) after the run: a line of its own, the status stays
            panel = _panel_for(session, event.provider)
            return _with_panel(session, replace(panel, pool_note=event.message[len(POOL_LINE):]), at)
        case ProviderProgressed():
            panel = _panel_for(session, event.provider)
            status = Status.RUNNING if panel.status is Status.WAITING else panel.status
            return _with_panel(session, replace(panel, message=event.message, status=status), at)
        case ProviderRetrying():
            panel = _panel_for(session, event.provider)
            panel = replace(
                panel, status=Status.RETRYING, retry=(event.attempt, event.max_attempts),
                attempts=max(panel.attempts, event.attempt - 1), message=event.reason,
                started_at=panel.started_at if panel.started_at is not None else at,
            )
            return _with_panel(session, panel, at)
        case ProviderSucceeded() | ProviderFailed() | ProviderSkipped():
            result = event.result
            panel = _panel_for(session, event.provider, result.slot)
            resources = tuple(ResourceView(ref) for ref in result.resources) if result.resources else panel.resources
            panel = replace(
                panel, slot=result.slot, status=result.status, latency_ms=result.latency_ms, attempts=result.attempts,
                retry=None, message=None, error=result.error, note=result.note, resources=resources,
                from_pool=result.from_pool or _pooled(result.note),
            )
            return _with_panel(session, panel, at)
        case SessionProvisioned():
            return replace(session, state=event.state, env_file=event.env_file or session.env_file, busy=None, updated_at=at)
        case RunStarted():
            # a run of any process (this app's own workers also post WorkStarted): the ledger's word
            return replace(session, state=event.state, target=event.target or session.target, updated_at=at)
        case SessionTornDown():
            panels = tuple(_settle_teardown(p) for p in session.panels)
            return replace(session, panels=panels, state=event.state, updated_at=at)
        case TeardownStarted():
            panel = _with_resource(_panel_for(session, event.provider), event.resource, "deleting")
            first = panel.started_at if panel.status is Status.TEARING_DOWN else at
            panel = replace(panel, status=Status.TEARING_DOWN, started_at=first, latency_ms=None, error=None)
            return _with_panel(session, panel, at)
        case ResourceDeleted():
            panel = _with_resource(_panel_for(session, event.provider), event.resource, "gone")
            if all(view.state == "gone" for view in panel.resources):
                elapsed = None if panel.started_at is None else max(0.0, at - panel.started_at) * 1000
                panel = replace(panel, status=Status.GONE, latency_ms=elapsed)
            return _with_panel(session, panel, at)
        case TeardownFailed():
            panel = _with_resource(_panel_for(session, event.provider), event.resource, "failed", event.error)
            panel = replace(panel, status=Status.FAILED, error=f"teardown: {event.error}")
            return _with_panel(session, panel, at)
    return session


def _settle_teardown(panel: PanelState) -> PanelState:
    """After a teardown: a panel with nothing left alive is gone; one still deleting was interrupted."""
    if panel.status is Status.FAILED and panel.error and panel.error.startswith("teardown:"):
        return panel
    if any(view.state in ("deleting",) for view in panel.resources):
        return replace(panel, status=Status.FAILED, error="teardown: interrupted while deleting")
    if panel.status is Status.SKIPPED:
        return panel
    if all(view.state == "gone" for view in panel.resources):
        return replace(panel, status=Status.GONE)
    return panel


# -- from the ledger ---------------------------------------------------------------------


_RESOURCE_VIEW_STATE = {
    ResourceState.PENDING.value: "pending",
    ResourceState.CREATED.value: "live",
    ResourceState.DELETING.value: "deleting",
    ResourceState.DELETED.value: "gone",
}


def handoff_label(row: ResourceRow) -> str | None:
    """How a panel names a resource's hand-off (the ledger's word and new owner)."""
    detail = row.handoff_detail or {}
    if row.handoff in ("transferred", "claimed"):
        return f"handed off → {row.handoff_owner or 'its new owner'}"
    if row.handoff == "claim_pending":
        expires = detail.get("expires")
        if not expires and detail.get("expires_at"):
            expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(detail["expires_at"])))
        waiting = f" by {row.handoff_owner}" if row.handoff_owner else ""
        return f"claim pending{waiting} (expires {expires or '?'})"
    if row.handoff == "invited":
        return f"invited → {row.handoff_owner}"
    return None


def from_ledger(
    row: SessionRow,
    runs: Mapping[str, RunRow],
    resources: Sequence[ResourceRow],
    *,
    slots: Mapping[str, Slot] | None = None,
) -> SessionState:
    """A snapshot of a session as the ledger last recorded it (at start-up, or after work ends).

    `runs` are the latest run per provider; `resources` every row of the session. A provider
    with resources but no run (a crash mid-create) shows as failed with a pending resource.
    """
    by_provider: dict[str, list[ResourceRow]] = {}
    for resource in resources:
        by_provider.setdefault(resource.provider, []).append(resource)
    deleted = row.state == "deleted"
    panels: list[PanelState] = []
    for name in dict.fromkeys([*runs, *by_provider]):
        run = runs.get(name)
        rows = by_provider.get(name, [])
        shown = [r for r in rows if r.live] or ([r for r in rows if r.state == ResourceState.DELETED.value] if deleted else [])
        views = tuple(
            ResourceView(r.ref, _RESOURCE_VIEW_STATE.get(r.state, r.state), r.error, handoff_label(r),
                         (r.handoff_detail or {}).get("claim_url") if r.handoff in ("claim_pending", "invited") else None)
            for r in shown
        )
        slot = Slot(run.slot) if run is not None else (slots or {}).get(name, Slot.TARGET)
        if run is not None:
            panel = PanelState(
                name, slot, Status(run.status), started_at=None, latency_ms=run.latency_ms, attempts=run.attempts,
                error=run.error, note=run.note, resources=views, from_pool=_pooled(run.note),
            )
        else:
            panel = PanelState(name, slot, Status.FAILED, error="interrupted: no finished run recorded", resources=views)
        if deleted or (views and all(v.state == "gone" for v in views)):
            panel = replace(panel, status=Status.GONE, error=None)
        elif any(v.error for v in views):
            panel = replace(panel, status=Status.FAILED, error="teardown: " + next(v.error for v in views if v.error))
        panels.append(panel)
    return SessionState(
        row.key, row.slug, created_at=row.created_at, state=row.state, target=row.target, env_file=row.env_file,
        panels=_sorted_panels(panels), updated_at=row.updated_at,
    )


def events_from_runs(session_key: str, runs: Iterable[RunRow]) -> list[Event]:
    """The recorded outcome of each provider's latest run, as the events that reported it, so a
    session loaded from the ledger has a log that reads like one watched live."""
    kinds = {Status.OK: ProviderSucceeded, Status.FAILED: ProviderFailed, Status.SKIPPED: ProviderSkipped}
    events: list[Event] = []
    for run in sorted(runs, key=lambda r: r.finished_at):
        status = Status(run.status)
        kind = kinds.get(status)
        if kind is None:
            continue
        result = ProviderResult(run.provider, Slot(run.slot), status, run.latency_ms, run.attempts, error=run.error, note=run.note)
        events.append(kind(session=session_key, provider=run.provider, result=result, at=run.finished_at))
    return events


def newest_first(sessions: Iterable[SessionState]) -> list[SessionState]:
    return sorted(sessions, key=lambda s: s.created_at, reverse=True)


#: the session list's sort columns (k9s-style: a key per column, pressing it again reverses)
SORT_COLUMNS = ("age", "state", "slug")


def sorted_sessions(sessions: Iterable[SessionState], column: str = "age", reverse: bool = False) -> list[SessionState]:
    """The list's order: `age` newest first, `state` by the shown word, `slug` alphabetical;
    ties newest first. `reverse` flips the column's order."""
    newest = newest_first(sessions)  # the tie-break: sorted() is stable
    if column == "state":
        ordered = sorted(newest, key=lambda s: (s.busy or s.state).replace("_", " "))
    elif column == "slug":
        ordered = sorted(newest, key=lambda s: s.slug)
    else:
        ordered = newest
    return list(reversed(ordered)) if reverse else ordered


def filter_words(session: SessionState) -> tuple[str, ...]:
    """What the session-list filter searches: key, slug, the state word (as the list shows it
    and as the ledger writes it), each provider's name and its status (`failed`, `ok`...)."""
    state = session.busy or session.state
    words = [session.key, session.resource_name, state, state.replace("_", " ")]
    for panel in session.panels:
        words += [panel.provider, panel.status.value, f"{panel.provider}:{panel.status.value}"]
    return tuple(words)


def matches(session: SessionState, text: str) -> bool:
    """The session-list filter: every space-separated term is a case-insensitive substring of
    one of `filter_words` (so `failed` finds a session with a failed provider, and `neon failed`
    one whose neon panel failed or that failed and uses neon)."""
    terms = text.strip().lower().split()
    if not terms:
        return True
    haystack = "\n".join(filter_words(session)).lower()
    return all(term in haystack for term in terms)
