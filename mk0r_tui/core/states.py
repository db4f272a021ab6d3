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
    #: every repo/database of the session changed hands (GitHub transfer, Neon claim or org move),
    #: nothing is pending, and what stayed ours (email, analytics tag) was kept on purpose
    HANDED_OFF = "handed_off"


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


def torn_down_state(live_resources_left: int, handed_off: int = 0) -> SessionPhase:
    """After a teardown: `deleted` when nothing of ours is left, `teardown_incomplete` when
    something is; a session some of whose resources changed hands (never deleted) stays
    `handed_off` once the rest is gone."""
    if live_resources_left:
        return SessionPhase.TEARDOWN_INCOMPLETE
    return SessionPhase.HANDED_OFF if handed_off else SessionPhase.DELETED


#: a resource's hand-off words (the ledger's `handoff` column, `handoff --json` "outcome")
HANDOFF_LEFT = frozenset({"transferred", "claimed"})
HANDOFF_PENDING = frozenset({"claim_pending"})
#: what the hand-off decided to keep ours (an email key kept, an invited collaborator's repo)
HANDOFF_STAYED = frozenset({"kept", "invited"})
HANDOFF_OUTCOMES = ("transferred", "invited", "claim_pending", "claimed", "revoked", "kept", "failed")


def changed_hands(handoff: str | None) -> bool:
    """A resource that left (or is offered to its new owner, until the offer expires): mk0r
    never deletes it and `orphans` never lists it."""
    return handoff in HANDOFF_LEFT or handoff in HANDOFF_PENDING


def handed_off_session(handoffs: Iterable[str | None]) -> bool:
    """`handed_off`: of the session's live resources at least one left, none is pending, none
    was left out of the hand-off, and every one that is still ours was kept on purpose
    (`kept`). An invited collaborator's repo is still ours: such a session is not handed off."""
    words = list(handoffs)
    return (
        any(w in HANDOFF_LEFT for w in words)
        and all(w in HANDOFF_LEFT or w == "kept" for w in words)
    )


def owner_gone_state(state: str) -> SessionPhase | None:
    """The word for a session whose ledger says a provision is working on it (`provisioning`)
    while that run's lease is gone (its process died, or stopped beating): `interrupted`, which
    `provision` again resumes (adopting what the ledger recorded). None when the rule does not
    apply. A dead *teardown* keeps `tearing_down`: with no live lease that word is what marks
    a teardown that died (its leftovers are orphans, issue 6), and `teardown` again resumes it."""
    if state == SessionPhase.PROVISIONING.value:
        return SessionPhase.INTERRUPTED
    return None
