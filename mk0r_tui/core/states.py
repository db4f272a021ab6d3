"""A session's state word, decided in one place from what the ledger records.

The orchestrator writes the word this module computes; `sessions --json` and the dashboard read
the ledger's word (the dashboard also from the events that carry it), so the three never disagree.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from mk0r_tui.core.models import ProviderResult, Status


class SessionPhase(str, enum.Enum):
    """The ledger's word for where a session is (`sessions --json` "state")."""

    PROVISIONING = "provisioning"
    READY = "ready"
    PARTIAL = "partial"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    TEARING_DOWN = "tearing_down"
    TEARDOWN_INCOMPLETE = "teardown_incomplete"
    DELETED = "deleted"


#: states in which some process is (or was, if it died) working on the session
IN_PROGRESS = frozenset({SessionPhase.PROVISIONING, SessionPhase.TEARING_DOWN})


def provisioned_state(results: Iterable[ProviderResult]) -> SessionPhase:
    """After a provisioning run settled every provider and the target: `ready` when every one
    that ran is ok, `failed` when none is, `partial` in between. Skipped slots do not count."""
    ran = [r for r in results if r.status is not Status.SKIPPED]
    if all(r.status is Status.OK for r in ran):
        return SessionPhase.READY
    if any(r.status is Status.OK for r in ran):
        return SessionPhase.PARTIAL
    return SessionPhase.FAILED


def torn_down_state(live_resources_left: int) -> SessionPhase:
    return SessionPhase.DELETED if live_resources_left == 0 else SessionPhase.TEARDOWN_INCOMPLETE
