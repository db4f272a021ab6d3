"""Issue 12's proof: four processes provision and tear down 80 sessions together against the
fake upstream (its own process, real HTTP on 127.0.0.1, injected latency) through one ledger,
on the SQLite file and on a fresh Postgres database. The budgets they share (core/budgets.py)
keep the limits for all of them together: the fake's counters prove it. Two of the processes
also race on one session key: one set of resources is made.

Limits are scaled (`MK0R_BUDGET_MINUTE_S=1`: a "minute" of one second) so it runs in seconds."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from team_worker import HERE, run_team, team_env

from fakeupstream import FakeUpstream
from fakeupstream.pacing import pacing_report
from mk0r_tui.core.ledger import Ledger

LIMITS = {
    "MK0R_GITHUB_MUTATION_GAP_S": "0.05",
    "MK0R_GITHUB_CREATES_PER_MIN": "30",
    "MK0R_GITHUB_CREATES_PER_HOUR": "500",
    "MK0R_BUDGET_MINUTE_S": "1",
    "MK0R_RESEND_RPS": "25",
    "MK0R_NEON_RPM": "300",
    "MK0R_CONCURRENCY": "4",
    # the race key's second provision waits for the first's lease however loaded the machine is
    "MK0R_LEASE_WAIT_S": "600",
}
LATENCY = {"neon": 40, "resend": 20, "github": 30, "posthog": 5}
CREATES = {("neon", "POST /projects"), ("resend", "POST /segments"), ("resend", "POST /api-keys"),
           ("github", "POST /user/repos")}


def warm(fake: FakeUpstream) -> None:
    import httpx

    for url in (fake.github_url + "/user", fake.resend_url + "/domains", fake.neon_url + "/users/me"):
        httpx.get(url, headers={"Authorization": "Bearer warm-up-token"}, timeout=30)
    fake.control(reset_counters=True)


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request) -> str | None:
    return request.getfixturevalue("pg_ledger_url") if request.param == "postgres" else None


def test_four_processes_share_the_limits_and_lose_nothing(tmp_path, ledger_url):
    home = tmp_path / "team-home"
    with FakeUpstream(config={"latency_ms": LATENCY, "neon_poll_latency_ms": 10}, use_subprocess=True) as fake:
        warm(fake)
        env = team_env(fake, home, ledger_url, LIMITS)
        if ledger_url:
            # the ledger made once before the processes start: four processes opening a fresh
            # Postgres ledger at once race on its schema (ledger M1; reported to the ledger's owner)
            Ledger(ledger_url).close()
        run = run_team(env, processes=4, sessions=80, timeout_s=240)
        assert run["errors"] == []
        race = run["race_key"]
        # the race key's two runs are over: whichever ran second adopted what the first made
        check = Ledger(ledger_url or home / "ledger.sqlite3")
        try:
            race_state = check.require_session(race).state
        finally:
            check.close()
        torn = subprocess.run([sys.executable, str(HERE), "--teardown", race], env=env, capture_output=True,
                              text=True, timeout=120)
        assert torn.returncode == 0, torn.stderr[-2000:]
        state = fake.state()

    provisioned = [(k, v) for r in run["results"] for k, v in r["provisioned"].items()]
    torn_down = {k: v for r in run["results"] for k, v in r["torn_down"].items()}
    # every session ready, then deleted (the race key was provisioned by two processes: each
    # run ok; the word read right after one run may already be the other's "provisioning")
    assert Counter(k for k, _ in provisioned) == Counter({**{k: 1 for k in run["keys"]}, race: 2})
    assert [(k, v) for k, v in provisioned if not (v["ok"] and (v["state"] == "ready" or k == race))] == []
    assert race_state == "ready"
    assert sorted(torn_down) == sorted(run["keys"])
    assert [(k, v) for k, v in torn_down.items() if not (v["ok"] and v["state"] == "deleted")] == []

    # 0 duplicate resources: one create per resource per session, the race key included
    sessions = len(run["keys"]) + 1
    by_route = {p: state["requests"][p]["by_route"] for p in ("neon", "resend", "github")}
    assert {(p, r): by_route[p].get(r, 0) for p, r in CREATES} == {c: sessions for c in CREATES}
    assert state["neon"] == [] and state["github"] == [] and state["resend"] == {"segments": [], "api_keys": []}

    # 0 lost rows: the ledger holds every one of them, with its id, deleted
    ledger = Ledger(ledger_url or home / "ledger.sqlite3")
    try:
        rows = [r for k in [*run["keys"], race] for r in ledger.resources(k) if r.provider in ("neon", "resend", "github")]
        assert len(rows) == 4 * sessions
        assert all(r.state == "deleted" and r.remote_id for r in rows)
        assert len({(r.provider, r.remote_id) for r in rows}) == len(rows)
        assert all(ledger.require_session(k).state == "deleted" for k in run["keys"])
    finally:
        ledger.close()

    # the limits held for the four processes together (the fake's clock, 30 ms slack)
    report = pacing_report(state, minute_s=1.0, slack_s=0.03)
    assert report["github_max_mutations_in_flight"] == 1
    assert report["github_min_mutation_gap_s"] >= 0.05 - 0.03
    assert report["github_creates_max_per_minute"] <= 30
    assert report["resend_max_per_second"] <= 25
    assert report["neon_max_per_minute"] <= 300
    assert all(n <= 4 for n in report["max_in_flight"].values()), report["max_in_flight"]
