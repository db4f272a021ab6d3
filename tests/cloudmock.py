"""Test helpers for the cloud providers over respx: a fake clock, answers in the providers'
shapes, and a router for the few answers their OpenAPI documents cannot describe.

The answers come from the serialisers of the one fake upstream (the `fakeupstream` package,
whose own round trips are validated against the specs), given the fields a test cares about;
`minimal` builds the smallest spec instance of any other schema.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from apispec import SpecCheckedRouter, _fail, _request_errors, _response_errors, load_spec

from fakeupstream import e2b as fake_e2b
from fakeupstream import github as fake_github
from fakeupstream import neon as fake_neon
from fakeupstream import resend as fake_resend
from mk0r_tui.providers.http import Clock

EPOCH = 1_700_000_000.0
NEON = "https://console.neon.tech/api/v2"
RESEND = "https://api.resend.com"
GITHUB = "https://api.github.com"
POSTHOG = "https://us.i.posthog.com"
OP_ID = "0b4fd6d0-0000-4000-8000-000000000001"


class FakeClock:
    """Time that moves only when the code under test sleeps: waits are asserted, never spent."""

    def __init__(self, start: float = EPOCH) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)

    @property
    def clock(self) -> Clock:
        return Clock(now=self.now, monotonic=self.now, sleep=self.sleep)


# -- answers built from the specs ------------------------------------------------------------


def _resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def minimal(spec_name: str, schema: dict | str, **overrides: Any) -> Any:
    """The smallest instance of `schema` (a schema or a component name) the spec accepts,
    with `overrides` merged in at the top level."""
    spec = load_spec(spec_name).raw
    node = {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema
    value = _minimal(spec, node)
    if overrides:
        value.update(overrides)
    return value


def _minimal(spec: dict, node: dict) -> Any:
    node = _resolve(spec, node)
    if "allOf" in node:
        merged: dict = {}
        for part in node["allOf"]:
            merged.update(_minimal(spec, part))
        return merged
    for key in ("oneOf", "anyOf"):
        if key in node:
            return _minimal(spec, node[key][0])
    if "enum" in node:
        return node["enum"][0]
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next(k for k in kind if k != "null")
    if kind == "object" or "properties" in node:
        props = node.get("properties", {})
        return {name: _minimal(spec, props.get(name, {})) for name in node.get("required", [])}
    if kind == "array":
        return []
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        return node.get("minimum", 0)
    fixed = {"date-time": "2024-01-01T00:00:00Z", "uuid": "00000000-0000-4000-8000-000000000000",
             "email": "dev@example.com"}
    if node.get("format") in fixed:
        return fixed[node["format"]]
    return "x" * max(1, node.get("minLength", 1))


# The JSON shapes come from the fake upstream's provider modules (fakeupstream/neon.py, ...):
# one serialiser per shape serves both the stateful fake and these respx answers.

CREATED = datetime(2024, 1, 1, tzinfo=UTC)
BRANCH_ID = "br-main-1"
REGION = "aws-us-east-2"


# Neon -----------------------------------------------------------------------------------


def neon_project(project_id: str, name: str, **extra: Any) -> dict:
    return {**fake_neon.project_obj(project_id, name, REGION, 17, CREATED), **extra}


def neon_list_item(project_id: str, name: str, created_at: str = "2024-01-01T00:00:00Z") -> dict:
    return {**fake_neon.list_item(fake_neon.project_obj(project_id, name, REGION, 17, CREATED)), "created_at": created_at}


def neon_operation(op_id: str, project_id: str, action: str = "start_compute", status: str = "running") -> dict:
    return fake_neon.operation_obj(op_id, project_id, BRANCH_ID, action, CREATED, status=status)


def neon_uri(password: str = "s3cret-pw", host: str = "ep-cool-1.us-east-2.aws.neon.tech",
             role: str = "neondb_owner", db: str = "neondb") -> str:
    return fake_neon.connection_uri(role, password, host, db)


def neon_created(project_id: str, name: str, *, ops: list[dict] | None = None, password: str = "s3cret-pw") -> dict:
    """POST /projects' 201: endpoint ep-cool-1, role neondb_owner owning database neondb."""
    return fake_neon.created_body(
        neon_project(project_id, name), fake_neon.branch_obj(BRANCH_ID, project_id, "main", CREATED),
        fake_neon.endpoint_obj("ep-cool-1", project_id, BRANCH_ID, REGION, CREATED),
        [fake_neon.role_obj(BRANCH_ID, "neondb_owner", password, CREATED)],
        [fake_neon.database_obj(1, BRANCH_ID, "neondb", "neondb_owner", CREATED)],
        ops if ops is not None else [neon_operation(OP_ID, project_id)], password=password)


def neon_list(items: list[dict], cursor: str | None = None) -> dict:
    return fake_neon.list_body(items, cursor)


def neon_error(message: str, code: str = "") -> dict:
    return fake_neon.error_body(message, code)


# GitHub ---------------------------------------------------------------------------------


def github_repo(owner: str, name: str, **extra: Any) -> dict:
    return {**fake_github.repo_obj(fake_github.user_obj(owner), name, 1296269, {"private": True}, CREATED, org=False),
            **extra}


def github_repo_item(owner: str, name: str, created_at: str = "2024-01-01T00:00:00Z") -> dict:
    # a distinct id per repository, as GitHub gives (discovery deduplicates by id)
    return {**github_repo(owner, name, created_at=created_at), "id": zlib.crc32(f"{owner}/{name}".encode()) or 1}


def github_user(login: str = "octo") -> dict:
    return fake_github.profile_obj(login)


def github_error(message: str) -> dict:
    return fake_github.error_body(message)


# Resend ---------------------------------------------------------------------------------


def resend_list(items: list[dict], has_more: bool = False) -> dict:
    return fake_resend.list_body(items, has_more)


def resend_error(status: int, message: str, name: str = "error") -> dict:
    """Resend's documented error shape (resend.com/docs/api-reference/errors)."""
    return fake_resend.error_body(status, message, name)


# E2B ------------------------------------------------------------------------------------

E2B = "https://api.e2b.app"


def e2b_sandbox(sandbox_id: str, **extra: Any) -> dict:
    return fake_e2b.sandbox_obj(sandbox_id, **extra)


def e2b_listed(sandbox_id: str, metadata: dict[str, str], **extra: Any) -> dict:
    return fake_e2b.listed_obj(sandbox_id, metadata, **extra)


def e2b_error(code: int, message: str) -> dict:
    return fake_e2b.error_body(code, message)


# -- answers no spec documents ----------------------------------------------------------------

#: Mark a response the provider really sends but its OpenAPI document does not list (Resend
#: documents no error status at all; GitHub no 429 or 5xx), or a deliberately broken body.
OFF_SPEC = "x-test-off-spec"


def off_spec(status: int, *, reason: str, json_body: Any = None, content: bytes | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
    all_headers = {OFF_SPEC: reason, **(headers or {})}
    if content is not None:
        return httpx.Response(status, content=content, headers={"content-type": "application/json", **all_headers})
    return httpx.Response(status, json=json_body, headers=all_headers)


@contextmanager
def partly_spec_checked_router() -> Iterator[SpecCheckedRouter]:
    """Like `respx_spec`, except that a response marked `OFF_SPEC` is not checked against the
    spec (its request still is). Every other request and response is validated."""
    router = SpecCheckedRouter(assert_all_called=False)
    with router:
        yield router
        failures = []
        for call in router.calls:
            errors = _request_errors(call.request, router.registry)
            response = call.optional_response
            if response is not None and OFF_SPEC not in response.headers:
                errors += _response_errors(call.request, response, router.registry)
            if errors:
                failures.append(_fail(call.request, errors))
        assert not failures, "HTTP calls break the provider API spec:\n" + "\n".join(failures)


@pytest.fixture
def respx_offspec() -> Iterator[SpecCheckedRouter]:
    with partly_spec_checked_router() as router:
        yield router


def sent_json(call) -> Any:
    return json.loads(call.request.content)


# -- providers wired to the real ledger -----------------------------------------------------


def provision_context(runtime, session_key: str, provider: str, settings=None):
    """A real ProvisionContext on the runtime's real ledger, with a Collector as the sink."""
    from mk0r_tui.core.events import Collector
    from mk0r_tui.core.models import Session
    from mk0r_tui.core.provider import ProvisionContext, SessionResources

    session = Session.parse(session_key)
    runtime.ledger.ensure_session(session)
    return ProvisionContext(session=session, provider=provider, settings=settings or runtime.settings,
                            resources=SessionResources(runtime.ledger, session), sink=Collector())


def keyed(**keys: str):
    from mk0r_tui.core.credentials import Credentials

    return Credentials(keys, use_keyring=False)


def progress_of(ctx) -> list[str]:
    from mk0r_tui.core.events import ProviderProgressed

    return [e.message for e in ctx.sink.of(ProviderProgressed)]


def retries_of(ctx) -> list[tuple[int, int, float, str]]:
    from mk0r_tui.core.events import ProviderRetrying

    return [(e.attempt, e.max_attempts, e.delay_s, e.reason) for e in ctx.sink.of(ProviderRetrying)]
