"""Hand-off (issue 18): give a session's repo and database to the person whose app it is.

`plan_handoff` says what changes hands (one `HandoffStep` per live resource of the session:
transfer, invite, claim, org move, revoke or keep); `run_handoff` does it and records each
resource's hand-off word and new owner in the ledger; `follow_handoff` asks the providers where
a pending GitHub transfer or Neon claim stands, until it completes or expires. A resource that
changed hands (or is offered, until the offer expires) is never deleted by teardown nor listed by
orphans (`ResourceRow.handed_off`). Knows no UI: the CLI and the dashboard are thin over it.

What each provider offers (their API documents, `tests/api-specs/`):
- GitHub: `POST /repos/{owner}/{repo}/transfer` answers 202 and finishes asynchronously; to a
  user it waits for their acceptance (the answer still names the original owner); or
  `PUT /repos/{owner}/{repo}/collaborators/{username}` invites instead (50 a repo a day).
- Neon: `POST /projects/{id}/transfer_requests` gives a claim link that expires (24 h by
  default); `POST /organizations/{source}/projects/transfer` moves it org to org at once. The
  connection string survives: the new owner must reset the role password.
- Resend: no transfer API. The sending key stays ours, or is revoked (`--revoke-email`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from mk0r_tui.core.errors import UsageError
from mk0r_tui.core.instructions import add_handoff_note, handoff_line
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import HandoffAnswer, ResourceState
from mk0r_tui.core.render import describe_error
from mk0r_tui.core.states import HANDOFF_PENDING, SessionPhase, handed_off_session
from mk0r_tui.engine.runtime import Runtime

log = logging.getLogger("mk0r_tui.handoff")

#: Neon's default transfer-request lifetime (24 h); `handoff --neon-claim` asks for it
CLAIM_TTL_S = 86400


@dataclass(frozen=True, slots=True)
class HandoffRequest:
    """Who gets what. At most one GitHub choice and one Neon choice."""

    github_user: str | None = None
    github_org: str | None = None
    invite: str | None = None
    neon_claim: bool = False
    neon_org: str | None = None
    revoke_email: bool = False
    claim_ttl_s: int = CLAIM_TTL_S

    def check(self) -> None:
        github = [x for x in (self.github_user, self.github_org, self.invite) if x]
        if len(github) > 1:
            raise UsageError("choose one of --github-user, --github-org and --invite")
        if self.neon_claim and self.neon_org:
            raise UsageError("choose one of --neon-claim and --neon-org")
        if not github and not self.neon_claim and not self.neon_org and not self.revoke_email:
            raise UsageError("nothing to hand off: give --github-user, --github-org or --invite, and/or --neon-claim or --neon-org")

    @property
    def github_target(self) -> str | None:
        return self.github_user or self.github_org or self.invite


@dataclass(frozen=True, slots=True)
class HandoffStep:
    """One resource and what the hand-off does to it."""

    row: ResourceRow
    action: str  # transfer | invite | claim | org | revoke | keep
    new_owner: str | None
    what: str
    #: a repo or database (one that can change hands), whatever this hand-off does with it
    transferable: bool = False

    @property
    def changes_hands(self) -> bool:
        return self.action in ("transfer", "claim", "org")


@dataclass(frozen=True, slots=True)
class HandoffItem:
    provider: str
    kind: str
    name: str
    outcome: str  # transferred | invited | claim_pending | claimed | revoked | kept | failed
    new_owner: str | None = None
    claim_url: str | None = None
    error: str | None = None
    note: str | None = None
    expires: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider, "kind": self.kind, "name": self.name, "outcome": self.outcome,
            "new_owner": self.new_owner, "claim_url": self.claim_url, "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class HandoffReport:
    session: str
    items: tuple[HandoffItem, ...]
    state: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(i.outcome != "failed" for i in self.items)

    def to_json(self) -> dict[str, Any]:
        return {"session": self.session, "resources": [i.to_json() for i in self.items]}


def _offers(runtime: Runtime, row: ResourceRow, call: str) -> bool:
    """The row's provider offers this hand-off call (GitHub: transfer/invite, Neon:
    transfer_request/transfer_to_org, Resend: revoke_key); a provider no longer in the
    registry offers none."""
    try:
        provider = runtime.provider(row.provider)
    except Exception:
        return False
    return call in provider.handoff_calls


def plan_handoff(runtime: Runtime, key: str, request: HandoffRequest) -> list[HandoffStep]:
    """What changes hands, resource by resource. Refuses a request that matches nothing (the
    local profile's bare repo or embedded database cannot be given away)."""
    request.check()
    session = runtime.ledger.require_session(key)
    live = runtime.ledger.resources(session.key, live_only=True)
    rows = [r for r in live if not r.handed_off]
    gone = "; ".join(f"{r.provider} {r.kind} {r.name}: {r.handoff} → {r.handoff_owner or '?'}" for r in live if r.handed_off)
    already = f" (already handed off: {gone}; `handoff --status` follows it)" if gone else ""
    steps: list[HandoffStep] = []
    for row in rows:
        created = row.state == ResourceState.CREATED.value
        repo = created and row.kind == "repo" and _offers(runtime, row, "transfer")
        database = created and _offers(runtime, row, "transfer_request")
        if repo and request.github_target:
            if request.invite:
                steps.append(HandoffStep(row, "invite", request.invite,
                                         f"invite {request.invite} as an admin collaborator of {row.remote_id} (it stays mk0r's)", True))
            else:
                owner = request.github_target
                steps.append(HandoffStep(row, "transfer", owner, f"transfer {row.remote_id} to {owner}"
                                         + (" (they must accept it)" if request.github_user else ""), True))
        elif database and (request.neon_claim or request.neon_org):
            if request.neon_org:
                steps.append(HandoffStep(row, "org", request.neon_org,
                                         f"move the project {row.remote_id} to organization {request.neon_org}", True))
            else:
                steps.append(HandoffStep(row, "claim", None,
                                         f"offer the project {row.remote_id} with a claim link (expires in {request.claim_ttl_s // 3600} h)", True))
        elif row.kind == "api-key" and request.revoke_email and _offers(runtime, row, "revoke_key"):
            steps.append(HandoffStep(row, "revoke", None, f"revoke the sending key {row.name} (the app stops sending through mk0r)"))
        elif repo or database:
            steps.append(HandoffStep(row, "keep", None, f"keep {row.provider} {row.kind} {row.name}: not part of this hand-off", True))
        elif row.provider == "resend":
            steps.append(HandoffStep(row, "keep", None, f"keep Resend {row.kind} {row.name}: Resend has no transfer; it stays mk0r's"))
        else:
            steps.append(HandoffStep(row, "keep", None, f"keep {row.provider} {row.kind} {row.name}: it does not change hands"))
    if request.github_target and not any(s.action in ("transfer", "invite") for s in steps):
        raise UsageError(f"session {session.key!r} has no GitHub repository to hand off (a local repo cannot be transferred){already}")
    if (request.neon_claim or request.neon_org) and not any(s.action in ("claim", "org") for s in steps):
        raise UsageError(f"session {session.key!r} has no Neon project to hand off (a local database cannot be transferred){already}")
    return steps


def _expires(detail: dict[str, Any]) -> str | None:
    if detail.get("expires"):
        return str(detail["expires"])
    stamp = detail.get("expires_at")
    if stamp is None:
        return None
    return dt.datetime.fromtimestamp(float(stamp), tz=dt.UTC).isoformat(timespec="seconds")


def item_of(row: ResourceRow, *, error: str | None = None) -> HandoffItem:
    """A resource's hand-off as the ledger records it."""
    detail = row.handoff_detail or {}
    return HandoffItem(row.provider, row.kind, row.name, row.handoff or "kept", row.handoff_owner,
                       detail.get("claim_url"), error, detail.get("note"), _expires(detail))


def _record(runtime: Runtime, row: ResourceRow, answer: HandoffAnswer) -> HandoffItem:
    assert row.id is not None
    detail = {**answer.detail, "claim_url": answer.claim_url, "note": answer.note}
    owner = answer.new_owner or (row.handoff_owner if answer.outcome in ("claimed", "claim_pending") else None)
    updated = runtime.ledger.set_handoff(row.id, answer.outcome, owner=owner, detail=detail)
    return item_of(updated)


async def _do(runtime: Runtime, step: HandoffStep, request: HandoffRequest) -> HandoffItem:
    row = step.row
    if step.action == "keep":
        if step.transferable:
            # not asked for this time: nothing recorded, so the session is not handed off while it stays
            return HandoffItem(row.provider, row.kind, row.name, "kept", note=step.what)
        return _record(runtime, row, HandoffAnswer("kept", note=step.what))
    try:
        provider: Any = runtime.provider(row.provider)
        async with asyncio.timeout(runtime.settings.provider_timeout_s):
            if step.action == "transfer":
                answer = await provider.transfer(row, str(step.new_owner))
            elif step.action == "invite":
                answer = await provider.invite(row, str(step.new_owner))
            elif step.action == "claim":
                answer = await provider.transfer_request(row, ttl_s=request.claim_ttl_s)
            elif step.action == "org":
                answer = await provider.transfer_to_org(row, str(step.new_owner))
            else:  # revoke
                await provider.revoke_key(row)
                assert row.id is not None
                runtime.ledger.mark_state(row.id, ResourceState.DELETED)
                answer = HandoffAnswer("revoked", note="the app's sending key was deleted; the segment stays mk0r's")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # one refused hand-off never stops the others; nothing is recorded for it
        message = describe_error(exc, runtime.secrets())
        return HandoffItem(row.provider, row.kind, row.name, "failed", step.new_owner, None, message)
    return _record(runtime, row, answer)


def _settle_session(runtime: Runtime, key: str) -> str:
    """`handed_off` once every live resource left or was kept on purpose; AGENTS.md in the app
    folder gains the repo's new home once the repo left."""
    session = runtime.ledger.require_session(key)
    live = runtime.ledger.resources(session.key, live_only=True)
    if handed_off_session(r.handoff for r in live) and session.state != SessionPhase.HANDED_OFF.value:
        runtime.ledger.set_session_state(session.key, SessionPhase.HANDED_OFF)
    _note_in_agents_md(runtime, session.slug, live)
    return runtime.ledger.require_session(key).state


def _note_in_agents_md(runtime: Runtime, slug: str, rows: list[ResourceRow]) -> None:
    folder = runtime.settings.env_file_for(slug).parent
    agents = folder / "AGENTS.md"
    found = (handoff_line(r.provider, r.kind, r.handoff or "", r.handoff_owner, (r.handoff_detail or {}).get("url"))
             for r in rows if r.handoff in ("transferred", "claimed"))
    lines = [line for line in found if line]
    if not lines or agents.is_symlink() or not agents.is_file():
        return
    text = agents.read_text(encoding="utf-8")
    updated = add_handoff_note(text, lines)
    if updated != text:
        tmp = agents.with_name(".AGENTS.md.handoff")
        tmp.write_text(updated, encoding="utf-8")
        tmp.replace(agents)


async def run_handoff(
    runtime: Runtime, key: str, request: HandoffRequest, steps: list[HandoffStep] | None = None
) -> HandoffReport:
    """Do the planned hand-off: the providers in parallel, each outcome recorded as it lands."""
    session = runtime.ledger.require_session(key)
    plan = steps if steps is not None else plan_handoff(runtime, session.key, request)
    # the session's lease, as provision and teardown hold it: one runner per session, in any process
    async with runtime.lease(session.session.resource_name, session.key, "handoff"):
        items = await asyncio.gather(*(_do(runtime, step, request) for step in plan))
    state = _settle_session(runtime, session.key)
    return HandoffReport(session.key, tuple(items), state)


async def follow_handoff(runtime: Runtime, key: str) -> HandoffReport:
    """Ask where each pending transfer or claim stands and record it (completed, or expired:
    then the resource is ours again and `kept`). The other rows are reported as recorded."""
    session = runtime.ledger.require_session(key)
    rows = [r for r in runtime.ledger.resources(session.key) if r.handoff]

    async def follow(row: ResourceRow) -> HandoffItem:
        if row.handoff not in HANDOFF_PENDING:
            return item_of(row)
        try:
            provider: Any = runtime.provider(row.provider)
            async with asyncio.timeout(runtime.settings.provider_timeout_s):
                follow_up = provider.follow_transfer if "follow_transfer" in provider.handoff_calls else provider.follow_claim
                answer = await follow_up(row)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return item_of(row, error=describe_error(exc, runtime.secrets()))
        if answer.outcome == "claim_pending":
            return item_of(row)
        return _record(runtime, row, answer)

    items = await asyncio.gather(*(follow(r) for r in rows))
    state = _settle_session(runtime, session.key)
    return HandoffReport(session.key, tuple(items), state)


def recorded_handoff(runtime: Runtime, key: str) -> HandoffReport:
    """The hand-off as the ledger records it, without asking anyone (the dashboard's panels)."""
    session = runtime.ledger.require_session(key)
    rows = [r for r in runtime.ledger.resources(session.key) if r.handoff]
    return HandoffReport(session.key, tuple(item_of(r) for r in rows), session.state)
