"""Neon: one Postgres project per session, `mk0r-<slug>`, via the Neon API v2.

The create answer carries the connection URI (the only time the password is handed out
unasked) and a list of operations (create timeline, start compute); the project is usable only
when they have finished, so provisioning waits for them and the panel shows the wait. Adopting
a project made earlier (a second provision, or a create whose answer was lost) asks
`GET /projects/{id}/connection_uri` for the password again.
"""

from __future__ import annotations

import asyncio
import itertools

from typing import ClassVar
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field

from mk0r_tui.core.envfile import remember_secrets
from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import RESOURCE_PREFIX, FoundResource, ProvisionOutcome, ResourceRef, Slot
from mk0r_tui.core.provider import AuthCheck, ProvisionContext
from mk0r_tui.providers.http import (
    RETRYABLE_STATUSES,
    ApiClient,
    CloudProvider,
    create_or_adopt,
    created_but_unreadable,
    dropped_if_refused,
    iso_epoch,
    parse_model,
    single_match,
)

DONE = frozenset({"finished", "skipped"})
FAILED = frozenset({"failed", "error", "cancelled", "cancelling"})


class _Project(BaseModel):
    id: str
    name: str
    created_at: str | None = None


class _ProjectAnswer(BaseModel):
    project: _Project


class _Operation(BaseModel):
    id: str
    action: str
    status: str
    error: str | None = None


class _ConnectionUri(BaseModel):
    connection_uri: str


class _Created(BaseModel):
    project: _Project
    connection_uris: list[_ConnectionUri] = Field(min_length=1)
    operations: list[_Operation] = []


class _ProjectList(BaseModel):
    class _Pagination(BaseModel):
        cursor: str | None = None

    projects: list[_Project]
    pagination: _Pagination | None = None


class _OperationAnswer(BaseModel):
    operation: _Operation


class _Operations(BaseModel):
    operations: list[_Operation]


class _Uri(BaseModel):
    uri: str


class _Me(BaseModel):
    email: str | None = None
    login: str | None = None


def _hint(status: int, message: str, call: str) -> str | None:
    lowered = message.lower()
    if status == 401:
        return "check NEON_PROVISIONING_KEY: Neon did not accept it (create one under Account settings → API keys)"
    if "org_id" in lowered or "organization" in lowered:
        return "set NEON_ORG_ID to the organization the key belongs to (`mk0r-tui doctor` shows the key's orgs)"
    if status == 403:
        return "NEON_PROVISIONING_KEY may not do this here: check its organization and NEON_ORG_ID"
    if "region" in lowered:
        return "set MK0R_NEON_REGION to a region Neon offers (e.g. aws-us-east-2)"
    return None


def env_from_uri(project_id: str, uri: str) -> dict[str, str]:
    """The app's database env from one connection URI (names the seed and Postgres tools use)."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    database = parts.path.lstrip("/")
    role = unquote(parts.username or "")
    password = unquote(parts.password or "")
    remember_secrets([password])
    if not (host and database and role and password):
        raise ProviderError("the connection URI lacks a host, database, role or password", call="connection_uris[0]")
    return {
        "DATABASE_URL": uri,
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
    name: ClassVar[str] = "neon"
    slot: ClassVar[Slot] = Slot.DATABASE
    env_keys: ClassVar[tuple[str, ...]] = (
        "DATABASE_URL", "NEON_PROJECT_ID", "NEON_HOST", "NEON_DB_NAME", "NEON_ROLE_NAME", "NEON_ROLE_PASSWORD",
        "PGHOST", "PGDATABASE", "PGUSER", "PGPASSWORD",
    )
    key_name = "NEON_PROVISIONING_KEY"
    kind = "project"
    #: named in the create so a project adopted by name can be asked for its URI again
    database_name = "neondb"
    role_name = "neondb_owner"
    #: operations usually finish within a second: look early, then back off to once a second
    poll_intervals_s = (0.25, 0.5, 1.0)
    page_size = 100

    def build_client(self) -> ApiClient:
        return self.client_for(self.settings.neon_api_url, hinter=_hint, retry_statuses=RETRYABLE_STATUSES | {423})

    # -- provision ------------------------------------------------------------------------

    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome:
        name = ctx.session.resource_name
        other = ctx.owned_by_other_session(self.kind, name)
        if other:
            raise ProviderError(f"the Neon project {name} belongs to session {other!r}", call="POST /projects")
        prior = ctx.existing(self.kind, name)
        row = ctx.intend(self.kind, name)
        ctx.attempt()
        project_id = await self._prior_project(ctx, prior, name) if prior is not None else None
        if project_id is not None:
            ctx.progress(f"adopting project {name} ({project_id}) made by an earlier run")
            ctx.created(row, project_id, url=self._console_url(project_id), meta=self._meta())
            uri = await self._adopt(ctx, project_id)
        else:
            with dropped_if_refused(ctx, row):
                project_id, uri, operations = await create_or_adopt(
                    ctx, f"project {name}",
                    lambda: self._create(ctx, name),
                    lambda: self._find_and_describe(ctx, name),
                    attempts=self.settings.max_attempts,
                )
            ctx.created(row, project_id, url=self._console_url(project_id), meta=self._meta())
            await self._wait_for(ctx, project_id, operations)
        return ProvisionOutcome(
            env=env_from_uri(project_id, uri),
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

    async def _create(self, ctx: ProvisionContext, name: str) -> tuple[str, str, list[_Operation]]:
        project: dict = {
            "name": name,
            "region_id": self.settings.neon_region,
            "pg_version": self.settings.neon_pg_version,
            "branch": {"database_name": self.database_name, "role_name": self.role_name},
        }
        if self.settings.neon_org_id:
            project["org_id"] = self.settings.neon_org_id
        ctx.progress(f"creating project {name} in {self.settings.neon_region}")
        response = await self.api.request("POST", "/projects", json={"project": project}, ctx=ctx)
        try:
            created = parse_model(response, _Created, "POST /projects")
        except ProviderError as exc:
            raise created_but_unreadable(exc) from None
        uri = created.connection_uris[0].connection_uri
        remember_secrets([unquote(urlsplit(uri).password or "")])  # known before any later call can echo it
        return created.project.id, uri, created.operations

    async def _find_and_describe(self, ctx: ProvisionContext, name: str) -> tuple[str, str, list[_Operation]] | None:
        found = await self._find(ctx, name)
        if found is None:
            return None
        return found.id, await self._connection_uri(ctx, found.id), await self._operations(ctx, found.id)

    async def _adopt(self, ctx: ProvisionContext, project_id: str) -> str:
        await self._wait_for(ctx, project_id, await self._operations(ctx, project_id))
        return await self._connection_uri(ctx, project_id)

    async def _find(self, ctx: ProvisionContext | None, name: str) -> _Project | None:
        params = {"search": name, "limit": self.page_size, **self._org_param()}
        response = await self.api.request("GET", "/projects", params=params, ctx=ctx)
        projects = parse_model(response, _ProjectList, "GET /projects").projects
        return single_match([p for p in projects if p.name == name], name, "GET /projects")

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
        response = await self.api.request("GET", f"/projects/{project_id}/operations", ctx=ctx,
                                          label="GET /projects/{id}/operations")
        return parse_model(response, _Operations, "GET /projects/{id}/operations").operations

    async def _wait_for(self, ctx: ProvisionContext, project_id: str, operations: list[_Operation]) -> None:
        """Poll every unfinished operation, all at once, until each finishes; a failed one
        fails provisioning (and stops the other polls)."""
        polls = [asyncio.ensure_future(self._wait_one(ctx, project_id, op)) for op in operations]
        try:
            await asyncio.gather(*polls)
        except BaseException:
            for poll in polls:
                poll.cancel()
            raise

    async def _wait_one(self, ctx: ProvisionContext, project_id: str, operation: _Operation) -> None:
        last = None
        for polled in itertools.count():
            if operation.status in DONE:
                return
            if operation.status in FAILED:
                raise ProviderError(
                    f"operation {operation.action} {operation.status}" + (f": {operation.error}" if operation.error else ""),
                    call="GET /projects/{id}/operations/{op}",
                    hint="see the project's operations in the Neon console",
                )
            if (operation.action, operation.status) != last:
                ctx.progress(f"waiting for operation {operation.action} ({operation.status})")
                last = (operation.action, operation.status)
            await self.clock.sleep(self.poll_intervals_s[min(polled, len(self.poll_intervals_s) - 1)])
            response = await self.api.request(
                "GET", f"/projects/{project_id}/operations/{operation.id}", ctx=ctx,
                label="GET /projects/{id}/operations/{op}",
            )
            operation = parse_model(response, _OperationAnswer, "GET /projects/{id}/operations/{op}").operation

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
        response = await self.api.request("GET", "/users/me")
        me = parse_model(response, _Me, "GET /users/me")
        return AuthCheck(ok=True, detail=f"authenticated as {me.email or me.login or 'a Neon user'}")
