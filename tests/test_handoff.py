"""Hand-off (issue 18) with the four cloud providers behind spec-checked respx mocks, on the real
Runtime, ledger and local-folder target: what changes hands, what the ledger records, and that
teardown and orphans never touch what left."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
from click.testing import CliRunner
from cloudmock import (
    GITHUB,
    NEON,
    RESEND,
    FakeClock,
    github_error,
    github_repo,
    minimal,
    neon_error,
    neon_project,
    off_spec,
    respx_offspec,  # noqa: F401 - fixture
    sent_json,
)
from test_cloud_orchestrator import APP_TOKEN, KEYS, PID, build_runtime, mock_all

from mk0r_tui.cli import cli
from mk0r_tui.core.models import Session
from mk0r_tui.engine.handoff import HandoffRequest, follow_handoff, run_handoff
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.teardown import find_orphans, teardown_session

REPO_ID = 1296269  # github_repo's id
REQUEST_ID = "6f1c2a3b-0000-4000-8000-00000000beef"


@pytest.fixture
def fake() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def cloud(mk0r_home, fake):
    runtime = build_runtime(fake, **KEYS)
    yield runtime
    await runtime.aclose()
    runtime.close()


async def provisioned(router, runtime, session_key: str) -> Session:
    session = Session.parse(session_key)
    mock_all(router, session)
    report = await provision_services(runtime, session, runtime.plan())
    assert report.ok, [r.error for r in report.results]
    return session


def rows_of(runtime, session: Session, provider: str):
    return [r for r in runtime.ledger.resources(session.key) if r.provider == provider]


def outcome(report, provider: str, kind: str | None = None) -> dict:
    return next(i for i in report.to_json()["resources"] if i["provider"] == provider and (kind is None or i["kind"] == kind))


def deletes_route(router, name: str):
    """Every DELETE to GitHub or Neon, answered as each documents: a hand-off's resources must
    never get one."""
    def answer(request: httpx.Request) -> httpx.Response:
        if str(request.url).startswith(NEON):
            return httpx.Response(200, json={"project": neon_project(PID, name)})
        return httpx.Response(204)

    return router.route(method="DELETE", url__regex=rf"^({GITHUB}|{NEON})/").mock(side_effect=answer)


def mock_other_deletes(router):
    router.delete(url__startswith=f"{RESEND}/api-keys/").mock(
        return_value=httpx.Response(200, json={"object": "api_key", "id": "key-1", "deleted": True}))
    router.delete(url__startswith=f"{RESEND}/segments/").mock(
        return_value=httpx.Response(200, json={"object": "segment", "id": "seg-1", "deleted": True}))


# -- GitHub: transfer to a user, to an org, invite -------------------------------------------------


async def test_transfer_to_a_user_waits_for_acceptance_then_teardown_never_deletes_it(respx_spec, cloud, session_key, fake):
    session = await provisioned(respx_spec, cloud, session_key)
    name = session.resource_name
    # GitHub's 202 still names the original owner: the user must accept the transfer
    transfer = respx_spec.post(f"{GITHUB}/repos/octo/{name}/transfer").mock(
        return_value=httpx.Response(202, json=github_repo("octo", name)))

    report = await run_handoff(cloud, session.key, HandoffRequest(github_user="alice"))

    assert sent_json(transfer.calls[0]) == {"new_owner": "alice"}
    assert outcome(report, "github")["outcome"] == "claim_pending"
    (repo,) = rows_of(cloud, session, "github")
    assert (repo.handoff, repo.handoff_owner, repo.handed_off) == ("claim_pending", "alice", True)

    # alice accepted: the repo answers under her name with the id we recorded
    respx_spec.get(f"{GITHUB}/repos/alice/{name}").mock(
        return_value=httpx.Response(200, json=github_repo("alice", name)))
    followed = await follow_handoff(cloud, session.key)
    assert outcome(followed, "github") | {} == {
        "provider": "github", "kind": "repo", "name": name, "outcome": "transferred", "new_owner": "alice",
        "claim_url": None, "error": None,
    }
    agents = (cloud.settings.env_file_for(session.slug).parent / "AGENTS.md").read_text()
    assert f"it now lives at https://github.com/alice/{name}" in agents
    assert APP_TOKEN not in agents and "s3cret-pw" not in agents  # names and public URLs only

    deletes = deletes_route(respx_spec, name)
    mock_other_deletes(respx_spec)
    torn = await teardown_session(cloud, session.key)
    assert [c.request.url.path for c in deletes.calls] == [f"/api/v2/projects/{PID}"]  # the repo: never
    assert all(o.resource.provider != "github" for o in torn.outcomes)
    assert cloud.ledger.get_session(session.key).state == "handed_off"


async def test_transfer_to_an_org_is_immediate_and_the_repo_is_never_an_orphan(respx_spec, cloud, session_key):
    session = await provisioned(respx_spec, cloud, session_key)
    name = session.resource_name
    respx_spec.post(f"{GITHUB}/repos/octo/{name}/transfer").mock(
        return_value=httpx.Response(202, json=github_repo("acme", name)))

    report = await run_handoff(cloud, session.key, HandoffRequest(github_org="acme"))

    assert outcome(report, "github")["outcome"] == "transferred" and outcome(report, "github")["new_owner"] == "acme"
    (repo,) = rows_of(cloud, session, "github")
    assert repo.handoff == "transferred" and repo.handed_off
    # the database did not move: the session is not handed off, and neon is listed as kept
    assert outcome(report, "neon")["outcome"] == "kept"
    assert cloud.ledger.get_session(session.key).state == "ready"
    # even a teardown that died (session left tearing_down) does not make the repo an orphan
    cloud.ledger.set_session_state(session.key, "tearing_down")
    respx_spec.get(f"{GITHUB}/user/repos").mock(return_value=httpx.Response(200, json=[]))
    scan = await find_orphans(cloud, providers=["github"])
    assert [o.name for o in scan.orphans] == []


async def test_invite_keeps_the_repo_ours(respx_spec, cloud, session_key):
    session = await provisioned(respx_spec, cloud, session_key)
    name = session.resource_name
    invitation = minimal("github", "repository-invitation", id=77, html_url=f"https://github.com/octo/{name}/invitations")
    put = respx_spec.put(f"{GITHUB}/repos/octo/{name}/collaborators/bob").mock(return_value=httpx.Response(201, json=invitation))

    report = await run_handoff(cloud, session.key, HandoffRequest(invite="bob"))

    assert sent_json(put.calls[0]) == {"permission": "admin"}
    item = outcome(report, "github")
    assert (item["outcome"], item["new_owner"], item["claim_url"]) == ("invited", "bob", f"https://github.com/octo/{name}/invitations")
    (repo,) = rows_of(cloud, session, "github")
    assert repo.handoff == "invited" and not repo.handed_off
    assert cloud.ledger.get_session(session.key).state == "ready"


# -- Neon: claim link then accepted, org to org ----------------------------------------------------


async def test_neon_claim_then_accepted_and_teardown_deletes_nothing_of_it(respx_spec, cloud, session_key, fake):
    session = await provisioned(respx_spec, cloud, session_key)
    name = session.resource_name
    request = respx_spec.post(f"{NEON}/projects/{PID}/transfer_requests").mock(return_value=httpx.Response(201, json={
        "id": REQUEST_ID, "project_id": PID, "created_at": "2023-11-14T22:13:20Z", "expires_at": "2023-11-15T22:13:20Z"}))

    report = await run_handoff(cloud, session.key, HandoffRequest(neon_claim=True))

    assert sent_json(request.calls[0]) == {"ttl_seconds": 86400}
    item = outcome(report, "neon")
    assert item["outcome"] == "claim_pending"
    assert item["claim_url"] == f"https://console.neon.tech/app/claim?p={PID}&tr={REQUEST_ID}"
    assert "reset the role's password" in next(i.note for i in report.items if i.provider == "neon")

    # while the claim is pending the project is the recipient's to take: teardown leaves it
    deletes = deletes_route(respx_spec, name)
    respx_spec.get(f"{GITHUB}/repos/octo/{name}").mock(return_value=httpx.Response(200, json=github_repo("octo", name)))
    mock_other_deletes(respx_spec)
    await teardown_session(cloud, session.key)
    assert [c.request.url.path for c in deletes.calls] == [f"/repos/octo/{name}"]
    assert cloud.ledger.get_session(session.key).state == "teardown_incomplete"  # the offered project is still ours

    # the recipient accepted (console claim link or PUT .../transfer_requests/{id}): our key no longer sees it
    respx_spec.get(f"{NEON}/projects/{PID}").mock(return_value=httpx.Response(404, json=neon_error("project not found")))
    followed = await follow_handoff(cloud, session.key)
    assert outcome(followed, "neon")["outcome"] == "claimed"
    (project,) = rows_of(cloud, session, "neon")
    assert project.handoff == "claimed" and project.handed_off

    await teardown_session(cloud, session.key)
    assert all("/projects/" not in c.request.url.path for c in deletes.calls)
    assert cloud.ledger.get_session(session.key).state == "handed_off"


async def test_org_to_org_transfer_and_a_session_whose_backend_all_left_is_handed_off(respx_spec, cloud, session_key):
    session = await provisioned(respx_spec, cloud, session_key)
    name = session.resource_name
    respx_spec.get(f"{NEON}/projects/{PID}").mock(
        return_value=httpx.Response(200, json={"project": neon_project(PID, name, org_id="org-ours-1")}))
    move = respx_spec.post(f"{NEON}/organizations/org-ours-1/projects/transfer").mock(return_value=httpx.Response(200, json={}))
    respx_spec.post(f"{GITHUB}/repos/octo/{name}/transfer").mock(return_value=httpx.Response(202, json=github_repo("acme", name)))
    revoke = respx_spec.delete(f"{RESEND}/api-keys/key-1").mock(
        return_value=httpx.Response(200, json={"object": "api_key", "id": "key-1", "deleted": True}))

    report = await run_handoff(cloud, session.key, HandoffRequest(github_org="acme", neon_org="org-theirs-2", revoke_email=True))

    assert sent_json(move.calls[0]) == {"destination_org_id": "org-theirs-2", "project_ids": [PID]}
    assert outcome(report, "neon")["outcome"] == "transferred" and outcome(report, "neon")["new_owner"] == "org-theirs-2"
    assert outcome(report, "resend", "api-key")["outcome"] == "revoked" and revoke.call_count == 1
    assert outcome(report, "resend", "segment")["outcome"] == "kept"
    assert report.state == cloud.ledger.get_session(session.key).state == "handed_off"


# -- refused, redirects ------------------------------------------------------------------------------


async def test_a_refused_transfer_says_why_and_nothing_is_marked_handed_off(respx_offspec, cloud, session_key):
    session = await provisioned(respx_offspec, cloud, session_key)
    name = session.resource_name
    respx_offspec.post(f"{GITHUB}/repos/octo/{name}/transfer").mock(return_value=off_spec(
        403, reason="GitHub answers 403 to a transfer the token may not make; the description lists only 202",
        json_body=github_error("You don't have the permission to create repositories on acme")))
    respx_offspec.get(f"{NEON}/projects/{PID}").mock(
        return_value=httpx.Response(200, json={"project": neon_project(PID, name, org_id="org-ours-1")}))
    respx_offspec.post(f"{NEON}/organizations/org-ours-1/projects/transfer").mock(return_value=httpx.Response(422, json={
        "projects": [{"id": PID, "integration": "github"}]}))

    report = await run_handoff(cloud, session.key, HandoffRequest(github_org="acme", neon_org="org-theirs-2"))

    github, neon = outcome(report, "github"), outcome(report, "neon")
    assert github["outcome"] == neon["outcome"] == "failed" and not report.ok
    assert "HTTP 403" in github["error"] and "permission to create repositories on acme" in github["error"]
    assert "HTTP 422" in neon["error"] and "GitHub or Vercel integrations" in neon["error"]
    assert not any(r.handed_off or r.handoff in ("transferred", "claimed") for r in cloud.ledger.resources(session.key))
    assert cloud.ledger.get_session(session.key).state == "ready"


def moved(status: int, repo_id: int) -> httpx.Response:
    return httpx.Response(status, json=github_error("Moved Permanently" if status == 301 else "Temporary Redirect"),
                          headers={"Location": f"{GITHUB}/repositories/{repo_id}"})


@pytest.mark.parametrize("answer", ["301 on the look-up", "307 on the delete"])
async def test_a_renamed_or_transferred_repo_is_not_deleted_by_teardown(answer, respx_spec, cloud, session_key):
    session = await provisioned(respx_spec, cloud, session_key)
    name = session.resource_name
    if answer.startswith("301"):
        respx_spec.get(f"{GITHUB}/repos/octo/{name}").mock(return_value=moved(301, REPO_ID))
    else:
        respx_spec.get(f"{GITHUB}/repos/octo/{name}").mock(return_value=httpx.Response(200, json=github_repo("octo", name)))
    delete = respx_spec.delete(f"{GITHUB}/repos/octo/{name}").mock(return_value=moved(307, REPO_ID))
    followed = respx_spec.route(url__startswith=f"{GITHUB}/repositories/").mock(return_value=httpx.Response(204))
    respx_spec.delete(f"{NEON}/projects/{PID}").mock(return_value=httpx.Response(200, json={"project": neon_project(PID, name)}))
    mock_other_deletes(respx_spec)

    report = await teardown_session(cloud, session.key)

    (repo,) = [o for o in report.outcomes if o.resource.provider == "github"]
    assert repo.outcome == "failed" and "renamed or transferred; not deleting it" in repo.error
    assert followed.call_count == 0
    assert delete.call_count == (0 if answer.startswith("301") else 1)
    assert rows_of(cloud, session, "github")[0].live
    assert cloud.ledger.get_session(session.key).state == "teardown_incomplete"


# -- the CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def cli_logging():
    """The CLI adds its log file handler to the `mk0r_tui` logger (and stops propagation):
    undone after the in-process run, so later tests' caplog still sees records."""
    logger = logging.getLogger("mk0r_tui")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield
    for handler in [h for h in logger.handlers if h not in handlers]:
        logger.removeHandler(handler)
        handler.close()
    logger.propagate, logger.level = propagate, level


def test_cli_handoff_json_and_its_confirmation(respx_spec, mk0r_home, session_key, monkeypatch, cli_logging):
    runtime = build_runtime(FakeClock(), **KEYS)
    session = asyncio.run(provisioned(respx_spec, runtime, session_key))
    asyncio.run(runtime.aclose())
    runtime.close()
    name = session.resource_name
    for key, value in KEYS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MK0R_PROFILE", "cloud")
    runner = CliRunner()

    refused = runner.invoke(cli, ["handoff", session.slug, "--github-org", "acme"])
    assert refused.exit_code == 2 and "without --yes" in refused.output

    respx_spec.post(f"{GITHUB}/repos/octo/{name}/transfer").mock(return_value=httpx.Response(202, json=github_repo("acme", name)))
    done = runner.invoke(cli, ["handoff", session.slug, "--github-org", "acme", "--yes", "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["session"] == session.key
    assert {r["provider"]: r["outcome"] for r in data["resources"]}["github"] == "transferred"
    assert set(data["resources"][0]) == {"provider", "kind", "name", "outcome", "new_owner", "claim_url", "error"}

    status = runner.invoke(cli, ["handoff", session.slug, "--status", "--json"])
    assert status.exit_code == 0 and {r["provider"]: r["new_owner"] for r in json.loads(status.stdout)["resources"]}["github"] == "acme"
