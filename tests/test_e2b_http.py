"""The SDK-backed `E2BSandboxBackend` over mocked HTTP, every call checked against e2b.json and
e2b-envd.json (tests/apispec.py).

The e2b SDK sends its REST and envd file calls through httpx clients on its own (pyqwest)
transport, so respx must patch httpx itself (`using="httpx"`) rather than httpcore, which the
shared `respx_spec` fixture patches; `e2b_spec` below is that fixture with the httpx mocker.
On E2B's own domains the SDK reaches envd at `https://sandbox.<domain>` (the sandbox named in
the `E2b-Sandbox-Id` header); on a self-hosted domain at `https://49983-<id>.<domain>`.
Command execution is Connect-RPC, which neither respx nor the specs cover: it is tested with
the fake backend in test_e2b_target.py.
"""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from apispec import spec_checked_router

from mk0r_tui.core.config import load_settings
from mk0r_tui.core.errors import AuthenticationError, ProviderError
from mk0r_tui.core.events import Collector
from mk0r_tui.core.ledger import Ledger
from mk0r_tui.core.models import ProviderResult, Session, Slot, Status
from mk0r_tui.core.provider import ProvisionContext, SessionResources
from mk0r_tui.targets.e2b import E2BTarget
from mk0r_tui.targets.sandbox import CommandResult, E2BSandboxBackend, SandboxGone, translate

API = "https://api.e2b.app"
ENVD = "https://sandbox.e2b.app"
API_KEY = "e2b_" + "0123456789abcdef" * 2 + "cafe"
ACCESS_TOKEN = "envd-access-token-1234"


def sandbox_body(sandbox_id: str, **extra) -> dict:
    return {"templateID": "base", "sandboxID": sandbox_id, "clientID": "client", "envdVersion": "0.5.7", "envdAccessToken": ACCESS_TOKEN, **extra}


def listed(sandbox_id: str, session: str, started: str = "2026-11-02T10:00:00Z") -> dict:
    return {
        "templateID": "base", "sandboxID": sandbox_id, "clientID": "client", "startedAt": started,
        "endAt": "2026-11-02T11:00:00Z", "cpuCount": 2, "memoryMB": 512, "diskSizeMB": 1024,
        "state": "running", "envdVersion": "0.5.7", "metadata": {"mk0r": "1", "mk0r_session": session},
    }


def error(code: int, message: str) -> httpx.Response:
    return httpx.Response(code, json={"code": code, "message": message})


@pytest.fixture
def e2b_spec():
    with spec_checked_router(using="httpx") as router:
        router.spec_base(ENVD, "e2b-envd")
        yield router


def backend(**opts) -> E2BSandboxBackend:
    return E2BSandboxBackend(api_key=API_KEY, retries=0, request_timeout_s=5, **opts)


async def test_create_sends_our_metadata_template_and_timeout(e2b_spec):
    route = e2b_spec.post(f"{API}/v2/sandboxes").mock(return_value=httpx.Response(201, json=sandbox_body("sbx1")))

    sandbox_id = await backend().create(
        template="base", timeout_s=3600, metadata={"mk0r": "1", "mk0r_session": "mk0r-abc"}, idempotency_key="mk0r-abc-7"
    )

    assert sandbox_id == "sbx1"
    request = route.calls.last.request
    body = json.loads(request.content)
    assert body["templateID"] == "base" and body["timeout"] == 3600
    assert body["metadata"] == {"mk0r": "1", "mk0r_session": "mk0r-abc"}
    assert request.headers["X-API-Key"] == API_KEY
    assert request.headers["Idempotency-Key"] == "mk0r-abc-7"


async def test_write_and_read_go_to_envd_for_that_sandbox(e2b_spec):
    e2b_spec.post(f"{API}/v2/sandboxes").mock(return_value=httpx.Response(201, json=sandbox_body("sbx1")))
    write = e2b_spec.post(f"{ENVD}/files").mock(
        return_value=httpx.Response(200, json=[{"path": "/app/.env", "name": ".env", "type": "file"}])
    )
    read = e2b_spec.get(f"{ENVD}/files").mock(
        side_effect=[
            httpx.Response(200, content=b"node_modules\n", headers={"content-type": "application/octet-stream"}),
            error(404, "path '/app/.gitignore' does not exist"),
        ]
    )
    sandboxes = backend()
    sandbox_id = await sandboxes.create(template="base", timeout_s=60, metadata={"mk0r": "1"})

    await sandboxes.write_file(sandbox_id, "/app/.env", "A=1\n")
    assert await sandboxes.read_file(sandbox_id, "/app/.gitignore") == "node_modules\n"
    assert await sandboxes.read_file(sandbox_id, "/app/.gitignore") is None

    request = write.calls.last.request
    assert request.url.params["path"] == "/app/.env"
    assert request.headers["E2b-Sandbox-Id"] == "sbx1" and request.headers["X-Access-Token"] == ACCESS_TOKEN
    assert b"A=1\n" in request.content
    assert read.calls.last.request.url.params["path"] == "/app/.gitignore"


async def test_a_self_hosted_domain_reaches_its_own_api_and_envd_host(e2b_spec):
    e2b_spec.spec_base("https://api.e2b.example.com", "e2b")
    e2b_spec.post("https://api.e2b.example.com/v2/sandboxes").mock(return_value=httpx.Response(201, json=sandbox_body("sbx9")))
    write = e2b_spec.post("https://49983-sbx9.e2b.example.com/files").mock(
        return_value=httpx.Response(200, json=[{"path": "/app/x", "name": "x", "type": "file"}])
    )
    sandboxes = backend(domain="e2b.example.com")

    sandbox_id = await sandboxes.create(template="base", timeout_s=60, metadata={})
    await sandboxes.write_file(sandbox_id, "/app/x", "x")

    assert write.called


async def test_a_write_the_sandbox_refuses_is_a_provider_error(e2b_spec):
    e2b_spec.post(f"{API}/v2/sandboxes").mock(return_value=httpx.Response(201, json=sandbox_body("sbx1")))
    e2b_spec.post(f"{ENVD}/files").mock(return_value=error(507, "not enough disk space available"))
    sandboxes = backend()
    sandbox_id = await sandboxes.create(template="base", timeout_s=60, metadata={})

    with pytest.raises(ProviderError) as caught:
        await sandboxes.write_file(sandbox_id, "/app/.env", "A=1\n")

    assert str(caught.value) == "POST /files?path=/app/.env → HTTP 507: the sandbox's disk is full"


async def test_connect_to_a_missing_sandbox_is_sandbox_gone(e2b_spec):
    e2b_spec.post(f"{API}/v2/sandboxes/sbx-old/connect").mock(return_value=error(404, "sandbox \"sbx-old\" doesn't exist"))

    with pytest.raises(SandboxGone) as caught:
        await backend().connect("sbx-old", timeout_s=60)

    assert caught.value.status == 404 and "killed or timed out" in str(caught.value)


async def test_connect_reuses_a_running_sandbox(e2b_spec):
    route = e2b_spec.post(f"{API}/v2/sandboxes/sbx1/connect").mock(return_value=httpx.Response(200, json=sandbox_body("sbx1")))
    write = e2b_spec.post(f"{ENVD}/files").mock(return_value=httpx.Response(200, json=[{"path": "/app/a", "name": "a", "type": "file"}]))
    sandboxes = backend()

    assert await sandboxes.connect("sbx1", timeout_s=1800) == "sbx1"
    await sandboxes.write_file("sbx1", "/app/a", "a")

    assert json.loads(route.calls.last.request.content)["timeout"] == 1800
    assert route.call_count == 1, "the connected sandbox is kept: the write does not reconnect"
    assert write.calls.last.request.headers["X-Access-Token"] == ACCESS_TOKEN


async def test_listing_filters_by_metadata_and_follows_the_next_token(e2b_spec):
    route = e2b_spec.get(f"{API}/v2/sandboxes").mock(
        side_effect=[
            httpx.Response(200, json=[listed("sbx1", "mk0r-one"), listed("sbx2", "mk0r-two")], headers={"X-Next-Token": "page-2"}),
            httpx.Response(200, json=[listed("sbx3", "mk0r-three", "2026-11-02T10:30:00Z")]),
        ]
    )
    sandboxes = backend()

    first = await sandboxes.list_page({"mk0r": "1"})
    second = await sandboxes.list_page({"mk0r": "1"}, first.next_token)

    assert [s.sandbox_id for s in first.sandboxes] == ["sbx1", "sbx2"] and first.next_token == "page-2"
    assert [s.sandbox_id for s in second.sandboxes] == ["sbx3"] and second.next_token is None
    assert second.sandboxes[0].metadata == {"mk0r": "1", "mk0r_session": "mk0r-three"}
    assert second.sandboxes[0].started_at == dt.datetime(2026, 11, 2, 10, 30, tzinfo=dt.UTC).timestamp()
    requests = [call.request for call in route.calls]
    assert [r.url.params.get("metadata") for r in requests] == ["mk0r=1", "mk0r=1"]
    assert [r.url.params.get("nextToken") for r in requests] == [None, "page-2"]


async def test_discovery_through_the_real_backend(e2b_spec):
    e2b_spec.get(f"{API}/v2/sandboxes").mock(
        side_effect=[
            httpx.Response(200, json=[listed("sbx1", "mk0r-one")], headers={"X-Next-Token": "t2"}),
            httpx.Response(200, json=[listed("sbx2", "mk0r-two")]),
        ]
    )
    target = E2BTarget(settings=load_settings(), backend=backend())

    found = await target.discover()

    assert [(f.provider, f.kind, f.name, f.remote_id) for f in found] == [
        ("e2b", "sandbox", "mk0r-one", "sbx1"), ("e2b", "sandbox", "mk0r-two", "sbx2"),
    ]


async def test_kill_is_true_then_false_once_gone(e2b_spec):
    e2b_spec.delete(f"{API}/sandboxes/sbx1").mock(side_effect=[httpx.Response(204), error(404, "not found")])
    sandboxes = backend()

    assert await sandboxes.kill("sbx1") is True
    assert await sandboxes.kill("sbx1") is False


async def test_a_bad_key_is_an_authentication_error_without_the_key(e2b_spec):
    e2b_spec.post(f"{API}/v2/sandboxes").mock(return_value=error(401, "Invalid API key"))

    with pytest.raises(AuthenticationError) as caught:
        await backend().create(template="base", timeout_s=60, metadata={})

    assert str(caught.value) == "POST /v2/sandboxes → HTTP 401: E2B refused the API key (check E2B_API_KEY)"
    assert API_KEY not in str(caught.value)


async def test_a_server_error_is_retryable(e2b_spec):
    e2b_spec.post(f"{API}/v2/sandboxes").mock(return_value=error(500, "internal error"))

    with pytest.raises(ProviderError) as caught:
        await backend().create(template="base", timeout_s=60, metadata={})

    assert caught.value.status == 500 and caught.value.retryable
    assert "internal error" in str(caught.value)


async def test_no_key_fails_before_any_request(e2b_spec):
    with pytest.raises(AuthenticationError) as caught:
        await E2BSandboxBackend(api_key=None).create(template="base", timeout_s=60, metadata={})
    assert "set E2B_API_KEY" in str(caught.value)
    assert not e2b_spec.calls


def test_quota_and_capacity_errors_say_what_to_do():
    from e2b.exceptions import RateLimitException, ServiceBusyException

    quota = translate(RateLimitException("429: Rate limit exceeded"), "POST /v2/sandboxes")
    assert quota.status == 429 and quota.retryable and "orphans" in str(quota)
    busy = translate(ServiceBusyException("503: busy"), "POST /v2/sandboxes")
    assert busy.status == 503 and busy.retryable


class RecordingBackend(E2BSandboxBackend):
    """The real backend with commands recorded instead of sent (Connect-RPC is not mockable)."""

    def __init__(self, **opts) -> None:
        super().__init__(**opts)
        self.commands: list[str] = []

    async def run(self, sandbox_id, command, *, user=None, cwd=None) -> CommandResult:
        self.commands.append(command)
        return CommandResult(0)


async def test_the_target_provisions_through_the_sdk(e2b_spec, mk0r_home, session_key):
    create = e2b_spec.post(f"{API}/v2/sandboxes").mock(return_value=httpx.Response(201, json=sandbox_body("sbx1")))
    e2b_spec.get(f"{ENVD}/files").mock(return_value=error(404, "path '/app/.gitignore' does not exist"))
    writes = e2b_spec.post(f"{ENVD}/files").mock(
        side_effect=lambda request: httpx.Response(200, json=[{"path": request.url.params["path"], "name": "f", "type": "file"}])
    )
    settings = load_settings()
    settings.ensure_data_dir()
    ledger = Ledger(settings.ledger_path)
    session = Session.parse(session_key)
    ledger.ensure_session(session, target="e2b")
    env = {"DATABASE_URL": "postgresql://app:pw-123456789@db/app", "GIT_REMOTE_URL": "https://github.com/acme/mk0r-x.git"}
    results = (ProviderResult("neon", Slot.DATABASE, Status.OK, env={"DATABASE_URL": env["DATABASE_URL"]}),)
    ctx = ProvisionContext(session=session, provider="e2b", settings=settings, resources=SessionResources(ledger, session), sink=Collector(), results=results, env=env)
    recording = RecordingBackend(api_key=API_KEY, retries=0)

    outcome = await E2BTarget(settings=settings, backend=recording).provision(ctx)

    assert outcome.resources[0].remote_id == "sbx1"
    assert json.loads(create.calls.last.request.content)["metadata"] == {
        "mk0r": "1", "mk0r_session": session.resource_name, "mk0r_ledger": ledger.ledger_id,  # the owner mark
    }
    assert [c.request.url.params["path"] for c in writes.calls] == ["/app/.gitignore", "/app/.env", "/app/AGENTS.md", "/app/CLAUDE.md"]
    assert "chmod 600 /app/.env" in recording.commands
    (row,) = ledger.resources(session_key, provider="e2b", live_only=True)
    assert (row.remote_id, row.state) == ("sbx1", "created")
    ledger.close()


def test_an_error_body_without_code_is_a_clear_error():
    # issue 9: the SDK reads every error body as {"code", "message"}; without "code" it raised a
    # bare KeyError('code'), which surfaced as "KeyError: 'code'"
    from e2b.api.client.models.error import Error

    with pytest.raises(KeyError) as raised:
        Error.from_dict({"message": "upstream connect error"})
    error = translate(raised.value, "POST /sandboxes", creating=True)

    assert isinstance(error, ProviderError)
    assert "KeyError" not in str(error)
    assert "no 'code' field" in str(error) and error.outcome_unknown


async def test_on_timeout_pause_asks_e2b_to_pause_and_auto_resume(e2b_spec):
    route = e2b_spec.post(f"{API}/v2/sandboxes").mock(return_value=httpx.Response(201, json=sandbox_body("sbx1")))

    await backend(on_timeout="pause").create(template="base", timeout_s=600, metadata={"mk0r": "1"}, idempotency_key="k-1")

    body = json.loads(route.calls.last.request.content)
    assert body["autoPause"] is True  # the SDK's lifecycle {on_timeout: pause} on the wire
    assert body.get("autoResume") in (True, {"enabled": True}), body


async def test_the_default_sends_no_lifecycle_so_e2b_kills_at_the_timeout(e2b_spec):
    route = e2b_spec.post(f"{API}/v2/sandboxes").mock(return_value=httpx.Response(201, json=sandbox_body("sbx1")))

    await backend().create(template="base", timeout_s=600, metadata={"mk0r": "1"}, idempotency_key="k-1")

    body = json.loads(route.calls.last.request.content)
    assert not body.get("autoPause") and not body.get("autoResume"), body


def test_a_missing_file_is_not_a_gone_sandbox():
    from e2b.exceptions import FileNotFoundException, NotFoundException

    missing = translate(FileNotFoundException("/app/x: no such file"), "files.write")
    gone = translate(NotFoundException("sandbox sbx1 not found"), "files.write")

    assert not isinstance(missing, SandboxGone) and missing.status == 404 and "file not found" in str(missing)
    assert isinstance(gone, SandboxGone)


def test_idempotency_keys_match_what_e2b_accepts():
    import re

    from mk0r_tui.targets.e2b import idempotency_key

    for raw in ("mk0r-ABC_def-12", "mk0r-ünïcode/slash-3", "x" * 300):
        assert re.fullmatch(r"[a-z0-9-]{1,255}", idempotency_key(raw)), raw


async def test_doctor_probe_lists_one_sandbox(e2b_spec):
    route = e2b_spec.get(f"{API}/v2/sandboxes").mock(return_value=httpx.Response(200, json=[]))
    target = E2BTarget(settings=load_settings(), backend=backend())

    check = await target.check_auth()

    assert check.ok and "E2B accepts the key" in check.detail
    assert route.calls.last.request.url.params["limit"] == "1"


def test_e2b_domain_is_the_setting_the_backend_uses(monkeypatch):
    monkeypatch.setenv("E2B_DOMAIN", "e2b.example.com")
    target = E2BTarget(settings=load_settings(), credentials=None)

    assert target.backend._opts["domain"] == "e2b.example.com"
