"""Resend against respx mocks validated by resend.json, on the real ledger, with a fake clock.

resend.json documents no error status at all (Resend describes its errors on a separate page),
so error answers here are marked off-spec and carry Resend's documented error shape.
"""

from __future__ import annotations

import json

import httpx
import pytest
from cloudmock import (
    RESEND,
    FakeClock,
    keyed,
    off_spec,
    progress_of,
    provision_context,
    resend_error,
    resend_list,
    respx_offspec,  # noqa: F401 - fixture
    retries_of,
)

from mk0r_tui.core.config import load_settings
from mk0r_tui.core.errors import AuthenticationError, ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.providers.resend import ResendProvider

PROVISIONING = "re_provisioning_key_0123456789"
APP_TOKEN = "re_app_token_abcdefghijklmnop"
SEG = "78261eea-8f8b-4381-83c6-79fa7120f1cf"
KEY = "dacf4072-4119-4d88-932f-6202748ac7c8"
TS = "2023-10-06 23:47:56.678+00"


@pytest.fixture
def fake() -> FakeClock:
    return FakeClock()


def make(fake, **settings) -> ResendProvider:
    merged = {"resend_requests_per_second": 1000, **settings}
    return ResendProvider(settings=load_settings(**merged), credentials=keyed(RESEND_PROVISIONING_KEY=PROVISIONING),
                          clock=fake.clock)


@pytest.fixture
async def resend(runtime, fake):
    provider = make(fake)
    yield provider
    await provider.aclose()


@pytest.fixture
def ctx(runtime, session_key):
    return provision_context(runtime, session_key, "resend")


def item(item_id: str, name: str) -> dict:
    return {"id": item_id, "name": name, "created_at": TS}


def created_segment():
    return httpx.Response(201, json={"id": SEG, "object": "segment"})


def created_key(key_id: str = KEY, token: str = APP_TOKEN):
    return httpx.Response(201, json={"id": key_id, "token": token})


def deleted(kind: str, item_id: str):
    return httpx.Response(200, json={"object": kind, "id": item_id, "deleted": True})


async def test_provision_makes_a_segment_and_a_sending_only_key(respx_spec, resend, ctx, runtime):
    name = ctx.session.resource_name
    segment = respx_spec.post(f"{RESEND}/segments").mock(return_value=created_segment())
    key = respx_spec.post(f"{RESEND}/api-keys").mock(return_value=created_key())

    outcome = await resend.provision(ctx)

    assert json.loads(segment.calls[0].request.content) == {"name": f"{name} Users"}
    assert json.loads(key.calls[0].request.content) == {"name": name, "permission": "sending_access"}
    assert outcome.env == {"RESEND_API_KEY": APP_TOKEN, "RESEND_SEGMENT_ID": SEG, "RESEND_AUDIENCE_ID": SEG}
    assert list(outcome.env)[0] == ResendProvider.env_keys[0]
    rows = runtime.ledger.resources(ctx.session.key)
    assert [(r.kind, r.name, r.remote_id, r.state) for r in rows] == [
        ("segment", f"{name} Users", SEG, "created"), ("api-key", name, KEY, "created")]
    assert all(APP_TOKEN not in text for text in runtime.ledger.iter_all_text())


async def test_the_key_is_limited_to_the_configured_domain(respx_spec, fake, ctx):
    provider = make(fake, resend_domain_id="4dd369bc-aa82-4ff3-97de-514ae3000ee0")
    respx_spec.post(f"{RESEND}/segments").mock(return_value=created_segment())
    key = respx_spec.post(f"{RESEND}/api-keys").mock(return_value=created_key())

    await provider.provision(ctx)

    assert json.loads(key.calls[0].request.content)["domain_id"] == "4dd369bc-aa82-4ff3-97de-514ae3000ee0"
    await provider.aclose()


async def test_a_second_provision_reuses_the_key_whose_token_is_in_the_env(respx_spec, resend, ctx):
    name = ctx.session.resource_name
    segment = respx_spec.post(f"{RESEND}/segments").mock(return_value=created_segment())
    key = respx_spec.post(f"{RESEND}/api-keys").mock(return_value=created_key())
    await resend.provision(ctx)
    respx_spec.get(f"{RESEND}/segments").mock(return_value=httpx.Response(200, json=resend_list([item(SEG, f"{name} Users")])))
    respx_spec.get(f"{RESEND}/api-keys").mock(return_value=httpx.Response(200, json=resend_list([item(KEY, name)])))
    ctx.previous_env = {"RESEND_API_KEY": APP_TOKEN}

    outcome = await resend.provision(ctx)

    assert segment.call_count == 1 and key.call_count == 1
    assert outcome.env["RESEND_API_KEY"] == APP_TOKEN


async def test_a_key_whose_token_was_lost_is_deleted_and_replaced(respx_spec, resend, ctx, runtime):
    name = ctx.session.resource_name
    respx_spec.post(f"{RESEND}/segments").mock(return_value=created_segment())
    key = respx_spec.post(f"{RESEND}/api-keys").mock(side_effect=[created_key(), created_key("k-2", "re_second_token_xyz123")])
    await resend.provision(ctx)
    respx_spec.get(f"{RESEND}/segments").mock(return_value=httpx.Response(200, json=resend_list([item(SEG, f"{name} Users")])))
    respx_spec.get(f"{RESEND}/api-keys").mock(return_value=httpx.Response(200, json=resend_list([item(KEY, name)])))
    delete = respx_spec.delete(f"{RESEND}/api-keys/{KEY}").mock(return_value=deleted("api_key", KEY))

    outcome = await resend.provision(ctx)  # no previous .env: the first token is gone

    assert delete.call_count == 1 and key.call_count == 2
    assert outcome.env["RESEND_API_KEY"] == "re_second_token_xyz123"
    keys = [(r.remote_id, r.state) for r in runtime.ledger.resources(ctx.session.key) if r.kind == "api-key"]
    assert keys == [(KEY, "deleted"), ("k-2", "created")]


async def test_429_with_retry_after_then_success(respx_offspec, resend, ctx, fake):
    sent_at: list[float] = []

    def answer(request):
        sent_at.append(fake.now())
        if len(sent_at) == 1:
            return off_spec(429, reason="resend.json documents no errors",
                            json_body=resend_error(429, "Too many requests", "rate_limit_exceeded"),
                            headers={"retry-after": "2", "ratelimit-limit": "2", "ratelimit-remaining": "0",
                                     "ratelimit-reset": "2"})
        return created_segment()

    respx_offspec.post(f"{RESEND}/segments").mock(side_effect=answer)
    respx_offspec.post(f"{RESEND}/api-keys").mock(return_value=created_key())

    await resend.provision(ctx)

    assert sent_at[1] - sent_at[0] >= 2
    assert retries_of(ctx) == [(2, 5, 2.0, "HTTP 429")]


async def test_a_spent_budget_holds_the_next_request_until_the_reset(respx_spec, resend, ctx, fake):
    key_sent: list[float] = []
    respx_spec.post(f"{RESEND}/segments").mock(return_value=httpx.Response(
        201, json={"id": SEG, "object": "segment"}, headers={"ratelimit-remaining": "0", "ratelimit-reset": "1"}))

    def answer(request):
        key_sent.append(fake.now())
        return created_key()

    respx_spec.post(f"{RESEND}/api-keys").mock(side_effect=answer)
    start = fake.now()

    await resend.provision(ctx)

    assert key_sent[0] - start >= 1
    assert "resend rate limit reached: waiting 1s" in progress_of(ctx)


def boom():
    return off_spec(500, reason="resend.json documents no errors",
                    json_body=resend_error(500, "Internal server error", "internal_server_error"))


async def test_500_twice_then_success_looks_up_before_each_resend(respx_offspec, resend, ctx):
    segment = respx_offspec.post(f"{RESEND}/segments").mock(side_effect=[boom(), boom(), created_segment()])
    lookup = respx_offspec.get(f"{RESEND}/segments").mock(return_value=httpx.Response(200, json=resend_list([])))
    respx_offspec.post(f"{RESEND}/api-keys").mock(return_value=created_key())

    await resend.provision(ctx)

    assert segment.call_count == 3 and lookup.call_count == 2


@pytest.mark.parametrize("failure", ["500", "read-timeout"])
async def test_a_500_after_resend_applied_the_creates_leaves_one_segment_and_one_key(respx_offspec, resend, ctx, runtime, failure):
    """Resend promises no idempotency: a segment or key created and then answered 500 is found
    by name; the segment is adopted, the key (its token lost with the answer) is replaced, so
    exactly one of each exists at the end."""
    name = ctx.session.resource_name
    segments: dict[str, str] = {}
    keys: dict[str, str] = {}
    key_ids = iter([KEY, "b2c3d4e5-0000-4000-8000-000000000002"])

    def fail():
        if failure == "read-timeout":
            raise httpx.ReadTimeout("timed out")
        return boom()

    def create_segment(request):
        segments[SEG] = json.loads(request.content)["name"]
        return fail()

    def create_key(request):
        key_id = next(key_ids)
        keys[key_id] = json.loads(request.content)["name"]
        return fail() if key_id == KEY else created_key(key_id)

    def listing(store):
        return lambda request: httpx.Response(200, json=resend_list([item(i, n) for i, n in store.items()]))

    def delete_key(request):
        key_id = request.url.path.rsplit("/", 1)[1]
        del keys[key_id]
        return deleted("api_key", key_id)

    seg_create = respx_offspec.post(f"{RESEND}/segments").mock(side_effect=create_segment)
    respx_offspec.get(f"{RESEND}/segments").mock(side_effect=listing(segments))
    respx_offspec.post(f"{RESEND}/api-keys").mock(side_effect=create_key)
    respx_offspec.get(f"{RESEND}/api-keys").mock(side_effect=listing(keys))
    respx_offspec.delete(url__regex=rf"{RESEND}/api-keys/.+").mock(side_effect=delete_key)

    outcome = await resend.provision(ctx)

    assert seg_create.call_count == 1 and list(segments) == [SEG]
    assert list(keys) == ["b2c3d4e5-0000-4000-8000-000000000002"]
    assert outcome.env["RESEND_SEGMENT_ID"] == SEG
    live = [(r.kind, r.remote_id) for r in runtime.ledger.resources(ctx.session.key) if r.state == "created"]
    assert live == [("segment", SEG), ("api-key", "b2c3d4e5-0000-4000-8000-000000000002")]
    assert name in keys.values()


async def test_timeout_after_send_adopts_the_one_segment(respx_spec, resend, ctx, runtime):
    name = ctx.session.resource_name
    segment = respx_spec.post(f"{RESEND}/segments").mock(side_effect=httpx.ReadTimeout("timed out"))
    respx_spec.get(f"{RESEND}/segments").mock(return_value=httpx.Response(200, json=resend_list(
        [item("other-1", "mk0r-someone-else Users"), item(SEG, f"{name} Users")])))
    respx_spec.post(f"{RESEND}/api-keys").mock(return_value=created_key())

    outcome = await resend.provision(ctx)

    assert segment.call_count == 1 and outcome.env["RESEND_SEGMENT_ID"] == SEG


async def test_timeout_after_send_on_the_key_deletes_it_and_creates_another(respx_spec, resend, ctx, runtime):
    name = ctx.session.resource_name
    respx_spec.post(f"{RESEND}/segments").mock(return_value=created_segment())
    key = respx_spec.post(f"{RESEND}/api-keys").mock(side_effect=[httpx.ReadTimeout("timed out"), created_key("k-2")])
    respx_spec.get(f"{RESEND}/api-keys").mock(return_value=httpx.Response(200, json=resend_list([item(KEY, name)])))
    delete = respx_spec.delete(f"{RESEND}/api-keys/{KEY}").mock(return_value=deleted("api_key", KEY))

    outcome = await resend.provision(ctx)

    assert key.call_count == 2 and delete.call_count == 1
    assert outcome.env["RESEND_API_KEY"] == APP_TOKEN
    keys = [(r.remote_id, r.state) for r in runtime.ledger.resources(ctx.session.key) if r.kind == "api-key"]
    assert keys == [(KEY, "deleted"), ("k-2", "created")]
    assert any("token was lost with the answer" in m for m in progress_of(ctx))


async def test_two_segments_with_our_name_is_a_clear_error(respx_spec, resend, ctx):
    name = ctx.session.resource_name
    respx_spec.post(f"{RESEND}/segments").mock(side_effect=httpx.ReadTimeout("timed out"))
    respx_spec.get(f"{RESEND}/segments").mock(return_value=httpx.Response(200, json=resend_list(
        [item(SEG, f"{name} Users"), item("dup-2", f"{name} Users")])))

    with pytest.raises(ProviderError, match="found 2 resources named"):
        await resend.provision(ctx)


async def test_a_restricted_provisioning_key_says_it_must_be_full_access(respx_offspec, resend, ctx):
    respx_offspec.post(f"{RESEND}/segments").mock(return_value=off_spec(
        401, reason="resend.json documents no errors",
        json_body=resend_error(401, "This API key is restricted to only send emails", "restricted_api_key")))

    with pytest.raises(AuthenticationError) as caught:
        await resend.provision(ctx)

    assert "POST /segments → HTTP 401: This API key is restricted to only send emails" in str(caught.value)
    assert "must be a full_access key" in str(caught.value)
    assert PROVISIONING not in str(caught.value)


async def test_403_is_not_retried(respx_offspec, resend, ctx):
    route = respx_offspec.post(f"{RESEND}/segments").mock(return_value=off_spec(
        403, reason="resend.json documents no errors", json_body=resend_error(403, "Forbidden", "invalid_access")))

    with pytest.raises(AuthenticationError, match="check RESEND_PROVISIONING_KEY"):
        await resend.provision(ctx)
    assert route.call_count == 1


async def test_a_bad_domain_id_says_so(respx_offspec, fake, ctx):
    provider = make(fake, resend_domain_id="nope")
    respx_offspec.post(f"{RESEND}/segments").mock(return_value=created_segment())
    respx_offspec.post(f"{RESEND}/api-keys").mock(return_value=off_spec(
        422, reason="resend.json documents no errors",
        json_body=resend_error(422, "The `domain_id` must be a valid domain", "validation_error")))

    with pytest.raises(ProviderError, match="check RESEND_DOMAIN_ID"):
        await provider.provision(ctx)
    await provider.aclose()


async def test_a_malformed_list_is_a_clear_error(respx_offspec, resend):
    respx_offspec.get(f"{RESEND}/segments").mock(return_value=off_spec(200, reason="truncated", content=b'{"object":"list","data":[{"id"'))

    with pytest.raises(ProviderError, match=r"GET /segments → HTTP 200: the answer is not valid JSON"):
        await resend.discover()


# -- teardown ------------------------------------------------------------------------------------


def row(kind: str, remote_id: str | None, name: str = "mk0r-abc") -> ResourceRow:
    return ResourceRow(None, None, "resend", kind, name, remote_id, None, "created")


async def test_teardown_deletes_the_key_and_the_segment(respx_spec, resend):
    key = respx_spec.delete(f"{RESEND}/api-keys/{KEY}").mock(return_value=deleted("api_key", KEY))
    segment = respx_spec.delete(f"{RESEND}/segments/{SEG}").mock(return_value=deleted("segment", SEG))

    assert await resend.teardown(row("api-key", KEY)) is True
    assert await resend.teardown(row("segment", SEG, "mk0r-abc Users")) is True
    assert key.call_count == 1 and segment.call_count == 1


async def test_teardown_of_a_missing_segment_is_done(respx_offspec, resend):
    respx_offspec.delete(f"{RESEND}/segments/{SEG}").mock(return_value=off_spec(
        404, reason="resend.json documents no errors", json_body=resend_error(404, "Segment not found", "not_found")))

    assert await resend.teardown(row("segment", SEG)) is False


async def test_teardown_of_a_pending_key_finds_it_by_name(respx_spec, resend):
    respx_spec.get(f"{RESEND}/api-keys").mock(return_value=httpx.Response(200, json=resend_list([item(KEY, "mk0r-abc")])))
    delete = respx_spec.delete(f"{RESEND}/api-keys/{KEY}").mock(return_value=deleted("api_key", KEY))

    assert await resend.teardown(row("api-key", None)) is True
    assert delete.call_count == 1


# -- discovery -----------------------------------------------------------------------------------


async def test_discovery_pages_through_segments_and_keys(respx_spec, resend):
    resend.page_size = 2
    segments = respx_spec.get(f"{RESEND}/segments").mock(side_effect=[
        httpx.Response(200, json=resend_list([item("s-1", "mk0r-aaa Users"), item("s-2", "Newsletter")], has_more=True)),
        httpx.Response(200, json=resend_list([item("s-3", "mk0r-bbb Users"), item("s-4", "mk0r-ccc Users")], has_more=True)),
        httpx.Response(200, json=resend_list([item("s-5", "mk0r-ddd Users")])),
    ])
    respx_spec.get(f"{RESEND}/api-keys").mock(return_value=httpx.Response(200, json=resend_list(
        [item("k-1", "mk0r-aaa"), item("k-2", "Production")])))

    found = await resend.discover()

    assert [(f.kind, f.remote_id) for f in found] == [
        ("segment", "s-1"), ("segment", "s-3"), ("segment", "s-4"), ("segment", "s-5"), ("api-key", "k-1")]
    assert [c.request.url.params.get("after") for c in segments.calls] == [None, "s-2", "s-4"]
    assert found[0].created_at == 1696636076.678


@pytest.mark.parametrize("name", ["daily_quota_exceeded", "monthly_quota_exceeded"])
async def test_a_quota_429_fails_at_once_without_waiting_for_retry_after(respx_offspec, resend, ctx, fake, name):
    """Resend's errors page: the quotas answer 429 like the rate limit, but no wait lifts them."""
    word = name.split("_")[0]
    segment = respx_offspec.post(f"{RESEND}/segments").mock(return_value=off_spec(
        429, reason="resend.json documents no errors", headers={"retry-after": "86400"},
        json_body=resend_error(429, f"You have reached your {word} email sending quota.", name)))
    started = fake.now()

    with pytest.raises(ProviderError) as caught:
        await resend.provision(ctx)

    assert segment.call_count == 1 and fake.now() == started
    assert f"{word} sending quota is used up" in str(caught.value) or f"{word} quota is used up" in str(caught.value)
    assert "every app of the team" in str(caught.value)


@pytest.mark.parametrize("status,message,name,hint", [
    (400, "API key is invalid", "validation_error", "malformed"),
    (403, "API key is invalid", "invalid_api_key", "not a valid key"),
])
async def test_an_invalid_provisioning_key_gets_a_hint_that_says_what_to_fix(respx_offspec, resend, ctx, status, message, name, hint):
    respx_offspec.post(f"{RESEND}/segments").mock(return_value=off_spec(
        status, reason="resend.json documents no errors", json_body=resend_error(status, message, name)))

    with pytest.raises(ProviderError) as caught:
        await resend.provision(ctx)

    assert hint in str(caught.value)
