"""`keys set/list/delete` against a real (in-memory) keyring backend and with none at all, and
`doctor` against spec-checked mocks of each provider's cheapest authenticated call."""

from __future__ import annotations

import json

import httpx
import keyring
import pytest
from click.testing import CliRunner
from cloudmock import GITHUB, NEON, RESEND, github_error, github_user, keyed, resend_list
from keyring.backends import fail

from mk0r_tui.cli import cli
from mk0r_tui.core.config import load_settings
from mk0r_tui.engine.doctor import run_doctor
from mk0r_tui.providers import DEFAULT_REGISTRY

NEON_KEY = "napi_doctor_key_abcdefghijkl"
GITHUB_TOKEN = "ghp_doctor_token_abcdefghijkl"
RESEND_KEY = "re_doctor_key_abcdefghijkl"




@pytest.fixture
def no_keyring():
    keyring.set_keyring(fail.Keyring())


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


# -- keys ----------------------------------------------------------------------------------------


def test_set_from_stdin_then_list_masked_then_delete(memory_keyring):
    stored = run("keys", "set", "NEON_PROVISIONING_KEY", "--stdin", input=f"{NEON_KEY}\n")
    assert stored.exit_code == 0, stored.output
    assert memory_keyring.store[("mk0r-tui", "NEON_PROVISIONING_KEY")] == NEON_KEY
    assert NEON_KEY not in stored.output

    listed = run("keys", "list", "--json")
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["NEON_PROVISIONING_KEY"] == {"name": "NEON_PROVISIONING_KEY", "present": True, "source": "keyring",
                                             "value": "napi_••••", "length": len(NEON_KEY)}
    assert rows["GITHUB_PROVISIONING_TOKEN"]["present"] is False
    assert NEON_KEY not in listed.output

    deleted = run("keys", "delete", "neon_provisioning_key")
    assert deleted.exit_code == 0 and "deleted NEON_PROVISIONING_KEY" in deleted.output
    assert memory_keyring.store == {}
    again = run("keys", "delete", "NEON_PROVISIONING_KEY")
    assert again.exit_code == 0 and "was not in the OS keyring" in again.output


def test_set_with_a_hidden_prompt_never_echoes_the_value(memory_keyring):
    result = run("keys", "set", "GITHUB_PROVISIONING_TOKEN", input=f"{GITHUB_TOKEN}\n")
    assert result.exit_code == 0, result.output
    assert GITHUB_TOKEN not in result.output
    assert memory_keyring.store[("mk0r-tui", "GITHUB_PROVISIONING_TOKEN")] == GITHUB_TOKEN


def test_the_environment_overrides_the_keyring(memory_keyring, monkeypatch):
    memory_keyring.store[("mk0r-tui", "RESEND_PROVISIONING_KEY")] = "re_from_the_keyring_0000"
    monkeypatch.setenv("RESEND_PROVISIONING_KEY", RESEND_KEY)

    rows = {r["name"]: r for r in json.loads(run("keys", "list", "--json").stdout)}

    assert rows["RESEND_PROVISIONING_KEY"]["source"] == "env"
    assert rows["RESEND_PROVISIONING_KEY"]["value"] == "re_••••"


def test_an_unknown_key_name_is_a_usage_error(memory_keyring):
    result = run("keys", "set", "AWS_SECRET", "--stdin", input="x\n")
    assert result.exit_code == 2
    assert "unknown key 'AWS_SECRET'" in result.output and memory_keyring.store == {}


def test_an_empty_value_stores_nothing(memory_keyring):
    result = run("keys", "set", "NEON_PROVISIONING_KEY", "--stdin", input="\n")
    assert result.exit_code == 2 and memory_keyring.store == {}


def test_without_a_keyring_set_and_delete_say_so_once_and_exit_2(no_keyring):
    for args in (("keys", "set", "NEON_PROVISIONING_KEY", "--stdin"), ("keys", "delete", "NEON_PROVISIONING_KEY")):
        result = run(*args, input=f"{NEON_KEY}\n")
        assert result.exit_code == 2
        assert result.output.count("no OS keyring is available on this machine") == 1
        assert "Traceback" not in result.output and NEON_KEY not in result.output


def test_without_a_keyring_list_still_works_from_the_environment(no_keyring, monkeypatch):
    monkeypatch.setenv("NEON_PROVISIONING_KEY", NEON_KEY)

    result = run("keys", "list")

    assert result.exit_code == 0
    assert result.output.count("no OS keyring is available") == 1
    line = next(line for line in result.stdout.splitlines() if line.startswith("NEON_PROVISIONING_KEY"))
    assert "env" in line and "napi_••••" in line and NEON_KEY not in result.output


# -- doctor --------------------------------------------------------------------------------------


def mock_neon_ok(router):
    """An org-key-safe probe: a projects list (an organization key gets 4xx from /users/me)."""
    router.get(f"{NEON}/users/me").mock(return_value=httpx.Response(
        404, json={"code": "", "message": "not allowed for organization API keys"}))
    return router.get(f"{NEON}/projects").mock(return_value=httpx.Response(
        200, json={"projects": [], "applications": {}, "integrations": {}}))


def mock_github(router, scopes: str | None):
    headers = {} if scopes is None else {"X-OAuth-Scopes": scopes}
    return router.get(f"{GITHUB}/user").mock(return_value=httpx.Response(200, json=github_user("octo"), headers=headers))


def mock_resend_ok(router):
    return router.get(f"{RESEND}/domains").mock(return_value=httpx.Response(
        200, json=resend_list([{"id": "d-1", "name": "mail.example.com", "status": "verified"}])))


async def test_doctor_reports_each_provider(respx_spec):
    mock_neon_ok(respx_spec)
    mock_github(respx_spec, "repo, read:org")
    mock_resend_ok(respx_spec)
    credentials = keyed(NEON_PROVISIONING_KEY=NEON_KEY, GITHUB_PROVISIONING_TOKEN=GITHUB_TOKEN, RESEND_PROVISIONING_KEY=RESEND_KEY)

    report = await run_doctor(load_settings(neon_org_id="org-cool-1", github_owner="acme"), credentials, DEFAULT_REGISTRY)

    checks = {c.provider: c for c in report.checks}
    assert (checks["neon"].status, checks["neon"].detail) == ("ok", "the key can list projects in organization org-cool-1")
    assert checks["neon"].key_source == "env" and checks["neon"].settings["org"] == "org-cool-1"
    (probe,) = [c.request for c in respx_spec.calls if c.request.url.path.endswith("/projects")]
    assert (probe.url.params["limit"], probe.url.params["org_id"]) == ("1", "org-cool-1")
    assert checks["resend"].status == "ok" and "mail.example.com" in checks["resend"].detail
    assert checks["github"].status == "failing"
    assert checks["github"].problems == ("token lacks the delete_repo scope (teardown cannot delete repositories)",)
    assert checks["github"].settings["owner"] == "acme"
    assert checks["posthog"].status == "missing" and checks["e2b"].status == "missing"
    assert not report.ok


async def test_doctor_says_which_scopes_are_missing(respx_spec):
    mock_github(respx_spec, "read:user")

    report = await run_doctor(load_settings(), keyed(GITHUB_PROVISIONING_TOKEN=GITHUB_TOKEN), DEFAULT_REGISTRY)

    (github,) = [c for c in report.checks if c.provider == "github"]
    assert [p.split(" (")[0] for p in github.problems] == ["token lacks the repo scope", "token lacks the delete_repo scope"]


async def test_doctor_accepts_a_fine_grained_token_and_says_what_it_needs(respx_spec):
    mock_github(respx_spec, None)

    report = await run_doctor(load_settings(), keyed(GITHUB_PROVISIONING_TOKEN=GITHUB_TOKEN), DEFAULT_REGISTRY)

    (github,) = [c for c in report.checks if c.provider == "github"]
    assert github.status == "ok" and "Administration: read and write" in github.detail


async def test_doctor_reports_a_refused_key_without_leaking_it(respx_spec):
    respx_spec.get(f"{GITHUB}/user").mock(return_value=httpx.Response(401, json=github_error("Bad credentials")))

    report = await run_doctor(load_settings(), keyed(GITHUB_PROVISIONING_TOKEN=GITHUB_TOKEN), DEFAULT_REGISTRY)

    (github,) = [c for c in report.checks if c.provider == "github"]
    assert github.status == "failing"
    assert github.detail.startswith("GET /user → HTTP 401: Bad credentials")
    assert GITHUB_TOKEN not in json.dumps(report.to_json())


def test_doctor_cli_exit_0_when_all_present_keys_work(respx_spec, monkeypatch):
    monkeypatch.setenv("NEON_PROVISIONING_KEY", NEON_KEY)
    monkeypatch.setenv("GITHUB_PROVISIONING_TOKEN", GITHUB_TOKEN)
    mock_neon_ok(respx_spec)
    mock_github(respx_spec, "repo, delete_repo, workflow")

    result = run("doctor", "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    statuses = {p["provider"]: p["status"] for p in data["providers"]}
    assert statuses == {"posthog": "missing", "neon": "ok", "resend": "missing", "github": "ok", "e2b": "missing"}
    assert data["ok"] is True


def test_doctor_cli_exit_1_when_a_key_fails(respx_spec, monkeypatch):
    monkeypatch.setenv("GITHUB_PROVISIONING_TOKEN", GITHUB_TOKEN)
    mock_github(respx_spec, "repo")

    result = run("doctor")

    assert result.exit_code == 1
    assert "failing   github        GITHUB_PROVISIONING_TOKEN (env)" in result.stdout
    assert "problem: token lacks the delete_repo scope" in result.stdout
    assert GITHUB_TOKEN not in result.output


async def test_doctor_probes_neon_with_an_org_key_and_says_no_personal_account(respx_spec):
    mock_neon_ok(respx_spec)

    report = await run_doctor(load_settings(), keyed(NEON_PROVISIONING_KEY=NEON_KEY), DEFAULT_REGISTRY)

    (neon,) = [c for c in report.checks if c.provider == "neon"]
    assert neon.status == "ok" and "personal" not in json.dumps(neon.settings)
    assert not any(c.request.url.path.endswith("/users/me") for c in respx_spec.calls)


async def test_doctor_probes_an_app_installation_token_without_get_user(respx_spec):
    user = mock_github(respx_spec, None)
    repos = respx_spec.get(f"{GITHUB}/orgs/acme/repos").mock(return_value=httpx.Response(200, json=[]))

    report = await run_doctor(load_settings(github_owner="acme"), keyed(GITHUB_PROVISIONING_TOKEN="ghs_installation_0123456789"), DEFAULT_REGISTRY)

    (github,) = [c for c in report.checks if c.provider == "github"]
    assert github.status == "ok" and "installation token" in github.detail
    assert user.call_count == 0 and repos.call_count == 1


async def test_doctor_says_it_cannot_read_a_fine_grained_tokens_permissions(respx_spec):
    mock_github(respx_spec, None)

    report = await run_doctor(load_settings(), keyed(GITHUB_PROVISIONING_TOKEN=GITHUB_TOKEN), DEFAULT_REGISTRY)

    (github,) = [c for c in report.checks if c.provider == "github"]
    assert "cannot check them" in github.detail and "approve" in github.detail
