"""Resend: a segment `mk0r-<slug> Users` and a sending-only API key `mk0r-<slug>` per session.

Resend replaced Audiences with Segments; the env carries the segment id as both
`RESEND_SEGMENT_ID` and `RESEND_AUDIENCE_ID` so code written for the old name still works. An
API key can be limited only to `sending_access` (plus one domain when `RESEND_DOMAIN_ID` is set).
Its token is shown once, in the create answer: it goes to the `.env` and nowhere else. A key
whose token is lost (a create whose answer never arrived, or a `.env` that is gone) cannot be
recovered, so it is deleted and replaced, and the ledger records both steps.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from mk0r_tui.core.envfile import remember_secrets
from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import RESOURCE_PREFIX, FoundResource, ProvisionOutcome, ResourceRef, Slot
from mk0r_tui.core.provider import AuthCheck, PoolRename, ProvisionContext
from mk0r_tui.providers.http import (
    ApiClient,
    CloudProvider,
    create_or_adopt,
    created_but_unreadable,
    dropped_if_refused,
    iso_epoch,
    parse_model,
    single_match,
)

if TYPE_CHECKING:
    import httpx

SEGMENT = "segment"
API_KEY = "api-key"
PATHS = {SEGMENT: "/segments", API_KEY: "/api-keys"}


class _Created(BaseModel):
    id: str


class _NewKey(BaseModel):
    id: str
    token: str


class _Item(BaseModel):
    id: str
    name: str
    created_at: str | None = None


class _Page(BaseModel):
    data: list[_Item]
    has_more: bool = False


class _Domains(BaseModel):
    class _Domain(BaseModel):
        id: str
        name: str

    data: list[_Domain]


#: Resend's quota errors (resend.com/docs/api-reference/errors): 429 like the rate limit, but
#: waiting for retry-after does not lift a daily or monthly quota, so they fail at once
QUOTA_ERRORS = frozenset({"daily_quota_exceeded", "monthly_quota_exceeded"})


def _hint(status: int, message: str, call: str) -> str | None:
    lowered = message.lower()
    if "daily_quota_exceeded" in lowered or "daily quota" in lowered:
        return ("the Resend team's daily sending quota is used up (shared by every app of the team); it resets "
                "after 24 hours, or upgrade the plan")
    if "monthly_quota_exceeded" in lowered or "monthly quota" in lowered:
        return "the Resend team's monthly quota is used up (shared by every app of the team); upgrade the plan"
    if status == 400 and "api key is invalid" in lowered:
        return ("RESEND_PROVISIONING_KEY is malformed (Resend keys start with re_): copy the whole key, "
                "without quotes or spaces")
    if status == 403 and ("invalid_api_key" in lowered or "api key is invalid" in lowered):
        return "RESEND_PROVISIONING_KEY is not a valid key (revoked, or from another team): create a full_access key"
    if status == 401 and "restricted" in lowered:
        return "RESEND_PROVISIONING_KEY must be a full_access key: a sending-only key cannot create keys or segments"
    if status in (401, 403):
        return "check RESEND_PROVISIONING_KEY: Resend did not accept it"
    if "domain" in lowered:
        return "check RESEND_DOMAIN_ID: it must be a domain of this Resend team"
    return None


class ResendProvider(CloudProvider):
    name = "resend"
    handoff_calls = frozenset({"revoke_key"})
    slot = Slot.EMAIL
    poolable = True
    env_keys = ("RESEND_API_KEY", "RESEND_SEGMENT_ID", "RESEND_AUDIENCE_ID")
    key_name = "RESEND_PROVISIONING_KEY"
    page_size = 100

    def build_client(self) -> ApiClient:
        return self.client_for(
            self.settings.resend_api_url, hinter=_hint, requests_per_second=self.settings.resend_requests_per_second,
            final_error_names=QUOTA_ERRORS,
        )

    # -- provision ------------------------------------------------------------------------

    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome:
        base = ctx.session.resource_name
        segment_name, key_name = f"{base} Users", base
        for kind, name in ((SEGMENT, segment_name), (API_KEY, key_name)):
            other = ctx.owned_by_other_session(kind, name)
            if other:
                raise ProviderError(f"the Resend {kind} {name!r} belongs to session {other!r}", call=f"POST {PATHS[kind]}")
        segment_id = await self._segment(ctx, segment_name)
        key_id, token = await self._api_key(ctx, key_name)
        return ProvisionOutcome(
            env={"RESEND_API_KEY": token, "RESEND_SEGMENT_ID": segment_id, "RESEND_AUDIENCE_ID": segment_id},
            resources=(
                ResourceRef(self.name, SEGMENT, segment_name, segment_id),
                ResourceRef(self.name, API_KEY, key_name, key_id),
            ),
        )

    async def _segment(self, ctx: ProvisionContext, name: str) -> str:
        prior = ctx.existing(SEGMENT, name)
        row = await ctx.intend(SEGMENT, name)
        segment_id = await self._find_id(ctx, SEGMENT, name) if prior is not None else None
        if segment_id is not None:
            ctx.progress(f"adopting segment {name!r} made by an earlier run")
        else:
            async def late(answer: httpx.Response) -> None:
                """The segment was made after the session gave up: record it (never an orphan)."""
                with contextlib.suppress(ProviderError):
                    await ctx.created(row, parse_model(answer, _Created, "POST /segments").id)

            async def create() -> str:
                ctx.progress(f"creating segment {name!r}")
                response = await self.api.request("POST", "/segments", json={"name": name}, ctx=ctx, late=late)
                try:
                    return parse_model(response, _Created, "POST /segments").id
                except ProviderError as exc:
                    raise created_but_unreadable(exc) from None

            async with dropped_if_refused(ctx, row):
                segment_id = await create_or_adopt(
                    ctx, f"segment {name!r}", create, lambda: self._find_id(ctx, SEGMENT, name),
                    attempts=self.settings.max_attempts, clock=self.clock,
                )
        await ctx.created(row, segment_id)
        return segment_id

    async def _api_key(self, ctx: ProvisionContext, name: str) -> tuple[str, str]:
        """The key's id and token: reused from the previous `.env` when the key still exists,
        else created; a key whose token is lost is deleted and replaced."""
        prior = ctx.existing(API_KEY, name)
        token = ctx.previous_env.get("RESEND_API_KEY")
        if prior is not None and prior.remote_id and token and await self._find_id(ctx, API_KEY, name) == prior.remote_id:
            ctx.progress(f"reusing API key {name!r} (its token is in the previous .env)")
            return prior.remote_id, token
        look_first = prior is not None
        for _ in range(self.settings.max_attempts):
            row = await ctx.intend(API_KEY, name)
            if look_first:
                look_first = False
                stale = await self._find_id(ctx, API_KEY, name)
                if stale is not None:
                    await self._replace(ctx, row, stale, "its token was not kept")
                    continue
            try:
                async with dropped_if_refused(ctx, row):
                    created = await self._create_key(ctx, name, row)
            except ProviderError as exc:
                if not exc.outcome_unknown:
                    raise
                lost = f"HTTP {exc.status} to" if exc.status else "no answer to"
                ctx.progress(f"{lost} {exc.call} after it was sent: looking API key {name!r} up by name")
                found = await self._find(ctx, API_KEY, name)
                if found is not None:
                    await self._replace(ctx, row, found.id, "its token was lost with the answer")
                continue
            await ctx.created(row, created.id, meta={"permission": "sending_access", **self._domain()})
            return created.id, created.token
        raise ProviderError(f"could not create API key {name!r}", call="POST /api-keys",
                            hint=f"gave up after {self.settings.max_attempts} attempts; try again")

    async def _create_key(self, ctx: ProvisionContext, name: str, row: ResourceRow) -> _NewKey:
        ctx.progress(f"creating sending-only API key {name!r}")
        body: dict[str, Any] = {"name": name, "permission": "sending_access", **self._domain()}

        async def late(answer: httpx.Response) -> None:
            """The key was made after the session gave up: its id is recorded, so teardown and
            orphans know it; its token reached no `.env`, so the next provision replaces it."""
            with contextlib.suppress(ProviderError):
                key = parse_model(answer, _NewKey, "POST /api-keys")
                remember_secrets([key.token])
                await ctx.created(row, key.id, meta={"permission": "sending_access", "late": "answered after its session gave up"})

        response = await self.api.request("POST", "/api-keys", json=body, ctx=ctx, main=True, late=late)
        try:
            key = parse_model(response, _NewKey, "POST /api-keys")
        except ProviderError as exc:
            raise created_but_unreadable(exc) from None
        remember_secrets([key.token])
        return key

    async def _replace(self, ctx: ProvisionContext, row: ResourceRow, key_id: str, why: str) -> None:
        """Record that the key exists, delete it, and record the delete: a fresh one follows."""
        ctx.progress(f"API key {row.name!r} exists but {why}: deleting it and creating a new one")
        await ctx.created(row, key_id, meta={"replaced": why})
        await self._delete(API_KEY, key_id)
        await ctx.dropped(row, f"replaced: {why}")

    def _domain(self) -> dict[str, str]:
        return {"domain_id": self.settings.resend_domain_id} if self.settings.resend_domain_id else {}

    async def _find_id(self, ctx: ProvisionContext, kind: str, name: str) -> str | None:
        found = await self._find(ctx, kind, name)
        return found.id if found is not None else None

    async def _find(self, ctx: ProvisionContext | None, kind: str, name: str) -> _Item | None:
        items = [item async for item in self._list(kind, ctx) if item.name == name]
        return single_match(items, repr(name), f"GET {PATHS[kind]}")

    async def _list(self, kind: str, ctx: ProvisionContext | None = None) -> AsyncIterator[_Item]:
        path, after = PATHS[kind], None
        while True:
            params: dict[str, Any] = {"limit": self.page_size}
            if after:
                params["after"] = after
            response = await self.api.request("GET", path, params=params, ctx=ctx)
            page = parse_model(response, _Page, f"GET {path}")
            for item in page.data:
                yield item
            if not page.has_more or not page.data or page.data[-1].id == after:
                return
            after = page.data[-1].id

    # -- teardown, discovery, doctor -------------------------------------------------------

    async def teardown(self, resource: ResourceRow) -> bool:
        if resource.kind not in PATHS:
            raise ProviderError(f"unknown Resend resource kind {resource.kind!r}")
        remote_id = resource.remote_id
        if remote_id is None:
            found = await self._find(None, resource.kind, resource.name)
            if found is None:
                return False
            remote_id = found.id
        return await self._delete(resource.kind, remote_id)

    async def pool_rename(self, row: ResourceRow, new_name: str) -> PoolRename | None:
        """`PATCH /segments/{id}` or `PATCH /api-keys/{id}` with the session's name. Ids and the
        key's token never change with a name: the `.env` written at the claim stays right."""
        if row.kind not in PATHS or not row.remote_id:
            raise ProviderError(f"the Resend {row.kind} {row.name!r} has no recorded id; cannot rename it",
                                call=f"PATCH {PATHS.get(row.kind, '/')}")
        path = PATHS[row.kind]
        await self.api.request("PATCH", f"{path}/{row.remote_id}", json={"name": new_name}, label=f"PATCH {path}/{{id}}")
        return PoolRename(remote_id=row.remote_id)

    async def revoke_key(self, resource: ResourceRow) -> bool:
        """Hand-off with `--revoke-email`: Resend has no transfer API, so the app's sending-only
        key is deleted (the app stops sending through mk0r's account); the segment stays ours."""
        if resource.kind != API_KEY:
            raise ProviderError(f"only an API key can be revoked, not a {resource.kind}")
        return await self.teardown(resource)

    async def _delete(self, kind: str, remote_id: str) -> bool:
        path = PATHS[kind]
        response = await self.api.request("DELETE", f"{path}/{remote_id}", accept=(404,))
        return response.status_code != 404

    async def discover(self) -> list[FoundResource]:
        found: list[FoundResource] = []
        for kind in (SEGMENT, API_KEY):
            async for item in self._list(kind):
                if item.name.startswith(RESOURCE_PREFIX):
                    found.append(FoundResource(self.name, kind, item.name, item.id, iso_epoch(item.created_at)))
        return found

    async def check_auth(self) -> AuthCheck:
        response = await self.api.request("GET", "/domains")
        domains = parse_model(response, _Domains, "GET /domains").data
        names = ", ".join(d.name for d in domains) or "none"
        problems: tuple[str, ...] = ()
        wanted = self.settings.resend_domain_id
        if wanted and wanted not in {d.id for d in domains}:
            problems = (f"RESEND_DOMAIN_ID {wanted} is not a domain of this team",)
        return AuthCheck(ok=True, detail=f"authenticated; domains: {names}", problems=problems)
