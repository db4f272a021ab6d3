"""Provision, tear down and find orphans. Emits typed events to a sink; knows no UI.

`provision_services` executes a plan: every provider of the session concurrently, all-settled:
each has its own timeout, and one that raises or hangs never blocks or cancels the others. Then
the target (local folder or sandbox) receives the flattened env.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mk0r_tui.core.config import Settings
from mk0r_tui.core.envfile import EnvWriteError, read_env_file, write_env_file
from mk0r_tui.core.errors import Mk0rError, ProviderError
from mk0r_tui.core.events import (
    Event,
    EventSink,
    ProviderFailed,
    ProviderSkipped,
    ProviderStarted,
    ProviderSucceeded,
    ResourceDeleted,
    RunStarted,
    SessionProvisioned,
    SessionTornDown,
    TeardownFailed,
    TeardownStarted,
    null_sink,
)
from mk0r_tui.core.instructions import ENV_HEADER
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import (
    FoundResource,
    Orphan,
    ProviderResult,
    ProvisionReport,
    ResourceRef,
    ResourceState,
    Session,
    Slot,
    Status,
)
from mk0r_tui.core.plan import Plan, PlanStep
from mk0r_tui.core.provider import Provider, ProvisionContext, SessionResources
from mk0r_tui.core.render import describe_error
from mk0r_tui.core.states import SessionPhase, provisioned_state, torn_down_state
from mk0r_tui.engine.runtime import Runtime

log = logging.getLogger("mk0r_tui.orchestrator")

# -- provisioning ------------------------------------------------------------------------


def _reusable(resources: SessionResources, provider: Provider, previous_env: Mapping[str, str]) -> tuple[ResourceRow, ...] | None:
    """A provider whose every ledger row is `created` and whose env is still on disk is not
    called again: provisioning a session twice creates nothing new."""
    keys = provider.env_keys
    if not keys or keys[0] not in previous_env:
        return None
    rows = resources.rows(provider.name)
    if not rows or any(r.state != ResourceState.CREATED.value for r in rows):
        return None
    return rows


async def _run_provider(
    runtime: Runtime,
    resources: SessionResources,
    provider: Provider,
    sink: EventSink,
    previous_env: Mapping[str, str],
    *,
    env: Mapping[str, str] | None = None,
    results: Sequence[ProviderResult] = (),
) -> ProviderResult:
    session = resources.session
    name, slot = provider.name, provider.slot
    sink(ProviderStarted(session=session.key, provider=name, slot=slot))
    started = time.monotonic()
    reused = None if slot is Slot.TARGET else _reusable(resources, provider, previous_env)
    if reused is not None:
        result = ProviderResult(
            name, slot, Status.OK, 0.0, 0,
            resources=tuple(r.ref for r in reused),
            env={k: previous_env[k] for k in provider.env_keys if k in previous_env},
            note="already provisioned (reused)",
        )
        sink(ProviderSucceeded(session=session.key, provider=name, result=result))
        return result
    ctx = ProvisionContext(
        session=session, provider=name, settings=runtime.settings, resources=resources, sink=sink,
        previous_env=previous_env, results=tuple(results), env=dict(env or {}),
    )
    timeout = provider.timeout_s or runtime.settings.provider_timeout_s
    try:
        async with asyncio.timeout(timeout):
            outcome = await provider.provision(ctx)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # all-settled: every failure becomes a result
        latency = (time.monotonic() - started) * 1000
        if isinstance(exc, TimeoutError):
            message = f"timed out after {timeout:g}s"
        else:
            message = describe_error(exc, runtime.secrets())
        if not isinstance(exc, (Mk0rError, TimeoutError)):
            log.error("%s failed for %s: %s", name, session.slug, message, exc_info=(type(exc), exc, None))
        kept = exc.kept_env if isinstance(exc, ProviderError) else {}
        result = ProviderResult(name, slot, Status.FAILED, latency, max(ctx.attempts, 1), error=message, env=kept)
        sink(ProviderFailed(session=session.key, provider=name, result=result))
        return result
    latency = (time.monotonic() - started) * 1000
    result = ProviderResult(
        name, slot, Status.OK, latency, max(ctx.attempts, 1),
        resources=tuple(outcome.resources), env=dict(outcome.env), note=outcome.note,
    )
    sink(ProviderSucceeded(session=session.key, provider=name, result=result))
    return result


def flatten_env(results: Sequence[ProviderResult]) -> dict[str, str]:
    """Every ok provider's env, plus what a failed provider said is still valid."""
    env: dict[str, str] = {}
    for result in results:
        if result.status in (Status.OK, Status.FAILED):
            env.update(result.env)
    return env


def write_operator_env(settings: Settings, session: Session, env: Mapping[str, str]) -> Path:
    """The operator's copy of the session's `.env`, in `<data dir>/apps/<slug>/`: the one writer
    of that file. The local-folder target delivers into the same folder and leaves it alone."""
    path = settings.env_file_for(session.slug)
    write_env_file(path, env, header=ENV_HEADER.format(name=session.resource_name))
    return path


async def provision_services(
    runtime: Runtime, session: Session, plan: Plan, *, sink: EventSink = null_sink
) -> ProvisionReport:
    """Provision every running step of `plan` for `session` concurrently (all-settled), write the
    operator's copy of the `.env` (the one writer of that file), then run the target."""
    sink = runtime.journal.wrap(session.slug, sink)  # every run writes the journal (engine/journal.py)
    ledger = runtime.ledger
    target = runtime.provider(plan.target.name)
    ledger.ensure_session(session, target=target.name)
    ledger.set_session_state(session.key, SessionPhase.PROVISIONING)
    sink(RunStarted(session=session.key, provider="*", kind="provision", state=SessionPhase.PROVISIONING.value, target=target.name))
    runtime.in_flight.add(session.key)

    def record(event: Event) -> None:
        if isinstance(event, (ProviderSucceeded, ProviderFailed, ProviderSkipped)):
            ledger.record_run(session.key, event.result)
        sink(event)

    try:
        resources = SessionResources(ledger, session)
        env_path = runtime.settings.env_file_for(session.slug)
        previous_env = read_env_file(env_path)
        results: list[ProviderResult | None] = [None] * len(plan.providers)
        # every provider of the plan is built before anything is created: a broken one stops the run here
        chosen = [(step, runtime.provider(step.name) if step.runs else None) for step in plan.providers]

        async def settle(index: int, step: PlanStep, provider: Provider | None) -> None:
            if provider is None:
                result = ProviderResult(step.name, step.slot, Status.SKIPPED, note=step.skipped, error=None)
                record(ProviderSkipped(session=session.key, provider=result.name, result=result))
                results[index] = result
                return
            results[index] = await _run_provider(runtime, resources, provider, record, previous_env)

        # Tasks start in order: the analytics tag, which never waits, settles first.
        async with asyncio.TaskGroup() as group:
            for index, (step, provider) in enumerate(chosen):
                group.create_task(settle(index, step, provider))
        settled = tuple(r for r in results if r is not None)
        env = flatten_env(settled)

        env_file: str | None = None
        try:
            env_file = str(write_operator_env(runtime.settings, session, env))
        except (EnvWriteError, ValueError) as exc:
            failed = ProviderResult(target.name, Slot.TARGET, Status.FAILED, 0.0, 1, error=describe_error(exc, runtime.secrets()))
            record(ProviderFailed(session=session.key, provider=target.name, result=failed))
            delivered = failed
        else:
            delivered = await _run_provider(runtime, resources, target, record, previous_env, env=env, results=settled)
        all_results = (*settled, delivered)
        report = ProvisionReport(session, all_results, env, env_file=env_file, target=target.name)
        state = provisioned_state(all_results)
        ledger.set_session_state(session.key, state, env_file=env_file)
        sink(SessionProvisioned(session=session.key, provider="*", ok=report.ok, state=state.value, env_file=env_file))
        return report
    except BaseException:
        # interrupted or broken before every provider settled: never leave it "provisioning"
        ledger.set_session_state(session.key, SessionPhase.INTERRUPTED)
        sink(SessionProvisioned(session=session.key, provider="*", ok=False, state=SessionPhase.INTERRUPTED.value))
        raise
    finally:
        runtime.in_flight.discard(session.key)


# -- teardown ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TeardownOutcome:
    resource: ResourceRef
    outcome: str  # deleted | already_gone | failed | not_attempted
    error: str | None = None
    latency_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {**self.resource.to_json(), "outcome": self.outcome, "error": self.error, "latency_ms": round(self.latency_ms, 1)}


@dataclass(frozen=True, slots=True)
class TeardownReport:
    session: str
    outcomes: tuple[TeardownOutcome, ...]

    @property
    def ok(self) -> bool:
        return all(o.outcome in ("deleted", "already_gone") for o in self.outcomes)


async def _delete_one(runtime: Runtime, row: ResourceRow, sink: EventSink, session_key: str, stop: asyncio.Event | None) -> TeardownOutcome:
    ref = row.ref
    if stop is not None and stop.is_set():
        return TeardownOutcome(ref, "not_attempted", "interrupted before this delete started")
    sink(TeardownStarted(session=session_key, provider=row.provider, resource=ref))
    previous = ResourceState(row.state) if row.state != ResourceState.DELETING.value else ResourceState.CREATED
    if row.id is not None:
        runtime.ledger.mark_state(row.id, ResourceState.DELETING)
    started = time.monotonic()
    try:
        provider = runtime.provider(row.provider)
        async with asyncio.timeout(runtime.settings.provider_timeout_s):
            # shielded: an interrupt lets an in-flight delete finish and be recorded
            deleted = await asyncio.shield(provider.teardown(row))
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        message = describe_error(exc, runtime.secrets())
        if row.id is not None:
            runtime.ledger.mark_state(row.id, previous, error=message)
        sink(TeardownFailed(session=session_key, provider=row.provider, resource=ref, error=message))
        return TeardownOutcome(ref, "failed", message, (time.monotonic() - started) * 1000)
    latency = (time.monotonic() - started) * 1000
    if row.id is not None:
        runtime.ledger.mark_state(row.id, ResourceState.DELETED)
    sink(ResourceDeleted(session=session_key, provider=row.provider, resource=ref, already_gone=not deleted, latency_ms=latency))
    return TeardownOutcome(ref, "deleted" if deleted else "already_gone", None, latency)


async def _delete_rows(
    runtime: Runtime, rows: Sequence[ResourceRow], sink: EventSink, session_key: str, stop: asyncio.Event | None
) -> list[TeardownOutcome]:
    """Providers in parallel, and within a provider every session (or lone orphan) in parallel,
    at most `MK0R_CONCURRENCY_<PROVIDER>` deletes of one provider at once; one session's rows of
    one provider go newest first (a database before its role). Deleting orphans one provider at
    a time, one by one, made 200 Neon orphans take 200 round trips end to end."""
    groups: dict[tuple[str, tuple[str | None, ...]], list[ResourceRow]] = {}
    for row in rows:
        owner = ("session", row.session_key) if row.session_key else ("orphan", row.kind, row.name, row.remote_id)
        groups.setdefault((row.provider, owner), []).append(row)
    outcomes: list[TeardownOutcome] = []
    limits = {p: asyncio.Semaphore(runtime.settings.concurrency_for(p)) for p in {r.provider for r in rows}}

    async def one_group(provider: str, group_rows: list[ResourceRow]) -> None:
        for row in sorted(group_rows, key=lambda r: -(r.id or 0)):
            async with limits[provider]:
                outcomes.append(await _delete_one(runtime, row, sink, row.session_key or session_key, stop))

    async with asyncio.TaskGroup() as group:
        for (provider, _owner), group_rows in groups.items():
            group.create_task(one_group(provider, group_rows))
    return outcomes


async def teardown_session(
    runtime: Runtime, key: str, *, sink: EventSink = null_sink, stop: asyncio.Event | None = None
) -> TeardownReport:
    """Delete every live resource of a session. Idempotent: a second call does nothing."""
    session_row = runtime.ledger.require_session(key)
    sink = runtime.journal.wrap(session_row.slug, sink)  # every run writes the journal (engine/journal.py)
    read_env_file(runtime.settings.env_file_for(session_row.slug))  # its secrets: scrubbed from any delete error
    # a resource that changed hands (or is offered to its new owner) is never deleted
    rows = [r for r in runtime.ledger.resources(session_row.key, live_only=True) if not r.handed_off]
    runtime.ledger.set_session_state(session_row.key, SessionPhase.TEARING_DOWN)
    sink(RunStarted(session=session_row.key, provider="*", kind="teardown", state=SessionPhase.TEARING_DOWN.value))
    runtime.in_flight.add(session_row.key)
    try:
        outcomes = await _delete_rows(runtime, rows, sink, session_row.key, stop)
    except BaseException:
        # broken or interrupted before every delete settled: never leave it "tearing_down"
        runtime.ledger.set_session_state(session_row.key, SessionPhase.TEARDOWN_INCOMPLETE)
        sink(SessionTornDown(session=session_row.key, provider="*", ok=False, state=SessionPhase.TEARDOWN_INCOMPLETE.value))
        raise
    finally:
        runtime.in_flight.discard(session_row.key)
    remaining = runtime.ledger.resources(session_row.key, live_only=True)
    state = torn_down_state(sum(not r.left for r in remaining), sum(r.left for r in remaining))
    if state is SessionPhase.DELETED:
        env_copy = runtime.settings.env_file_for(session_row.slug).parent
        if env_copy.is_symlink():
            env_copy.unlink()  # the link itself, never what it points to
        elif env_copy.exists():
            shutil.rmtree(env_copy, ignore_errors=True)
    runtime.ledger.set_session_state(session_row.key, state)
    report = TeardownReport(session_row.key, tuple(outcomes))
    sink(SessionTornDown(session=session_row.key, provider="*", ok=report.ok, state=state.value))
    return report


# -- orphans -----------------------------------------------------------------------------


#: a session still in this state when no teardown of it runs here was torn down by a process that
#: died (a second Ctrl+C, a kill): what it left is an orphan. `teardown_incomplete` is not: that
#: teardown ended cleanly, its session still owns the rest and a new teardown resumes it.
DIED_IN_TEARDOWN_STATE = SessionPhase.TEARING_DOWN.value


@dataclass
class OrphanScan:
    orphans: list[Orphan] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)


async def find_orphans(runtime: Runtime, *, older_than_s: float = 0.0, providers: Sequence[str] | None = None) -> OrphanScan:
    """Resources named `mk0r-*` with no live ledger row, pending rows (a crash between intent
    and answer), and what a teardown that died left behind (rows still `deleting`, or live in a
    session still `tearing_down`). Deletes nothing."""
    now = time.time()
    scan = OrphanScan()
    ledger_rows = [r for r in runtime.ledger.resources(live_only=True) if r.session_key not in runtime.in_flight]
    unfinished = {s.key for s in runtime.ledger.list_sessions() if s.state == DIED_IN_TEARDOWN_STATE}

    def unconfirmed(row: ResourceRow) -> bool:
        """A create or a delete that was asked for and never confirmed (never one that changed hands)."""
        return not row.handed_off and (row.state != ResourceState.CREATED.value or row.session_key in unfinished)

    settled = [r for r in ledger_rows if not unconfirmed(r)]
    known_created = {(r.provider, r.kind, r.name) for r in settled} | {
        (r.provider, r.kind, r.remote_id) for r in settled if r.remote_id
    }
    in_flight_names = {
        (r.provider, r.kind, r.name) for r in runtime.ledger.resources(live_only=True) if r.session_key in runtime.in_flight
    }
    names = list(providers) if providers is not None else runtime.scannable()
    scan.scanned = names
    pending = {
        (r.provider, r.kind, r.name): r
        for r in ledger_rows
        if unconfirmed(r) and (providers is None or r.provider in names)
    }
    seen_pending: dict[tuple[str, str, str], str] = {}

    async def discover(name: str) -> list[FoundResource]:
        try:
            async with asyncio.timeout(runtime.settings.provider_timeout_s):
                provider = runtime.provider(name)
                found = await provider.discover()
                scan.warnings.extend(getattr(provider, "discovery_warnings", ()))
                return found
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            scan.warnings.append(f"{name}: discovery failed: {describe_error(exc, runtime.secrets())}")
            return []

    found_lists = await asyncio.gather(*(discover(n) for n in names))
    for found in (f for lst in found_lists for f in lst):
        key = (found.provider, found.kind, found.name)
        if key in known_created or (found.provider, found.kind, found.remote_id) in known_created or key in in_flight_names:
            continue
        if key in pending:
            seen_pending[key] = found.remote_id
            continue
        age = None if found.created_at is None else max(0.0, now - found.created_at)
        if age is not None and age < older_than_s:
            continue
        scan.orphans.append(Orphan(found.provider, found.kind, found.name, found.remote_id, age, "no live session in the ledger owns it"))
    for key, row in pending.items():
        age = max(0.0, now - row.created_at)
        if age < older_than_s:
            continue
        exists = key in seen_pending
        if row.state == ResourceState.PENDING.value:
            reason = (
                "pending: the create was sent but never confirmed (crash?); it exists upstream"
                if exists
                else "pending: intent recorded, create never confirmed (crash?)"
            )
        else:
            reason = f"teardown of session {row.session_key} did not finish" + (
                "; the delete was sent but never confirmed" if row.state == ResourceState.DELETING.value else ""
            ) + ("; it exists upstream" if exists else "")
        scan.orphans.append(
            Orphan(row.provider, row.kind, row.name, seen_pending.get(key) or row.remote_id, age, reason, ledger_id=row.id)
        )
    return scan


async def delete_orphans(runtime: Runtime, orphans: Sequence[Orphan], *, sink: EventSink = null_sink, stop: asyncio.Event | None = None) -> list[TeardownOutcome]:
    rows: list[ResourceRow] = []
    for orphan in orphans:
        if orphan.ledger_id is not None:
            row = runtime.ledger.resource(orphan.ledger_id)
            if orphan.remote_id and not row.remote_id:
                row = replace(row, remote_id=orphan.remote_id)
            rows.append(row)
        else:
            rows.append(ResourceRow(None, None, orphan.provider, orphan.kind, orphan.name, orphan.remote_id, None, ResourceState.CREATED.value))
    return await _delete_rows(runtime, rows, sink, "", stop)
