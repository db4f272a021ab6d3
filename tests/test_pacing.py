"""Pacing that keeps the providers' limits and never fails a session for waiting (issue 17),
proved against the fake upstream (real HTTP on 127.0.0.1) with the product's pacing code: the
budgets of core/budgets.py on the data dir's SQLite file, the real providers, the orchestrator.

Limits are scaled (a "minute" of `MK0R_BUDGET_MINUTE_S`, short gaps) so the run takes seconds;
the fake's own counters (fakeupstream/pacing.py) prove none was exceeded."""

from __future__ import annotations

import asyncio

import pytest
from crashkit import KEYS, cloud_runtime

from fakeupstream import FakeUpstream
from fakeupstream.pacing import pacing_report
from mk0r_tui.core.models import ResourceState, Session, Status
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.teardown import find_orphans

GITHUB_ONLY = {"GITHUB_PROVISIONING_TOKEN": KEYS["GITHUB_PROVISIONING_TOKEN"]}


def warm(fake: FakeUpstream) -> None:
    """One request per provider mount first: the fake's first request (its own imports and
    first connection) takes a few hundred ms to *read* on a loaded machine, which would show as
    a late arrival, not as the client's pacing."""
    import httpx

    for url in (fake.github_url + "/user", fake.resend_url + "/domains", fake.neon_url + "/users/me"):
        httpx.get(url, headers={"Authorization": "Bearer warm-up-token"}, timeout=30)
    fake.control(reset_counters=True)


async def test_a_repo_created_after_its_session_timed_out_is_recorded_not_orphaned(mk0r_home):
    """GitHub makes the repository at once but answers after 0.8 s; the provider's timeout is
    0.3 s. The session's GitHub step fails on its timeout, and the repository it made is in the
    ledger as created, with its id: teardown deletes it, orphans does not list it."""
    with FakeUpstream(config={"latency_ms": {"github": 800}, "latency_mode": "after"}) as fake:
        runtime = cloud_runtime(fake, keys=GITHUB_ONLY, github_owner="acme", provider_timeout_s=0.3)
        try:
            session = Session.new()
            report = await provision_services(runtime, session, runtime.plan("local"))
            github = next(r for r in report.results if r.name == "github")
            assert github.status is Status.FAILED and "timed out" in (github.error or "")

            rows = runtime.ledger.resources(session.key)
            repo = next(r for r in rows if r.provider == "github")
            assert repo.state == ResourceState.CREATED.value
            assert repo.remote_id == f"acme/{session.resource_name}" and (repo.meta or {}).get("repo_id")
            assert [r["full_name"] for r in fake.state()["github"]] == [f"acme/{session.resource_name}"]
            scan = await find_orphans(runtime, older_than_s=0)
            assert not [o for o in scan.ours if o.provider == "github"]
        finally:
            await runtime.aclose()
            runtime.close()


RESEND_ONLY = {"RESEND_PROVISIONING_KEY": KEYS["RESEND_PROVISIONING_KEY"]}


@pytest.mark.parametrize(("latency_s", "timeout_s", "late_kind"), [(0.8, 0.3, "segment"), (0.6, 0.9, "api-key")])
async def test_a_resend_segment_or_key_made_after_its_session_gave_up_is_recorded(mk0r_home, latency_s, timeout_s, late_kind):
    """Resend commits each create at once and answers `latency_s` later. With a 0.3 s timeout the
    segment's answer comes late; with 0.9 s the segment is in time and the key (sent 0.5 s or more
    after it, Resend's 2 req/s) comes late. Either way what was made is in the ledger as created
    with its id: teardown deletes it and orphans does not list it."""
    with FakeUpstream(config={"latency_ms": {"resend": latency_s * 1000}, "latency_mode": "after"}) as fake:
        runtime = cloud_runtime(fake, keys=RESEND_ONLY, provider_timeout_s=timeout_s)
        try:
            session = Session.new()
            report = await provision_services(runtime, session, runtime.plan("local"))
            resend = next(r for r in report.results if r.name == "resend")
            assert resend.status is Status.FAILED and "timed out" in (resend.error or ""), resend

            made = {"segment": [s["id"] for s in fake.state()["resend"]["segments"]],
                    "api-key": [k["id"] for k in fake.state()["resend"]["api_keys"]]}
            rows = {r.kind: r for r in runtime.ledger.resources(session.key) if r.provider == "resend"}
            assert rows[late_kind].state == ResourceState.CREATED.value
            assert made[late_kind] == [rows[late_kind].remote_id]
            scan = await find_orphans(runtime, older_than_s=0)
            assert not [o for o in scan.ours if o.provider == "resend"]
        finally:
            await runtime.aclose()
            runtime.close()


async def test_a_budget_wait_longer_than_the_provider_timeout_fails_no_session(mk0r_home):
    """Eight sessions queue for GitHub's mutation gap (0.3 s start to start, so the last waits
    about 2.1 s) under a 1 s provider timeout: every session is ok, because the timeout counts
    the provider's work, not its turn in the queue. Before, the last ones timed out."""
    with FakeUpstream(config={"latency_ms": {"github": 20}}, use_subprocess=True) as fake:
        warm(fake)
        runtime = cloud_runtime(fake, keys=GITHUB_ONLY, github_owner="acme", provider_timeout_s=1.0,
                                github_mutation_gap_s=0.3)
        try:
            said: list[str] = []

            def sink(event) -> None:
                message = getattr(event, "message", "")
                if "rate limit" in message:
                    said.append(message)

            reports = await asyncio.gather(*(provision_services(runtime, Session.new(), runtime.plan("local"), sink=sink)
                                             for _ in range(8)))
            assert [r.ok for r in reports] == [True] * 8, [r.results for r in reports if not r.ok]
            assert "waiting for GitHub's rate limit (6 ahead)" in said
            report = pacing_report(fake.state())
            assert report["github_max_mutations_in_flight"] == 1
            # start to start as the fake saw them; 0.1 s of slack for its own first-connection cost
            assert report["github_min_mutation_gap_s"] >= 0.3 - 0.1
        finally:
            await runtime.aclose()
            runtime.close()


#: the 100-session run's limits: the product's pacing code at a faster scale
SCALED = {
    "github_mutation_gap_s": 0.01,
    "github_creates_per_minute": 25,   # binds: 100 creates need 4 "minutes"
    "github_creates_per_hour": 500,
    "budget_minute_s": 1.0,
    "resend_requests_per_second": 80.0,
    "neon_requests_per_minute": 200,
    # the product's 120 s would do; 30 s: 100 sessions at once on a loaded 2-core machine spend
    # seconds of event-loop time each (the budget waits themselves are not counted)
    "provider_timeout_s": 30.0,
}


async def test_100_sessions_at_once_all_ok_no_limit_exceeded_no_orphan(mk0r_home):
    latency = {"neon": 20, "resend": 10, "github": 20, "posthog": 5}
    with FakeUpstream(config={"latency_ms": latency, "neon_poll_latency_ms": 5}, use_subprocess=True) as fake:
        warm(fake)
        runtime = cloud_runtime(fake, **SCALED)
        try:
            sessions = [Session.new() for _ in range(100)]
            reports = await asyncio.gather(*(provision_services(runtime, s, runtime.plan("local")) for s in sessions))
            state = fake.state()
            failed = [(r.session.key, [x.error for x in r.results if x.error]) for r in reports if not r.ok]
            assert failed == []

            report = pacing_report(state, minute_s=SCALED["budget_minute_s"], slack_s=0.03)
            assert report["github_creates"] == 100
            assert report["github_max_mutations_in_flight"] == 1
            assert report["github_creates_max_per_minute"] <= SCALED["github_creates_per_minute"]
            assert report["resend_max_per_second"] <= SCALED["resend_requests_per_second"]
            assert report["neon_max_per_minute"] <= SCALED["neon_requests_per_minute"]
            assert all(n <= runtime.settings.concurrency for n in report["max_in_flight"].values())

            # no orphan: every resource upstream is recorded created, with its id, once
            rows = [r for s in sessions for r in runtime.ledger.resources(s.key)]
            assert all(r.state == ResourceState.CREATED.value and r.remote_id for r in rows if r.provider != "local-folder")
            assert len(state["github"]) == 100 and len({r["full_name"] for r in state["github"]}) == 100
            assert len(state["neon"]) == 100 and len({p["name"] for p in state["neon"]}) == 100
            # the cloud providers only: the embedded Postgres is shared with every other test
            scan = await find_orphans(runtime, older_than_s=0, providers=["neon", "resend", "github", "posthog"])
            assert scan.ours == [] and scan.foreign == []
        finally:
            await runtime.aclose()
            runtime.close()


@pytest.mark.parametrize("n", [0])
def test_pacing_report_counts_windows(n):
    from fakeupstream.pacing import max_in_window

    assert max_in_window([0.0, 0.5, 1.0, 1.4], 1.0) == 3
    assert max_in_window([0.0, 0.5, 1.0, 1.5], 1.0) == 2
    assert max_in_window([0.0, 0.5, 0.98, 1.5], 1.0, slack_s=0.05) == 2
