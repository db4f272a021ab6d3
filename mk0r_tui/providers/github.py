"""GitHub: one private, empty repository per session, `mk0r-<slug>`, for the token's user or for
the organisation in `GITHUB_OWNER`. The base URL is configurable, so GitHub Enterprise Server
works (`MK0R_GITHUB_API_URL=https://ghe.example.com/api/v3`).

GitHub's rules for integrators shape the client: mutating requests one at a time per token with
a gap, `retry-after` honoured, else `x-ratelimit-reset` when the budget is spent, else at least a
minute before retrying a secondary limit. GitHub's secondary rate limits also cap content
creation (about 80 requests a minute and 500 an hour): repo creates of every session of every
process sharing the data dir or ledger spend one budget per token (core/budgets.py:
`MK0R_GITHUB_CREATES_PER_MIN`, `MK0R_GITHUB_CREATES_PER_HOUR`), and so do the mutations' one at a
time and their gap, counted start to start.

A renamed or transferred repository answers `301` (GET) or `307` (DELETE) pointing at
`/repositories/{id}`. Redirects are never followed (httpx does not by default, and gh stopped
following one into a delete, cli/cli#7106): the id is compared with the one recorded at create
time, and a repository that moved is neither adopted nor deleted; the operator is told where it
went.

A GitHub App installation token (`ghs_...`) cannot call `GET /user` or `/user/repos`: the owner
comes from `GITHUB_OWNER`, which such a token requires. Fine-grained tokens report no scopes;
a 403 names the permissions GitHub wanted (`X-Accepted-GitHub-Permissions`).
"""

from __future__ import annotations

import asyncio
import re
from typing import ClassVar

import httpx
from pydantic import BaseModel

from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import RESOURCE_PREFIX, FoundResource, HandoffAnswer, ProvisionOutcome, ResourceRef, Slot
from mk0r_tui.core.provider import AuthCheck, PoolRename, ProvisionContext, parse_owner_mark
from mk0r_tui.providers.http import (
    ApiClient,
    CloudProvider,
    create_or_adopt,
    created_but_unreadable,
    dropped_if_refused,
    iso_epoch,
    lookup_failed,
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


class _MinimalRepo(BaseModel):
    id: int
    name: str
    full_name: str
    html_url: str | None = None
    owner: _Owner


class _Invitation(BaseModel):
    id: int
    html_url: str | None = None
    expired: bool | None = None


class _RepoItem(BaseModel):
    id: int
    name: str
    full_name: str
    created_at: str | None = None
    description: str | None = None


class _User(BaseModel):
    login: str


#: GitHub's secondary limits on content creation (docs: "Rate limits for the REST API": "no more
#: than 80 content-generating requests per minute and no more than 500 content-generating requests
#: per hour"); the defaults of MK0R_GITHUB_CREATES_PER_MIN / _PER_HOUR
CREATES_PER_MINUTE = 80
CREATES_PER_HOUR = 500


def _redirect_id(location: str | None) -> int | None:
    found = re.search(r"/repositories/(\d+)", location or "")
    return int(found.group(1)) if found else None


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


#: GitHub: "each repository can have at most 50 invitations per day" (collaborators)
INVITES_PER_REPO_PER_DAY = 50
#: GitHub: a transfer of a personal repository to another user waits for that user to accept it
#: (an email with a link); the request lapses after a day ("About repository transfers")
TRANSFER_ACCEPT_S = 86400.0


def _already_exists(exc: ProviderError) -> bool:
    return exc.status == 422 and "already exists" in str(exc.args[0]).lower()



class GitHubProvider(CloudProvider):
    name = "github"
    poolable = True
    owner_marks: ClassVar[str] = "mark"
    slot = Slot.REPO
    env_keys = ("GITHUB_REPO", "GITHUB_REPO_URL", "GIT_REMOTE_URL")
    key_name = "GITHUB_PROVISIONING_TOKEN"
    kind = "repo"
    page_size = 100
    #: discovery reads at most this many pages (100 repos each) of a listing
    max_pages = 100
    handoff_calls = frozenset({"transfer", "invite", "follow_transfer"})
    discovery_warnings: list[str] = []
    _login: str | None = None
    _login_lookup: asyncio.Task[str] | None = None

    @property
    def installation_token(self) -> bool:
        """A GitHub App installation token: no `GET /user`, no `/user/repos`."""
        return bool(self.key.value and self.key.value.startswith("ghs_"))

    def build_client(self) -> ApiClient:
        return self.client_for(
            self.settings.github_api_url,
            headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION},
            hinter=_hint,
            unhinted_rate_limit_wait_s=60.0,
            mutation_gap_s=self.settings.github_mutation_gap_s,
            counts_as_create=self._is_create,
            create_windows=((1.0, self.settings.github_creates_per_minute), (60.0, self.settings.github_creates_per_hour)),
        )

    def _is_create(self, method: str, path: str) -> bool:
        return method.upper() == "POST" and path == self._create_path()

    async def owner(self, ctx: ProvisionContext | None = None) -> str:
        """GITHUB_OWNER, else the token's own login, asked once per process. Sessions that start
        together share the first one's `GET /user` (its answer or its error) instead of each
        sending one: 100 sessions at once otherwise queue 100 of them ahead of the first create."""
        if self.settings.github_owner:
            return self.settings.github_owner
        if self.installation_token:
            raise ProviderError(
                "a GitHub App installation token has no user: set GITHUB_OWNER", call="GET /user",
                hint="set GITHUB_OWNER to the organisation the app is installed on (installation tokens cannot "
                     "call GET /user or create repositories under /user/repos)",
            )
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

    def _login_lookup_done(self, lookup: asyncio.Task[str]) -> None:
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
        row = await ctx.intend(self.kind, name)
        recorded_id = (prior.meta or {}).get("repo_id") if prior is not None else None
        repo = await self._get(ctx, f"{owner}/{name}", recorded_id=recorded_id) if prior is not None else None
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

            async with dropped_if_refused(ctx, row):
                repo = await create_or_adopt(
                    ctx, f"repository {owner}/{name}", create, lambda: self._get(ctx, f"{owner}/{name}"),
                    attempts=self.settings.max_attempts, clock=self.clock,
                )
        await ctx.created(row, repo.full_name, url=repo.html_url, meta={"owner": repo.owner.login, "repo_id": repo.id})
        return ProvisionOutcome(
            env={"GITHUB_REPO": repo.full_name, "GITHUB_REPO_URL": repo.html_url, "GIT_REMOTE_URL": repo.clone_url},
            resources=(ResourceRef(self.name, self.kind, name, repo.full_name, repo.html_url),),
        )

    def _create_path(self) -> str:
        return f"/orgs/{self.settings.github_owner}/repos" if self.settings.github_owner else "/user/repos"

    async def _create(self, ctx: ProvisionContext, owner: str, name: str) -> _Repo:
        path = self._create_path()
        ctx.progress(f"creating private repository {owner}/{name}")
        row = ctx.existing(self.kind, name)

        async def late(answer: httpx.Response) -> None:
            """The repository was made after the session gave up: record it, so teardown and
            orphans know it (never an orphan)."""
            try:
                repo = parse_model(answer, _Repo, f"POST {path}")
            except ProviderError:
                return
            if row is not None:
                await ctx.created(row, repo.full_name, url=repo.html_url, meta={"owner": repo.owner.login, "repo_id": repo.id})

        response = await self.api.request(
            "POST", path, ctx=ctx, json={"name": name, "private": True, "auto_init": False, "description": ctx.owner_mark},
            main=True, late=late,
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
        try:
            repo = await self._get(ctx, full_name)
        except ProviderError as exc:  # the look-up's answer, not the create's: unknown, left pending
            raise lookup_failed(exc) from None
        if repo is None:
            raise lookup_failed(ProviderError(f"GitHub says {full_name} exists but it cannot be read", call=f"GET /repos/{full_name}",
                                              status=404, hint="the token may lack access to it"))
        ctx.progress(f"{full_name} already exists and this session made it: adopting it")
        return repo

    async def _get(self, ctx: ProvisionContext | None, full_name: str, *, recorded_id: int | None = None) -> _Repo | None:
        response = await self.api.request("GET", f"/repos/{full_name}", ctx=ctx, accept=(404, 301))
        if response.status_code == 404:
            return None
        if response.status_code == 301:
            raise self._moved(response, full_name, recorded_id, "GET", "adopting")
        return parse_model(response, _Repo, f"GET /repos/{full_name}")

    @staticmethod
    def _moved(response: httpx.Response, full_name: str, recorded_id: int | None, method: str, doing: str) -> ProviderError:
        """A 301/307: the repository was renamed or transferred. Not followed, whatever it is."""
        moved_id = _redirect_id(response.headers.get("location"))
        if recorded_id is not None and moved_id == int(recorded_id):
            what = f"{full_name} (id {moved_id}, the one this session created) was renamed or transferred"
        else:
            what = f"{full_name} now redirects to repository id {moved_id}, which this session did not record"
        return ProviderError(
            f"{what}; not {doing} it", call=f"{method} /repos/{full_name}", status=response.status_code,
            hint="GitHub redirects a renamed or transferred repository; mk0r never follows a redirect into a "
                 "change: delete or rename it by hand, then run `mk0r-tui orphans`",
        )

    async def pool_rename(self, row: ResourceRow, new_name: str) -> PoolRename | None:
        """`PATCH /repos/{owner}/{pool name}` with `name: mk0r-<slug>`. GitHub redirects the old
        name (web, API and git clone/fetch/push) to the new one, so the `.env` written at the
        claim (the pool name's URLs) works meanwhile; the new URLs replace them after this.
        Idempotent: when the pool name is gone (a 301 or 404: renamed by an earlier try whose
        answer was lost), the new name is looked up and must be the recorded repository."""
        full_name, recorded_id = self._recorded(row)
        owner = full_name.split("/", 1)[0]
        response = await self.api.request("PATCH", f"/repos/{full_name}", json={"name": new_name}, accept=(301, 307, 404))
        if response.status_code in (301, 307, 404):
            repo = await self._get(None, f"{owner}/{new_name}", recorded_id=recorded_id)
            if repo is None or (recorded_id is not None and repo.id != recorded_id):
                raise ProviderError(
                    f"{full_name} cannot be renamed to {new_name}: it is gone or moved, and {owner}/{new_name} is not it",
                    call=f"PATCH /repos/{full_name}", status=response.status_code,
                )
        else:
            repo = parse_model(response, _Repo, f"PATCH /repos/{full_name}")
        return PoolRename(
            remote_id=repo.full_name, url=repo.html_url,
            env={"GITHUB_REPO": repo.full_name, "GITHUB_REPO_URL": repo.html_url, "GIT_REMOTE_URL": repo.clone_url},
        )

    # -- teardown, discovery, doctor -------------------------------------------------------

    async def teardown(self, resource: ResourceRow) -> bool:
        full_name = resource.remote_id or f"{await self.owner()}/{resource.name}"
        if "/" not in full_name or not full_name.split("/", 1)[1].startswith(RESOURCE_PREFIX):
            raise ProviderError(f"refusing to delete {full_name!r}: not an mk0r repository", call="DELETE /repos")
        recorded_id = (resource.meta or {}).get("repo_id")
        if recorded_id is not None:
            # before a delete, the repo is looked up and must still be the one we recorded, under
            # our owner and name: a renamed or transferred repo (301), or another repo now holding
            # the name, is refused with where it went
            looked = await self.api.request("GET", f"/repos/{full_name}", accept=(404, 301))
            if looked.status_code == 404:
                return False
            if looked.status_code == 301:
                raise self._moved(looked, full_name, recorded_id, "GET", "deleting")
            repo = parse_model(looked, _Repo, f"GET /repos/{full_name}")
            if repo.id != int(recorded_id) or repo.full_name.lower() != full_name.lower():
                raise ProviderError(
                    f"{full_name} is now repository id {repo.id} ({repo.full_name}), not the one this session created "
                    f"(id {recorded_id}); not deleting it", call=f"GET /repos/{full_name}",
                    hint="the session's repository was renamed or transferred and another took its name: delete by hand",
                )
        response = await self.api.request("DELETE", f"/repos/{full_name}", accept=(404, 307))
        if response.status_code == 307:
            raise self._moved(response, full_name, (resource.meta or {}).get("repo_id"), "DELETE", "deleting")
        return response.status_code != 404

    # -- hand-off (issue 18) ------------------------------------------------------------

    def _recorded(self, resource: ResourceRow) -> tuple[str, int | None]:
        full_name = resource.remote_id or ""
        if "/" not in full_name or not full_name.split("/", 1)[1].startswith(RESOURCE_PREFIX):
            raise ProviderError(f"refusing to hand off {full_name or resource.name!r}: not a recorded mk0r repository",
                                call="POST /repos/{owner}/{repo}/transfer")
        recorded = (resource.meta or {}).get("repo_id")
        return full_name, int(recorded) if recorded is not None else None

    async def transfer(self, resource: ResourceRow, new_owner: str, *, new_name: str | None = None) -> HandoffAnswer:
        """`POST /repos/{owner}/{repo}/transfer` (202, finished asynchronously; a mutation, so
        it waits for GitHub's mutation gap). To an organisation the token may create repos in,
        the answer already names the new owner: `transferred`. To a user, GitHub's answer still
        names the original owner and the user must accept (an email link, within a day):
        `claim_pending`, followed by `follow_transfer`."""
        full_name, recorded_id = self._recorded(resource)
        body: dict[str, object] = {"new_owner": new_owner}
        if new_name:
            body["new_name"] = new_name
        call = f"POST /repos/{full_name}/transfer"
        response = await self.api.request("POST", f"/repos/{full_name}/transfer", json=body, accept=(307,))
        if response.status_code == 307:
            raise self._moved(response, full_name, recorded_id, "POST", "transferring")
        repo = parse_model(response, _MinimalRepo, call)
        if recorded_id is not None and repo.id != recorded_id:
            raise ProviderError(f"GitHub answered for repository id {repo.id}, not {recorded_id}", call=call)
        detail = {"repo_id": repo.id, "from": full_name, "to": f"{new_owner}/{new_name or repo.name}",
                  "asked_at": self.clock.now(), "expires_at": self.clock.now() + TRANSFER_ACCEPT_S}
        url = f"https://github.com/{new_owner}/{new_name or repo.name}"
        if repo.owner.login.lower() == new_owner.lower():
            return HandoffAnswer("transferred", new_owner, None, {**detail, "url": url})
        return HandoffAnswer(
            "claim_pending", new_owner, None, detail,
            note=f"{new_owner} must accept the transfer (GitHub emails them a link; it lapses after a day); "
                 f"until then {full_name} stays ours",
        )

    async def follow_transfer(self, resource: ResourceRow) -> HandoffAnswer:
        """Where a pending transfer stands: the repo under its new name with the recorded id is
        `transferred`; still under ours after the deadline, `kept` (the request lapsed)."""
        detail = dict(resource.handoff_detail or {})
        target = str(detail.get("to") or "")
        recorded = detail.get("repo_id")
        if target:
            found = await self.api.request("GET", f"/repos/{target}", accept=(404, 301))
            if found.status_code == 200:
                repo = parse_model(found, _Repo, f"GET /repos/{target}")
                if recorded is None or repo.id == int(recorded):
                    return HandoffAnswer("transferred", repo.owner.login, None, {**detail, "url": repo.html_url})
        if self.clock.now() >= float(detail.get("expires_at") or 0):
            return HandoffAnswer("kept", None, None, {**detail, "expired": True},
                                 note="the transfer was not accepted in time; the repository is still ours")
        return HandoffAnswer("claim_pending", resource.handoff_owner, None, detail,
                             note=f"waiting for {resource.handoff_owner} to accept the transfer")

    async def invite(self, resource: ResourceRow, login: str, *, permission: str = "admin") -> HandoffAnswer:
        """`PUT /repos/{owner}/{repo}/collaborators/{username}`: the repo stays ours, the
        creator gets `permission` once they accept (201: an invitation; 204: they already had
        access). GitHub allows 50 invitations per repository per day."""
        full_name, _ = self._recorded(resource)
        call = f"PUT /repos/{full_name}/collaborators/{login}"
        response = await self.api.request("PUT", f"/repos/{full_name}/collaborators/{login}",
                                          json={"permission": permission}, accept=(307,))
        if response.status_code == 307:
            raise self._moved(response, full_name, self._recorded(resource)[1], "PUT", "inviting to")
        if response.status_code == 204:
            return HandoffAnswer("invited", login, None, {"permission": permission},
                                 note=f"{login} already has access to {full_name}")
        invitation = parse_model(response, _Invitation, call)
        return HandoffAnswer("invited", login, invitation.html_url, {"permission": permission, "invitation_id": invitation.id},
                             note=f"{login} must accept the invitation; {full_name} stays ours (teardown deletes it)")

    async def discover(self) -> list[FoundResource]:
        if self.settings.github_owner:
            path, params = f"/orgs/{self.settings.github_owner}/repos", {"type": "all", "per_page": self.page_size}
        else:
            path, params = "/user/repos", {"affiliation": "owner", "per_page": self.page_size}
        found: dict[int, FoundResource] = {}
        url: str | None = path
        base = self.settings.github_api_url.rstrip("/")
        pages = 0
        seen_urls: set[str] = set()
        self.discovery_warnings = []
        while url is not None:
            seen_urls.add(url)
            response = await self.api.request("GET", url, params=params if url == path else None, label=f"GET {path}")
            items = parse_model(response, list[_RepoItem], f"GET {path}")
            for item in items:  # by repo id: a page served twice never lists a repo twice
                if item.name.startswith(RESOURCE_PREFIX) and item.id not in found:
                    found[item.id] = FoundResource(
                        self.name, self.kind, item.name, item.full_name, iso_epoch(item.created_at),
                        owner=parse_owner_mark(item.description),
                    )
            pages += 1
            next_url = response.links.get("next", {}).get("url")
            if next_url and not next_url.startswith(base + "/"):
                raise ProviderError(f"the next page points away from {base}; not following it", call=f"GET {path}")
            if next_url and next_url in seen_urls:
                self.discovery_warnings.append(
                    f"github: GET {path} page {pages} links to a page already read ({next_url}); stopped there"
                )
                next_url = None
            elif next_url and pages >= self.max_pages:
                self.discovery_warnings.append(
                    f"github: GET {path} still had a next page after {pages} pages ({pages * self.page_size} repos); "
                    "stopped there, so some repositories may not have been scanned"
                )
                next_url = None
            url = next_url
        return list(found.values())

    async def check_auth(self) -> AuthCheck:
        if self.installation_token:
            owner = self.settings.github_owner
            if not owner:
                return AuthCheck(ok=False, detail="a GitHub App installation token needs GITHUB_OWNER",
                                 problems=("GITHUB_OWNER is unset: installation tokens have no user to own repos",))
            response = await self.api.request("GET", f"/orgs/{owner}/repos", params={"per_page": 1})
            return AuthCheck(ok=True, detail=f"GitHub App installation token; it can list {owner}'s repositories "
                                              "(it needs the Administration: write permission to create and delete them)")
        response = await self.api.request("GET", "/user")
        login = parse_model(response, _User, "GET /user").login
        header = response.headers.get("x-oauth-scopes")
        if header is None:
            return AuthCheck(ok=True, detail=f"authenticated as {login} (fine-grained token: GitHub reports no scopes "
                                              "for it, so doctor cannot check them; it needs Administration: read and "
                                              "write to create and delete repositories, and an organisation may have "
                                              "to approve the token first)")
        scopes = {s.strip() for s in header.split(",") if s.strip()}
        missing = [s for s in REQUIRED_SCOPES if s not in scopes]
        problems = tuple(f"token lacks the {s} scope" + (" (teardown cannot delete repositories)" if s == "delete_repo" else
                                                         " (cannot create private repositories)") for s in missing)
        return AuthCheck(ok=True, detail=f"authenticated as {login}; scopes: {', '.join(sorted(scopes)) or 'none'}",
                         problems=problems)

