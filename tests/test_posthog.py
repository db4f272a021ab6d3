"""PostHog: the tag always; with a project key, a flags probe that can fail and one capture
event. PostHog publishes no OpenAPI document for either endpoint: `respx_spec` checks them
against the hand-written contracts in apispec.py (capture, and flags from posthog.com/docs/api/flags)."""

from __future__ import annotations

import json

import httpx
import pytest
from cloudmock import POSTHOG, FakeClock, keyed, provision_context

from mk0r_tui.core.config import load_settings
from mk0r_tui.core.errors import ProviderError
from mk0r_tui.providers.posthog import PostHogProvider

KEY = "phc_project_key_0123456789abcdef"


@pytest.fixture
def fake() -> FakeClock:
    return FakeClock()


def flags_ok(router, host: str = POSTHOG):
    return router.post(f"{host}/flags").mock(return_value=httpx.Response(200, json={
        "flags": {}, "errorsWhileComputingFlags": False, "requestId": "0f1e2d3c"}))


@pytest.fixture
def ctx(runtime, session_key):
    return provision_context(runtime, session_key, "posthog")


async def test_without_a_key_only_the_tag_is_returned_and_nothing_is_sent(respx_spec, ctx, fake):
    route = respx_spec.post(f"{POSTHOG}/i/v0/e/")
    provider = PostHogProvider(settings=load_settings(), credentials=keyed(), clock=fake.clock)

    outcome = await provider.provision(ctx)

    assert outcome.env == {"VITE_POSTHOG_APP_ID": ctx.session.analytics_app_id}
    assert route.call_count == 0


async def test_with_a_key_the_key_is_checked_and_one_capture_event_is_sent(respx_spec, ctx, fake):
    flags = flags_ok(respx_spec)
    route = respx_spec.post(f"{POSTHOG}/i/v0/e/").mock(return_value=httpx.Response(200, json={"status": "Ok"}))
    provider = PostHogProvider(settings=load_settings(), credentials=keyed(POSTHOG_PROJECT_KEY=KEY), clock=fake.clock)

    outcome = await provider.provision(ctx)

    app_id = ctx.session.analytics_app_id
    body = json.loads(route.calls[0].request.content)
    assert body["api_key"] == KEY and body["event"] == "mk0r_app_provisioned"
    assert body["distinct_id"] == app_id and body["properties"]["app_id"] == app_id
    assert body["properties"]["$process_person_profile"] is False, "the bookkeeping event makes no billed person"
    assert json.loads(flags.calls[0].request.content) == {"api_key": KEY, "distinct_id": app_id}
    assert "authorization" not in route.calls[0].request.headers
    assert outcome.env == {"VITE_POSTHOG_APP_ID": app_id, "VITE_POSTHOG_KEY": KEY, "VITE_POSTHOG_HOST": POSTHOG}
    assert outcome.note == "mk0r_app_provisioned captured"
    await provider.aclose()


async def test_a_wrong_key_fails_although_capture_would_answer_ok(respx_spec, ctx, fake):
    """PostHog/posthog#54670: capture answers 200 {"status": "Ok"} to any key; flags says 401."""
    capture = respx_spec.post(f"{POSTHOG}/i/v0/e/").mock(return_value=httpx.Response(200, json={"status": "Ok"}))
    respx_spec.post(f"{POSTHOG}/flags").mock(return_value=httpx.Response(401, json={
        "type": "authentication_error", "code": "invalid_api_key",
        "detail": "Project API key invalid. You can find your project API key in PostHog project settings."}))
    provider = PostHogProvider(settings=load_settings(), credentials=keyed(POSTHOG_PROJECT_KEY=KEY), clock=fake.clock)

    with pytest.raises(ProviderError) as caught:
        await provider.provision(ctx)

    text = str(caught.value)
    assert text.startswith("POST /flags?v=2 → HTTP 401: Project API key invalid.")
    assert "check POSTHOG_PROJECT_KEY and POSTHOG_HOST" in text and "region" in text and KEY not in text
    assert caught.value.kept_env == {"VITE_POSTHOG_APP_ID": ctx.session.analytics_app_id}, "the tag survives a bad key"
    assert capture.call_count == 0
    await provider.aclose()


async def test_doctor_probes_the_key_with_flags(respx_spec):
    from mk0r_tui.engine.doctor import run_doctor
    from mk0r_tui.providers import DEFAULT_REGISTRY

    flags_ok(respx_spec)
    report = await run_doctor(load_settings(), keyed(POSTHOG_PROJECT_KEY=KEY), DEFAULT_REGISTRY)

    (check,) = [c for c in report.checks if c.provider == "posthog"]
    assert check.status == "ok" and "flags probe" in check.detail


async def test_a_wrong_host_fails_clearly_and_soon(respx_spec, ctx, fake):
    host = "https://posthog.wrong.example"
    respx_spec.spec_base(host, "posthog")
    route = respx_spec.post(f"{host}/flags").mock(side_effect=httpx.ConnectError("[Errno -2] Name or service not known"))
    provider = PostHogProvider(settings=load_settings(posthog_host=host), credentials=keyed(POSTHOG_PROJECT_KEY=KEY),
                               clock=fake.clock)

    with pytest.raises(ProviderError, match=f"cannot reach {host}"):
        await provider.provision(ctx)
    assert route.call_count == 3
    await provider.aclose()


async def test_a_host_that_is_not_an_ingestion_host_says_so(respx_spec, ctx, fake):
    host = "https://eu.posthog.com"
    respx_spec.spec_base(host, "posthog")
    respx_spec.post(f"{host}/flags").mock(return_value=httpx.Response(404, text="Not Found"))
    provider = PostHogProvider(settings=load_settings(posthog_host=host), credentials=keyed(POSTHOG_PROJECT_KEY=KEY),
                               clock=fake.clock)

    with pytest.raises(ProviderError, match="check POSTHOG_HOST"):
        await provider.provision(ctx)
    await provider.aclose()
