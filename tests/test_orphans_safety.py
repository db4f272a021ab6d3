"""Never delete what is alive (issue 9, findings 1-5) and runs with an owner and a heartbeat.

Subprocess tests drive the real CLI against the fake upstream (two processes where the finding
needs two); the race trials live in `racekit.py` with a count: a few here, the full 50 in
`bench/orphans_races.py`.
"""

from __future__ import annotations

import json
import os
import socket
import time

import httpx
import pytest
import racekit
from crashkit import KEYS, cli_command, cli_env, cli_json, run_cli, upstream_resources
from ledgerkit import open_test_ledger
from waiting import wait_until_sync

from fakeupstream import FakeUpstream
from mk0r_tui.core.models import ResourceState, Session

#: trials per race in CI (the bench runs 50 of each)
CI_TRIALS = int(os.environ.get("MK0R_RACE_TRIALS", "3"))

pytestmark = pytest.mark.slow


@pytest.fixture
def racing_fake():
    with FakeUpstream(config=racekit.RACE_FAKE) as fake:
        yield fake


@pytest.fixture
def fast_fake():
    with FakeUpstream(config={"neon_operation_ms": 0}) as fake:
        yield fake


def github_repos(fake: FakeUpstream) -> list[dict]:
    """The fake's repositories as GitHub serves them (with their description)."""
    return [r["repo"] for r in fake.state(full=True)["raw"]["github"]["repos"].values()]


def assert_clean(tally: racekit.Tally) -> None:
    assert not tally.failures, "\n".join(tally.failures)


# -- 1: orphans --delete never deletes a live run's resources ------------------------------------


def test_1_orphans_delete_racing_a_provision_deletes_nothing_live(racing_fake, mk0r_home):
    tally = racekit.orphans_delete_racing_provision(racing_fake, mk0r_home, CI_TRIALS)
    assert_clean(tally)


def test_1_a_live_lease_hides_its_session_from_orphans_in_another_process(racing_fake, mk0r_home):
    env = cli_env(racing_fake, mk0r_home)
    key = racekit.new_key("held")
    proc = racekit.popen(env, racekit.provision_cmd(key))
    try:
        # the run holds its lease and has a create in flight or done: the moment the old rule lost it
        wait_until_sync(lambda: racekit.leased(mk0r_home, key) and racekit.upstream_of(racing_fake, key[:12]),
                        timeout=60, what="a leased run with a create upstream")
        listed = cli_json(env, "orphans", "--json", "--older-than", "0s")
        assert [o for o in listed if key[:12] in o["name"]] == []
    finally:
        proc.communicate(timeout=120)
    assert proc.returncode == 0


async def test_1_an_e2b_sessions_operator_copy_of_the_env_is_not_an_orphan(mk0r_home):
    """The local-folder discovery sees `apps/<slug>` of an E2B session (its operator copy of the
    `.env`, the only copy of the Resend token): not an orphan while the session lives."""
    from fakes import registry_of
    from test_e2b_target import FakeSandboxBackend, provision, services

    from mk0r_tui.core.config import load_settings
    from mk0r_tui.core.events import Collector
    from mk0r_tui.core.plan import PlanStep
    from mk0r_tui.engine.runtime import Runtime
    from mk0r_tui.engine.teardown import find_orphans
    from mk0r_tui.targets.e2b import E2BTarget
    from mk0r_tui.targets.local import LocalFolderTarget

    settings = load_settings()
    selection = services()
    target = E2BTarget(settings=settings, backend=FakeSandboxBackend())
    providers = [p for p in selection if not isinstance(p, PlanStep)]
    runtime = Runtime(settings, registry=registry_of(*providers, target, LocalFolderTarget(settings=settings)))
    session = Session.parse("e2bsession01-test")
    report = await provision(runtime, target, session, selection, Collector())
    assert report.ok and (settings.apps_dir / session.slug / ".env").exists()
    scan = await find_orphans(runtime, older_than_s=0.0)
    assert "local-folder" in scan.scanned
    assert [o for o in scan.orphans if o.provider == "local-folder"] == []
    runtime.close()


# -- 2: another ledger's resources are foreign ---------------------------------------------------


def test_2_two_ledgers_on_one_upstream_never_delete_each_others_resources(racing_fake, tmp_path):
    tally = racekit.two_ledgers(racing_fake, (tmp_path / "home-a", tmp_path / "home-b"), max(1, CI_TRIALS - 1))
    assert_clean(tally)
    assert tally.figures["deleted"] == 0
    assert tally.figures["listed as foreign in the other ledger"] > 0


def test_2_foreign_resources_are_listed_apart_and_deleted_only_with_include_foreign(fast_fake, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    env_a, env_b = cli_env(fast_fake, a), cli_env(fast_fake, b)
    key = racekit.new_key("mine")
    assert run_cli(env_a, "provision", "--session", key, "--json", "--target", "local").returncode == 0
    with open_test_ledger(a) as ledger:
        ledger_id = ledger.ledger_id
    (repo,) = [r for r in github_repos(fast_fake) if key[:12] in r["name"]]
    assert repo["description"] == f"mk0r-tui ledger {ledger_id}"  # the owner mark

    listed = cli_json(env_b, "orphans", "--json", "--older-than", "0s")
    mine = [o for o in listed if key[:12] in o["name"]]
    assert {(o["provider"], o["kind"]) for o in mine} == {("neon", "project"), ("resend", "segment"),
                                                        ("resend", "api-key"), ("github", "repo")}
    assert all(o["foreign"] and o["reason"].startswith("not in this ledger") for o in mine)
    assert next(o for o in mine if o["provider"] == "github")["owner"] == ledger_id
    text = run_cli(env_b, "orphans", "--older-than", "0s")
    assert "not in this ledger (deleted only with --include-foreign):" in text.stdout

    kept = run_cli(env_b, "orphans", "--delete", "--yes", "--json", "--older-than", "0s")
    assert kept.returncode == 0 and "left alone (--include-foreign deletes them)" in kept.stderr
    assert len([u for u in upstream_resources(fast_fake.state()) if key[:12] in u.name]) == 4
    # the default age guard alone keeps them too: seconds old, nobody's rows here
    assert [o for o in cli_json(env_b, "orphans", "--json") if key[:12] in o["name"]] == []

    gone = run_cli(env_b, "orphans", "--delete", "--yes", "--json", "--older-than", "0s", "--include-foreign")
    assert gone.returncode == 0, gone.stderr
    assert [u for u in upstream_resources(fast_fake.state()) if key[:12] in u.name] == []


def test_2_a_repo_this_session_did_not_create_is_never_deleted(fast_fake, mk0r_home):
    env = cli_env(fast_fake, mk0r_home)
    key = racekit.new_key("taken")
    name = Session.parse(key).resource_name
    # someone else's repository already has the session's name (made with another token, no mark)
    made = httpx.post(f"{fast_fake.github_url}/user/repos", json={"name": name, "private": True},
                      headers={"Authorization": f"Bearer {KEYS['GITHUB_PROVISIONING_TOKEN']}"})
    assert made.status_code == 201
    proc = run_cli(env, "provision", "--session", key, "--json", "--target", "local")
    assert "this session did not create it" in proc.stdout + proc.stderr
    assert run_cli(env, "orphans", "--delete", "--yes", "--json", "--older-than", "0s").returncode == 0
    assert [r for r in github_repos(fast_fake) if r["name"] == name], "the foreign repo was deleted"
    listed = [o for o in cli_json(env, "orphans", "--json", "--older-than", "0s") if o["name"] == name]
    assert [(o["provider"], o["foreign"]) for o in listed if o["provider"] == "github"] == [("github", True)]


# -- 3: a failed look-up is an unknown outcome, never "never created" -----------------------------


LOOKUPS = {
    "neon": ("POST", "/projects", "GET", "/projects", ("neon", "project")),
    "github": ("POST", "/user/repos", "GET", "/repos/", ("github", "repo")),
    "resend": ("POST", "/segments", "GET", "/segments", ("resend", "segment")),
}


@pytest.mark.parametrize("provider", list(LOOKUPS))
def test_3_a_lost_create_answer_then_a_4xx_look_up_stays_pending(provider, fast_fake, mk0r_home):
    create_method, create_path, find_method, find_path, (prov, kind) = LOOKUPS[provider]
    fast_fake.control(faults=[
        {"provider": provider, "method": create_method, "path_prefix": create_path, "drop_after_commit": True},
        {"provider": provider, "method": find_method, "path_prefix": find_path, "status": 403},
    ])
    env = cli_env(fast_fake, mk0r_home)
    key = racekit.new_key("lost")
    run_cli(env, "provision", "--session", key, "--json", "--target", "local")
    (made,) = [u for u in upstream_resources(fast_fake.state()) if u.provider == prov and u.kind == kind and key[:12] in u.name]
    with open_test_ledger(mk0r_home) as ledger:
        rows = [r for r in ledger.resources(key) if (r.provider, r.kind) == (prov, kind)]
    assert [r.state for r in rows] == [ResourceState.PENDING.value], [(r.state, r.error) for r in rows]
    assert not any("never created" in (r.error or "") for r in rows)
    # teardown finds it by name (the pending row) and leaves nothing behind; no duplicate was made
    down = run_cli(env, "teardown", key, "--yes", "--json")
    assert down.returncode == 0, down.stdout + down.stderr
    assert [u for u in upstream_resources(fast_fake.state()) if u.remote_id == made.remote_id] == []


# -- 4: one runner per session across processes ----------------------------------------------------


def test_4_double_provisions_of_one_key_make_no_duplicate(racing_fake, mk0r_home):
    tally = racekit.double_provisions(racing_fake, mk0r_home, CI_TRIALS)
    assert_clean(tally)
    assert tally.figures["duplicates"] == 0


def test_4_provision_and_teardown_at_once_end_consistent(racing_fake, mk0r_home):
    tally = racekit.provision_and_teardown(racing_fake, mk0r_home, max(1, CI_TRIALS - 1))
    assert_clean(tally)


def test_4_a_busy_session_names_its_holder_in_one_line(racing_fake, mk0r_home):
    env = cli_env(racing_fake, mk0r_home)
    key = racekit.new_key("busy")
    racing_fake.control(latency_ms={**racekit.LATENCY_MS, "neon": 6000})  # the first run outlasts the others
    first = racekit.popen(env, racekit.provision_cmd(key))
    try:
        wait_until_sync(lambda: racekit.leased(mk0r_home, key) and racekit.session_state(mk0r_home, key),
                        timeout=60, what="the first run's lease")
        now = {**env, "MK0R_LEASE_WAIT_S": "0"}
        others = [racekit.popen(now, racekit.provision_cmd(key)), racekit.popen(now, cli_command("teardown", key, "--yes"))]
        results = [(proc, *proc.communicate(timeout=60)) for proc in others]
        assert first.poll() is None, "the first run ended before the others asked"
    finally:
        first.communicate(timeout=120)
    for proc, _out, err in results:
        assert proc.returncode == 2, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert f"is being provisioned by {socket.gethostname()}:{first.pid} since" in lines[0]
    assert first.returncode == 0


# -- 5: a same-named duplicate is found by its id ---------------------------------------------------


def test_5_a_second_project_with_the_sessions_name_is_reported_as_a_duplicate(fast_fake, mk0r_home):
    env = cli_env(fast_fake, mk0r_home)
    key = racekit.new_key("twin")
    name = Session.parse(key).resource_name
    assert run_cli(env, "provision", "--session", key, "--json", "--target", "local").returncode == 0
    twin = httpx.post(f"{fast_fake.neon_url}/projects", json={"project": {"name": name}},
                      headers={"Authorization": f"Bearer {KEYS['NEON_PROVISIONING_KEY']}"})
    assert twin.status_code in (200, 201), twin.text
    twin_id = twin.json()["project"]["id"]
    listed = cli_json(env, "orphans", "--json", "--older-than", "0s")
    (dup,) = [o for o in listed if o["name"] == name]
    assert dup["id"] == twin_id and dup["reason"].startswith(f"duplicate: session {key}") and not dup["foreign"]
    deleted = run_cli(env, "orphans", "--delete", "--yes", "--json", "--older-than", "0s")
    assert deleted.returncode == 0, deleted.stderr
    ids = {p["id"] for p in fast_fake.state()["neon"] if p["name"] == name}
    assert twin_id not in ids and len(ids) == 1  # the recorded one stays


# -- runs have an owner and a heartbeat --------------------------------------------------------------


def test_a_sigkilled_provision_reads_interrupted_and_provision_again_completes_it(racing_fake, mk0r_home):
    tally = racekit.sigkilled_provision_resumes(racing_fake, mk0r_home, CI_TRIALS)
    assert_clean(tally)
    assert tally.figures["max seconds from kill to interrupted"] < 15  # MK0R_LEASE_STALE_S


def test_a_run_on_another_host_is_owner_gone_only_when_its_heartbeat_stops(mk0r_home):
    from mk0r_tui.core.ledger import HOST

    with open_test_ledger(mk0r_home) as ledger:
        session = Session.parse("otherhost001-test")
        ledger.ensure_session(session)
        ledger.set_session_state(session.key, "provisioning")
        assert ledger.acquire_lease(session.resource_name, session.key, "provision", "tok", stale_s=15) is None
        ledger._write("UPDATE leases SET host = ?, pid = 1", (HOST + "-elsewhere",))
        assert ledger.settle_owner_gone(15) == []  # it beats: alive
        assert ledger.get_session(session.key).state == "provisioning"
        ledger._write("UPDATE leases SET heartbeat_at = ?", (time.time() - 16,))
        assert ledger.settle_owner_gone(15) == [session.key]
        assert ledger.get_session(session.key).state == "interrupted"
        # a dead pid on this host is gone at once, heartbeat or not
        ledger.set_session_state(session.key, "provisioning")
        ledger._write("UPDATE leases SET host = ?, pid = ?, heartbeat_at = ?", (HOST, 2**22 + 12345, time.time()))
        assert ledger.live_leases(15) == {}
        assert ledger.settle_owner_gone(15) == [session.key]
        assert ledger.get_session(session.key).state == "interrupted"
        # a dead teardown keeps its word: that is what `orphans` reads as "a teardown that died"
        ledger.set_session_state(session.key, "tearing_down")
        assert ledger.settle_owner_gone(15) == []


def test_a_running_provision_beats_and_is_not_owner_gone(racing_fake, mk0r_home):
    env = cli_env(racing_fake, mk0r_home, MK0R_LEASE_STALE_S="1")
    key = racekit.new_key("beat")
    slow = {"latency_ms": {**racekit.LATENCY_MS, "neon": 1500}}
    racing_fake.control(**slow)
    proc = racekit.popen(env, racekit.provision_cmd(key))
    try:
        wait_until_sync(lambda: racekit.leased(mk0r_home, key), timeout=60, what="the run's lease")
        with open_test_ledger(mk0r_home) as ledger:
            (lease,) = [x for x in ledger.leases() if x.session_key == key]
            first_beat = lease.heartbeat_at
            wait_until_sync(lambda: any(x.heartbeat_at > first_beat for x in ledger.leases() if x.session_key == key),
                            timeout=10, what="a heartbeat")
        listed = json.loads(run_cli(env, "sessions", "--json").stdout)
        assert next(s["state"] for s in listed if s["session"] == key) == "provisioning"
    finally:
        proc.communicate(timeout=120)
    assert proc.returncode == 0
