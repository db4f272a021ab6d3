"""The ledger's row types (the same for both backends) and the one mapping from a database row
to each. A database row is anything indexable by column name (`Row`, the Postgres
backend's `PgRow`)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from mk0r_tui.core.envfile import scrub
from mk0r_tui.core.errors import ConfigError
from mk0r_tui.core.events import Event, event_from_fields
from mk0r_tui.core.models import ResourceRef, ResourceState, Session
from mk0r_tui.core.states import HANDOFF_LEFT, changed_hands

#: a row as either driver returns it: indexable by column name and by position
Row = Any

class LedgerError(ConfigError):
    """The ledger file cannot be used: damaged, from a newer mk0r-tui, or not a database."""


LIVE_STATES = (ResourceState.PENDING.value, ResourceState.CREATED.value, ResourceState.DELETING.value)


@dataclass(frozen=True, slots=True)
class SessionRow:
    key: str
    slug: str
    created_at: float
    updated_at: float
    state: str
    target: str | None
    env_file: str | None

    @property
    def session(self) -> Session:
        return Session(key=self.key, slug=self.slug)


@dataclass(frozen=True, slots=True)
class ResourceRow:
    """A resource as the ledger knows it. `id` is None for one found only by discovery."""

    id: int | None
    session_key: str | None
    provider: str
    kind: str
    name: str
    remote_id: str | None
    url: str | None
    state: str
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    #: the hand-off word (`core/states.py`: transferred, claimed, claim_pending, invited, kept,
    #: revoked) or None; its new owner; what is needed to follow it (claim link, expiry)
    handoff: str | None = None
    handoff_owner: str | None = None
    handoff_detail: dict[str, Any] = field(default_factory=dict)

    @property
    def handed_off(self) -> bool:
        """Left (or offered to) its new owner: never deleted by teardown, never an orphan."""
        return changed_hands(self.handoff)

    @property
    def left(self) -> bool:
        """Its new owner has it (not merely offered): no longer ours at all."""
        return self.handoff in HANDOFF_LEFT

    @property
    def ref(self) -> ResourceRef:
        return ResourceRef(self.provider, self.kind, self.name, self.remote_id, self.url)

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One journal entry: an event as some process's run recorded it."""

    id: int
    at: float
    session: str
    slug: str
    provider: str
    kind: str
    fields: dict[str, Any]
    origin: str = ""

    def event(self) -> Event:
        """The very event object that was written (core/events.event_from_fields)."""
        return event_from_fields(self.kind, self.session, self.provider, self.at, self.fields)


@dataclass(frozen=True, slots=True)
class RunRow:
    session_key: str
    provider: str
    slot: str
    status: str
    latency_ms: float | None
    attempts: int
    error: str | None
    note: str | None
    finished_at: float


#: this machine's name, as leases record it and screens show it
HOST = socket.gethostname()


def _machine_id() -> str:
    """What tells this machine (and pid namespace) apart from every other one sharing a ledger:
    the host name alone does not (containers are often all `localhost`, each with its own pid 1),
    so the kernel's boot id and this process's pid namespace are part of it. A lease's pid is
    only checked where this id matches; anywhere else only its heartbeat tells."""
    parts = [socket.gethostname()]
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            parts.append(f.read().strip())
    except OSError:
        parts.append("")
    try:
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        parts.append("")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


#: this machine's identity (`_machine_id`), recorded with every lease
HOST_ID = _machine_id()


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (a zombie, killed but not yet reaped, does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """Who runs a session now: one row per session name (`mk0r-<slug>`) while a provision, a
    teardown or an orphan delete works on it."""

    name: str
    session_key: str
    kind: str  # provision | teardown | orphans
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    token: str
    #: the writing machine's identity (`HOST_ID`); '' on a lease written before team mode
    host_id: str = ""

    @property
    def local(self) -> bool:
        """Written on this machine (and pid namespace): its pid means something here."""
        return self.host_id == HOST_ID if self.host_id else self.host == HOST

    def gone(self, now: float, stale_s: float) -> bool:
        """Its owner is gone: a dead process on this machine, or no heartbeat for `stale_s`.
        `now` must come from the clock that wrote the heartbeat (`Ledger.now()`: the database
        server's on Postgres, so machines whose clocks disagree still agree on staleness). A
        lease of another machine is never judged by a pid: the same number there is another
        process."""
        if self.local and not pid_alive(self.pid):
            return True
        return now - self.heartbeat_at > stale_s

    def describe(self) -> str:
        verb = {"provision": "provisioned", "teardown": "torn down"}.get(self.kind, "cleaned up (orphans)")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started_at))
        return f"being {verb} by {self.host}:{self.pid} since {since} (last heartbeat {time.time() - self.heartbeat_at:.0f}s ago)"


def _lease_row(r: Row) -> LeaseRow:
    return LeaseRow(r["name"], r["session_key"], r["kind"], r["host"], int(r["pid"]), float(r["started_at"]),
                    float(r["heartbeat_at"]), r["token"], r["host_id"] or "")


def _session_row(r: Row) -> SessionRow:
    return SessionRow(r["key"], r["slug"], r["created_at"], r["updated_at"], r["state"], r["target"], r["env_file"])


def _resource_row(r: Row) -> ResourceRow:
    return ResourceRow(
        id=r["id"],
        session_key=r["session_key"],
        provider=r["provider"],
        kind=r["kind"],
        name=r["name"],
        remote_id=r["remote_id"],
        url=r["url"],
        state=r["state"],
        meta=_meta(r["meta"]),
        error=r["error"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        handoff=r["handoff"],
        handoff_owner=r["handoff_owner"],
        handoff_detail=_meta(r["handoff_detail"]),
    )


def _clean(text: str | None) -> str | None:
    """No secret is ever stored: free text (errors, notes, meta, URLs) is scrubbed of every
    secret this process knows (provisioning keys and provisioned values), e.g. a provider's
    error that echoes a generated password."""
    return scrub(text) if text else text


def _meta(text: str | None) -> dict[str, Any]:
    """A row's meta; one that is not a JSON object (edited by hand, damaged) reads as empty
    rather than failing every command that lists resources."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {"unreadable_meta": text}
    return value if isinstance(value, dict) else {"unreadable_meta": text}


def journal_query(since: int, *, session: str | None = None, limit: int | None = None) -> tuple[str, list[Any]]:
    """The one journal read (the ledger's and a follower's own connection use it): entries after
    `since`, oldest first, by the primary key (and `journal_session` when a session is given)."""
    sql, params = "SELECT * FROM journal WHERE id > ?", list[Any]([since])
    if session is not None:
        sql += " AND (session = ? OR slug = ?)"
        params += [session, session.lower()]
    sql += " ORDER BY id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql, params


def journal_row(r: Row) -> JournalRow:
    return _journal_row(r)


def _journal_row(r: Row) -> JournalRow:
    try:
        data = json.loads(r["fields"] or "{}")
    except ValueError:
        data = {}
    return JournalRow(r["id"], r["at"], r["session"], r["slug"], r["provider"], r["kind"], data if isinstance(data, dict) else {}, r["origin"])


def _run_row(r: Row) -> RunRow:
    return RunRow(
        r["session_key"], r["provider"], r["slot"], r["status"], r["latency_ms"], r["attempts"], r["error"], r["note"], r["finished_at"]
    )

