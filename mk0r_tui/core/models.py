"""Plain data: sessions, slots, statuses, resources and the provisioning report."""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mk0r_tui.core.errors import UsageError

MIN_KEY_LENGTH = 8
SLUG_LENGTH = 12
_SLUG_RE = re.compile(r"^[a-z0-9-]+$")
RESOURCE_PREFIX = "mk0r-"


class Slot(str, enum.Enum):
    """What a provider gives an app. One provider fills a slot per session."""

    DATABASE = "database"
    EMAIL = "email"
    REPO = "repo"
    ANALYTICS = "analytics"
    TARGET = "target"


class Status(str, enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    RETRYING = "retrying"
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
    TEARING_DOWN = "tearing down"
    GONE = "gone"


class ResourceState(str, enum.Enum):
    PENDING = "pending"  # intent recorded, create call not known to have succeeded
    CREATED = "created"
    DELETING = "deleting"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Session:
    """A provisioning session. `slug` names every resource: `mk0r-<slug>`."""

    key: str
    slug: str

    @property
    def resource_name(self) -> str:
        return f"{RESOURCE_PREFIX}{self.slug}"

    @property
    def analytics_app_id(self) -> str:
        """The PostHog tag: the resource name like every other name a session gets. The slug is
        lower-cased because the providers' names are (GitHub repos and Postgres identifiers are
        case-insensitive, Neon and E2B names lower-case), so two keys that differ only in case are
        one session everywhere; the tag follows the same rule (it kept the key's case)."""
        return self.resource_name

    @property
    def pg_identifier(self) -> str:
        """A Postgres identifier derived from the slug: only [a-z0-9_], so it never needs escaping."""
        return "mk0r_" + self.slug.replace("-", "_")

    @classmethod
    def parse(cls, key: str) -> Session:
        return cls(key=key, slug=validate_session_key(key))

    @classmethod
    def new(cls) -> Session:
        return cls.parse(str(uuid.uuid4()))


def validate_session_key(key: str) -> str:
    """Return the slug for `key`, or raise UsageError saying exactly what is wrong."""
    if not isinstance(key, str) or not key.strip():
        raise UsageError("session key is empty: give --session KEY (at least 8 characters) or omit it for a new one")
    if key != key.strip():
        raise UsageError(f"session key {key!r} has leading or trailing spaces")
    control = sorted({c for c in key if not c.isprintable()})
    if control:
        raise UsageError(
            f"session key {key!r} holds control or escape characters "
            f"({' '.join(repr(c) for c in control)}); use printable characters only"
        )
    if len(key) < MIN_KEY_LENGTH:
        raise UsageError(f"session key {key!r} is too short: it needs at least {MIN_KEY_LENGTH} characters")
    slug = key[:SLUG_LENGTH].lower()
    if not _SLUG_RE.match(slug):
        bad = sorted({c for c in slug if not re.match(r"[a-z0-9-]", c)})
        raise UsageError(
            f"session key {key!r} gives the slug {slug!r}, which may only hold a-z, 0-9 and '-' "
            f"(found {' '.join(repr(c) for c in bad)})"
        )
    return slug


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """A thing a provider made (or will make): enough to show it and to delete it."""

    provider: str
    kind: str
    name: str
    remote_id: str | None = None
    url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "kind": self.kind, "name": self.name, "id": self.remote_id, "url": self.url}


@dataclass(frozen=True, slots=True)
class ProvisionOutcome:
    """What a provider returns from `provision`: env vars and the resources behind them."""

    env: Mapping[str, str] = field(default_factory=dict)
    resources: tuple[ResourceRef, ...] = ()
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderResult:
    name: str
    slot: Slot
    status: Status
    latency_ms: float | None = None
    attempts: int = 0
    error: str | None = None
    resources: tuple[ResourceRef, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "slot": self.slot.value,
            "status": self.status.value,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "attempts": self.attempts,
            "error": self.error,
            "note": self.note,
            "resources": [r.to_json() for r in self.resources],
        }


@dataclass(frozen=True, slots=True)
class ProvisionReport:
    session: Session
    results: tuple[ProviderResult, ...]
    env: Mapping[str, str]
    env_file: str | None = None
    target: str | None = None

    @property
    def errors(self) -> dict[str, str]:
        return {r.name: r.error or "" for r in self.results if r.status is Status.FAILED}

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class FoundResource:
    """A resource seen on a provider by discovery (named `mk0r-*`)."""

    provider: str
    kind: str
    name: str
    remote_id: str
    created_at: float | None = None  # epoch seconds, if the provider says
    #: the ledger id in the resource's owner mark (`mk0r-tui ledger <id>`), where the provider carries one
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class Orphan:
    provider: str
    kind: str
    name: str
    remote_id: str | None
    age_s: float | None
    reason: str
    ledger_id: int | None = None
    #: not in this ledger: another ledger's mark, or no mark and a name no session here has;
    #: deleted only with `--include-foreign`
    foreign: bool = False
    #: the ledger id of its owner mark, if it has one
    owner: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "kind": self.kind,
            "name": self.name,
            "id": self.remote_id,
            "age_s": None if self.age_s is None else round(self.age_s, 1),
            "reason": self.reason,
            "foreign": self.foreign,
            "owner": self.owner,
        }


@dataclass(frozen=True, slots=True)
class HandoffAnswer:
    """What a provider's hand-off call (or a follow-up look) found: the hand-off word
    (`core/states.py` HANDOFF_OUTCOMES), the new owner, the link the recipient opens and what is
    needed to follow it later (request id, expiry, repo id; never a secret)."""

    outcome: str
    new_owner: str | None = None
    claim_url: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
