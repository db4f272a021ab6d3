"""The UI-side reducer: pure functions from core events to immutable session snapshots."""

from __future__ import annotations

from mk0r_tui.core.events import (
    ProviderFailed,
    ProviderProgressed,
    ProviderRetrying,
    ProviderSkipped,
    ProviderStarted,
    ProviderSucceeded,
    ResourceDeleted,
    SessionProvisioned,
    TeardownFailed,
    TeardownStarted,
)
from mk0r_tui.core.ledger import Ledger
from mk0r_tui.core.models import ProviderResult, ResourceRef, ResourceState, Session, Slot, Status
from mk0r_tui.tui.messages import SessionEventReceived
from mk0r_tui.tui.state import SessionState, WorkEnded, WorkStarted, from_ledger, matches, reduce

KEY = "reducer-session-1"
DB = ResourceRef("neon", "project", "mk0r-reducer-ses", "proj-1", "https://console.neon.tech/app/projects/proj-1")
PLAN = (("posthog", Slot.ANALYTICS), ("neon", Slot.DATABASE), ("local-folder", Slot.TARGET))


def started(at: float = 100.0) -> SessionState:
    session = SessionState(KEY, "reducer-ses", created_at=at)
    return reduce(session, WorkStarted(session=KEY, kind="provision", plan=PLAN, at=at))


def run(session: SessionState, *events) -> SessionState:
    for event in events:
        session = reduce(session, event)
    return session


def test_work_started_lays_out_waiting_panels_in_slot_order():
    session = reduce(
        SessionState(KEY, "reducer-ses", created_at=1.0),
        WorkStarted(session=KEY, kind="provision", plan=tuple(reversed(PLAN)), at=1.0),
    )
    assert session.provider_names == ("posthog", "neon", "local-folder")
    assert {p.status for p in session.panels} == {Status.WAITING}
    assert session.busy == "provisioning" and not session.can_teardown and not session.can_retry


def test_a_provider_runs_retries_and_succeeds():
    session = started()
    session = run(
        session,
        ProviderStarted(session=KEY, provider="neon", slot=Slot.DATABASE, at=101.0),
        ProviderProgressed(session=KEY, provider="neon", message="creating project", at=101.5),
    )
    neon = session.panel("neon")
    assert neon.status is Status.RUNNING and neon.message == "creating project"
    assert neon.elapsed_s(now=104.0) == 3.0, "elapsed ticks from the event's time while running"

    session = reduce(session, ProviderRetrying(session=KEY, provider="neon", attempt=2, max_attempts=5, delay_s=1.0, reason="HTTP 429", at=102.0))
    neon = session.panel("neon")
    assert neon.status is Status.RETRYING and neon.retry == (2, 5) and neon.attempts == 1

    result = ProviderResult("neon", Slot.DATABASE, Status.OK, 1234.0, 2, resources=(DB,), env={"DATABASE_URL": "x"})
    session = reduce(session, ProviderSucceeded(session=KEY, provider="neon", result=result, at=102.3))
    neon = session.panel("neon")
    assert neon.status is Status.OK and neon.attempts == 2 and neon.retry is None and neon.message is None
    assert neon.elapsed_s(now=999.0) == 1.234, "once done, the final latency, not the clock"
    assert [v.ref for v in neon.resources] == [DB] and neon.resources[0].state == "live"
    assert session.panel("posthog").status is Status.WAITING, "other panels untouched"


def test_failed_and_skipped_results_and_session_provisioned():
    failed = ProviderResult("neon", Slot.DATABASE, Status.FAILED, 50.0, 1, error="POST /projects → HTTP 402: over quota")
    skipped = ProviderResult("posthog", Slot.ANALYTICS, Status.SKIPPED, note="set POSTHOG_PROJECT_KEY")
    session = run(
        started(),
        ProviderFailed(session=KEY, provider="neon", result=failed),
        ProviderSkipped(session=KEY, provider="posthog", result=skipped),
        SessionProvisioned(session=KEY, provider="*", ok=False, state="partial", env_file="/x/.env"),
    )
    assert session.panel("neon").error == "POST /projects → HTTP 402: over quota"
    assert session.panel("posthog").status is Status.SKIPPED and session.panel("posthog").note == "set POSTHOG_PROJECT_KEY"
    assert session.state == "partial" and session.env_file == "/x/.env" and session.busy is None
    assert session.can_retry and session.can_teardown


def test_an_unknown_provider_gets_a_panel():
    result = ProviderResult("e2b", Slot.TARGET, Status.FAILED, 0.0, 1, error="disk full")
    session = reduce(started(), ProviderFailed(session=KEY, provider="e2b", result=result))
    assert session.provider_names == ("posthog", "neon", "e2b", "local-folder")
    assert session.panel("e2b").status is Status.FAILED


def test_reduce_never_mutates_the_previous_snapshot():
    before = started()
    after = reduce(before, ProviderStarted(session=KEY, provider="neon", slot=Slot.DATABASE, at=101.0))
    assert before.panel("neon").status is Status.WAITING and after.panel("neon").status is Status.RUNNING
    assert before.panels is not after.panels


def test_teardown_goes_tearing_down_then_gone_or_failed():
    ok = ProviderResult("neon", Slot.DATABASE, Status.OK, 10.0, 1, resources=(DB,))
    repo = ResourceRef("github", "repo", "mk0r-reducer-ses", "acme/mk0r-reducer-ses")
    gh = ProviderResult("github", Slot.REPO, Status.OK, 10.0, 1, resources=(repo,))
    session = run(
        started(),
        ProviderSucceeded(session=KEY, provider="neon", result=ok),
        ProviderSucceeded(session=KEY, provider="github", result=gh),
        SessionProvisioned(session=KEY, provider="*", ok=True, state="ready"),
        WorkStarted(session=KEY, kind="teardown", at=200.0),
        TeardownStarted(session=KEY, provider="neon", resource=DB, at=200.0),
        TeardownStarted(session=KEY, provider="github", resource=repo, at=200.0),
    )
    assert session.busy == "tearing down" and session.panel("neon").status is Status.TEARING_DOWN
    assert session.panel("neon").resources[0].state == "deleting"
    session = run(
        session,
        ResourceDeleted(session=KEY, provider="neon", resource=DB, latency_ms=300.0, at=200.3),
        TeardownFailed(session=KEY, provider="github", resource=repo, error="HTTP 403: not an admin", at=200.4),
    )
    neon, github = session.panel("neon"), session.panel("github")
    assert neon.status is Status.GONE and neon.resources[0].state == "gone" and round(neon.latency_ms) == 300
    assert github.status is Status.FAILED and github.error == "teardown: HTTP 403: not an admin"
    assert github.resources[0].error == "HTTP 403: not an admin"
    session = reduce(session, WorkEnded(session=KEY, kind="teardown", state="teardown_incomplete"))
    assert session.busy is None and session.state == "teardown_incomplete"
    assert session.panel("posthog").status is Status.GONE, "nothing was alive there"
    assert session.panel("neon").latency_ms is not None
    assert session.panel("github").status is Status.FAILED


def test_work_ended_marks_providers_still_running_as_interrupted():
    session = run(
        started(),
        ProviderStarted(session=KEY, provider="neon", slot=Slot.DATABASE),
        WorkEnded(session=KEY, kind="provision", state="provisioning", error="cancelled"),
    )
    assert session.panel("neon").status is Status.FAILED and session.panel("neon").error == "not finished: cancelled"
    assert session.panel("posthog").status is Status.FAILED, "a provider that never started did not finish either"
    assert session.can_retry


def test_from_ledger_rebuilds_a_session(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    session = Session.parse("ledgered-session")
    ledger.ensure_session(session, target="local-folder")
    row = ledger.intend(session.key, "neon", "project", session.resource_name)
    ledger.mark_created(row.id, "proj-9", url="https://x/proj-9")
    ledger.intend(session.key, "github", "repo", session.resource_name)  # a crash mid-create: pending, no run
    ledger.record_run(session.key, ProviderResult("neon", Slot.DATABASE, Status.OK, 812.0, 1))
    ledger.record_run(session.key, ProviderResult("posthog", Slot.ANALYTICS, Status.OK, 0.0, 1))
    ledger.set_session_state(session.key, "partial")

    state = from_ledger(ledger.require_session(session.key), ledger.latest_runs(session.key), ledger.resources(session.key), slots={"github": Slot.REPO})
    assert state.provider_names == ("posthog", "neon", "github")
    neon, github = state.panel("neon"), state.panel("github")
    assert neon.status is Status.OK and neon.latency_ms == 812.0 and neon.resources[0].ref.remote_id == "proj-9"
    assert github.status is Status.FAILED and github.resources[0].state == "pending"
    assert state.state == "partial" and state.can_retry

    ledger.mark_state(row.id, ResourceState.DELETED)
    ledger.set_session_state(session.key, "deleted")
    gone = from_ledger(ledger.require_session(session.key), ledger.latest_runs(session.key), ledger.resources(session.key))
    assert {p.status for p in gone.panels} == {Status.GONE} and gone.deleted and not gone.can_teardown
    ledger.close()


def test_filter_matches_slug_state_and_provider():
    session = started()
    assert matches(session, "REDUCER") and matches(session, "neon") and matches(session, "provisioning")
    assert not matches(session, "github") and matches(session, "  ")


def test_only_progress_of_the_same_provider_and_session_collapses():
    def progressed(provider: str = "neon", session: str = KEY) -> SessionEventReceived:
        return SessionEventReceived(ProviderProgressed(session=session, provider=provider, message="x"))

    assert progressed().can_replace(progressed())
    assert not progressed().can_replace(progressed(provider="github"))
    assert not progressed().can_replace(progressed(session="another-session"))
    started_message = SessionEventReceived(ProviderStarted(session=KEY, provider="neon", slot=Slot.DATABASE))
    assert not started_message.can_replace(progressed()) and not progressed().can_replace(started_message)


def test_a_skipped_provider_stays_skipped_after_teardown():
    skipped = ProviderResult("posthog", Slot.ANALYTICS, Status.SKIPPED, note="set POSTHOG_PROJECT_KEY")
    session = run(
        started(),
        ProviderSkipped(session=KEY, provider="posthog", result=skipped),
        WorkStarted(session=KEY, kind="teardown"),
        WorkEnded(session=KEY, kind="teardown", state="deleted"),
    )
    assert session.panel("posthog").status is Status.SKIPPED


def test_teardown_elapsed_counts_from_the_first_delete_of_a_provider():
    role = ResourceRef("local-postgres", "role", "r")
    database = ResourceRef("local-postgres", "database", "d")
    ok = ProviderResult("local-postgres", Slot.DATABASE, Status.OK, 10.0, 1, resources=(role, database))
    session = run(
        started(),
        ProviderSucceeded(session=KEY, provider="local-postgres", result=ok),
        TeardownStarted(session=KEY, provider="local-postgres", resource=database, at=300.0),
        ResourceDeleted(session=KEY, provider="local-postgres", resource=database, at=300.2),
        TeardownStarted(session=KEY, provider="local-postgres", resource=role, at=300.2),
    )
    assert session.panel("local-postgres").elapsed_s(now=300.5) == 0.5
    session = reduce(session, ResourceDeleted(session=KEY, provider="local-postgres", resource=role, at=300.6))
    assert session.panel("local-postgres").status is Status.GONE and round(session.panel("local-postgres").latency_ms) == 600
