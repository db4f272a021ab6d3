"""The spec validator must pass real-shaped traffic and fail broken traffic."""

from __future__ import annotations

from pathlib import Path

import apispec
import httpx
import pytest
from apispec import SpecRegistry, spec_checked_router, validate_request, validate_response

pytest_plugins = ["pytester"]

NEON = "https://console.neon.tech/api/v2"
BEARER = {"Authorization": "Bearer test-key"}
E2B_KEY = {"X-API-Key": "e2b_test"}
ENVD = "https://49983-isb0abc123.e2b.app"


def req(method: str, url: str, **kwargs) -> httpx.Request:
    kwargs.setdefault("headers", BEARER)
    return httpx.Request(method, url, **kwargs)


def rejects(request: httpx.Request, *fragments: str, registry: SpecRegistry | None = None) -> str:
    with pytest.raises(AssertionError) as info:
        validate_request(request, registry)
    message = str(info.value)
    assert request.method in message and request.url.path in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- Neon ---------------------------------------------------------------------------------

NEON_PROJECT = {"project": {"name": "mk0r-abc", "region_id": "aws-us-east-2", "pg_version": 17}}


def test_neon_create_project_passes():
    validate_request(req("POST", f"{NEON}/projects", json=NEON_PROJECT))


def test_neon_wrong_type_fails():
    body = {"project": {**NEON_PROJECT["project"], "pg_version": "17"}}
    rejects(req("POST", f"{NEON}/projects", json=body), "project/pg_version", "'17' is not of type 'integer'")


def test_neon_unknown_body_field_fails():
    body = {"project": {**NEON_PROJECT["project"], "pg_verison": 17}}
    rejects(req("POST", f"{NEON}/projects", json=body), "'pg_verison' was unexpected")


def test_neon_unknown_path_fails():
    rejects(req("POST", f"{NEON}/projectz", json=NEON_PROJECT), "POST /projectz is not in neon.json")


def test_neon_missing_auth_fails():
    rejects(req("POST", f"{NEON}/projects", json=NEON_PROJECT, headers={}), "no credentials", "BearerAuth")


def test_neon_query_params_checked():
    url = f"{NEON}/projects/bad_ID/connection_uri?database_name=neondb&bogus=1"
    rejects(req("GET", url), "unknown query parameter 'bogus'", "Invalid path parameter: project_id",
            "Missing required query parameter: role_name")
    validate_request(req("GET", f"{NEON}/projects/mk0r-abc/connection_uri?database_name=neondb&role_name=neondb_owner"))


def test_custom_base_url_is_stripped_before_matching():
    registry = SpecRegistry({"https://neon.test/api/v2": "neon"})
    validate_request(req("POST", "https://neon.test/api/v2/projects", json=NEON_PROJECT), registry)
    rejects(req("POST", f"{NEON}/projects", json=NEON_PROJECT), "no spec registered", registry=registry)


# --- GitHub -------------------------------------------------------------------------------

def test_github_create_repo():
    url = "https://api.github.com/user/repos"
    validate_request(req("POST", url, json={"name": "mk0r-x", "private": True, "auto_init": False}))
    rejects(req("POST", url, json={"name": "mk0r-x", "private": "yes"}), "private: 'yes' is not of type 'boolean'")


# --- Resend -------------------------------------------------------------------------------

def test_resend_segments_and_api_keys():
    validate_request(req("POST", "https://api.resend.com/segments", json={"name": "mk0r-x Users"}))
    url = "https://api.resend.com/api-keys"
    validate_request(req("POST", url, json={"name": "mk0r-x", "permission": "sending_access"}))
    rejects(req("POST", url, json={"name": "mk0r-x", "permission": "admin"}), "permission: 'admin' is not one of")


def test_response_status_and_shape_checked():
    request = req("POST", "https://api.resend.com/segments", json={"name": "mk0r-x Users"})
    validate_response(request, httpx.Response(201, json={"id": "78261eea", "object": "segment"}))
    for response, fragment in [
        (httpx.Response(418, json={}), "Unknown response http status: 418"),
        (httpx.Response(201, json={"id": 5}), "id: 5 is not of type 'string'"),
        (httpx.Response(201, text="ok"), "mimetype not found: text/plain"),
    ]:
        with pytest.raises(AssertionError, match="response does not match") as info:
            validate_response(request, response)
        assert fragment in str(info.value)


# --- E2B ----------------------------------------------------------------------------------

def test_e2b_v2_create_validated_through_alias():
    body = {"templateID": "base", "timeout": 300, "metadata": {"mk0r": "1"}}
    url = "https://api.e2b.app/v2/sandboxes"
    validate_request(req("POST", url, json=body, headers=E2B_KEY))
    rejects(req("POST", url, json={**body, "timeout": "300"}, headers=E2B_KEY), "timeout: '300'")
    rejects(req("POST", url, json={"timeout": 300}, headers=E2B_KEY), "'templateID' is a required property")
    rejects(req("POST", url, json=body, headers={}), "no credentials", "ApiKeyAuth")
    connect = "https://api.e2b.app/v2/sandboxes/isb0abc123/connect"
    validate_request(req("POST", connect, json={"timeout": 300}, headers=E2B_KEY))
    # Only the listed aliases exist: other /v2 POSTs are still undocumented.
    rejects(req("POST", "https://api.e2b.app/v2/sandboxes/isb0abc123/pause", headers=E2B_KEY), "not in e2b.json")


def test_envd_file_upload_multipart_and_octet_stream():
    url = f"{ENVD}/files?path=/app/.env"
    validate_request(req("POST", url, files={"file": ("/app/.env", b"A=1\n")}, headers={}))
    validate_request(req("POST", url, content=b"A=1\n", headers={"Content-Type": "application/octet-stream"}))
    validate_request(req("POST", "https://49983-isb0abc123.sandbox.example/files?path=/x",
                         files={"file": ("x", b"1")}, headers={}))
    rejects(req("POST", f"{ENVD}/files?path=/app/.env&signature_expiration=soon",
                files={"file": ("/app/.env", b"")}), "signature_expiration", "integer")
    rejects(req("POST", url, json={"file": "A=1"}), "mimetype not found: application/json")
    rejects(req("POST", url, files={"upload": ("/app/.env", b"A=1\n")}), "undeclared multipart field 'upload'")
    rejects(req("POST", url), "Missing required request body")


# --- PostHog (no spec: hand-checked capture contract) -------------------------------------

CAPTURE = "https://us.i.posthog.com/i/v0/e/"


@pytest.mark.parametrize("body", [
    {"api_key": "phc_x", "event": "project_created", "distinct_id": "u1"},
    {"api_key": "phc_x", "event": "project_created", "properties": {"distinct_id": "u1", "n": 1}},
])
def test_posthog_capture_passes(body):
    validate_request(httpx.Request("POST", CAPTURE, json=body))


@pytest.mark.parametrize(("method", "url", "body", "fragment"), [
    ("POST", CAPTURE, {"event": "e", "distinct_id": "u"}, "'api_key' must be a non-empty string"),
    ("POST", CAPTURE, {"api_key": "phc_x", "distinct_id": "u"}, "'event' must be"),
    ("POST", CAPTURE, {"api_key": "phc_x", "event": "e"}, "'distinct_id' (or properties.distinct_id)"),
    ("POST", CAPTURE, {"api_key": "phc_x", "event": "e", "distinct_id": 7}, "'distinct_id'"),
    ("POST", "https://us.i.posthog.com/capture", {}, "only POST /i/v0/e/"),
])
def test_posthog_capture_fails(method, url, body, fragment):
    rejects(httpx.Request(method, url, json=body), fragment)


# --- router / fixture ---------------------------------------------------------------------

def test_unknown_host_fails():
    rejects(req("GET", "https://api.example.com/v1/thing"), "no spec registered for this URL")


def test_router_collects_every_failure_and_spec_base_adds_hosts():
    with pytest.raises(AssertionError) as info, spec_checked_router() as mock:
        mock.spec_base("https://ghe.example/api/v3", "github")
        mock.route().respond(201, json={"id": "k", "token": "re_x"})
        with httpx.Client(headers=BEARER) as client:
            client.post("https://api.resend.com/api-keys", json={"name": "ok"})
            client.post("https://api.resend.com/api-keys", json={"name": "x", "permission": "admin"})
            client.get("https://ghe.example/api/v3/user/repoz")
            client.get("https://nowhere.example/")
    message = str(info.value)
    assert message.startswith("3 of 4 HTTP call(s) break the provider API spec")
    assert "'admin' is not one of" in message and "GET /user/repoz is not in github.json" in message
    assert "https://nowhere.example/" in message and "no spec registered" in message


async def test_router_validates_async_traffic():
    with spec_checked_router() as mock:
        mock.post(f"{ENVD}/files").respond(200, json=[{"path": "/app/.env", "name": ".env", "type": "file"}])
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{ENVD}/files", params={"path": "/app/.env"},
                                         files={"file": ("/app/.env", b"A=1\n")})
        assert response.status_code == 200


def test_respx_spec_fixture_fails_the_test_at_teardown(pytester: pytest.Pytester):
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(Path(apispec.__file__).parent)!r})\n"
                          "from apispec import *\n")
    pytester.makepyfile("""
        import httpx
        URL = "https://api.resend.com/api-keys"
        def send(respx_spec, body):
            respx_spec.post(URL).respond(201, json={"id": "k", "token": "re_x"})
            httpx.post(URL, json=body, headers={"Authorization": "Bearer re_test"})
        def test_good(respx_spec):
            send(respx_spec, {"name": "mk0r-x", "permission": "sending_access"})
        def test_bad(respx_spec):
            send(respx_spec, {"name": "mk0r-x", "permission": "admin"})
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:textual-snapshot",
                                         "-p", "no:asyncio")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_bad*", "*'admin' is not one of*"])


def test_a_loaded_spec_is_reused():
    """Validation speed is a figure (bench/helpers_speed.py); here: the document is parsed once."""
    request = req("POST", f"{NEON}/projects", json=NEON_PROJECT)
    validate_request(request)
    assert apispec.load_spec("neon") is apispec.load_spec("neon")
    validate_request(request)  # still valid from the cache


def test_specs_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("MK0R_API_SPECS", str(tmp_path))
    assert apispec.specs_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "neon.json")):
        apispec.load_spec("neon")


def test_specs_are_inside_the_repository(monkeypatch):
    monkeypatch.delenv("MK0R_API_SPECS", raising=False)
    tests_dir = Path(apispec.__file__).resolve().parent
    assert apispec.specs_dir() == tests_dir / "api-specs"
    assert apispec.missing_specs() == []
    assert (tests_dir / "api-specs" / "SOURCES.md").is_file()


def test_missing_specs_stop_the_run_with_one_message(pytester: pytest.Pytester, monkeypatch, tmp_path):
    empty = tmp_path / "no-specs"
    empty.mkdir()
    monkeypatch.setenv("MK0R_API_SPECS", str(empty))
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(Path(apispec.__file__).parent)!r})\n"
                          "from apispec import *\n")
    pytester.makepyfile("def test_a(respx_spec):\n    pass\n\ndef test_b():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist",
                                           "-p", "no:textual-snapshot", "-p", "no:asyncio")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert len(result.stdout.lines) <= 3 and len(output.splitlines()) <= 6, output  # not a failure per test
    assert "OpenAPI documents are missing" in result.stdout.str()
    assert str(empty / "neon.json") in output and "passed" not in output
