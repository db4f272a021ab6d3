"""GitHub: one private, empty repository per session, `mk0r-<slug>`, for the token's user or for
the organisation in `GITHUB_OWNER`. The base URL is configurable, so GitHub Enterprise Server
works (`MK0R_GITHUB_API_URL=https://ghe.example.com/api/v3`).

GitHub's rules for integrators shape the client: mutating requests one at a time per token with
a gap, `retry-after` honoured, else `x-ratelimit-reset` when the budget is spent, else at least a
minute before retrying a secondary limit.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pydantic import BaseModel

from mk0r_tui.core.doctor import AuthCheck
from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import RESOURCE_PREFIX, FoundResource, ProvisionOutcome, ResourceRef, Slot
from mk0r_tui.providers.base import ProvisionContext
from mk0r_tui.providers.http import (
    ApiClient,
    CloudProvider,
    create_or_adopt,
    created_but_unreadable,
    dropped_if_refused,
    iso_epoch,
    parse_model,
)

API_VERSION = "2022-11-28"
REQUIRED_SCOPES = ("repo", "delete_repo")
DELETE_HINT = (
    "the token lacks the delete_repo scope (classic token: `gh auth refresh -s delete_repo`; fine-grained: "
    "Administration: read and write), or the organisation does not let members delete repositories"
)


class _Owner(BaseModel):
    login: str


class _Repo(BaseModel):
    id: int
    name: str
    full_name: str
    html_url: str
    clone_url: str
    private: bool
    owner: _Owner


class _RepoItem(BaseModel):
    id: int
    name: str
    full_name: str
    created_at: str | None = None


class _User(BaseModel):
    login: str


def _hint(status: int, message: str, call: str) -> str | None:
    if status == 401:
        return "check GITHUB_PROVISIONING_TOKEN: GitHub did not accept it (expired or revoked?)"
    if status == 403 and call.startswith("DELETE"):
        return DELETE_HINT
    if status == 403:
        return "the token may not create repositories here: it needs the repo scope (and org membership for GITHUB_OWNER)"
    if status == 404 and "/orgs/" in call:
        return "check GITHUB_OWNER: no such organisation, or the token cannot see it"
    return None


def _already_exists(exc: ProviderError) -> bool:
    return exc.status == 422 and "already exists" in str(exc.args[0]).lower()



class GitHubProvider(CloudProvider):
    name: ClassVar[str] = "github"
    slot: ClassVar[Slot] = Slot.REPO
    env_keys: ClassVar[tuple[str, ...]] = ("GITHUB_REPO", "GITHUB_REPO_URL", "GIT_REMOTE_URL")
    key_name = "GITHUB_PROVISIONING_TOKEN"
    kind = "repo"
    page_size = 100
    _login: str | None = None
    _login_lookup: "asyncio.Task[str] | None" = None

    def build_client(self) -> ApiClient:
        return self.client_for(
            self.settings.github_api_url,
            headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION},
            hinter=_hint,
            unhinted_rate_limit_wait_s=60.0,
            mutation_gap_s=self.settings.github_mutation_gap_s,
        )

    async def owner(self, ctx: ProvisionContext | None = None) -> str:
        """GITHUB_OWNER, else the token's own login, asked once per process. Sessions that start
        together share the first one's `GET /user` (its answer or its error) instead of each
        sending one: 100 sessions at once otherwise queue 100 of them ahead of the first create."""
        if self.settings.github_owner:
            return self.settings.github_owner
        if self._login is not None:
            return self._login
        loop = asyncio.get_running_loop()
        lookup = self._login_lookup
        if lookup is None or lookup.get_loop() is not loop:  # the CLI may run several loops
            lookup = loop.create_task(self._ask_login(ctx))
            lookup.add_done_callback(self._login_lookup_done)
            self._login_lookup = lookup
        return await asyncio.shield(lookup)

    async def _ask_login(self, ctx: ProvisionContext | None) -> str:
        response = await self.api.request("GET", "/user", ctx=ctx)
        self._login = parse_model(response, _User, "GET /user").login
        return self._login

    def _login_lookup_done(self, lookup: "asyncio.Task[str]") -> None:
        """A failed lookup is forgotten, so a later provision asks again."""
        if self._login_lookup is lookup:
            self._login_lookup = None

    # -- provision ------------------------------------------------------------------------

    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome:
        name = ctx.session.resource_name
        other = ctx.owned_by_other_session(self.kind, name)
        if other:
            raise ProviderError(f"the repository {name} belongs to session {other!r}", call="POST /user/repos")
        owner = await self.owner(ctx)
        prior = ctx.existing(self.kind, name)
        row = ctx.intend(self.kind, name)
        repo = await self._get(ctx, f"{owner}/{name}") if prior is not None else None
        if repo is not None:
            ctx.progress(f"adopting {repo.full_name}, made by an earlier run of this session")
        else:
            lost_answer = False

            async def create() -> _Repo:
                nonlocal lost_answer
                try:
                    return await self._create(ctx, owner, name)
                except ProviderError as exc:
                    lost_answer = lost_answer or exc.outcome_unknown
                    if not _already_exists(exc):
                        raise
                    return await self._adopt_existing(ctx, owner, name, ours=prior is not None or lost_answer, error=exc)

            with dropped_if_refused(ctx.ledger, row):
                repo = await create_or_adopt(
                    ctx, f"repository {owner}/{name}", create, lambda: self._get(ctx, f"{owner}/{name}"),
                    attempts=self.settings.max_attempts, clock=self.clock,
                )
        ctx.created(row, repo.full_name, url=repo.html_url, meta={"owner": repo.owner.login, "repo_id": repo.id})
        return ProvisionOutcome(
            env={"GITHUB_REPO": repo.full_name, "GITHUB_REPO_URL": repo.html_url, "GIT_REMOTE_URL": repo.clone_url},
            resources=(ResourceRef(self.name, self.kind, name, repo.full_name, repo.html_url),),
        )

    def _create_path(self) -> str:
        return f"/orgs/{self.settings.github_owner}/repos" if self.settings.github_owner else "/user/repos"

    async def _create(self, ctx: ProvisionContext, owner: str, name: str) -> _Repo:
        path = self._create_path()
        ctx.progress(f"creating private repository {owner}/{name}")
        response = await self.api.request(
            "POST", path, ctx=ctx, json={"name": name, "private": True, "auto_init": False}, main=True,
        )
        try:
            return parse_model(response, _Repo, f"POST {path}")
        except ProviderError as exc:
            raise created_but_unreadable(exc) from None

    async def _adopt_existing(self, ctx: ProvisionContext, owner: str, name: str, *, ours: bool, error: ProviderError) -> _Repo:
        """GitHub says the name is taken: adopt the repository only if this session made it."""
        full_name = f"{owner}/{name}"
        if not ours:
            raise ProviderError(
                f"a repository named {full_name} already exists and this session did not create it",
                call=error.call, status=422,
                hint="delete or rename that repository, or provision with another session key",
            )
        repo = await self._get(ctx, full_name)
        if repo is None:
            raise ProviderError(f"GitHub says {full_name} exists but it cannot be read", call=f"GET /repos/{full_name}", status=404,
                                hint="the token may lack access to it")
        ctx.progress(f"{full_name} already exists and this session made it: adopting it")
        return repo

    async def _get(self, ctx: ProvisionContext | None, full_name: str) -> _Repo | None:
        response = await self.api.request("GET", f"/repos/{full_name}", ctx=ctx, accept=(404,))
        if response.status_code == 404:
            return None
        return parse_model(response, _Repo, f"GET /repos/{full_name}")

    # -- teardown, discovery, doctor -------------------------------------------------------

    async def teardown(self, resource: ResourceRow) -> bool:
        full_name = resource.remote_id or f"{await self.owner()}/{resource.name}"
        if "/" not in full_name or not full_name.split("/", 1)[1].startswith(RESOURCE_PREFIX):
            raise ProviderError(f"refusing to delete {full_name!r}: not an mk0r repository", call="DELETE /repos")
        response = await self.api.request("DELETE", f"/repos/{full_name}", accept=(404,))
        return response.status_code != 404

    async def discover(self) -> list[FoundResource]:
        if self.settings.github_owner:
            path, params = f"/orgs/{self.settings.github_owner}/repos", {"type": "all", "per_page": self.page_size}
        else:
            path, params = "/user/repos", {"affiliation": "owner", "per_page": self.page_size}
        found: list[FoundResource] = []
        url: str | None = path
        base = self.settings.github_api_url.rstrip("/")
        pages = 0
        while url is not None:
            response = await self.api.request("GET", url, params=params if url == path else None, label=f"GET {path}")
            items = parse_model(response, list[_RepoItem], f"GET {path}")
            found.extend(
                FoundResource(self.name, self.kind, item.name, item.full_name, iso_epoch(item.created_at))
                for item in items if item.name.startswith(RESOURCE_PREFIX)
            )
            pages += 1
            next_url = response.links.get("next", {}).get("url")
            if next_url and not next_url.startswith(base + "/"):
                raise ProviderError(f"the next page points away from {base}; not following it", call=f"GET {path}")
            url = next_url if next_url and pages < 1000 else None
        return found

    async def check_auth(self) -> AuthCheck:
        response = await self.api.request("GET", "/user")
        login = parse_model(response, _User, "GET /user").login
        header = response.headers.get("x-oauth-scopes")
        if header is None:
            return AuthCheck(ok=True, detail=f"authenticated as {login} (fine-grained token: scopes are not reported; "
                                              "it needs Administration: read and write to create and delete repositories)")
        scopes = {s.strip() for s in header.split(",") if s.strip()}
        missing = [s for s in REQUIRED_SCOPES if s not in scopes]
        problems = tuple(f"token lacks the {s} scope" + (" (teardown cannot delete repositories)" if s == "delete_repo" else
                                                         " (cannot create private repositories)") for s in missing)
        return AuthCheck(ok=True, detail=f"authenticated as {login}; scopes: {', '.join(sorted(scopes)) or 'none'}",
                         problems=problems)

