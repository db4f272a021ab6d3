"""The orchestrator with fake providers: all-settled, timeouts, events, reuse, teardown, orphans."""

import asyncio
import time

import pytest
from fakes import FakeProvider, failing, plan_of, registry_of, skipped_step

from mk0r_tui.core.config import load_settings
from mk0r_tui.core.events import (
    Collector,
    ProviderSkipped,
    ProviderSucceeded,
    ResourceDeleted,
    SessionProvisioned,
)
from mk0r_tui.core.models import Session, Slot, Status
from mk0r_tui.core.plan import PlanStep
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.engine.teardown import delete_orphans, find_orphans, teardown_session

_opened: list[Runtime] = []


@pytest.fixture(autouse=True)
def close_runtimes():
    """Every runtime a test made is closed after it: its ledger (on the Postgres pass a
    connection pool) must not be left to the garbage collector, which may run the pool's
    finaliser on one of the pool's own threads ("cannot join current thread")."""
    yield
    while _opened:
        _opened.pop().close()


def make_runtime(*fakes, **settings):
    """A runtime whose registry holds `fakes` (beside the real local folder target)."""
    runtime = Runtime(load_settings(**settings), registry=registry_of(*fakes))
    _opened.append(runtime)
    return runtime


async def run(runtime, session, selection, sink=None):
    return await provision_services(runtime, session, plan_of(selection, "local-folder"), sink=sink or Collector())


async def test_one_failure_and_one_hang_do_not_stop_the_others(session_key):
    ok = FakeProvider("fast", Slot.DATABASE, delay=0.05)
    boom = failing("boom", Slot.EMAIL)
    hang = FakeProvider("hangs", Slot.REPO, hang=True)
    runtime = make_runtime(ok, boom, hang, provider_timeout_s=0.3)
    events = Collector()
    started = time.monotonic()
    report = await run(runtime, Session.parse(session_key), [ok, boom, hang], events)
    elapsed = time.monotonic() - started

    by_name = {r.name: r for r in report.results}
    assert by_name["fast"].status is Status.OK
    assert by_name["boom"].status is Status.FAILED and "upstream said no" in by_name["boom"].error
    assert "HTTP 500" in by_name["boom"].error
    assert by_name["hangs"].status is Status.FAILED and "timed out after 0.3s" in by_name["hangs"].error
    assert by_name["local-folder"].status is Status.OK
    assert elapsed < 2.0, "the hang was bounded by its own timeout"
    assert report.env["FAST_URL"] == "https://fast.example/x"
    assert report.errors.keys() == {"boom", "hangs"}
    # the hung provider's intent is still in the ledger: teardown and orphans can find it
    rows = runtime.ledger.resources(session_key, provider="hangs")
    assert [r.state for r in rows] == ["pending"]


async def test_providers_run_concurrently_not_one_after_another(session_key):
    fakes = [FakeProvider(f"p{i}", Slot.DATABASE, delay=0.3) for i in range(4)]
    runtime = make_runtime(*fakes)
    started = time.monotonic()
    report = await run(runtime, Session.parse(session_key), fakes)
    assert report.ok
    assert time.monotonic() - started < 0.3 * 2, "four 0.3 s providers took as long as one"


async def test_events_tell_the_story_in_order(session_key):
    a = FakeProvider("a", Slot.DATABASE)
    runtime = make_runtime(a)
    events = Collector()
    await run(runtime, Session.parse(session_key), [a, skipped_step(Slot.EMAIL, "set RESEND_PROVISIONING_KEY", "resend")], events)
    kinds = [(type(e).__name__, e.provider) for e in events.events]
    assert kinds[0] == ("RunStarted", "*")  # the run begins: what a dashboard of another process sees first
    assert kinds[1] == ("ProviderStarted", "a")
    assert ("ProviderSkipped", "resend") in kinds
    assert kinds.index(("ProviderSucceeded", "a")) > kinds.index(("ProviderStarted", "a"))
    assert kinds.index(("ProviderStarted", "local-folder")) > kinds.index(("ProviderSucceeded", "a"))
    assert isinstance(events.events[-1], SessionProvisioned) and events.events[-1].ok
    skipped = events.of(ProviderSkipped)[0]
    assert skipped.result.note == "set RESEND_PROVISIONING_KEY"
    succeeded = [e for e in events.of(ProviderSucceeded) if e.provider == "a"][0]
    assert succeeded.result.latency_ms is not None and succeeded.result.attempts == 1
    # events are immutable snapshots
    import dataclasses

    assert dataclasses.is_dataclass(succeeded)
    try:
        succeeded.provider = "x"
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("events must be frozen")


async def test_provisioning_twice_creates_nothing_new(session_key):
    fake = FakeProvider("db", Slot.DATABASE)
    runtime = make_runtime(fake)
    session = Session.parse(session_key)
    first = await run(runtime, session, [fake])
    rows_before = runtime.ledger.resources(session_key)
    second = await run(runtime, session, [fake])
    assert fake.calls == [session_key], "the second run reused the provider instead of calling it"
    assert runtime.ledger.resources(session_key) == rows_before or len(runtime.ledger.resources(session_key)) == len(rows_before)
    assert second.env == first.env
    assert [r.note for r in second.results if r.name == "db"] == ["already provisioned (reused)"]


async def test_retry_after_a_failure_calls_only_the_failed_provider(session_key):
    good = FakeProvider("good", Slot.DATABASE)
    flaky = failing("flaky", Slot.EMAIL)
    runtime = make_runtime(good, flaky)
    session = Session.parse(session_key)
    first = await run(runtime, session, [good, flaky])
    assert not first.ok
    flaky.error = None
    second = await run(runtime, session, [good, flaky])
    assert second.ok
    assert good.calls == [session_key] and flaky.calls == [session_key, session_key]
    assert runtime.ledger.get_session(session_key).state == "ready"


async def test_teardown_is_idempotent_and_marks_rows_deleted(session_key):
    fake = FakeProvider("db", Slot.DATABASE)
    runtime = make_runtime(fake)
    await run(runtime, Session.parse(session_key), [fake])
    events = Collector()
    report = await teardown_session(runtime, session_key, sink=events)
    assert report.ok and {o.outcome for o in report.outcomes} == {"deleted"}
    assert fake.store == {}
    assert all(r.state == "deleted" for r in runtime.ledger.resources(session_key))
    assert runtime.ledger.get_session(session_key).state == "deleted"
    assert len(events.of(ResourceDeleted)) == 2  # the fake's thing and the app folder
    again = await teardown_session(runtime, session_key)
    assert again.ok and again.outcomes == ()


async def test_a_resource_already_gone_counts_as_done(session_key):
    fake = FakeProvider("db", Slot.DATABASE)
    runtime = make_runtime(fake)
    await run(runtime, Session.parse(session_key), [fake])
    fake.store.clear()  # someone deleted it upstream
    report = await teardown_session(runtime, session_key)
    assert report.ok
    assert {o.resource.provider: o.outcome for o in report.outcomes}["db"] == "already_gone"


async def test_pending_row_from_a_crash_shows_up_in_orphans_and_can_be_deleted(session_key):
    fake = FakeProvider("db", Slot.DATABASE)
    runtime = make_runtime(fake)
    session = Session.parse(session_key)
    runtime.ledger.ensure_session(session)
    # crash simulation: the intent is committed, then the create reached upstream, then death
    runtime.ledger.intend(session_key, "db", "thing", session.resource_name)
    fake.store[session.resource_name] = "db-77"
    scan = await find_orphans(runtime, providers=["db"])
    assert [(o.name, o.remote_id) for o in scan.orphans] == [(session.resource_name, "db-77")]
    assert "pending" in scan.orphans[0].reason and scan.orphans[0].ledger_id is not None
    outcomes = await delete_orphans(runtime, scan.orphans)
    assert [o.outcome for o in outcomes] == ["deleted"]
    assert fake.store == {}
    assert (await find_orphans(runtime, providers=["db"])).orphans == []


async def test_resources_no_session_owns_are_orphans_but_live_ones_are_not(session_key):
    fake = FakeProvider("db", Slot.DATABASE)
    runtime = make_runtime(fake)
    await run(runtime, Session.parse(session_key), [fake])
    fake.store["mk0r-strayresourc"] = "db-99"
    scan = await find_orphans(runtime, providers=["db"])
    assert [o.name for o in scan.orphans] == ["mk0r-strayresourc"]
    # a provider with no owner mark, and a name no session of this ledger has: maybe another ledger's
    assert scan.orphans[0].reason == "not in this ledger (no owner mark)" and scan.orphans[0].foreign


async def test_discovery_failure_is_a_warning_not_a_crash(session_key):
    broken = FakeProvider("db", Slot.DATABASE)
    runtime = make_runtime(broken)

    async def explode():
        raise RuntimeError("listing failed")

    broken.discover = explode
    scan = await find_orphans(runtime, providers=["db"])
    assert scan.orphans == [] and scan.warnings == ["db: discovery failed: RuntimeError: listing failed"]


async def test_first_interrupt_lets_in_flight_deletes_finish(session_key):
    slow = FakeProvider("slow", Slot.DATABASE, kind="a")
    runtime = make_runtime(slow)
    session = Session.parse(session_key)
    runtime.ledger.ensure_session(session)
    older = runtime.ledger.intend(session_key, "slow", "a", "mk0r-older-thing")
    runtime.ledger.mark_created(older.id, "slow-0")
    slow.store["mk0r-older-thing"] = "slow-0"
    await run(runtime, session, [slow])
    stop = asyncio.Event()
    original = slow.teardown

    async def slow_teardown(row):
        stop.set()  # the interrupt lands while this delete is in flight
        await asyncio.sleep(0.05)
        return await original(row)

    slow.teardown = slow_teardown
    report = await teardown_session(runtime, session_key, stop=stop)
    outcomes = {o.resource.name: o.outcome for o in report.outcomes if o.resource.provider == "slow"}
    assert outcomes[session.resource_name] == "deleted", "the in-flight delete finished and was recorded"
    assert outcomes["mk0r-older-thing"] == "not_attempted"
    assert runtime.ledger.resource(older.id).state == "created"
    assert runtime.ledger.get_session(session_key).state == "teardown_incomplete"
    scan = await find_orphans(runtime, providers=["slow"])
    assert scan.orphans == []  # still owned by the live session: teardown can resume
    resumed = await teardown_session(runtime, session_key)
    assert resumed.ok and runtime.ledger.get_session(session_key).state == "deleted"


async def test_a_failed_provider_can_keep_env_that_is_still_valid(session_key):
    from mk0r_tui.core.errors import ProviderError

    tag = FakeProvider("tagger", Slot.ANALYTICS, error=ProviderError("capture refused", status=401, kept_env={"APP_TAG": "mk0r-x"}))
    runtime = make_runtime(tag)
    report = await run(runtime, Session.parse(session_key), [tag])
    result = next(r for r in report.results if r.name == "tagger")
    assert result.status is Status.FAILED
    assert report.env == {"APP_TAG": "mk0r-x"}
    assert not report.ok


async def test_a_run_that_breaks_before_settling_does_not_stay_provisioning(session_key):
    import pytest

    runtime = make_runtime()
    with pytest.raises(KeyError):
        await run(runtime, Session.parse(session_key), [PlanStep("no-such-provider", Slot.DATABASE)])
    assert runtime.ledger.get_session(session_key).state == "interrupted"
