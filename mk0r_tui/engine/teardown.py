"""Tear down and find orphans: the delete side of the engine (`orchestrator.py` provisions).
Emits typed events to a sink; knows no UI.

`teardown_session` deletes a session's live resources under its lease, idempotently; `find_orphans`
lists what the providers hold that no live session's ledger row explains, and `delete_orphans`
deletes them, each re-checked under its session's lease just before its delete. Kept apart from
provisioning so that a provision (the CLI's pool-served one above all) does not load its report
types and helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mk0r_tui.core.budget_clock import budget_timeout
from mk0r_tui.core.envfile import read_env_file
from mk0r_tui.core.events import (
    EventSink,
    ResourceDeleted,
    RunStarted,
    SessionTornDown,
    TeardownFailed,
    TeardownStarted,
    null_sink,
)
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.logs import logged
from mk0r_tui.core.models import (
    RESOURCE_PREFIX,
    FoundResource,
    Orphan,
    ResourceRef,
    ResourceState,
)
from mk0r_tui.core.render import describe_error
from mk0r_tui.core.states import SessionPhase, torn_down_state
from mk0r_tui.engine.lease import try_lease
from mk0r_tui.engine.runtime import Runtime

log = logging.getLogger("mk0r_tui.teardown")

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


async def _delete_one(
    runtime: Runtime, row: ResourceRow, sink: EventSink, session_key: str, stop: asyncio.Event | None,
    guard: _OrphanGuard | None = None, scanned_state: str | None = None,
) -> TeardownOutcome:
    ref = row.ref
    if stop is not None and stop.is_set():
        return TeardownOutcome(ref, "not_attempted", "interrupted before this delete started")
    if guard is None:
        return await _delete_checked(runtime, row, sink, session_key)
    why = guard.enter(row, scanned_state)
    if why is not None:
        log.info("orphan %s %s %s %s", row.provider, row.kind, row.name, why)
        return TeardownOutcome(ref, "skipped", why)
    try:
        return await _delete_checked(runtime, row, sink, session_key)
    finally:
        guard.leave(row)


async def _delete_checked(runtime: Runtime, row: ResourceRow, sink: EventSink, session_key: str) -> TeardownOutcome:
    ref = row.ref
    sink(TeardownStarted(session=session_key, provider=row.provider, resource=ref))
    previous = ResourceState(row.state) if row.state != ResourceState.DELETING.value else ResourceState.CREATED
    if row.id is not None:  # committed before the delete is sent, off the event loop
        await runtime.writer.run(runtime.ledger.mark_state, row.id, ResourceState.DELETING)
    started = time.monotonic()
    try:
        provider = runtime.provider(row.provider)
        async with budget_timeout(runtime.settings.provider_timeout_s):
            # shielded: an interrupt lets an in-flight delete finish and be recorded
            deleted = await asyncio.shield(provider.teardown(row))
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        message = describe_error(exc, runtime.secrets())
        if row.id is not None:
            await runtime.writer.run_to_end(runtime.ledger.mark_state, row.id, previous, error=message)
        sink(TeardownFailed(session=session_key, provider=row.provider, resource=ref, error=message))
        return TeardownOutcome(ref, "failed", message, (time.monotonic() - started) * 1000)
    latency = (time.monotonic() - started) * 1000
    if row.id is not None:
        await runtime.writer.run_to_end(runtime.ledger.mark_state, row.id, ResourceState.DELETED)
    sink(ResourceDeleted(session=session_key, provider=row.provider, resource=ref, already_gone=not deleted, latency_ms=latency))
    return TeardownOutcome(ref, "deleted" if deleted else "already_gone", None, latency)


async def _delete_rows(
    runtime: Runtime, rows: Sequence[ResourceRow], sink: EventSink, session_key: str, stop: asyncio.Event | None,
    *, scanned_state: Callable[[ResourceRow], str | None] | None = None, orphan_guard: _OrphanGuard | None = None,
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
                outcomes.append(await _delete_one(
                    runtime, row, sink, row.session_key or session_key, stop,
                    orphan_guard, scanned_state(row) if scanned_state is not None else None,
                ))

    async with asyncio.TaskGroup() as group:
        for (provider, _owner), group_rows in groups.items():
            group.create_task(one_group(provider, group_rows))
    return outcomes


async def teardown_session(
    runtime: Runtime, key: str, *, sink: EventSink = null_sink, stop: asyncio.Event | None = None
) -> TeardownReport:
    """Delete every live resource of a session. Idempotent: a second call does nothing. Holds
    the session's lease for the whole run (a provision of it, in any process, waits)."""
    found = runtime.ledger.require_session(key)
    async with runtime.lease(found.session.resource_name, found.key, "teardown"):
        return await _teardown_session(runtime, found.key, sink=sink, stop=stop)


async def _teardown_session(runtime: Runtime, key: str, *, sink: EventSink, stop: asyncio.Event | None) -> TeardownReport:
    session_row = runtime.ledger.require_session(key)
    sink = logged(session_row.slug, runtime.journal.wrap(session_row.slug, sink))  # the journal and the log
    read_env_file(runtime.settings.env_file_for(session_row.slug))  # its secrets: scrubbed from any delete error
    # a resource that changed hands (or is offered to its new owner) is never deleted
    rows = [r for r in runtime.ledger.resources(session_row.key, live_only=True) if not r.handed_off]
    await runtime.writer.run(runtime.ledger.set_session_state, session_row.key, SessionPhase.TEARING_DOWN)
    sink(RunStarted(session=session_row.key, provider="*", kind="teardown", state=SessionPhase.TEARING_DOWN.value))
    try:
        outcomes = await _delete_rows(runtime, rows, sink, session_row.key, stop)
    except BaseException:
        # broken or interrupted before every delete settled: never leave it "tearing_down"
        await runtime.writer.run_to_end(runtime.ledger.set_session_state, session_row.key, SessionPhase.TEARDOWN_INCOMPLETE)
        sink(SessionTornDown(session=session_row.key, provider="*", ok=False, state=SessionPhase.TEARDOWN_INCOMPLETE.value))
        raise
    remaining = runtime.ledger.resources(session_row.key, live_only=True)
    state = torn_down_state(sum(not r.left for r in remaining), sum(r.left for r in remaining))
    if state is SessionPhase.DELETED:
        env_copy = runtime.settings.env_file_for(session_row.slug).parent
        if env_copy.is_symlink():
            env_copy.unlink()  # the link itself, never what it points to
        elif env_copy.exists():
            shutil.rmtree(env_copy, ignore_errors=True)
    await runtime.writer.run(runtime.ledger.set_session_state, session_row.key, state)
    report = TeardownReport(session_row.key, tuple(outcomes))
    sink(SessionTornDown(session=session_row.key, provider="*", ok=report.ok, state=state.value))
    await runtime.writer.drain()  # the journal has the whole teardown when it returns
    return report


# -- orphans -----------------------------------------------------------------------------


#: a session still in this state with no live lease was torn down by a process that died (a
#: second Ctrl+C, a kill): what it left is an orphan. `teardown_incomplete` is not: that teardown
#: ended cleanly (or its owner was found gone and the word written), its session still owns the
#: rest and a new teardown resumes it.
DIED_IN_TEARDOWN_STATE = SessionPhase.TEARING_DOWN.value

#: the reason of an orphan that no ledger row names and that is not this ledger's
FOREIGN_REASON = "not in this ledger"


@dataclass
class OrphanScan:
    orphans: list[Orphan] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)

    @property
    def ours(self) -> list[Orphan]:
        return [o for o in self.orphans if not o.foreign]

    @property
    def foreign(self) -> list[Orphan]:
        return [o for o in self.orphans if o.foreign]


def _foreign(runtime: Runtime, found: FoundResource, ledger_id: str, our_names: set[str]) -> bool:
    """Whether `found` may belong to another ledger: its owner mark is another's (or missing, where
    the provider carries marks), or, where it carries none, no session of this ledger has its name."""
    try:
        marks = runtime.provider(found.provider).owner_marks
    except Exception:  # a provider that cannot be built: say foreign, the safe side
        return True
    if marks == "local":
        return False
    if found.owner is not None:
        return found.owner != ledger_id
    if marks == "mark":
        return True
    return found.name not in our_names


#: the default `--older-than` for a resource no ledger row records: longer than a run's worst case
#: (providers run in parallel, each within MK0R_PROVIDER_TIMEOUT_S = 120 s, then the target within
#: the same; a few minutes with retries), so a run that no lease of this ledger shows (another
#: ledger's, an older mk0r-tui's) is never mistaken for an orphan while it is still creating.
#: This ledger's own rows need no age: their lease says whether a run still owns them; nor do
#: the local providers' resources (this data dir's: every run on it holds a lease here).
DEFAULT_UNRECORDED_AGE_S = 3600.0


async def find_orphans(
    runtime: Runtime, *, older_than_s: float | None = None, providers: Sequence[str] | None = None
) -> OrphanScan:
    """Resources named `mk0r-*` with no live ledger row, pending rows (a crash between intent
    and answer), what a teardown that died left behind (rows still `deleting`, or live in a
    session still `tearing_down` with no live lease), and a second resource of a name whose
    recorded id differs (a duplicate). Never lists what a live lease covers (a run in any
    process), nor the app folder of a session that is not deleted (an E2B session's operator
    copy of the `.env`). Resources that may be another ledger's are marked `foreign`. Deletes nothing."""
    now = time.time()
    unrecorded_age = DEFAULT_UNRECORDED_AGE_S if older_than_s is None else older_than_s
    recorded_age = 0.0 if older_than_s is None else older_than_s
    scan = OrphanScan()
    ledger = runtime.ledger
    ledger.settle_owner_gone(runtime.settings.lease_stale_s)  # provisioning with no owner → interrupted
    live = ledger.live_leases(runtime.settings.lease_stale_s)
    busy_keys = {lease.session_key for lease in live.values()}
    sessions = ledger.list_sessions(include_pool=True)  # a pool item's rows are this ledger's too
    our_names = {RESOURCE_PREFIX + s.slug for s in sessions}
    kept_folders = {RESOURCE_PREFIX + s.slug for s in sessions if s.state != SessionPhase.DELETED.value}
    all_live = ledger.resources(live_only=True)
    ledger_rows = [r for r in all_live if r.session_key not in busy_keys]
    busy_rows = {(r.provider, r.kind, r.name) for r in all_live if r.session_key in busy_keys}
    unfinished = {s.key for s in sessions if s.state == DIED_IN_TEARDOWN_STATE and s.key not in busy_keys}
    ledger_id = ledger.ledger_id

    def unconfirmed(row: ResourceRow) -> bool:
        """A create or a delete that was asked for and never confirmed (never one that changed hands)."""
        return not row.handed_off and (row.state != ResourceState.CREATED.value or row.session_key in unfinished)

    settled = [r for r in ledger_rows if not unconfirmed(r)]
    recorded: dict[tuple[str, str, str], list[ResourceRow]] = {}
    for r in settled:
        recorded.setdefault((r.provider, r.kind, r.name), []).append(r)
    known_ids = {(r.provider, r.kind, r.remote_id) for r in all_live if r.remote_id}
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
                scan.warnings.extend(provider.discovery_warnings)
                return found
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            scan.warnings.append(f"{name}: discovery failed: {describe_error(exc, runtime.secrets())}")
            return []

    found_lists = await asyncio.gather(*(discover(n) for n in names))
    for found in (f for lst in found_lists for f in lst):
        key = (found.provider, found.kind, found.name)
        if found.name in live or key in busy_rows:
            continue  # a run holds its session now, in this process or another
        if found.kind == "app-folder" and found.name in kept_folders:
            continue  # the operator's copy of the .env of a session that is not deleted
        if (found.provider, found.kind, found.remote_id) in known_ids:
            continue
        if key in pending:
            seen_pending[key] = found.remote_id
            continue
        same_name = recorded.get(key, [])
        local = _marks_of(runtime, found.provider) == "local"
        if same_name and (local or any(r.remote_id is None for r in same_name)):
            continue  # recorded by name only: it is that row's resource
        age = None if found.created_at is None else max(0.0, now - found.created_at)
        if age is not None and age < (recorded_age if local else unrecorded_age):
            continue  # local ones are this data dir's: every run on it holds a lease in this ledger
        foreign = _foreign(runtime, found, ledger_id, our_names)
        if same_name:
            row = same_name[0]
            reason = (f"duplicate: session {row.session_key} records {found.kind} {found.name} as {row.remote_id}; "
                      "this is a second one")
        elif foreign:
            reason = FOREIGN_REASON + (f" (owner mark: ledger {found.owner})" if found.owner else " (no owner mark)")
        else:
            reason = "no live session in the ledger owns it"
        scan.orphans.append(Orphan(found.provider, found.kind, found.name, found.remote_id, age, reason,
                                   foreign=foreign, owner=found.owner))
    for key, row in pending.items():
        age = max(0.0, now - row.created_at)
        if age < recorded_age:
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


def _marks_of(runtime: Runtime, provider: str) -> str:
    try:
        return runtime.provider(provider).owner_marks
    except Exception:
        return "none"


class _OrphanGuard:
    """Right before each orphan delete: take its session's lease (no wait: a live run keeps it)
    and check it is still an orphan (not adopted, recorded or made live since the scan). The
    leases are held until that name's deletes are done, with a heartbeat."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.held: dict[str, str] = {}
        self.users: dict[str, int] = {}

    def _lease_name(self, row: ResourceRow) -> tuple[str, str]:
        if row.session_key:
            found = self.runtime.ledger.get_session(row.session_key)
            if found is not None:
                return found.session.resource_name, found.key
        return row.name, row.session_key or ""

    def enter(self, row: ResourceRow, scanned_state: str | None) -> str | None:
        """None when the delete may go ahead (then `leave` must follow), else why it is skipped."""
        name, session_key = self._lease_name(row)
        if name not in self.held:
            got = try_lease(self.runtime.ledger, name, session_key, "orphans", stale_s=self.runtime.settings.lease_stale_s)
            if not isinstance(got, str):
                return f"skipped: its session is live again ({got.describe()})"
            self.held[name] = got
        self.users[name] = self.users.get(name, 0) + 1
        why = self._changed(row, scanned_state)
        if why is not None:
            self.leave(row)
        return why

    def _changed(self, row: ResourceRow, scanned_state: str | None) -> str | None:
        ledger = self.runtime.ledger
        if row.id is not None:
            current = ledger.resource(row.id)
            if not current.live:
                return "skipped: no longer live in the ledger"
            if current.state != scanned_state:
                return f"skipped: it became {current.state} since the scan (adopted by a run?)"
            return None
        for other in ledger.resources(live_only=True):
            if (other.provider, other.kind) != (row.provider, row.kind):
                continue
            if other.remote_id is not None and other.remote_id == row.remote_id:
                return f"skipped: session {other.session_key} has recorded it since the scan"
            if other.name == row.name and other.remote_id is None:
                return f"skipped: session {other.session_key} is creating {row.name} (pending)"
        if row.kind == "app-folder":
            session = ledger.get_session(row.name[len(RESOURCE_PREFIX):])
            if session is not None and session.state != SessionPhase.DELETED.value:
                return f"skipped: it is the folder of session {session.key}"
        return None

    def leave(self, row: ResourceRow) -> None:
        name, _ = self._lease_name(row)
        self.users[name] -= 1
        if self.users[name] == 0:
            token = self.held.pop(name)
            self.runtime.ledger.release_lease(name, token)

    async def beat(self) -> None:
        while True:
            await asyncio.sleep(max(0.2, self.runtime.settings.lease_stale_s / 3))
            for name, token in list(self.held.items()):
                self.runtime.ledger.beat_lease(name, token)

    def release_all(self) -> None:
        for name, token in self.held.items():
            self.runtime.ledger.release_lease(name, token)
        self.held.clear()


async def delete_orphans(
    runtime: Runtime, orphans: Sequence[Orphan], *, sink: EventSink = null_sink, stop: asyncio.Event | None = None,
    include_foreign: bool = False,
) -> list[TeardownOutcome]:
    """Delete `orphans`, each re-checked just before its delete (`_OrphanGuard`); one marked
    `foreign` (perhaps another ledger's) only with `include_foreign`, else it is skipped."""
    rows: list[ResourceRow] = []
    skipped: list[TeardownOutcome] = []
    scanned: dict[int, str | None] = {}
    for orphan in orphans:
        if orphan.foreign and not include_foreign:
            ref = ResourceRef(orphan.provider, orphan.kind, orphan.name, orphan.remote_id)
            skipped.append(TeardownOutcome(ref, "skipped", f"{FOREIGN_REASON}: deleted only with --include-foreign"))
            continue
        if orphan.ledger_id is not None:
            row = runtime.ledger.resource(orphan.ledger_id)
            if orphan.remote_id and not row.remote_id:
                row = replace(row, remote_id=orphan.remote_id)
        else:
            row = ResourceRow(None, None, orphan.provider, orphan.kind, orphan.name, orphan.remote_id, None, ResourceState.CREATED.value)
        scanned[id(row)] = row.state if orphan.ledger_id is not None else None
        rows.append(row)
    guard = _OrphanGuard(runtime)
    beat = asyncio.create_task(guard.beat())
    try:
        outcomes = await _delete_rows(runtime, rows, sink, "", stop, scanned_state=lambda r: scanned.get(id(r)), orphan_guard=guard)
    finally:
        beat.cancel()
        with contextlib.suppress(BaseException):
            await beat
        guard.release_all()
    return skipped + outcomes
