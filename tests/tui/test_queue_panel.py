"""The dashboard shows the service's job queue (queued / running / failed) when a team ledger is
used: jobs deferred through the service's own queue code on the team's Postgres, no worker."""

from __future__ import annotations

import procrastinate
import pytest
from tui_fakes import fake_set
from waiting import wait_until

from mk0r_tui.core.models import Session
from mk0r_tui.engine.jobs_view import read_queue_counts
from mk0r_tui.service.jobs import JobQueue


async def queue_with_jobs(url: str) -> None:
    queue = JobQueue(url)
    await queue.open()
    try:
        ids = [(await queue.submit_provision(Session.parse(f"q{i}-queued-job"), target=None, sandbox=None, request_id=None))[0]
               for i in range(3)]
        await queue.app.job_manager.finish_job_by_id_async(ids[0], status=procrastinate.jobs.Status.FAILED, delete_job=False)
    finally:
        await queue.close()


async def test_the_queue_panel_counts_the_team_queue(make_app, pg_ledger_url, monkeypatch):
    monkeypatch.setenv("MK0R_LEDGER_URL", pg_ledger_url)  # the queue lives beside the team ledger
    await queue_with_jobs(pg_ledger_url)
    counts = read_queue_counts(pg_ledger_url)
    assert (counts.queued, counts.running, counts.failed) == (2, 0, 1)
    app = make_app(fake_set())
    async with app.run_test(size=(160, 48)) as pilot:
        panel = await wait_until(lambda: app.screen.query("#queue-panel").first() if app.screen.query("#queue-panel") else None,
                                 pilot=pilot, what="the queue panel mounted")
        await wait_until(lambda: panel.counts is not None, pilot=pilot, what="the counts read")
        assert str(panel.render()) == "jobs  2 queued · 0 running · 1 failed"
        assert panel.has_class("-failed")


@pytest.mark.sqlite_only("it is about a data dir with no team ledger (the Postgres pass gives every test one)")
async def test_no_queue_panel_without_a_team_queue(make_app):
    app = make_app(fake_set())
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert not app.screen.query("#queue-panel")
