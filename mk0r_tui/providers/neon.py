"""Neon: one Postgres project per session, `mk0r-<slug>`, via the Neon API v2.

The create answer carries the connection URI (the only time the password is handed out
unasked) and a list of operations (create timeline, start compute); the project is usable only
when they have finished, so provisioning waits for them and the panel shows the wait. Adopting
a project made earlier (a second provision, or a create whose answer was lost) asks
`GET /projects/{id}/connection_uri` for the password again.

What Neon's own documents say, and what this module does about it:
- Operation statuses are scheduling, running, finished, failed, cancelling, cancelled and
  skipped (API reference, "key concepts"); `failed` is retried by Neon and `cancelling` is not
  final, so only finished/skipped are success and only cancelled/error are failure; anything
  else is polled until `MK0R_PROVIDER_TIMEOUT_S`.
- The API allows 700 requests per minute per key (≈ 11/s, 40/s burst per route): every poll of
  every session of the process takes a token from one `PollBudget` per key (600/min with a
  burst of 20), leaving the rest of the minute to creates, lists and deletes.
- A project list whose answer names `unavailable_project_ids` is incomplete (those projects
  exist but could not be read in time): a lookup by name is asked again, never read as absent.
- `422 PROJECTS_LIMIT_EXCEEDED` is a quota, not a bad request: the hint says so.
- Connection pooling: Neon recommends the pooled endpoint (`-pooler` in the host) for
  serverless apps and its integrations write `DATABASE_URL` (pooled) and
  `DATABASE_URL_UNPOOLED` (direct, for migrations, `LISTEN/NOTIFY`, session state).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from pydantic import BaseModel, Field

from mk0r_tui.core.envfile import remember_secrets
from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import RESOURCE_PREFIX, FoundResource, HandoffAnswer, ProvisionOutcome, ResourceRef, Slot
from mk0r_tui.core.provider import AuthCheck, PoolRename, ProvisionContext
from mk0r_tui.providers.http import (
    RETRYABLE_STATUSES,
    ApiClient,
    Clock,
    CloudProvider,
    create_or_adopt,
    created_but_unreadable,
    dropped_if_refused,
    iso_epoch,
    parse_model,
    single_match,
)

log = logging.getLogger("mk0r_tui.neon")

DONE = frozenset({"finished", "skipped"})
#: final and unsuccessful; `failed` is not here: Neon retries a failed operation
FAILED = frozenset({"error", "cancelled"})
#: Neon's limit is 700 requests/min per key; polls get this share of it, the rest is for the
#: creates, lookups and deletes
POLLS_PER_MINUTE = 600
POLL_BURST = 20
#: attempts at a project list that names unavailable projects before giving up
UNAVAILABLE_LOOKUPS = 5


class PollBudget:
    """One token bucket for every operation poll of the process made with one Neon key: at
    most `burst + per_minute` polls in any minute, however many sessions wait at once."""

    def __init__(self, clock: Clock, per_minute: float = POLLS_PER_MINUTE, burst: int = POLL_BURST) -> None:
        self.clock = clock
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated: float | None = None
        self.taken = 0

    def _refill(self) -> None:
        now = self.clock.monotonic()
        if self.updated is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    async def take(self) -> None:
        while True:
            self._refill()
            if self.tokens >= 1.0 - 1e-6:
                self.tokens = max(0.0, self.tokens - 1.0)
                self.taken += 1
                return
            await self.clock.sleep(max(0.001, (1.0 - self.tokens) / self.rate))


class _Project(BaseModel):
    id: str
    name: str
    created_at: str | None = None


class _ProjectAnswer(BaseModel):
    project: _Project


class _OwnedProject(BaseModel):
    id: str
    org_id: str | None = None


class _OwnedAnswer(BaseModel):
    project: _OwnedProject


class _TransferRequest(BaseModel):
    id: str
    project_id: str
    created_at: str
    expires_at: str


#: Neon's claim link for a project transfer request (the recipient opens it in the console)
CLAIM_URL = "https://console.neon.tech/app/claim?p={project_id}&tr={request_id}"
#: a transfer request's default lifetime (Neon: 24 hours when ttl_seconds is not given)
TRANSFER_TTL_S = 86400
PASSWORD_NOTE = (
    "the connection string survives the transfer: the new owner should reset the role's password "
    "(Neon console: Roles → Reset password) so mk0r's copy of it stops working"
)


class _Operation(BaseModel):
    id: str
    action: str
    status: str
    error: str | None = None


class _ConnectionParameters(BaseModel):
    pooler_host: str | None = None


class _ConnectionUri(BaseModel):
    connection_uri: str
    connection_parameters: _ConnectionParameters | None = None


class _Created(BaseModel):
    project: _Project
    connection_uris: list[_ConnectionUri] = Field(min_length=1)
    operations: list[_Operation] = []


class _ProjectList(BaseModel):
    class _Pagination(BaseModel):
        cursor: str | None = None

    projects: list[_Project]
    pagination: _Pagination | None = None
    unavailable_project_ids: list[str] = []


class _OperationAnswer(BaseModel):
    operation: _Operation


class _Operations(BaseModel):
    operations: list[_Operation]


class _Uri(BaseModel):
    uri: str


def _hint(status: int, message: str, call: str) -> str | None:
    lowered = message.lower()
    if "projects/transfer" in call and status == 422:
        return "Neon does not transfer projects with GitHub or Vercel integrations installed: remove the integration first"
    if "projects/transfer" in call and status == 406:
        return "the destination organization's plan or project limit does not allow this project: upgrade it or free a slot"
    if "transfer_requests" in call and status == 406:
        return "the recipient's plan does not satisfy the project's requirements"
    if status == 422 and ("projects_limit_exceeded" in lowered or "limit" in lowered and "project" in lowered):
        return ("the Neon plan's project quota is used up: delete projects no session needs "
                "(`mk0r-tui orphans` lists mk0r projects left behind), or raise the plan's limit")
    if status == 401:
        return "check NEON_PROVISIONING_KEY: Neon did not accept it (create one under Account settings → API keys)"
    if "org_id" in lowered or "organization" in lowered:
        return "set NEON_ORG_ID to the organization the key belongs to (`mk0r-tui doctor` shows the key's orgs)"
    if status == 403:
        return "NEON_PROVISIONING_KEY may not do this here: check its organization and NEON_ORG_ID"
    if "region" in lowered:
        return "set MK0R_NEON_REGION to a region Neon offers (e.g. aws-us-east-2)"
    return None


def pooler_host(host: str) -> str:
    """Neon's pooled host: `-pooler` after the endpoint id (`ep-x-1.region...` → `ep-x-1-pooler.region...`)."""
    endpoint, _, rest = host.partition(".")
    if endpoint.endswith("-pooler") or not rest:
        return host
    return f"{endpoint}-pooler.{rest}"


def pooled_uri(uri: str, pooled_host: str | None = None) -> str:
    """The same URI through the connection pooler (PgBouncer in transaction mode)."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    target = pooled_host or pooler_host(host)
    netloc = parts.netloc
    at = netloc.rfind("@")
    userinfo, hostport = (netloc[: at + 1], netloc[at + 1:]) if at >= 0 else ("", netloc)
    return parts._replace(netloc=userinfo + hostport.replace(host, target, 1)).geturl()


def env_from_uri(project_id: str, uri: str, pooled_host: str | None = None) -> dict[str, str]:
    """The app's database env from one direct connection URI (names the seed and Postgres tools
    use): `DATABASE_URL` through Neon's pooler, as Neon recommends for serverless apps, and
    `DATABASE_URL_UNPOOLED` direct, for migrations and `LISTEN/NOTIFY`; PG* name the direct host."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    database = parts.path.lstrip("/")
    role = unquote(parts.username or "")
    password = unquote(parts.password or "")
    remember_secrets([password])
    if not (host and database and role and password):
        raise ProviderError("the connection URI lacks a host, database, role or password", call="connection_uris[0]")
    return {
        "DATABASE_URL": pooled_uri(uri, pooled_host),
        "DATABASE_URL_UNPOOLED": uri,
        "NEON_PROJECT_ID": project_id,
        "NEON_HOST": host,
        "NEON_DB_NAME": database,
        "NEON_ROLE_NAME": role,
        "NEON_ROLE_PASSWORD": password,
        "PGHOST": host,
        "PGDATABASE": database,
        "PGUSER": role,
        "PGPASSWORD": password,
    }



class NeonProvider(CloudProvider):
    name = "neon"
    poolable = True
    handoff_calls = frozenset({"transfer_request", "transfer_to_org", "follow_claim"})
    slot = Slot.DATABASE
    env_keys = (
        "DATABASE_URL", "DATABASE_URL_UNPOOLED", "NEON_PROJECT_ID", "NEON_HOST", "NEON_DB_NAME", "NEON_ROLE_NAME", "NEON_ROLE_PASSWORD",
        "PGHOST", "PGDATABASE", "PGUSER", "PGPASSWORD",
    )
    key_name = "NEON_PROVISIONING_KEY"
    kind = "project"
    #: named in the create so a project adopted by name can be asked for its URI again
    database_name = "neondb"
    role_name = "neondb_owner"
    #: operations are polled so that the time lost between an operation finishing and our
    #: seeing it is at most `poll_fraction` of how long it has run so far, and never more
    #: often than every `poll_min_s` (the shared PollBudget caps it further). 5 %, not the 10 %
    #: the goal allows, leaves room for the poll's own round trip and the machine's noise:
    #: bench/single_session.py measures span / critical path <= 1.10 at 300 ms, 1 s and 2.5 s
    poll_min_s = 0.02
    poll_fraction = 0.05
    page_size = 100
    #: waits between project lists that name unavailable projects
    unavailable_retry_s = 0.5

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.poll_budget = PollBudget(self.clock)

    def build_client(self) -> ApiClient:
        # Neon's error description: "for non-GET methods, only 503 and 423 are safe to retry";
        # a 500/502/504 to POST /projects is "outcome unknown" and is looked up by name first
        return self.client_for(self.settings.neon_api_url, hinter=_hint, retry_statuses=RETRYABLE_STATUSES | {423},
                               blind_retry_statuses=frozenset({429, 423, 503}),
                               requests_per_minute=self.settings.neon_requests_per_minute)

    # -- provision ------------------------------------------------------------------------

    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome:
        name = ctx.session.resource_name
        other = ctx.owned_by_other_session(self.kind, name)
        if other:
            raise ProviderError(f"the Neon project {name} belongs to session {other!r}", call="POST /projects")
        prior = ctx.existing(self.kind, name)
        row = await ctx.intend(self.kind, name)
        project_id = await self._prior_project(ctx, prior, name) if prior is not None else None
        pooled_host = None
        if project_id is not None:
            ctx.progress(f"adopting project {name} ({project_id}) made by an earlier run")
            await ctx.created(row, project_id, url=self._console_url(project_id), meta=self._meta())
            uri = await self._adopt(ctx, project_id)
        else:
            async with dropped_if_refused(ctx, row):
                created_id, uri, operations, pooled_host = await create_or_adopt(
                    ctx, f"project {name}",
                    lambda: self._create(ctx, name),
                    lambda: self._find_and_describe(ctx, name),
                    attempts=self.settings.max_attempts, clock=self.clock,
                )
            project_id = created_id
            await ctx.created(row, project_id, url=self._console_url(project_id), meta=self._meta())
            await self._wait_for(ctx, project_id, operations)
        return ProvisionOutcome(
            env=env_from_uri(project_id, uri, pooled_host),
            resources=(ResourceRef(self.name, self.kind, name, project_id, self._console_url(project_id)),),
        )

    def _meta(self) -> dict[str, str]:
        meta = {"region_id": self.settings.neon_region, "database": self.database_name, "role": self.role_name}
        if self.settings.neon_org_id:
            meta["org_id"] = self.settings.neon_org_id
        return meta

    @staticmethod
    def _console_url(project_id: str) -> str:
        return f"https://console.neon.tech/app/projects/{project_id}"

    async def _prior_project(self, ctx: ProvisionContext, prior: ResourceRow, name: str) -> str | None:
        """The project an earlier run of this session made, if it still exists."""
        if prior.remote_id:
            response = await self.api.request("GET", f"/projects/{prior.remote_id}", ctx=ctx, accept=(404,))
            if response.status_code != 404:
                return parse_model(response, _ProjectAnswer, "GET /projects/{id}").project.id
        found = await self._find(ctx, name)
        return found.id if found is not None else None

    async def _create(self, ctx: ProvisionContext, name: str) -> tuple[str, str, list[_Operation], str | None]:
        project: dict[str, Any] = {
            "name": name,
            "region_id": self.settings.neon_region,
            "pg_version": self.settings.neon_pg_version,
            "branch": {"database_name": self.database_name, "role_name": self.role_name},
        }
        if self.settings.neon_org_id:
            project["org_id"] = self.settings.neon_org_id
        ctx.progress(f"creating project {name} in {self.settings.neon_region}")
        row = ctx.existing(self.kind, name)

        async def late(answer: httpx.Response) -> None:
            """The project was made after the session gave up: record its id (never an orphan)."""
            try:
                made = parse_model(answer, _Created, "POST /projects")
            except ProviderError:
                return
            if row is not None:
                await ctx.created(row, made.project.id, url=self._console_url(made.project.id), meta=self._meta())

        response = await self.api.request("POST", "/projects", json={"project": project}, ctx=ctx, main=True, late=late)
        try:
            created = parse_model(response, _Created, "POST /projects")
        except ProviderError as exc:
            raise created_but_unreadable(exc) from None
        first = created.connection_uris[0]
        remember_secrets([unquote(urlsplit(first.connection_uri).password or "")])  # known before any later call can echo it
        pooled = first.connection_parameters.pooler_host if first.connection_parameters else None
        return created.project.id, first.connection_uri, created.operations, pooled

    async def _find_and_describe(self, ctx: ProvisionContext, name: str) -> tuple[str, str, list[_Operation], None] | None:
        found = await self._find(ctx, name)
        if found is None:
            return None
        return found.id, await self._connection_uri(ctx, found.id), await self._operations(ctx, found.id), None

    async def _adopt(self, ctx: ProvisionContext, project_id: str) -> str:
        await self._wait_for(ctx, project_id, await self._operations(ctx, project_id))
        return await self._connection_uri(ctx, project_id)

    async def _find(self, ctx: ProvisionContext | None, name: str) -> _Project | None:
        """The project named `name`, or None when Neon's answer is complete and lacks it. An
        answer naming `unavailable_project_ids` may lack it only because it could not be read
        in time: it is asked again, since "absent" there would create a duplicate."""
        params = {"search": name, "limit": self.page_size, **self._org_param()}
        for number in range(1, UNAVAILABLE_LOOKUPS + 1):
            response = await self.api.request("GET", "/projects", params=params, ctx=ctx)
            answer = parse_model(response, _ProjectList, "GET /projects")
            match = single_match([p for p in answer.projects if p.name == name], name, "GET /projects")
            if match is not None or not answer.unavailable_project_ids:
                return match
            log.info("neon GET /projects: %d project(s) unavailable; asking again (%d/%d)",
                     len(answer.unavailable_project_ids), number, UNAVAILABLE_LOOKUPS)
            if ctx is not None:
                ctx.progress(f"Neon could not read {len(answer.unavailable_project_ids)} project(s) in time: looking again")
            if number < UNAVAILABLE_LOOKUPS:
                await self.clock.sleep(self.unavailable_retry_s * number)
        raise ProviderError(
            f"Neon kept answering that {len(answer.unavailable_project_ids)} project(s) could not be read, so "
            f"whether {name} exists is unknown", call="GET /projects",
            hint="Neon is degraded; try again in a minute (nothing was created twice)",
        )

    async def _connection_uri(self, ctx: ProvisionContext, project_id: str) -> str:
        response = await self.api.request(
            "GET", f"/projects/{project_id}/connection_uri", ctx=ctx,
            params={"database_name": self.database_name, "role_name": self.role_name},
            label="GET /projects/{id}/connection_uri",
        )
        uri = parse_model(response, _Uri, "GET /projects/{id}/connection_uri").uri
        remember_secrets([unquote(urlsplit(uri).password or "")])
        return uri

    async def _operations(self, ctx: ProvisionContext, project_id: str) -> list[_Operation]:
        """The project's newest operations (Neon lists them newest first), so those still
        running are on this page; older finished ones are not waited on."""
        response = await self.api.request("GET", f"/projects/{project_id}/operations", ctx=ctx,
                                          params={"limit": self.page_size},
                                          label="GET /projects/{id}/operations")
        return parse_model(response, _Operations, "GET /projects/{id}/operations").operations

    async def _wait_for(self, ctx: ProvisionContext, project_id: str, operations: list[_Operation]) -> None:
        """Wait until every operation not yet done has finished (or been skipped), polling the
        project's operation list (one request for all of them) with the shared budget. A
        cancelled or errored operation fails provisioning; `failed` and `cancelling` are not
        final (Neon retries a failed operation), so they are polled until the deadline."""
        # an operation already final when we first look is history (an adopted project's list
        # holds every past one): only those still under way are waited on
        pending = {op.id: op for op in operations if op.status not in DONE | FAILED}
        if not pending:
            return
        started = self.clock.monotonic()
        deadline = started + self.settings.provider_timeout_s
        last: dict[str, str] = {}
        while True:
            for op in pending.values():
                if op.status in FAILED:
                    raise ProviderError(
                        f"operation {op.action} {op.status}" + (f": {op.error}" if op.error else ""),
                        call="GET /projects/{id}/operations", hint="see the project's operations in the Neon console",
                    )
                if last.get(op.id) != op.status:
                    ctx.progress(f"waiting for operation {op.action} ({op.status})")
                    last[op.id] = op.status
            pending = {i: op for i, op in pending.items() if op.status not in DONE}
            if not pending:
                return
            now = self.clock.monotonic()
            if now >= deadline:
                states = ", ".join(f"{op.action} {op.status}" for op in pending.values())
                raise ProviderError(
                    f"operations not finished after {self.settings.provider_timeout_s:.0f}s ({states})",
                    call="GET /projects/{id}/operations",
                    hint="Neon is slow or retrying; see the project's operations in the Neon console",
                )
            wait = max(self.poll_min_s, self.poll_fraction * (now - started))
            await self.clock.sleep(min(wait, deadline - now))
            await self.poll_budget.take()
            for op in await self._operations(ctx, project_id):
                if op.id in pending:
                    pending[op.id] = op

    def _org_param(self) -> dict[str, str]:
        return {"org_id": self.settings.neon_org_id} if self.settings.neon_org_id else {}

    # -- teardown, discovery, doctor -------------------------------------------------------

    async def teardown(self, resource: ResourceRow) -> bool:
        project_id = resource.remote_id
        if project_id is None:
            found = await self._find(None, resource.name)
            if found is None:
                return False
            project_id = found.id
        response = await self.api.request("DELETE", f"/projects/{project_id}", accept=(404,),
                                          label=f"DELETE /projects/{project_id}")
        return response.status_code != 404

    async def pool_rename(self, row: ResourceRow, new_name: str) -> PoolRename | None:
        """`PATCH /projects/{id}` with the session's name. The connection URI names the role, its
        password, the endpoint's host and the database, never the project's name: the `.env`
        written at the claim stays right, nothing in it changes (idempotent: same name again)."""
        project_id = self._project_id(row)
        await self.api.request("PATCH", f"/projects/{project_id}", json={"project": {"name": new_name}},
                               label=f"PATCH /projects/{project_id}")
        return PoolRename(remote_id=project_id)

    # -- hand-off (issue 18) ------------------------------------------------------------

    @staticmethod
    def _project_id(resource: ResourceRow) -> str:
        if not resource.remote_id:
            raise ProviderError(f"the Neon project {resource.name} has no recorded id; nothing to hand off",
                                call="POST /projects/{id}/transfer_requests")
        return resource.remote_id

    async def transfer_request(self, resource: ResourceRow, *, ttl_s: int = TRANSFER_TTL_S) -> HandoffAnswer:
        """`POST /projects/{id}/transfer_requests`: a request the recipient accepts in the
        console (the claim link) or with `PUT .../transfer_requests/{request_id}`; it expires
        after `ttl_s`. The project stays ours until then: `claim_pending`."""
        project_id = self._project_id(resource)
        call = "POST /projects/{id}/transfer_requests"
        response = await self.api.request("POST", f"/projects/{project_id}/transfer_requests",
                                          json={"ttl_seconds": int(ttl_s)}, label=call)
        request = parse_model(response, _TransferRequest, call)
        url = CLAIM_URL.format(project_id=project_id, request_id=request.id)
        return HandoffAnswer(
            "claim_pending", None, url,
            {"request_id": request.id, "expires_at": iso_epoch(request.expires_at), "expires": request.expires_at},
            note=f"open the claim link to take the project (expires {request.expires_at}); {PASSWORD_NOTE}",
        )

    async def follow_claim(self, resource: ResourceRow) -> HandoffAnswer:
        """A claimed project leaves our organisation: our key no longer sees it (404), or it
        answers with another org id. Still ours after the expiry: `kept`."""
        project_id = self._project_id(resource)
        detail = dict(resource.handoff_detail or {})
        response = await self.api.request("GET", f"/projects/{project_id}", accept=(404, 403),
                                          label="GET /projects/{id}")
        ours = self.settings.neon_org_id or (resource.meta or {}).get("org_id")
        if response.status_code in (404, 403):
            return HandoffAnswer("claimed", resource.handoff_owner or "the claim's recipient", None, detail,
                                 note=f"the project left mk0r's organisation; {PASSWORD_NOTE}")
        org = parse_model(response, _OwnedAnswer, "GET /projects/{id}").project.org_id
        if ours and org and org != ours:
            return HandoffAnswer("claimed", org, None, detail, note=f"the project is now in {org}; {PASSWORD_NOTE}")
        expires = detail.get("expires_at")
        if expires is not None and self.clock.now() >= float(expires):
            return HandoffAnswer("kept", None, None, {**detail, "expired": True},
                                 note="the claim link expired unused; the project is still ours")
        return HandoffAnswer("claim_pending", resource.handoff_owner, resource.handoff_detail.get("claim_url"), detail,
                             note=f"claim pending (expires {detail.get('expires', '?')})")

    async def transfer_to_org(self, resource: ResourceRow, destination_org_id: str) -> HandoffAnswer:
        """`POST /organizations/{source_org_id}/projects/transfer`: org to org, at once, when the
        key belongs to a member of both. The source org is the project's own."""
        project_id = self._project_id(resource)
        source = self.settings.neon_org_id or (resource.meta or {}).get("org_id")
        if not source:
            looked = await self.api.request("GET", f"/projects/{project_id}", label="GET /projects/{id}")
            source = parse_model(looked, _OwnedAnswer, "GET /projects/{id}").project.org_id
        if not source:
            raise ProviderError("cannot tell which organisation owns the project; set NEON_ORG_ID",
                                call="POST /organizations/{source_org_id}/projects/transfer")
        await self.api.request("POST", f"/organizations/{source}/projects/transfer",
                               json={"destination_org_id": destination_org_id, "project_ids": [project_id]},
                               label="POST /organizations/{source_org_id}/projects/transfer")
        return HandoffAnswer("transferred", destination_org_id, None, {"from_org": source},
                             note=f"moved from {source} to {destination_org_id}; {PASSWORD_NOTE}")

    async def discover(self) -> list[FoundResource]:
        found: list[FoundResource] = []
        cursor: str | None = None
        while True:
            params = {"search": RESOURCE_PREFIX, "limit": self.page_size, **self._org_param()}
            if cursor:
                params["cursor"] = cursor
            response = await self.api.request("GET", "/projects", params=params)
            page = parse_model(response, _ProjectList, "GET /projects")
            found.extend(
                FoundResource(self.name, self.kind, p.name, p.id, iso_epoch(p.created_at))
                for p in page.projects
                if p.name.startswith(RESOURCE_PREFIX)
            )
            next_cursor = page.pagination.cursor if page.pagination else None
            if len(page.projects) < self.page_size or not next_cursor or next_cursor == cursor:
                return found
            cursor = next_cursor

    async def check_auth(self) -> AuthCheck:
        """An org-key-safe probe: `GET /projects?limit=1` (with NEON_ORG_ID when set) works for a
        personal, an organization and a project-scoped key alike, where `GET /users/me` refuses
        an organization key. Neon no longer has "personal accounts": every project is in an org."""
        response = await self.api.request("GET", "/projects", params={"limit": 1, **self._org_param()})
        parse_model(response, _ProjectList, "GET /projects")
        where = f"organization {self.settings.neon_org_id}" if self.settings.neon_org_id else "the key's own organization"
        return AuthCheck(ok=True, detail=f"the key can list projects in {where}")
