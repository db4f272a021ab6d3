"""Sessions that start together ask GitHub for the token's login once, over real HTTP.

Found by bench/many_sessions.py: 100 sessions at once sent 100 `GET /user`, which queued
ahead of the first repository create under the provider's in-flight limit.
"""

from __future__ import annotations

import asyncio

import pytest
from cloudmock import keyed
from waiting import wait_until

from fakeupstream import FakeUpstream
from mk0r_tui.core.config import load_settings
from mk0r_tui.core.errors import AuthenticationError
from mk0r_tui.providers.github import GitHubProvider


@pytest.fixture(scope="module")
def fake():
    with FakeUpstream(config={"latency_ms": {"github": 50}}) as upstream:
        yield upstream


@pytest.fixture(autouse=True)
def fresh_counters(fake):
    fake.reset()


def provider(fake, token: str) -> GitHubProvider:
    settings = load_settings(github_api_url=fake.github_url, github_mutation_gap_s=0.0)
    return GitHubProvider(settings=settings, credentials=keyed(GITHUB_PROVISIONING_TOKEN=token))


def user_lookups(fake) -> int:
    return fake.state()["requests"]["github"]["by_route"].get("GET /user", 0)


async def test_concurrent_callers_share_one_login_lookup(fake):
    github = provider(fake, "ghp_good")
    try:
        logins = await asyncio.gather(*(github.owner() for _ in range(20)))
        assert logins == ["octocat"] * 20
        assert user_lookups(fake) == 1
        assert await github.owner() == "octocat"
        assert user_lookups(fake) == 1
    finally:
        await github.aclose()


async def test_a_failed_lookup_fails_every_waiter_once_and_is_asked_again_later(fake):
    github = provider(fake, "bad-token")
    try:
        outcomes = await asyncio.gather(*(github.owner() for _ in range(10)), return_exceptions=True)
        assert all(isinstance(o, AuthenticationError) for o in outcomes), outcomes
        assert user_lookups(fake) == 1
        with pytest.raises(AuthenticationError):
            await github.owner()
        assert user_lookups(fake) == 2
    finally:
        await github.aclose()


async def test_a_cancelled_first_caller_does_not_cancel_the_others(fake):
    github = provider(fake, "ghp_good")
    try:
        first = asyncio.create_task(github.owner())
        await asyncio.sleep(0)
        second = asyncio.create_task(github.owner())
        await wait_until(lambda: user_lookups(fake) == 1, what="the shared GET /user to reach the fake")
        first.cancel()
        assert await second == "octocat"
        assert user_lookups(fake) == 1
    finally:
        await github.aclose()
