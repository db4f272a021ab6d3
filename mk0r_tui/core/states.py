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


#: the note shown beside a state word that was decided because the run's owner is gone
OWNER_GONE = "owner gone"


def owner_gone_state(state: str) -> SessionPhase | None:
    """The word for a session whose ledger says a provision is working on it (`provisioning`)
    while that run's lease is gone (its process died, or stopped beating): `interrupted`, which
    `provision` again resumes (adopting what the ledger recorded). None when the rule does not
    apply. A dead *teardown* keeps `tearing_down`: with no live lease that word is what marks
    a teardown that died (its leftovers are orphans, issue 6), and `teardown` again resumes it."""
    if state == SessionPhase.PROVISIONING.value:
        return SessionPhase.INTERRUPTED
    return None


def displayed_state(state: str, *, run_alive: bool) -> str:
    """The one word every screen shows for a session: the ledger's word, unless it claims a run
    that has no live owner (then `owner_gone_state`)."""
    if run_alive:
        return state
    gone = owner_gone_state(state)
    return gone.value if gone is not None else state
