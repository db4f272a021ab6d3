"""The shared HTTP behaviour: retries, rate limits, limits, lost answers and clear errors.

Time is a fake clock: every wait is asserted from the clock, none is spent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from email.utils import formatdate

import httpx
import pytest
from cloudmock import GITHUB, NEON, RESEND, FakeClock, github_error, github_user, neon_error, neon_list, resend_list
from pydantic import BaseModel

from mk0r_tui.core.config import load_settings
from mk0r_tui.core.errors import AuthenticationError, ProviderError
from mk0r_tui.providers.http import ApiClient, create_or_adopt, parse_model, parse_retry_after, single_match

TOKEN = "napi_test_token_0123456789"


def without_request_id(error: BaseException) -> str:
    """The message with Neon's per-request id (a fresh uuid in every fake answer) taken out."""
    return re.sub(r" \(request_id [0-9a-f-]+\)", "", str(error))


class Recorder:
    """Collects what the client reports to a provisioning context."""

    def __init__(self) -> None:
        self.retries: list[tuple[int, int, float, str]] = []
        self.messages: list[str] = []
        self.attempts = 0

    def retrying(self, attempt: int, max_attempts: int, delay_s: float, reason: str) -> None:
        self.retries.append((attempt, max_attempts, delay_s, reason))

    def attempt(self) -> int:
        self.attempts += 1
        return self.attempts

    def progress(self, message: str) -> None:
        self.messages.append(message)


@pytest.fixture
def fake() -> FakeClock:
    return FakeClock()


def client(fake: FakeClock, base: str = NEON, provider: str = "neon", **options) -> ApiClient:
    settings = load_settings(**options.pop("settings", {}))
    return ApiClient(provider=provider, base_url=base, settings=settings, key_name="NEON_PROVISIONING_KEY",
                     token=TOKEN, clock=fake.clock, **options)


def stamped(fake: FakeClock, responses: list):
    """A respx side effect that answers in order and records the fake time of every request."""
    times: list[float] = []

    def answer(request: httpx.Request):
        times.append(fake.now())
        item = responses[len(times) - 1]
        if isinstance(item, Exception):
            raise item
        return item

    answer.times = times  # type: ignore[attr-defined]
    return answer


OK_LIST = httpx.Response(200, json=neon_list([]))


async def test_429_with_retry_after_waits_exactly_that_long_before_the_next_request(respx_spec, fake):
    answer = stamped(fake, [httpx.Response(429, json=neon_error("rate limited"), headers={"Retry-After": "7"}), OK_LIST])
    route = respx_spec.get(f"{NEON}/projects").mock(side_effect=answer)
    api, ctx = client(fake), Recorder()

    response = await api.request("GET", "/projects", ctx=ctx)

    assert response.status_code == 200 and route.call_count == 2
    assert answer.times[1] - answer.times[0] >= 7.0
    assert ctx.retries == [(2, 5, 7.0, "HTTP 429")]
    await api.aclose()


async def test_retry_after_as_an_http_date_is_honoured(respx_spec, fake):
    when = formatdate(fake.now() + 42, usegmt=True)
    answer = stamped(fake, [httpx.Response(503, json=neon_error("busy"), headers={"Retry-After": when}), OK_LIST])
    respx_spec.get(f"{NEON}/projects").mock(side_effect=answer)
    api = client(fake)

    await api.request("GET", "/projects")

    assert answer.times[1] - answer.times[0] == pytest.approx(42, abs=1)
    await api.aclose()


def test_parse_retry_after_reads_seconds_and_dates_and_ignores_junk():
    now = 1_700_000_000.0
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after(formatdate(now + 10, usegmt=True), now) == pytest.approx(10, abs=1)
    assert parse_retry_after(formatdate(now - 10, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


async def test_500_twice_then_success_backs_off_exponentially_with_jitter(respx_spec, fake):
    answer = stamped(fake, [httpx.Response(500, json=neon_error("oops")), httpx.Response(502, json=neon_error("bad gw")), OK_LIST])
    route = respx_spec.get(f"{NEON}/projects").mock(side_effect=answer)
    api, ctx = client(fake), Recorder()

    await api.request("GET", "/projects", ctx=ctx)

    assert route.call_count == 3
    assert [r[0] for r in ctx.retries] == [2, 3]
    first, second = fake.sleeps
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 1.5  # 0.5·2^(n-1) plus up to 0.5 s of jitter
    await api.aclose()


async def test_gives_up_after_max_attempts_and_says_so(respx_spec, fake):
    route = respx_spec.get(f"{NEON}/projects").mock(return_value=httpx.Response(503, json=neon_error("maintenance")))
    api = client(fake, settings={"max_attempts": 3})

    with pytest.raises(ProviderError) as caught:
        await api.request("GET", "/projects")

    assert route.call_count == 3
    assert without_request_id(caught.value) == "GET /projects → HTTP 503: maintenance (gave up after 3 attempts)"
    assert "(request_id " in str(caught.value), "Neon's request id is named for support"
    await api.aclose()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_never_retried(respx_spec, fake, status):
    route = respx_spec.get(f"{NEON}/projects").mock(return_value=httpx.Response(status, json=neon_error(f"nope {status}")))
    api = client(fake)

    with pytest.raises(ProviderError) as caught:
        await api.request("GET", "/projects")

    assert route.call_count == 1 and fake.sleeps == []
    assert caught.value.status == status and f"nope {status}" in str(caught.value)
    assert isinstance(caught.value, AuthenticationError) == (status in (401, 403))
    assert TOKEN not in str(caught.value)
    await api.aclose()


async def test_401_names_the_key_to_check(respx_spec, fake):
    respx_spec.get(f"{NEON}/projects").mock(return_value=httpx.Response(401, json=neon_error("authentication required")))
    api = client(fake)

    with pytest.raises(AuthenticationError) as caught:
        await api.request("GET", "/projects")

    assert without_request_id(caught.value) == (
        "GET /projects → HTTP 401: authentication required "
        "(check NEON_PROVISIONING_KEY: the provider did not accept it)"
    )
    await api.aclose()


async def test_a_missing_key_fails_before_any_request(respx_spec, fake):
    route = respx_spec.get(f"{NEON}/projects")
    api = ApiClient(provider="neon", base_url=NEON, settings=load_settings(), key_name="NEON_PROVISIONING_KEY",
                    token=None, clock=fake.clock)

    with pytest.raises(AuthenticationError, match="NEON_PROVISIONING_KEY is not set"):
        await api.request("GET", "/projects")
    assert route.call_count == 0


async def test_a_wait_longer_than_the_provider_timeout_fails_at_once(respx_spec, fake):
    route = respx_spec.get(f"{NEON}/projects").mock(
        return_value=httpx.Response(429, json=neon_error("slow down"), headers={"Retry-After": "3600"}))
    api = client(fake, settings={"provider_timeout_s": 60})

    with pytest.raises(ProviderError, match="asks to wait 3600s, longer than MK0R_PROVIDER_TIMEOUT_S"):
        await api.request("GET", "/projects")
    assert route.call_count == 1 and fake.sleeps == []
    await api.aclose()


async def test_423_is_retried_only_where_the_provider_says_so(respx_spec, fake):
    locked = httpx.Response(423, json=neon_error("project is locked"))
    route = respx_spec.get(f"{NEON}/projects").mock(side_effect=[locked, OK_LIST, locked])
    neon_like = client(fake, retry_statuses=frozenset({423, 429, 500, 502, 503, 504}))
    plain = client(fake)

    await neon_like.request("GET", "/projects")
    with pytest.raises(ProviderError, match="HTTP 423"):
        await plain.request("GET", "/projects")
    assert route.call_count == 3
    await neon_like.aclose()
    await plain.aclose()


# -- GitHub's rate-limit rules -------------------------------------------------------------


def github_client(fake: FakeClock, settings: dict | None = None, **options) -> ApiClient:
    return ApiClient(provider="github", base_url=GITHUB, settings=load_settings(**(settings or {})),
                     key_name="GITHUB_PROVISIONING_TOKEN", token=TOKEN, clock=fake.clock,
                     unhinted_rate_limit_wait_s=60.0, **options)


async def test_exhausted_primary_limit_holds_the_next_request_until_x_ratelimit_reset(respx_spec, fake):
    reset = int(fake.now()) + 30
    spent = httpx.Response(200, json=github_user(), headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    answer = stamped(fake, [spent, httpx.Response(200, json=github_user())])
    respx_spec.get(f"{GITHUB}/user").mock(side_effect=answer)
    api, ctx = github_client(fake), Recorder()

    await api.request("GET", "/user", ctx=ctx)
    await api.request("GET", "/user", ctx=ctx)

    assert answer.times[1] >= reset
    assert ctx.messages == ["github rate limit reached: waiting 30s"]
    await api.aclose()


async def test_403_with_remaining_zero_waits_for_the_reset_then_retries(respx_spec, fake):
    reset = int(fake.now()) + 90
    limited = httpx.Response(403, json=github_error("API rate limit exceeded for user ID 1."),
                             headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    answer = stamped(fake, [limited, httpx.Response(200, json=github_user())])
    respx_spec.get(f"{GITHUB}/user").mock(side_effect=answer)
    api = github_client(fake, settings={"provider_timeout_s": 300})

    await api.request("GET", "/user")

    assert answer.times[1] >= reset
    await api.aclose()


async def test_secondary_limit_without_headers_waits_at_least_a_minute_with_backoff(respx_spec, fake):
    secondary = httpx.Response(403, json=github_error("You have exceeded a secondary rate limit. Please wait a few minutes."))
    answer = stamped(fake, [secondary, secondary, httpx.Response(200, json=github_user())])
    respx_spec.get(f"{GITHUB}/user").mock(side_effect=answer)
    api = github_client(fake, settings={"provider_timeout_s": 600})

    await api.request("GET", "/user")

    first, second = (b - a for a, b in zip(answer.times, answer.times[1:]))
    assert first >= 60 and second >= 60 and second > first
    await api.aclose()


async def test_a_plain_403_is_a_refusal_not_a_rate_limit(respx_spec, fake):
    route = respx_spec.get(f"{GITHUB}/user").mock(
        return_value=httpx.Response(403, json=github_error("Resource not accessible by personal access token")))
    api = github_client(fake)

    with pytest.raises(AuthenticationError, match="not accessible"):
        await api.request("GET", "/user")
    assert route.call_count == 1
    await api.aclose()


async def test_mutations_are_serialised_with_a_gap_and_reads_are_not(respx_spec, fake):
    from cloudmock import github_repo

    post = stamped(fake, [httpx.Response(201, json=github_repo("octo", f"mk0r-{n}")) for n in range(3)])
    respx_spec.post(f"{GITHUB}/user/repos").mock(side_effect=post)
    get = stamped(fake, [httpx.Response(200, json=github_user())])
    respx_spec.get(f"{GITHUB}/user").mock(side_effect=get)
    api = github_client(fake, mutation_gap_s=1.0)

    await asyncio.gather(*(api.request("POST", "/user/repos", json={"name": f"mk0r-{n}"}) for n in range(3)))
    await api.request("GET", "/user")

    gaps = [b - a for a, b in zip(post.times, post.times[1:])]
    assert gaps == [1.0, 1.0]
    assert get.times[0] == post.times[-1]  # a read after the last mutation is not held
    await api.aclose()


# -- limits shared by every session ------------------------------------------------------------


async def test_requests_in_flight_never_exceed_the_provider_limit(respx_spec, fake):
    in_flight, peak = 0, 0

    async def slow(request):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json=neon_list([]))

    respx_spec.get(f"{NEON}/projects").mock(side_effect=slow)
    api = client(fake, settings={"neon_concurrency": 2})

    await asyncio.gather(*(api.request("GET", "/projects") for _ in range(8)))

    assert peak == 2
    await api.aclose()


async def test_resend_requests_are_rate_limited_per_team(respx_spec, fake):
    get = stamped(fake, [httpx.Response(200, json=resend_list([])) for _ in range(5)])
    respx_spec.get(f"{RESEND}/domains").mock(side_effect=get)
    api = ApiClient(provider="resend", base_url=RESEND, settings=load_settings(), key_name="RESEND_PROVISIONING_KEY",
                    token=TOKEN, clock=fake.clock, requests_per_second=40)

    await asyncio.gather(*(api.request("GET", "/domains") for _ in range(5)))

    # five requests at 40/s: each at least 25 ms after the one before (no burst)
    assert all(b - a >= 1 / 40 - 1e-9 for a, b in zip(get.times, get.times[1:])) and len(get.times) == 5
    await api.aclose()


# -- lost answers ------------------------------------------------------------------------------


async def test_connection_refused_is_retried_briefly_and_said_clearly(respx_spec, fake):
    route = respx_spec.get(f"{NEON}/projects").mock(side_effect=httpx.ConnectError("[Errno 111] Connection refused"))
    api, ctx = client(fake, settings={"max_attempts": 8}), Recorder()

    with pytest.raises(ProviderError) as caught:
        await api.request("GET", "/projects", ctx=ctx)

    assert route.call_count == 3
    assert f"cannot reach {NEON} (connection refused)" in str(caught.value)
    assert "gave up after 3 attempts" in str(caught.value)
    await api.aclose()


async def test_a_create_whose_answer_is_lost_is_not_resent(respx_spec, fake):
    route = respx_spec.post(f"{NEON}/projects").mock(side_effect=httpx.ReadTimeout("read timed out"))
    api = client(fake)

    with pytest.raises(ProviderError) as caught:
        await api.request("POST", "/projects", json={"project": {"name": "mk0r-x"}})

    assert route.call_count == 1
    assert caught.value.outcome_unknown
    assert "no answer after the request was sent (timed out); it may have been applied" in str(caught.value)
    await api.aclose()


async def test_a_read_whose_answer_is_lost_is_retried(respx_spec, fake):
    route = respx_spec.get(f"{NEON}/projects").mock(side_effect=[httpx.RemoteProtocolError("peer closed"), OK_LIST])
    api = client(fake)

    await api.request("GET", "/projects")

    assert route.call_count == 2
    await api.aclose()


async def test_create_or_adopt_adopts_what_a_lost_answer_created():
    ctx, creates = Recorder(), []

    async def create():
        creates.append(1)
        raise ProviderError("no answer", call="POST /projects", outcome_unknown=True)

    async def find():
        return "prj-found"

    assert await create_or_adopt(ctx, "project mk0r-x", create, find, attempts=3) == "prj-found"
    assert len(creates) == 1
    assert ctx.messages[-1] == "project mk0r-x was created: adopting it"


async def test_create_or_adopt_creates_again_when_nothing_was_made(fake):
    ctx, outcomes = Recorder(), [ProviderError("no answer", call="POST /x", outcome_unknown=True), "made"]

    async def create():
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def find():
        return None

    assert await create_or_adopt(ctx, "x", create, find, attempts=3, clock=fake.clock) == "made"
    assert "x was not created: sending the create again" in ctx.messages
    (retry,) = ctx.retries
    assert retry[0] == 2 and 0.5 <= retry[2] <= 1.0 and fake.sleeps == [retry[2]], "a backoff before the resend, shown"


async def test_create_or_adopt_does_not_look_up_after_a_plain_failure():
    async def create():
        raise ProviderError("bad request", call="POST /x", status=400)

    async def find():
        raise AssertionError("must not look up")

    with pytest.raises(ProviderError, match="bad request"):
        await create_or_adopt(Recorder(), "x", create, find, attempts=3)


def test_two_resources_with_our_name_is_an_error_not_a_guess():
    assert single_match([], "mk0r-x", "GET /x") is None
    assert single_match(["a"], "mk0r-x", "GET /x") == "a"
    with pytest.raises(ProviderError, match="found 2 resources named mk0r-x"):
        single_match(["a", "b"], "mk0r-x", "GET /x")


# -- answers that are not what was promised ---------------------------------------------------


class Thing(BaseModel):
    id: str


def test_truncated_json_is_a_clear_error():
    response = httpx.Response(201, content=b'{"id": "abc', headers={"content-type": "application/json"})
    with pytest.raises(ProviderError) as caught:
        parse_model(response, Thing, "POST /things")
    assert str(caught.value).startswith("POST /things → HTTP 201: the answer is not valid JSON")


def test_a_missing_field_is_named():
    with pytest.raises(ProviderError, match=r"unexpected answer: id: field required"):
        parse_model(httpx.Response(201, json={"name": "x"}), Thing, "POST /things")


async def test_the_token_never_reaches_the_log(respx_spec, fake, caplog):
    respx_spec.get(f"{NEON}/projects").mock(side_effect=[httpx.Response(500, json=neon_error("oops")), OK_LIST])
    api = client(fake)

    with caplog.at_level(logging.DEBUG, logger="mk0r_tui"):
        await api.request("GET", "/projects")

    assert caplog.records and all(TOKEN not in r.getMessage() for r in caplog.records)
    await api.aclose()



@pytest.fixture
def local_server():
    """A real keep-alive HTTP server on 127.0.0.1, so connections are really pooled."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = json.dumps(neon_list([])).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_one_client_serves_several_event_loops(local_server, fake):
    """The CLI scans orphans in one `asyncio.run` and deletes them in the next, on one runtime:
    a connection pooled in the first loop must not be reused in the second."""
    api = client(fake, base=local_server)

    answers = [asyncio.run(api.request("GET", "/projects")).status_code for _ in range(2)]
    asyncio.run(api.aclose())

    assert answers == [200, 200]

