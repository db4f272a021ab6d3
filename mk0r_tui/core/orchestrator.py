"""Provision, tear down and find orphans. Emits typed events to a sink; knows no UI.

`provision_services` runs every provider of the session concurrently, all-settled: each has its
own timeout, and one that raises or hangs never blocks or cancels the others. Then the target
(local folder or sandbox) receives the flattened env.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from mk0r_tui.core.envfile import EnvWriteError, read_env_file, scrub, write_env_file
from mk0r_tui.core.errors import Mk0rError
from mk0r_tui.core.instructions import ENV_HEADER
from mk0r_tui.core.events import (
    Event,
    EventSink,
    ProviderFailed,
    ProviderSkipped,
    ProviderStarted,
    ProviderSucceeded,
    ResourceDeleted,
    SessionProvisioned,
    TeardownFailed,
    TeardownStarted,
    null_sink,
)
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
from mk0r_tui.core.runtime import Runtime

log = logging.getLogger("mk0r_tui.orchestrator")

def describe_error(exc: BaseException, secrets: Iterable[str]) -> str:
    """One line for an operator: what failed and why, never a traceback, never a secret."""
    if isinstance(exc, TimeoutError):
        text = "timed out"
    elif isinstance(exc, Mk0rError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return scrub(text, secrets)


# -- provisioning ------------------------------------------------------------------------


def _selection(runtime: Runtime, selection):
    from mk0r_tui.providers import ProviderSpec, Skipped, select_providers

    items = selection if selection is not None else select_providers(runtime.settings, runtime.credentials)
    resolved = []
    for item in items:
        if isinstance(item, ProviderSpec):
            resolved.append(runtime.provider(item.name))
        elif isinstance(item, str):
            resolved.append(runtime.provider(item))
        else:
            resolved.append(item)  # a Provider instance or a Skipped
    return resolved, Skipped


def _reusable(runtime: Runtime, session: Session, provider, previous_env) -> tuple[ResourceRow, ...] | None:
    """A provider whose every ledger row is `created` and whose env is still on disk is not
    called again: provisioning a session twice creates nothing new."""
    keys = getattr(provider, "env_keys", ())
    if not keys or keys[0] not in previous_env:
        return None
    rows = runtime.ledger.resources(session.key, provider=provider.name, live_only=True)
    if not rows or any(r.state != ResourceState.CREATED.value for r in rows):
        return None
    return tuple(rows)


async def _run_provider(runtime, session, provider, sink, previous_env, *, env=None, results=()) -> ProviderResult:
    from mk0r_tui.providers.base import ProvisionContext

    name, slot = provider.name, provider.slot
    sink(ProviderStarted(session=session.key, provider=name, slot=slot))
    started = time.monotonic()
    reused = None if slot is Slot.TARGET else _reusable(runtime, session, provider, previous_env)
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
        session=session, provider=name, settings=runtime.settings, ledger=runtime.ledger, sink=sink,
        previous_env=previous_env, results=tuple(results), env=dict(env or {}),
    )
    timeout = getattr(provider, "timeout_s", None) or runtime.settings.provider_timeout_s
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
        kept = getattr(exc, "kept_env", None) or {}
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


async def provision_services(
    runtime: Runtime,
    session: Session,
    *,
    sink: EventSink = null_sink,
    target: str | None = None,
    selection=None,
    target_provider=None,
) -> ProvisionReport:
    """Provision every slot of `session` concurrently (all-settled), then deliver the env."""
    from mk0r_tui.providers import select_target

    ledger = runtime.ledger
    target_obj = target_provider or runtime.provider(select_target(runtime.settings, runtime.credentials, target).name)
    ledger.ensure_session(session, target=target_obj.name)
    ledger.set_session_state(session.key, "provisioning")
    runtime.in_flight.add(session.key)

    def record(event: Event) -> None:
        if isinstance(event, (ProviderSucceeded, ProviderFailed, ProviderSkipped)):
            ledger.record_run(session.key, event.result)
        sink(event)

    try:
        env_path = runtime.settings.env_file_for(session.slug)
        previous_env = read_env_file(env_path)
        chosen, Skipped = _selection(runtime, selection)
        results: list[ProviderResult | None] = [None] * len(chosen)

        async def settle(index: int, item) -> None:
            if isinstance(item, Skipped):
                result = ProviderResult(item.name, item.slot, Status.SKIPPED, note=item.reason, error=None)
                record(ProviderSkipped(session=session.key, provider=result.name, result=result))
                results[index] = result
                return
            results[index] = await _run_provider(runtime, session, item, record, previous_env)

        # Tasks start in order: the analytics tag, which never waits, settles first.
        async with asyncio.TaskGroup() as group:
            for index, item in enumerate(chosen):
                group.create_task(settle(index, item))
        settled = tuple(r for r in results if r is not None)
        env = flatten_env(settled)

        env_file: str | None = None
        try:
            write_env_file(env_path, env, header=ENV_HEADER.format(name=session.resource_name))
            env_file = str(env_path)
        except (EnvWriteError, ValueError) as exc:
            failed = ProviderResult(target_obj.name, Slot.TARGET, Status.FAILED, 0.0, 1, error=describe_error(exc, runtime.secrets()))
            record(ProviderFailed(session=session.key, provider=target_obj.name, result=failed))
            delivered = failed
        else:
            delivered = await _run_provider(runtime, session, target_obj, record, previous_env, env=env, results=settled)
        all_results = settled + (delivered,)
        report = ProvisionReport(session, all_results, env, env_file=env_file, target=target_obj.name)
        state = "ready" if report.ok else ("failed" if all(r.status is not Status.OK for r in all_results) else "partial")
        ledger.set_session_state(session.key, state, env_file=env_file)
        sink(SessionProvisioned(session=session.key, provider="*", ok=report.ok, env_file=env_file))
        return report
    except BaseException:
        # interrupted or broken before every provider settled: never leave it "provisioning"
        ledger.set_session_state(session.key, "interrupted")
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

    def to_json(self) -> dict:
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


async def _delete_rows(runtime, rows: Sequence[ResourceRow], sink, session_key, stop) -> list[TeardownOutcome]:
    """Providers in parallel, and within a provider every session (or lone orphan) in parallel,
    at most `MK0R_CONCURRENCY_<PROVIDER>` deletes of one provider at once; one session's rows of
    one provider go newest first (a database before its role). Deleting orphans one provider at
    a time, one by one, made 200 Neon orphans take 200 round trips end to end."""
    groups: dict[tuple, list[ResourceRow]] = {}
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
    read_env_file(runtime.settings.env_file_for(session_row.slug))  # its secrets: scrubbed from any delete error
    rows = runtime.ledger.resources(session_row.key, live_only=True)
    runtime.ledger.set_session_state(session_row.key, "tearing_down")
    runtime.in_flight.add(session_row.key)
    try:
        outcomes = await _delete_rows(runtime, rows, sink, session_row.key, stop)
    finally:
        runtime.in_flight.discard(session_row.key)
    remaining = runtime.ledger.resources(session_row.key, live_only=True)
    if not remaining:
        env_copy = runtime.settings.env_file_for(session_row.slug).parent
        if env_copy.is_symlink():
            env_copy.unlink()  # the link itself, never what it points to
        elif env_copy.exists():
            shutil.rmtree(env_copy, ignore_errors=True)
        runtime.ledger.set_session_state(session_row.key, "deleted")
    else:
        runtime.ledger.set_session_state(session_row.key, "teardown_incomplete")
    return TeardownReport(session_row.key, tuple(outcomes))


# -- orphans -----------------------------------------------------------------------------


#: a session still in this state when no teardown of it runs here was torn down by a process that
#: died (a second Ctrl+C, a kill): what it left is an orphan. `teardown_incomplete` is not: that
#: teardown ended cleanly, its session still owns the rest and a new teardown resumes it.
DIED_IN_TEARDOWN_STATE = "tearing_down"


@dataclass
class OrphanScan:
    orphans: list[Orphan] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)


def scannable_providers(runtime: Runtime) -> list[str]:
    """Every provider and target that can be asked what exists: local ones always, cloud ones
    when their key is present."""
    from mk0r_tui.providers import REGISTRY, TARGETS

    names = []
    for spec in REGISTRY + TARGETS:
        if spec.key_name is None or runtime.credentials.get(spec.key_name).present:
            names.append(spec.name)
    return names


async def find_orphans(runtime: Runtime, *, older_than_s: float = 0.0, providers: Sequence[str] | None = None) -> OrphanScan:
    """Resources named `mk0r-*` with no live ledger row, pending rows (a crash between intent
    and answer), and what a teardown that died left behind (rows still `deleting`, or live in a
    session still `tearing_down`). Deletes nothing."""
    now = time.time()
    scan = OrphanScan()
    ledger_rows = [r for r in runtime.ledger.resources(live_only=True) if r.session_key not in runtime.in_flight]
    unfinished = {s.key for s in runtime.ledger.list_sessions() if s.state == DIED_IN_TEARDOWN_STATE}

    def unconfirmed(row: ResourceRow) -> bool:
        """A create or a delete that was asked for and never confirmed."""
        return row.state != ResourceState.CREATED.value or row.session_key in unfinished

    settled = [r for r in ledger_rows if not unconfirmed(r)]
    known_created = {(r.provider, r.kind, r.name) for r in settled} | {
        (r.provider, r.kind, r.remote_id) for r in settled if r.remote_id
    }
    in_flight_names = {
        (r.provider, r.kind, r.name) for r in runtime.ledger.resources(live_only=True) if r.session_key in runtime.in_flight
    }
    names = list(providers) if providers is not None else scannable_providers(runtime)
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
                row = ResourceRow(**{**_row_dict(row), "remote_id": orphan.remote_id})
            rows.append(row)
        else:
            rows.append(ResourceRow(None, None, orphan.provider, orphan.kind, orphan.name, orphan.remote_id, None, ResourceState.CREATED.value))
    return await _delete_rows(runtime, rows, sink, "", stop)


def _row_dict(row: ResourceRow) -> dict:
    return {name: getattr(row, name) for name in ResourceRow.__slots__}
