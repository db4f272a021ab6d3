"""The orchestrator with the four cloud providers behind spec-checked HTTP mocks, on the real
Runtime, ledger, `.env` writer and local-folder target."""

from __future__ import annotations

import subprocess

import httpx
import pytest
from cloudmock import (
    GITHUB,
    NEON,
    OP_ID,
    POSTHOG,
    RESEND,
    FakeClock,
    github_error,
    github_repo,
    github_user,
    keyed,
    neon_created,
    neon_operation,
    neon_project,
)
from fakes import registry_of

from mk0r_tui.core.config import load_settings
from mk0r_tui.core.envfile import read_env_file
from mk0r_tui.core.events import Collector, ProviderSkipped
from mk0r_tui.core.models import Session, Status
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.engine.teardown import teardown_session
from mk0r_tui.providers.github import GitHubProvider
from mk0r_tui.providers.neon import NeonProvider
from mk0r_tui.providers.posthog import PostHogProvider
from mk0r_tui.providers.resend import ResendProvider

PID = "calm-sea-87654321"
KEYS = {
    "NEON_PROVISIONING_KEY": "napi_orchestrator_key_0123",
    "RESEND_PROVISIONING_KEY": "re_orchestrator_key_0123",
    "GITHUB_PROVISIONING_TOKEN": "ghp_orchestrator_token_0123",
    "POSTHOG_PROJECT_KEY": "phc_orchestrator_key_0123",
}
APP_TOKEN = "re_app_token_for_the_session_01"


@pytest.fixture
def fake() -> FakeClock:
    return FakeClock()


def build_runtime(fake: FakeClock, **keys: str) -> Runtime:
    settings = load_settings(profile="cloud", target="local", resend_requests_per_second=1000)
    credentials = keyed(**keys)
    providers = {
        cls.name: cls(settings=settings, credentials=credentials, clock=fake.clock)
        for cls in (NeonProvider, ResendProvider, GitHubProvider, PostHogProvider)
    }
    return Runtime(settings, credentials, registry=registry_of(*providers.values()))


@pytest.fixture
async def cloud(mk0r_home, fake):
    runtime = build_runtime(fake, **KEYS)
    yield runtime
    await runtime.aclose()
    runtime.close()


def mock_all(router, session: Session, *, github_status: int = 201):
    name = session.resource_name
    routes = {
        "capture": router.post(f"{POSTHOG}/i/v0/e/").mock(return_value=httpx.Response(200, json={"status": "Ok"})),
        "flags": router.post(f"{POSTHOG}/flags").mock(return_value=httpx.Response(200, json={"flags": {}})),
        "neon": router.post(f"{NEON}/projects").mock(return_value=httpx.Response(201, json=neon_created(PID, name))),
        "neon-op": router.get(f"{NEON}/projects/{PID}/operations").mock(
            return_value=httpx.Response(200, json={"operations": [neon_operation(OP_ID, PID, status="finished")]})),
        "segment": router.post(f"{RESEND}/segments").mock(
            return_value=httpx.Response(201, json={"id": "seg-1", "object": "segment"})),
        "key": router.post(f"{RESEND}/api-keys").mock(
            return_value=httpx.Response(201, json={"id": "key-1", "token": APP_TOKEN})),
        "user": router.get(f"{GITHUB}/user").mock(return_value=httpx.Response(200, json=github_user("octo"))),
    }
    if github_status == 201:
        routes["repo"] = router.post(f"{GITHUB}/user/repos").mock(
            return_value=httpx.Response(201, json=github_repo("octo", name)))
    else:
        routes["repo"] = router.post(f"{GITHUB}/user/repos").mock(
            return_value=httpx.Response(github_status, json=github_error("Resource not accessible by personal access token")))
    return routes


EVERY_KEY = (
    "VITE_POSTHOG_APP_ID", "VITE_POSTHOG_KEY", "VITE_POSTHOG_HOST",
    "DATABASE_URL", "DATABASE_URL_UNPOOLED", "NEON_PROJECT_ID", "NEON_HOST", "NEON_DB_NAME", "NEON_ROLE_NAME", "NEON_ROLE_PASSWORD",
    "RESEND_API_KEY", "RESEND_SEGMENT_ID", "RESEND_AUDIENCE_ID",
    "GITHUB_REPO", "GITHUB_REPO_URL", "GIT_REMOTE_URL",
)


async def test_all_four_succeed_and_the_env_file_has_every_key(respx_spec, cloud, session_key):
    session = Session.parse(session_key)
    mock_all(respx_spec, session)

    report = await provision_services(cloud, session, cloud.plan())

    assert report.ok, report.errors
    assert {r.name: r.status for r in report.results} == {
        "posthog": Status.OK, "neon": Status.OK, "resend": Status.OK, "github": Status.OK, "local-folder": Status.OK}
    on_disk = read_env_file(report.env_file)
    assert set(EVERY_KEY) <= set(on_disk)
    assert on_disk["RESEND_API_KEY"] == APP_TOKEN and on_disk["RESEND_AUDIENCE_ID"] == on_disk["RESEND_SEGMENT_ID"] == "seg-1"
    assert on_disk["GIT_REMOTE_URL"] == f"https://github.com/octo/{session.resource_name}.git"
    app_folder = cloud.settings.apps_dir / session.slug
    origin = subprocess.run(["git", "-C", str(app_folder), "remote", "get-url", "origin"], capture_output=True, text=True)
    assert origin.stdout.strip() == on_disk["GIT_REMOTE_URL"]
    rows = cloud.ledger.resources(session.key)
    assert sorted((r.provider, r.kind, r.state) for r in rows) == [
        ("github", "repo", "created"), ("local-folder", "app-folder", "created"), ("neon", "project", "created"),
        ("resend", "api-key", "created"), ("resend", "segment", "created")]
    ledger_text = " ".join(cloud.ledger.iter_all_text())
    assert all(secret not in ledger_text for secret in (APP_TOKEN, "s3cret-pw", *KEYS.values()))


async def test_one_failure_does_not_stop_the_others(respx_spec, cloud, session_key):
    session = Session.parse(session_key)
    mock_all(respx_spec, session, github_status=403)

    report = await provision_services(cloud, session, cloud.plan())

    statuses = {r.name: r.status for r in report.results}
    assert statuses["github"] is Status.FAILED
    assert statuses["neon"] is statuses["resend"] is statuses["posthog"] is Status.OK
    error = report.errors["github"]
    assert error.startswith("POST /user/repos → HTTP 403: Resource not accessible by personal access token")
    assert KEYS["GITHUB_PROVISIONING_TOKEN"] not in error
    on_disk = read_env_file(report.env_file)
    assert "DATABASE_URL" in on_disk and "RESEND_API_KEY" in on_disk and "GITHUB_REPO" not in on_disk


async def test_a_missing_key_is_skipped_with_its_reason(respx_spec, mk0r_home, fake, session_key):
    keys = {k: v for k, v in KEYS.items() if k != "RESEND_PROVISIONING_KEY"}
    runtime = build_runtime(fake, **keys)
    session = Session.parse(session_key)
    routes = mock_all(respx_spec, session)
    sink = Collector()

    report = await provision_services(runtime, session, runtime.plan(), sink=sink)

    resend = next(r for r in report.results if r.slot.value == "email")
    assert (resend.name, resend.status, resend.note) == ("resend", Status.SKIPPED, "set RESEND_PROVISIONING_KEY")
    assert [e.provider for e in sink.of(ProviderSkipped)] == ["resend"]
    assert routes["segment"].call_count == 0
    assert report.ok  # skipped is not failed
    await runtime.aclose()
    runtime.close()


async def test_provisioning_twice_reuses_everything_and_sends_no_create(respx_spec, cloud, session_key):
    session = Session.parse(session_key)
    routes = mock_all(respx_spec, session)
    await provision_services(cloud, session, cloud.plan())

    report = await provision_services(cloud, session, cloud.plan())

    assert report.ok
    creates = ("neon", "segment", "key", "repo")
    assert [routes[r].call_count for r in creates] == [1, 1, 1, 1]
    notes = {r.name: r.note for r in report.results}
    assert notes["neon"] == notes["resend"] == notes["github"] == "already provisioned (reused)"


async def test_teardown_deletes_every_cloud_resource(respx_spec, cloud, session_key):
    session = Session.parse(session_key)
    mock_all(respx_spec, session)
    await provision_services(cloud, session, cloud.plan())
    deletes = [
        respx_spec.delete(f"{NEON}/projects/{PID}").mock(return_value=httpx.Response(200, json={"project": neon_project(PID, session.resource_name)})),
        respx_spec.delete(f"{RESEND}/api-keys/key-1").mock(return_value=httpx.Response(200, json={"object": "api_key", "id": "key-1", "deleted": True})),
        respx_spec.delete(f"{RESEND}/segments/seg-1").mock(return_value=httpx.Response(200, json={"object": "segment", "id": "seg-1", "deleted": True})),
        respx_spec.delete(f"{GITHUB}/repos/octo/{session.resource_name}").mock(return_value=httpx.Response(204)),
    ]
    # before the delete, the repo is looked up: still the one recorded, under our name
    respx_spec.get(f"{GITHUB}/repos/octo/{session.resource_name}").mock(
        return_value=httpx.Response(200, json=github_repo("octo", session.resource_name)))

    report = await teardown_session(cloud, session.key)

    assert report.ok, [o.error for o in report.outcomes]
    assert [d.call_count for d in deletes] == [1, 1, 1, 1]
    assert cloud.ledger.resources(session.key, live_only=True) == []
