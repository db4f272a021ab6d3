"""GitHub against respx mocks validated by github.json, on the real ledger, with a fake clock."""

from __future__ import annotations

import json

import httpx
import pytest
from cloudmock import (
    GITHUB,
    FakeClock,
    github_error,
    github_repo,
    github_repo_item,
    github_user,
    keyed,
    off_spec,
    progress_of,
    provision_context,
    respx_offspec,  # noqa: F401 - fixture
    retries_of,
)

from mk0r_tui.core.config import load_settings
from mk0r_tui.core.errors import AuthenticationError, ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import ResourceState
from mk0r_tui.providers.github import GitHubProvider

TOKEN = "ghp_test_token_0123456789abcdef"
EXISTS = {
    **github_error("Repository creation failed."),
    "errors": [{"resource": "Repository", "code": "custom", "field": "name", "message": "name already exists on this account"}],
}


@pytest.fixture
def fake() -> FakeClock:
    return FakeClock()


def make(runtime, fake, **settings) -> GitHubProvider:
    merged = {"github_mutation_gap_s": 1.0, **settings}
    return GitHubProvider(settings=load_settings(**merged), credentials=keyed(GITHUB_PROVISIONING_TOKEN=TOKEN), clock=fake.clock)


@pytest.fixture
async def github(runtime, fake):
    provider = make(runtime, fake)
    yield provider
    await provider.aclose()


@pytest.fixture
def ctx(runtime, session_key):
    return provision_context(runtime, session_key, "github")


def me(router, login: str = "octo"):
    return router.get(f"{GITHUB}/user").mock(return_value=httpx.Response(200, json=github_user(login)))


async def test_provision_creates_a_private_empty_repo_for_the_user(respx_spec, github, ctx, runtime):
    name = ctx.session.resource_name
    me(respx_spec)
    create = respx_spec.post(f"{GITHUB}/user/repos").mock(return_value=httpx.Response(201, json=github_repo("octo", name)))

    outcome = await github.provision(ctx)

    request = create.calls[0].request
    assert json.loads(request.content) == {
        "name": name, "private": True, "auto_init": False,
        "description": f"mk0r-tui ledger {runtime.ledger.ledger_id}",  # the owner mark (orphans)
    }
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert outcome.env == {
        "GITHUB_REPO": f"octo/{name}",
        "GITHUB_REPO_URL": f"https://github.com/octo/{name}",
        "GIT_REMOTE_URL": f"https://github.com/octo/{name}.git",
    }
    assert list(outcome.env)[0] == GitHubProvider.env_keys[0]
    (row,) = runtime.ledger.resources(ctx.session.key)
    assert (row.state, row.remote_id, row.meta["owner"]) == ("created", f"octo/{name}", "octo")


async def test_an_organisation_owner_uses_the_org_endpoint(respx_spec, runtime, ctx, fake):
    provider = make(runtime, fake, github_owner="acme")
    name = ctx.session.resource_name
    create = respx_spec.post(f"{GITHUB}/orgs/acme/repos").mock(return_value=httpx.Response(201, json=github_repo("acme", name)))

    outcome = await provider.provision(ctx)

    assert create.call_count == 1 and outcome.env["GITHUB_REPO"] == f"acme/{name}"
    await provider.aclose()


async def test_github_enterprise_base_url_works(respx_spec, runtime, ctx, fake):
    base = "https://ghe.example.com/api/v3"
    respx_spec.spec_base(base, "github")
    provider = make(runtime, fake, github_api_url=base)
    name = ctx.session.resource_name
    respx_spec.get(f"{base}/user").mock(return_value=httpx.Response(200, json=github_user("octo")))
    create = respx_spec.post(f"{base}/user/repos").mock(return_value=httpx.Response(201, json=github_repo("octo", name)))

    await provider.provision(ctx)

    assert create.call_count == 1
    await provider.aclose()


async def test_a_second_provision_adopts_the_repo(respx_spec, github, ctx):
    name = ctx.session.resource_name
    me(respx_spec)
    create = respx_spec.post(f"{GITHUB}/user/repos").mock(return_value=httpx.Response(201, json=github_repo("octo", name)))
    respx_spec.get(f"{GITHUB}/repos/octo/{name}").mock(return_value=httpx.Response(200, json=github_repo("octo", name)))

    await github.provision(ctx)
    outcome = await github.provision(ctx)

    assert create.call_count == 1 and outcome.env["GITHUB_REPO"] == f"octo/{name}"


async def test_429_with_retry_after_then_success(respx_offspec, github, ctx, fake):
    name = ctx.session.resource_name
    me(respx_offspec)
    sent_at: list[float] = []

    def answer(request):
        sent_at.append(fake.now())
        if len(sent_at) == 1:
            return off_spec(429, reason="github.json documents no 429", json_body=github_error("secondary rate limit"),
                            headers={"retry-after": "20"})
        return httpx.Response(201, json=github_repo("octo", name))

    respx_offspec.post(f"{GITHUB}/user/repos").mock(side_effect=answer)

    await github.provision(ctx)

    assert sent_at[1] - sent_at[0] >= 20
    assert retries_of(ctx) == [(2, 5, 20.0, "HTTP 429")]


async def test_403_secondary_limit_with_retry_after_is_a_wait_not_a_refusal(respx_spec, github, ctx, fake):
    name = ctx.session.resource_name
    me(respx_spec)
    route = respx_spec.post(f"{GITHUB}/user/repos").mock(side_effect=[
        httpx.Response(403, json=github_error("You have exceeded a secondary rate limit."), headers={"retry-after": "5"}),
        httpx.Response(201, json=github_repo("octo", name)),
    ])

    await github.provision(ctx)

    assert route.call_count == 2 and 5.0 in fake.sleeps


def boom():
    return off_spec(500, reason="github.json documents no 5xx", json_body=github_error("Server Error"))


async def test_500_twice_then_success_looks_up_before_each_resend_and_counts_three_attempts(respx_offspec, github, ctx):
    name = ctx.session.resource_name
    me(respx_offspec)
    route = respx_offspec.post(f"{GITHUB}/user/repos").mock(
        side_effect=[boom(), boom(), httpx.Response(201, json=github_repo("octo", name))])
    lookup = respx_offspec.get(f"{GITHUB}/repos/octo/{name}").mock(
        return_value=httpx.Response(404, json=github_error("Not Found")))

    await github.provision(ctx)

    assert route.call_count == 3 and lookup.call_count == 2
    assert ctx.attempts == 3  # every create sent is an attempt, not just the first


@pytest.mark.parametrize("failure", ["500", "read-timeout"])
async def test_a_500_after_github_made_the_repo_adopts_it_instead_of_calling_it_not_ours(respx_offspec, github, ctx, runtime, failure):
    """GitHub makes no idempotency promise: a create resent after a 500 that was applied got
    422 "name already exists" and the session refused its own repo."""
    name = ctx.session.resource_name
    me(respx_offspec)
    repos: list[str] = []

    def create(request):
        if repos:
            return httpx.Response(422, json=EXISTS)
        repos.append(name)
        if failure == "read-timeout":
            raise httpx.ReadTimeout("timed out")
        return boom()

    route = respx_offspec.post(f"{GITHUB}/user/repos").mock(side_effect=create)
    respx_offspec.get(f"{GITHUB}/repos/octo/{name}").mock(side_effect=lambda request: httpx.Response(
        200, json=github_repo("octo", name)) if repos else httpx.Response(404, json=github_error("Not Found")))

    outcome = await github.provision(ctx)

    assert route.call_count == 1 and repos == [name]
    assert outcome.env["GITHUB_REPO"] == f"octo/{name}"
    assert [(r.state, r.remote_id) for r in runtime.ledger.resources(ctx.session.key)] == [("created", f"octo/{name}")]


async def test_timeout_after_send_adopts_the_repo_by_name(respx_spec, github, ctx, runtime):
    name = ctx.session.resource_name
    me(respx_spec)
    create = respx_spec.post(f"{GITHUB}/user/repos").mock(side_effect=httpx.ReadTimeout("timed out"))
    lookup = respx_spec.get(f"{GITHUB}/repos/octo/{name}").mock(return_value=httpx.Response(200, json=github_repo("octo", name)))

    outcome = await github.provision(ctx)

    assert create.call_count == 1 and lookup.call_count == 1
    assert outcome.env["GITHUB_REPO"] == f"octo/{name}"
    assert [r.state for r in runtime.ledger.resources(ctx.session.key)] == ["created"]


async def test_422_exists_and_ours_is_adopted(respx_spec, github, ctx, runtime):
    name = ctx.session.resource_name
    runtime.ledger.intend(ctx.session.key, "github", "repo", name)  # an earlier run crashed after its intent
    ctx = provision_context(runtime, ctx.session.key, "github")  # this run starts after it
    me(respx_spec)
    lookup = respx_spec.get(f"{GITHUB}/repos/octo/{name}").mock(side_effect=[
        httpx.Response(404, json=github_error("Not Found")), httpx.Response(200, json=github_repo("octo", name))])
    create = respx_spec.post(f"{GITHUB}/user/repos").mock(return_value=httpx.Response(422, json=EXISTS))

    outcome = await github.provision(ctx)

    assert create.call_count == 1 and lookup.call_count == 2
    assert outcome.env["GITHUB_REPO"] == f"octo/{name}"
    assert f"octo/{name} already exists and this session made it: adopting it" in progress_of(ctx)


async def test_422_exists_after_a_lost_answer_is_ours(respx_spec, github, ctx):
    name = ctx.session.resource_name
    me(respx_spec)
    respx_spec.post(f"{GITHUB}/user/repos").mock(side_effect=[httpx.ReadTimeout("timed out"), httpx.Response(422, json=EXISTS)])
    respx_spec.get(f"{GITHUB}/repos/octo/{name}").mock(side_effect=[
        httpx.Response(404, json=github_error("Not Found")), httpx.Response(200, json=github_repo("octo", name))])

    outcome = await github.provision(ctx)

    assert outcome.env["GITHUB_REPO"] == f"octo/{name}"


async def test_422_exists_and_not_ours_fails_naming_the_repo(respx_spec, github, ctx, runtime):
    name = ctx.session.resource_name
    me(respx_spec)
    respx_spec.post(f"{GITHUB}/user/repos").mock(return_value=httpx.Response(422, json=EXISTS))
    lookup = respx_spec.get(f"{GITHUB}/repos/octo/{name}")

    with pytest.raises(ProviderError) as caught:
        await github.provision(ctx)

    assert f"a repository named octo/{name} already exists and this session did not create it" in str(caught.value)
    assert lookup.call_count == 0
    assert [r.state for r in runtime.ledger.resources(ctx.session.key)] == [ResourceState.DELETED.value]


async def test_401_is_an_authentication_error(respx_spec, github, ctx):
    respx_spec.get(f"{GITHUB}/user").mock(return_value=httpx.Response(401, json=github_error("Bad credentials")))

    with pytest.raises(AuthenticationError, match="GET /user → HTTP 401: Bad credentials .check GITHUB_PROVISIONING_TOKEN"):
        await github.provision(ctx)


async def test_403_on_create_is_not_retried(respx_spec, github, ctx):
    me(respx_spec)
    route = respx_spec.post(f"{GITHUB}/user/repos").mock(
        return_value=httpx.Response(403, json=github_error("Resource not accessible by personal access token")))

    with pytest.raises(AuthenticationError, match="needs the repo scope"):
        await github.provision(ctx)
    assert route.call_count == 1


async def test_a_truncated_create_answer_is_looked_up_by_name(respx_offspec, github, ctx):
    name = ctx.session.resource_name
    me(respx_offspec)
    create = respx_offspec.post(f"{GITHUB}/user/repos").mock(
        return_value=off_spec(201, reason="truncated body", content=b'{"id": 1, "name": "mk0r-'))
    respx_offspec.get(f"{GITHUB}/repos/octo/{name}").mock(return_value=httpx.Response(200, json=github_repo("octo", name)))

    outcome = await github.provision(ctx)

    assert create.call_count == 1 and outcome.env["GITHUB_REPO"] == f"octo/{name}"


# -- teardown ------------------------------------------------------------------------------------


def row(full_name: str | None, name: str = "mk0r-abc") -> ResourceRow:
    return ResourceRow(None, None, "github", "repo", name, full_name, None, "created")


async def test_teardown_deletes_the_repo(respx_spec, github):
    route = respx_spec.delete(f"{GITHUB}/repos/octo/mk0r-abc").mock(return_value=httpx.Response(204))
    assert await github.teardown(row("octo/mk0r-abc")) is True
    assert route.call_count == 1


async def test_teardown_of_a_missing_repo_is_done(respx_spec, github):
    respx_spec.delete(f"{GITHUB}/repos/octo/mk0r-abc").mock(return_value=httpx.Response(404, json=github_error("Not Found")))
    assert await github.teardown(row("octo/mk0r-abc")) is False


async def test_teardown_of_a_pending_row_uses_the_owner_and_name(respx_spec, github):
    me(respx_spec)
    route = respx_spec.delete(f"{GITHUB}/repos/octo/mk0r-abc").mock(return_value=httpx.Response(204))
    assert await github.teardown(row(None)) is True
    assert route.call_count == 1


async def test_teardown_403_names_the_missing_scope_and_the_org_policy(respx_spec, github):
    respx_spec.delete(f"{GITHUB}/repos/octo/mk0r-abc").mock(
        return_value=httpx.Response(403, json=github_error("Must have admin rights to Repository.")))

    with pytest.raises(AuthenticationError) as caught:
        await github.teardown(row("octo/mk0r-abc"))

    text = str(caught.value)
    assert text.startswith("DELETE /repos/octo/mk0r-abc → HTTP 403: Must have admin rights to Repository.")
    assert "delete_repo scope" in text and "organisation does not let members delete" in text


async def test_teardown_refuses_a_repo_that_is_not_ours(github):
    with pytest.raises(ProviderError, match="not an mk0r repository"):
        await github.teardown(row("octo/important"))


# -- discovery -----------------------------------------------------------------------------------


async def test_discovery_follows_link_pagination(respx_spec, github):
    def page(items, next_page: int | None):
        headers = {}
        if next_page:
            headers["link"] = (f'<{GITHUB}/user/repos?affiliation=owner&per_page=2&page={next_page}>; rel="next", '
                               f'<{GITHUB}/user/repos?affiliation=owner&per_page=2&page=3>; rel="last"')
        return httpx.Response(200, json=items, headers=headers)

    github.page_size = 2
    route = respx_spec.get(f"{GITHUB}/user/repos").mock(side_effect=[
        page([github_repo_item("octo", "mk0r-aaa"), github_repo_item("octo", "blog")], 2),
        page([github_repo_item("octo", "mk0r-bbb"), github_repo_item("octo", "mk0r-ccc")], 3),
        page([github_repo_item("octo", "mk0r-ddd", created_at="2024-06-01T12:00:00Z")], None),
    ])

    found = await github.discover()

    assert [f.remote_id for f in found] == ["octo/mk0r-aaa", "octo/mk0r-bbb", "octo/mk0r-ccc", "octo/mk0r-ddd"]
    assert [c.request.url.params.get("page") for c in route.calls] == [None, "2", "3"]
    assert found[-1].created_at == 1717243200.0


async def test_discovery_never_follows_a_link_to_another_host(respx_spec, github):
    respx_spec.get(f"{GITHUB}/user/repos").mock(return_value=httpx.Response(
        200, json=[], headers={"link": '<https://evil.example/user/repos?page=2>; rel="next"'}))

    with pytest.raises(ProviderError, match="points away from"):
        await github.discover()


async def test_discovery_of_an_organisation(respx_spec, runtime, fake):
    provider = make(runtime, fake, github_owner="acme")
    route = respx_spec.get(f"{GITHUB}/orgs/acme/repos").mock(
        return_value=httpx.Response(200, json=[github_repo_item("acme", "mk0r-zzz")]))

    found = await provider.discover()

    assert [f.remote_id for f in found] == ["acme/mk0r-zzz"] and route.calls[0].request.url.params["type"] == "all"
    await provider.aclose()


async def test_discovery_stops_at_a_next_link_seen_before_and_lists_each_repo_once(respx_spec, github):
    # issue 9: an endless `Link: next` (a page linking to itself) made one repo appear 1,000 times
    respx_spec.get(f"{GITHUB}/user/repos").mock(return_value=httpx.Response(
        200, json=[github_repo_item("octo", "mk0r-aaa")],
        headers={"link": f'<{GITHUB}/user/repos?affiliation=owner&per_page=100&page=2>; rel="next"'}))

    found = await github.discover()

    assert [f.remote_id for f in found] == ["octo/mk0r-aaa"]
    assert len(respx_spec.calls) == 2  # the first page, then page 2 once: it links to itself
    assert any("already read" in w for w in github.discovery_warnings)


async def test_discovery_gives_up_after_the_page_cap_and_says_so(respx_spec, github):
    pages = iter(range(2, 10_000))

    def endless(request):
        return httpx.Response(200, json=[github_repo_item("octo", "mk0r-aaa")], headers={
            "link": f'<{GITHUB}/user/repos?affiliation=owner&per_page=100&page={next(pages)}>; rel="next"'})

    github.max_pages = 5
    respx_spec.get(f"{GITHUB}/user/repos").mock(side_effect=endless)

    found = await github.discover()

    assert len(respx_spec.calls) == 5
    assert [f.remote_id for f in found] == ["octo/mk0r-aaa"]  # deduplicated by repo id
    assert any("after 5 pages" in w for w in github.discovery_warnings)


# -- redirects, App installation tokens, the create budget, permission hints ---------------------


def moved(status: int, repo_id: int):
    return httpx.Response(status, json=github_error("Moved Permanently" if status == 301 else "Temporary Redirect"),
                          headers={"Location": f"{GITHUB}/repositories/{repo_id}"})


async def test_a_delete_answered_307_is_never_followed_and_names_the_moved_repo(respx_spec, github):
    """gh stopped following a redirect into a delete (cli/cli#7106): a renamed repo is not ours to delete."""
    # the look-up before the delete still found it (renamed in between): the DELETE's 307 is not followed either
    respx_spec.get(f"{GITHUB}/repos/octo/mk0r-abc").mock(return_value=httpx.Response(200, json=github_repo("octo", "mk0r-abc", id=4242)))
    delete = respx_spec.delete(f"{GITHUB}/repos/octo/mk0r-abc").mock(return_value=moved(307, 4242))
    elsewhere = respx_spec.route(url__startswith=f"{GITHUB}/repositories/").mock(return_value=httpx.Response(204))
    resource = ResourceRow(None, None, "github", "repo", "mk0r-abc", "octo/mk0r-abc", None, "created", meta={"repo_id": 4242})

    with pytest.raises(ProviderError) as caught:
        await github.teardown(resource)

    assert delete.call_count == 1 and elsewhere.call_count == 0
    assert "id 4242, the one this session created) was renamed or transferred; not deleting it" in str(caught.value)


async def test_a_reprovision_answered_301_neither_adopts_nor_creates(respx_spec, github, ctx, runtime):
    name = ctx.session.resource_name
    me(respx_spec)
    create = respx_spec.post(f"{GITHUB}/user/repos").mock(return_value=httpx.Response(201, json=github_repo("octo", name)))
    await github.provision(ctx)
    (row,) = runtime.ledger.resources(ctx.session.key)
    respx_spec.get(f"{GITHUB}/repos/octo/{name}").mock(return_value=moved(301, row.meta["repo_id"]))

    with pytest.raises(ProviderError, match="renamed or transferred; not adopting it"):
        await github.provision(ctx)

    assert create.call_count == 1


async def test_an_app_installation_token_takes_the_owner_from_github_owner_and_never_asks_for_a_user(respx_spec, runtime, fake, ctx):
    provider = GitHubProvider(settings=load_settings(github_owner="acme", github_mutation_gap_s=0),
                              credentials=keyed(GITHUB_PROVISIONING_TOKEN="ghs_installation_0123456789"), clock=fake.clock)
    user = me(respx_spec)
    create = respx_spec.post(f"{GITHUB}/orgs/acme/repos").mock(
        return_value=httpx.Response(201, json=github_repo("acme", ctx.session.resource_name)))

    outcome = await provider.provision(ctx)

    assert user.call_count == 0 and create.call_count == 1
    assert outcome.env["GITHUB_REPO"] == f"acme/{ctx.session.resource_name}"
    await provider.aclose()


async def test_an_app_installation_token_without_github_owner_fails_clearly_before_any_request(respx_spec, runtime, fake, ctx):
    provider = GitHubProvider(settings=load_settings(), credentials=keyed(GITHUB_PROVISIONING_TOKEN="ghs_installation_0123456789"),
                              clock=fake.clock)
    user = me(respx_spec)

    with pytest.raises(ProviderError, match="set GITHUB_OWNER"):
        await provider.provision(ctx)

    assert user.call_count == 0
    await provider.aclose()


async def test_repo_creates_of_all_sessions_stay_within_80_a_minute_and_500_an_hour():
    """GitHub's content-creation windows as the client asks for them: 600 creates at once."""
    from mk0r_tui.core.budgets import memory_budgets

    clock = FakeClock()
    provider = GitHubProvider(settings=load_settings(github_mutation_gap_s=0), credentials=keyed(GITHUB_PROVISIONING_TOKEN=TOKEN),
                              clock=clock.clock)
    lane, rules = provider.api.rules_for("POST", "/user/repos")
    budgets = memory_budgets(clock.now, clock.sleep)
    sent: list[float] = []

    async def one():
        grant = await budgets.acquire(lane, rules, label="GitHub's rate limit")
        sent.append(clock.now())
        budgets.release(grant)

    import asyncio

    await asyncio.gather(*(one() for _ in range(600)))

    sent.sort()
    assert max(sum(1 for t in sent if s <= t < s + 60) for s in sent) <= 80
    assert max(sum(1 for t in sent if s <= t < s + 3600) for s in sent) <= 500
    assert len(sent) == 600 and sent[-1] - sent[0] >= 3600  # the 501st waited for the hour
    assert provider.api.rules_for("GET", "/user")[1][-1].windows == ()  # reads spend no create budget


async def test_a_403_names_the_permission_github_asked_for(respx_offspec, github, ctx):
    me(respx_offspec)
    respx_offspec.post(f"{GITHUB}/user/repos").mock(return_value=httpx.Response(
        403, json=github_error("Resource not accessible by personal access token"),
        headers={"X-Accepted-GitHub-Permissions": "administration=write"}))

    with pytest.raises(AuthenticationError) as caught:
        await github.provision(ctx)

    assert "Administration: write" in str(caught.value) and "approv" in str(caught.value)
