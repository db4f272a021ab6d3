"""The fault matrix of issue 6: one test per fault, on the real code paths.

Real providers, the real `ApiClient`, the real orchestrator, ledger and `.env` writer, talking
HTTP to the stateful fake upstream (`fakeupstream.py`) on loopback. Waits (backoff, Retry-After,
Neon's operation polling) run on a fake clock: they are asserted, never spent.

    1  500 → bounded backoff, "retrying n/N", ok or failed; others finish
    2  429 Retry-After, GitHub's 403 secondary limit → no request before the deadline
    3  answer lost after the create committed → exactly one resource, its id in the ledger
    4  connection refused → fails fast and clearly, others ok, nothing recorded as created
    5  401/403 → no retry, distinct from a missing key (skipped, "set ..._KEY")
    6  malformed / truncated JSON → clear failure, complete .env, outcome reconciled
    7  name already exists → adopted only when the ledger proves it ours
    8  SIGKILL mid-provision → tests/test_crash_safety.py (the kill harness)
    9  disk full / permission denied writing .env → old file untouched, no temp file, resources kept
    10 no keyring backend → clear note, env vars work, no traceback (CLI)
    11 Ctrl+C during teardown → in-flight deletes recorded; a second one exits and orphans finds the rest
    12 delete of something already gone (404) → done, not an error
"""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from cloudmock import FakeClock
from crashkit import (
    KEYS,
    cli_command,
    cli_env,
    cli_json,
    closed_port,
    cloud_runtime,
    route_count,
    run_cli,
    stamp_requests,
    upstream_resources,
)
from ledgerkit import open_test_ledger
from waiting import wait_until_sync

from fakeupstream import FakeUpstream
from mk0r_tui.core import envfile
from mk0r_tui.core.envfile import read_env_file
from mk0r_tui.core.events import Collector, ProviderProgressed, ProviderRetrying, ResourceDeleted, TeardownFailed
from mk0r_tui.core.models import ResourceState, Session, Status
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.teardown import find_orphans, teardown_session

FAST_FAKE = {"neon_operation_ms": 0}


@pytest.fixture
def fake():
    with FakeUpstream(config=FAST_FAKE) as upstream:
        yield upstream


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def session(session_key) -> Session:
    return Session.parse(session_key)


@pytest.fixture
async def cloud(fake, clock, mk0r_home):
    runtime = cloud_runtime(fake, clock)
    yield runtime
    await runtime.aclose()
    runtime.close()


def result_of(report, name: str):
    return next(r for r in report.results if r.name == name)


def retries_for(sink: Collector, provider: str) -> list[ProviderRetrying]:
    return [e for e in sink.of(ProviderRetrying) if e.provider == provider]


def rows_of(runtime, session: Session, provider: str, kind: str | None = None):
    return [r for r in runtime.ledger.resources(session.key, provider=provider) if kind is None or r.kind == kind]


def assert_ok_except(report, *failed: str) -> None:
    for result in report.results:
        expected = Status.FAILED if result.name in failed else Status.OK
        assert result.status is expected, (result.name, result.status, result.error)


# -- 1. 500 → bounded backoff ---------------------------------------------------------------


async def test_1_upstream_500_backs_off_shows_retrying_n_of_n_and_ends_ok(fake, cloud, clock, session):
    fake.add_fault(provider="neon", method="POST", path_prefix="/projects", status=500, times=2)
    sink = Collector()

    report = await provision_services(cloud, session, cloud.plan("local"), sink=sink)

    assert_ok_except(report)
    retries = retries_for(sink, "neon")
    assert [(e.attempt, e.max_attempts, e.reason) for e in retries] == [(2, 5, "HTTP 500"), (3, 5, "HTTP 500")]
    first, second = (e.delay_s for e in retries)
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 1.5  # exponential with jitter, far below the 30 s cap
    state = fake.state()
    assert route_count(state, "neon", "POST /projects") == 3
    assert [p["name"] for p in state["neon"]] == [session.resource_name]
    assert not any(retries_for(sink, other) for other in ("resend", "github", "posthog"))


async def test_1_upstream_500_every_time_fails_after_max_attempts_while_others_finish(fake, clock, session, mk0r_home):
    fake.add_fault(provider="neon", method="POST", path_prefix="/projects", status=500, times=-1)
    runtime = cloud_runtime(fake, clock, max_attempts=3)
    sink = Collector()
    try:
        report = await provision_services(runtime, session, runtime.plan("local"), sink=sink)
    finally:
        await runtime.aclose()

    assert_ok_except(report, "neon")
    neon = result_of(report, "neon")
    assert "HTTP 500" in neon.error and "gave up after 3 attempts" in neon.error
    assert [(e.attempt, e.max_attempts) for e in retries_for(sink, "neon")] == [(2, 3), (3, 3)]
    assert sum(clock.sleeps) < 5  # bounded: two short backoffs, no runaway waiting
    state = fake.state()
    assert route_count(state, "neon", "POST /projects") == 3 and state["neon"] == []
    assert not any(r.state == ResourceState.CREATED.value for r in rows_of(runtime, session, "neon"))
    env = read_env_file(runtime.settings.env_file_for(session.slug))
    assert "DATABASE_URL" not in env and env["GITHUB_REPO"] == f"octocat/{session.resource_name}"
    runtime.close()


# -- 2. rate limits: no request before the deadline -------------------------------------------


async def test_2_429_with_retry_after_sends_nothing_before_the_deadline(fake, cloud, clock, session):
    fake.add_fault(provider="resend", method="POST", path_prefix="/segments", status=429,
                   headers={"Retry-After": "7"})
    stamps = stamp_requests(cloud, "resend", clock)
    sink = Collector()

    report = await provision_services(cloud, session, cloud.plan("local"), sink=sink)

    assert_ok_except(report)
    limited = next(s for s in stamps if s.method == "POST" and s.path.endswith("/segments"))
    later = stamps[stamps.index(limited) + 1:]
    assert later, "the segment create was never sent again"
    assert all(s.at >= limited.at + 7 for s in later), [(s.method, s.path, s.at - limited.at) for s in later]
    assert [(e.attempt, e.delay_s, e.reason) for e in retries_for(sink, "resend")] == [(2, 7.0, "HTTP 429")]
    assert route_count(fake.state(), "resend", "POST /segments") == 2


async def test_2_github_403_secondary_limit_without_retry_after_waits_at_least_a_minute(fake, cloud, clock, session):
    fake.add_fault(provider="github", method="POST", path_prefix="/user/repos", status=403, body={
        "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"})
    stamps = stamp_requests(cloud, "github", clock)
    sink = Collector()

    report = await provision_services(cloud, session, cloud.plan("local"), sink=sink)

    assert_ok_except(report)
    creates = [s for s in stamps if s.method == "POST"]
    assert len(creates) == 2
    assert creates[1].at - creates[0].at >= 60
    assert [(e.attempt, e.reason) for e in retries_for(sink, "github")] == [(2, "HTTP 403")]
    assert len(fake.state()["github"]) == 1


# -- 3. answer lost after the create committed upstream ---------------------------------------

LOST_ANSWER_CASES = {
    "neon-project": ("neon", "/projects", "project"),
    "resend-segment": ("resend", "/segments", "segment"),
    "resend-api-key": ("resend", "/api-keys", "api-key"),
    "github-repo": ("github", "/user/repos", "repo"),
}


async def provision_and_check_one_upstream_resource_recorded(fake, cloud, session, provider, kind) -> list[str]:
    """Provision; exactly one resource of (provider, kind) exists upstream and the ledger
    recorded it with its id. Returns that provider's progress lines."""
    sink = Collector()
    report = await provision_services(cloud, session, cloud.plan("local"), sink=sink)
    assert_ok_except(report)
    upstream = [u for u in upstream_resources(fake.state()) if (u.provider, u.kind) == (provider, kind)]
    assert len(upstream) == 1, upstream
    live = [r for r in rows_of(cloud, session, provider, kind) if r.live]
    assert [(r.state, r.remote_id) for r in live] == [(ResourceState.CREATED.value, upstream[0].remote_id)]
    return [e.message for e in sink.of(ProviderProgressed) if e.provider == provider]


@pytest.mark.parametrize("case", LOST_ANSWER_CASES)
async def test_3_timeout_after_the_create_committed_leaves_exactly_one_resource_with_its_id_recorded(
        fake, cloud, session, case):
    provider, path, kind = LOST_ANSWER_CASES[case]
    fake.add_fault(provider=provider, method="POST", path_prefix=path, drop_after_commit=True)

    progress = await provision_and_check_one_upstream_resource_recorded(fake, cloud, session, provider, kind)

    assert any("no answer to POST" in m for m in progress), progress
    if kind == "api-key":  # its token died with the answer: replaced, and the .env has the live one
        token = next(k["token"] for k in fake.state()["resend"]["api_keys"])
        assert read_env_file(cloud.settings.env_file_for(session.slug))["RESEND_API_KEY"] == token


@pytest.mark.parametrize("case", LOST_ANSWER_CASES)
async def test_3_a_500_after_the_create_committed_is_looked_up_and_adopted_never_resent(fake, cloud, session, case):
    """Neon: only 503/423 are safe to retry for non-GET; GitHub and Resend promise no
    idempotency. A 500 that comes after the create was applied must not make a second one."""
    provider, path, kind = LOST_ANSWER_CASES[case]
    fake.add_fault(provider=provider, method="POST", path_prefix=path, status=500, after_commit=True)

    progress = await provision_and_check_one_upstream_resource_recorded(fake, cloud, session, provider, kind)

    assert any("HTTP 500 to POST" in m for m in progress), progress
    if kind != "api-key":  # adopted: the create went out once
        assert route_count(fake.state(), provider, f"POST {path}") == 1


# -- 4. connection refused -------------------------------------------------------------------


async def test_4_connection_refused_fails_fast_and_clearly_and_records_nothing_as_created(
        fake, clock, session, mk0r_home):
    runtime = cloud_runtime(fake, clock, github_api_url=f"http://127.0.0.1:{closed_port()}")
    sink = Collector()
    started = time.monotonic()
    try:
        report = await provision_services(runtime, session, runtime.plan("local"), sink=sink)
    finally:
        await runtime.aclose()
    elapsed = time.monotonic() - started

    assert_ok_except(report, "github")
    github = result_of(report, "github")
    assert "cannot reach" in github.error and "connection refused" in github.error
    assert "gave up after 3 attempts" in github.error
    # the panel counts against the limit that applies (3 for a refused connection), not max_attempts
    assert [(e.attempt, e.max_attempts) for e in retries_for(sink, "github")] == [(2, 3), (3, 3)]
    assert elapsed < 5
    assert not any(r.state == ResourceState.CREATED.value for r in rows_of(runtime, session, "github"))
    assert fake.state()["github"] == []
    runtime.close()


# -- 5. invalid token vs missing key ---------------------------------------------------------


async def test_5_rejected_keys_are_not_retried_and_differ_from_a_missing_key(fake, clock, session, mk0r_home):
    keys = {**KEYS, "GITHUB_PROVISIONING_TOKEN": "bad_revoked_token_0001"}
    del keys["RESEND_PROVISIONING_KEY"]
    fake.add_fault(provider="neon", method="POST", path_prefix="/projects", status=403, times=-1)
    runtime = cloud_runtime(fake, clock, keys=keys)
    sink = Collector()
    try:
        report = await provision_services(runtime, session, runtime.plan("local"), sink=sink)
    finally:
        await runtime.aclose()

    github, neon, resend = (result_of(report, n) for n in ("github", "neon", "resend"))
    assert github.status is Status.FAILED and neon.status is Status.FAILED
    assert "HTTP 401" in github.error and "GITHUB_PROVISIONING_TOKEN: GitHub did not accept it" in github.error
    assert "HTTP 403" in neon.error and "NEON_PROVISIONING_KEY" in neon.error
    assert resend.status is Status.SKIPPED and resend.error is None
    assert resend.note.startswith("set RESEND_PROVISIONING_KEY")
    assert "set " not in github.error and "HTTP" not in resend.note
    state = fake.state()
    assert state["requests"]["github"]["total"] == 1
    assert route_count(state, "neon", "POST /projects") == 1
    assert state["requests"]["resend"]["total"] == 0
    assert not retries_for(sink, "github") and not retries_for(sink, "neon")
    assert not [r for r in rows_of(runtime, session, "neon") if r.live]  # refused: the intent is closed
    assert result_of(report, "posthog").status is Status.OK
    runtime.close()


# -- 6. malformed / truncated JSON -----------------------------------------------------------


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")) if folder.exists() else []


async def test_6_truncated_create_answer_is_reconciled_by_name_to_exactly_one_project(fake, cloud, session):
    fake.add_fault(provider="neon", method="POST", path_prefix="/projects", malformed=True, status=201)
    sink = Collector()

    report = await provision_services(cloud, session, cloud.plan("local"), sink=sink)

    assert_ok_except(report)
    (project,) = fake.state()["neon"]
    (row,) = [r for r in rows_of(cloud, session, "neon") if r.live]
    assert (row.state, row.remote_id) == (ResourceState.CREATED.value, project["id"])
    env = read_env_file(cloud.settings.env_file_for(session.slug))
    assert env["NEON_PROJECT_ID"] == project["id"] and env["DATABASE_URL"].startswith("postgresql://")
    assert any("was created: adopting it" in e.message for e in sink.of(ProviderProgressed))


async def test_6_unreadable_answers_fail_clearly_leave_a_complete_env_and_a_rerun_adopts_the_project(
        fake, cloud, session):
    fake.control(faults=[
        {"provider": "neon", "method": "POST", "path_prefix": "/projects", "malformed": True, "status": 201},
        {"provider": "neon", "method": "GET", "path_prefix": "/projects", "malformed": True, "status": 200,
         "times": -1},
    ])

    first = await provision_services(cloud, session, cloud.plan("local"))

    assert_ok_except(first, "neon")
    assert "not valid JSON (truncated or not JSON)" in result_of(first, "neon").error
    path = cloud.settings.env_file_for(session.slug)
    assert read_env_file(path) == dict(first.env) and "DATABASE_URL" not in first.env
    assert temp_files(path.parent) == []
    (project,) = fake.state()["neon"]
    (pending,) = [r for r in rows_of(cloud, session, "neon") if r.live]
    assert pending.state == ResourceState.PENDING.value  # the unknown outcome is on record

    fake.control(clear_faults=True)
    second = await provision_services(cloud, session, cloud.plan("local"))

    assert_ok_except(second)
    assert [p["id"] for p in fake.state()["neon"]] == [project["id"]]
    assert route_count(fake.state(), "neon", "POST /projects") == 1
    (row,) = [r for r in rows_of(cloud, session, "neon") if r.live]
    assert (row.id, row.state, row.remote_id) == (pending.id, ResourceState.CREATED.value, project["id"])
    assert read_env_file(path)["NEON_PROJECT_ID"] == project["id"]


# -- 7. name already exists ------------------------------------------------------------------


def create_repo_upstream(fake: FakeUpstream, name: str) -> None:
    response = httpx.post(f"{fake.github_url}/user/repos", json={"name": name, "private": True},
                          headers={"Authorization": "Bearer someone-else"}, trust_env=False)
    assert response.status_code == 201


async def test_7_existing_name_not_proven_ours_is_a_clear_error_and_never_deleted(fake, cloud, session):
    create_repo_upstream(fake, session.resource_name)

    report = await provision_services(cloud, session, cloud.plan("local"))

    assert_ok_except(report, "github")
    error = result_of(report, "github").error
    assert "HTTP 422" in error and "already exists and this session did not create it" in error
    assert not [r for r in rows_of(cloud, session, "github") if r.live]
    await teardown_session(cloud, session.key)
    state = fake.state()
    assert [r["full_name"] for r in state["github"]] == [f"octocat/{session.resource_name}"]
    assert route_count(state, "github", "DELETE /repos/{owner}/{repo}") == 0


async def test_7_existing_name_is_adopted_when_the_ledger_shows_this_session_made_it(fake, cloud, session):
    """A run killed after its intent was committed and GitHub made the repo: the pending row
    proves the repository is ours, so the next run adopts it instead of creating another."""
    cloud.ledger.ensure_session(session)
    cloud.ledger.intend(session.key, "github", "repo", session.resource_name)
    create_repo_upstream(fake, session.resource_name)
    sink = Collector()

    report = await provision_services(cloud, session, cloud.plan("local"), sink=sink)

    assert_ok_except(report)
    state = fake.state()
    assert len(state["github"]) == 1 and route_count(state, "github", "POST /user/repos") == 1  # ours, above
    (row,) = [r for r in rows_of(cloud, session, "github") if r.live]
    assert (row.state, row.remote_id) == (ResourceState.CREATED.value, f"octocat/{session.resource_name}")
    assert any("adopting" in e.message for e in sink.of(ProviderProgressed) if e.provider == "github")


# -- 9. disk full / permission denied while writing .env ----------------------------------------


class _OsWith:
    """The `os` module as `envfile` sees it, with one function failing."""

    def __init__(self, name: str, error: OSError) -> None:
        self._name, self._error = name, error

    def __getattr__(self, attr: str):
        import os

        if attr == self._name:
            def fail(*args, **kwargs):
                raise self._error
            return fail
        return getattr(os, attr)


def assert_resources_recorded(runtime, session: Session, fake: FakeUpstream) -> None:
    upstream = {(u.provider, u.kind, u.remote_id) for u in upstream_resources(fake.state())}
    recorded = {(r.provider, r.kind, r.remote_id) for r in runtime.ledger.resources(session.key, live_only=True)
                if r.state == ResourceState.CREATED.value and r.provider != "local-folder"}
    assert len(upstream) == 4 and recorded == upstream


@pytest.mark.parametrize("function, code, phrase", [
    ("fsync", errno.ENOSPC, "the disk is full"),
    ("replace", errno.EACCES, "permission denied"),
])
async def test_9_env_write_failure_keeps_the_old_file_leaves_no_temp_file_and_keeps_resources_for_teardown(
        fake, cloud, session, monkeypatch, function, code, phrase):
    path = cloud.settings.env_file_for(session.slug)
    path.parent.mkdir(parents=True)
    path.write_text("# the previous .env\nOLD_VALUE=kept\n")
    before = path.read_bytes()
    monkeypatch.setattr(envfile, "os", _OsWith(function, OSError(code, "injected")))

    report = await provision_services(cloud, session, cloud.plan("local"))

    monkeypatch.undo()
    target = result_of(report, "local-folder")
    assert target.status is Status.FAILED and not report.ok
    assert phrase in target.error and "the previous file, if any, is untouched" in target.error
    assert path.read_bytes() == before
    assert temp_files(path.parent) == []
    assert_resources_recorded(cloud, session, fake)
    teardown = await teardown_session(cloud, session.key)
    assert teardown.ok and upstream_resources(fake.state()) == []


async def test_9_a_file_where_the_app_folder_should_be_is_a_clear_error_and_resources_are_kept(
        fake, cloud, session):
    blocker = cloud.settings.apps_dir / session.slug
    blocker.parent.mkdir(parents=True, exist_ok=True)  # the data dir always has apps/ now
    blocker.write_text("not a folder\n")

    report = await provision_services(cloud, session, cloud.plan("local"))

    target = result_of(report, "local-folder")
    assert target.status is Status.FAILED
    assert f"cannot write {blocker / '.env'}" in target.error and "a file is in the way" in target.error
    assert blocker.read_text() == "not a folder\n"
    assert temp_files(blocker.parent) == []
    assert_resources_recorded(cloud, session, fake)


# -- 10. no keyring backend ------------------------------------------------------------------


@pytest.mark.slow
def test_10_no_keyring_backend_is_a_clear_note_and_env_vars_still_work(fake, tmp_path):
    env = cli_env(fake, tmp_path / "home")
    note = "no OS keyring is available on this machine"

    listed = run_cli(env, "keys", "list")
    assert listed.returncode == 0 and note in listed.stderr
    assert "NEON_PROVISIONING_KEY" in listed.stdout and " env " in listed.stdout
    assert KEYS["NEON_PROVISIONING_KEY"] not in listed.stdout

    # RESEND_PROVISIONING_KEY is not exported, so the keyring is asked for it and is not there
    without_resend = {k: v for k, v in env.items() if k != "RESEND_PROVISIONING_KEY"}
    provisioned = run_cli(without_resend, "provision", "--session", "nokeyring000-a", "--json", "--target", "local")
    assert provisioned.returncode == 0, provisioned.stderr
    assert note in provisioned.stderr
    statuses = {p["name"]: (p["status"], p["note"]) for p in json.loads(provisioned.stdout)["providers"]}
    # without the key, email falls back to the local mail catcher, as the database would to Postgres
    assert "resend" not in statuses and statuses["local-mail"][0] == "ok"
    assert all(statuses[n][0] == "ok" for n in ("posthog", "neon", "github", "local-folder")), statuses

    doctor = run_cli(env, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert note in doctor.stderr
    for out in (listed, provisioned, doctor):
        assert "Traceback" not in out.stdout + out.stderr


# -- 11. Ctrl+C during teardown --------------------------------------------------------------


def _provision_via_cli(env: dict[str, str], key: str) -> None:
    proc = run_cli(env, "provision", "--session", key, "--json", "--target", "local")
    assert proc.returncode == 0, proc.stderr


def _wait_for_deletes_in_flight(fake: FakeUpstream, count: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if fake.state()["requests"]["all"]["in_flight"] >= count:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("the deletes never started")


def _interrupted_teardown(fake: FakeUpstream, home: Path, key: str, delete_delay_ms: int):
    """Provision `key` with the CLI, then start `teardown --yes` with slow deletes and Ctrl+C
    it once the three first deletes (neon, github, the newest Resend row: its key) are in flight."""
    env = cli_env(fake, home)
    _provision_via_cli(env, key)
    fake.add_fault(method="DELETE", delay_ms=delete_delay_ms, times=-1)
    proc = subprocess.Popen(cli_command("teardown", key, "--yes"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    _wait_for_deletes_in_flight(fake, 3, proc)
    proc.send_signal(signal.SIGINT)
    return env, proc


@pytest.mark.slow
def test_11_first_ctrl_c_lets_in_flight_deletes_finish_and_records_them(fake, tmp_path):

    home, key = tmp_path / "home", "sigintone000-a"

    env, proc = _interrupted_teardown(fake, home, key, delete_delay_ms=600)
    out, err = proc.communicate(timeout=20)

    # interrupted is 130 (issue 16), after what was in flight finished and was printed
    assert proc.returncode == 130 and "finishing in-flight deletes" in err and "Traceback" not in err
    assert "not_attempted" in out and "segment" in out
    state = fake.state()
    assert state["neon"] == [] and state["github"] == [] and state["resend"]["api_keys"] == []
    assert len(state["resend"]["segments"]) == 1
    with open_test_ledger(home) as ledger:
        by_kind = {r.kind: r.state for r in ledger.resources(key) if r.provider != "local-folder"}
        session_state = ledger.get_session(key).state
    assert by_kind == {"project": "deleted", "repo": "deleted", "api-key": "deleted", "segment": "created"}
    assert session_state == "teardown_incomplete"
    # the session still owns the segment, so it is no orphan, and a second teardown resumes
    assert cli_json(env, "orphans", "--json") == []
    fake.control(clear_faults=True)
    assert run_cli(env, "teardown", key, "--yes").returncode == 0
    assert upstream_resources(fake.state()) == []


@pytest.mark.slow
def test_11_second_ctrl_c_exits_now_names_what_may_be_left_and_orphans_finds_it(fake, tmp_path):
    key = "siginttwo000-a"

    env, proc = _interrupted_teardown(fake, tmp_path / "home", key, delete_delay_ms=3000)
    err_lines: list[str] = []  # read as it comes: the second Ctrl+C waits for the first's answer
    reader = threading.Thread(target=lambda: err_lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    wait_until_sync(lambda: "finishing in-flight deletes" in "".join(err_lines) or proc.poll() is not None,
                    what="the CLI to acknowledge the first Ctrl+C")
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.stdout.read()  # drain the pipe so the process can exit
    proc.wait(timeout=10)
    reader.join(10)
    err = "".join(err_lines)

    assert proc.returncode == 130 and time.monotonic() - started < 2.5  # did not wait for the deletes
    assert "Traceback" not in err
    left = err.split("may be left:", 1)[1]
    slug = key[:12]
    for name in (f"neon:mk0r-{slug}", f"github:mk0r-{slug}", f"resend:mk0r-{slug} Users", f"resend:mk0r-{slug}"):
        assert name in left, err
    assert "mk0r-tui orphans" in err

    found = cli_json(env, "orphans", "--json")
    assert {(o["provider"], o["kind"]) for o in found} >= {
        ("neon", "project"), ("github", "repo"), ("resend", "segment"), ("resend", "api-key")}
    assert all(f"mk0r-{slug}" in o["name"] for o in found)

    fake.control(clear_faults=True)
    deleted = run_cli(env, "orphans", "--delete", "--yes", "--json")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert upstream_resources(fake.state()) == [] and cli_json(env, "orphans", "--json") == []


# -- 12. delete of something already gone ----------------------------------------------------


async def test_12_teardown_of_resources_already_deleted_upstream_is_done_not_an_error(fake, cloud, session):
    await provision_services(cloud, session, cloud.plan("local"))
    for item in upstream_resources(fake.state()):
        path = {"project": f"{fake.neon_url}/projects/{item.remote_id}",
                "segment": f"{fake.resend_url}/segments/{item.remote_id}",
                "api-key": f"{fake.resend_url}/api-keys/{item.remote_id}",
                "repo": f"{fake.github_url}/repos/{item.remote_id}"}[item.kind]
        assert httpx.delete(path, headers={"Authorization": "Bearer out-of-band"}, trust_env=False).is_success
    sink = Collector()

    report = await teardown_session(cloud, session.key, sink=sink)

    assert report.ok
    cloud_outcomes = {o.resource.kind: o.outcome for o in report.outcomes if o.resource.provider != "local-folder"}
    assert cloud_outcomes == {"project": "already_gone", "segment": "already_gone", "api-key": "already_gone",
                              "repo": "already_gone"}
    assert not sink.of(TeardownFailed)
    assert all(e.already_gone for e in sink.of(ResourceDeleted) if e.provider != "local-folder")
    assert cloud.ledger.resources(session.key, live_only=True) == []
    assert cloud.ledger.get_session(session.key).state == "deleted"
    # the cloud fakes and this data dir's folders; the run's shared embedded Postgres holds other tests' databases
    assert (await find_orphans(cloud, providers=["neon", "resend", "github", "local-folder"])).orphans == []
