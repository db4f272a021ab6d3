"""Check mocked HTTP traffic against the providers' OpenAPI documents.

Specs live in ``tests/api-specs/`` inside the repository (copies of the public
documents listed in SOURCES.md there; override with ``MK0R_API_SPECS``). A request is matched to a spec by URL prefix through a
:class:`SpecRegistry`; the prefix is cut off and the rest of the path is
validated with openapi-core against the spec's ``paths`` (the spec's own
``servers`` are replaced, so test base URLs like ``https://neon.test/api/v2``
work). Register fixtures with ``from apispec import *`` in ``tests/conftest.py``.

Checks: documented method+path (plus :data:`ALIASES`), path/query/header
parameters (missing required, wrong type, unknown query names), request body
against its schema with undeclared properties rejected, credentials present for
one declared security requirement, documented response status and response
body schema (extra response properties allowed). PostHog capture has no spec
and is checked by hand (:func:`_posthog_errors`).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import respx
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.security.factories import SecurityProviderFactory
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.validation.request.exceptions import RequestBodyValidationError
from openapi_core.validation.response.exceptions import InvalidData
from werkzeug.datastructures import Headers, ImmutableMultiDict

__all__ = [
    "ALIASES", "DEFAULT_BASE_URLS", "SpecCheckedRouter", "SpecRegistry", "load_spec",
    "respx_spec", "spec_checked_router", "specs_dir", "validate_all",
    "validate_request", "validate_response", "missing_specs", "pytest_sessionstart",
]

SPEC_NAMES = ("neon", "resend", "github", "e2b", "e2b-envd")
POSTHOG = "posthog"  # pseudo spec: hand-written capture contract
DEFAULT_BASE_URLS = {
    "https://console.neon.tech/api/v2": "neon",
    "https://api.resend.com": "resend",
    "https://api.github.com": "github",
    "https://api.e2b.app": "e2b",
    "https://49983-*": "e2b-envd",  # envd: https://49983-<sandbox id>.<domain>
    "https://us.i.posthog.com": POSTHOG,
}
# (spec, METHOD, regex on the path we sent) -> replacement path in the spec.
# e2b SDK 2.63 uses /v2 routes the spec snapshot lacks (SOURCES.md "Known gap");
# their bodies use the same fields as the documented v1 routes.
ALIASES: list[tuple[str, str, re.Pattern[str], str]] = [
    ("e2b", "POST", re.compile(r"^/v2/sandboxes$"), "/sandboxes"),
    ("e2b", "POST", re.compile(r"^/v2/sandboxes/([^/]+)/connect$"), r"/sandboxes/\1/connect"),
]
_SPEC_HOST = "https://spec.invalid"  # neutral server every loaded spec is given


SPECS_DIR = Path(__file__).resolve().parent / "api-specs"


def specs_dir() -> Path:
    env = os.environ.get("MK0R_API_SPECS")
    return Path(env) if env else SPECS_DIR


class SpecMissing(FileNotFoundError):
    """An OpenAPI document is not where the tests look for it (one short message, no traceback)."""


def missing_specs(directory: Path | None = None) -> list[Path]:
    directory = specs_dir() if directory is None else directory
    return [directory / f"{name}.json" for name in SPEC_NAMES if not (directory / f"{name}.json").is_file()]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop the run with one message when the documents are missing, instead of a failure
    per mocked request (a hook: ``from apispec import *`` in conftest registers it)."""
    missing = missing_specs()
    if missing:
        pytest.exit("the providers' OpenAPI documents are missing: " + ", ".join(map(str, missing))
                    + " (they belong in tests/api-specs/; MK0R_API_SPECS overrides the directory)",
                    returncode=pytest.ExitCode.USAGE_ERROR)


class _NoSecurity(SecurityProviderFactory):
    """openapi-core's security check stops all other checks on failure; we do it ourselves."""

    def create(self, scheme: Any) -> Any:
        return lambda parameters: None


@dataclass(frozen=True)
class LoadedSpec:
    name: str
    raw: dict
    requests: OpenAPI  # undeclared body properties forbidden (catches typos)
    responses: OpenAPI  # providers may add response fields: allowed


def load_spec(name: str) -> LoadedSpec:
    return _load_spec(name, str(specs_dir()))


@cache
def _load_spec(name: str, directory: str) -> LoadedSpec:
    if name not in SPEC_NAMES:
        raise ValueError(f"unknown spec {name!r}; known: {', '.join(SPEC_NAMES)}")
    path = Path(directory) / f"{name}.json"
    try:
        text = path.read_text()
    except FileNotFoundError:
        source = "MK0R_API_SPECS" if os.environ.get("MK0R_API_SPECS") else "the default, tests/api-specs/"
        raise SpecMissing(f"OpenAPI document {name}.json not found at {path} (directory from {source}); "
                          "the tests validate mocked HTTP against it") from None
    raw = json.loads(text)
    data = copy.deepcopy(raw)
    data["servers"] = [{"url": _SPEC_HOST}]
    for item in data["paths"].values():
        item.pop("servers", None)
        for op in item.values():
            if isinstance(op, dict):
                op.pop("servers", None)
    strict = OpenAPI.from_dict(data, config=Config(
        security_provider_factory=_NoSecurity(), additional_properties_default_policy="forbid"))
    lenient = OpenAPI(strict.spec, config=Config(spec_validator_cls=None))
    return LoadedSpec(name, raw, strict, lenient)


class SpecRegistry:
    """Maps base URL prefixes to spec names (or ``"posthog"``); ``*`` may appear in the host.

    The longest matching prefix wins, e.g. ``SpecRegistry({"https://neon.test/api/v2": "neon"})``.
    """

    def __init__(self, base_urls: dict[str, str] | None = None):
        self._bases: list[tuple[str, str, str, str]] = []
        for base, name in (DEFAULT_BASE_URLS if base_urls is None else base_urls).items():
            self.add(base, name)

    def add(self, base_url: str, name: str) -> None:
        if name not in SPEC_NAMES and name != POSTHOG:
            raise ValueError(f"unknown spec {name!r}")
        parts = urlsplit(base_url)
        self._bases.append((parts.scheme, parts.netloc.lower(), parts.path.rstrip("/"), name))
        self._bases.sort(key=lambda b: (len(b[2]), "*" not in b[1]), reverse=True)

    def match(self, url: httpx.URL) -> tuple[str, str] | None:
        """Return ``(spec name, path relative to the base)`` or None."""
        netloc = url.netloc.decode().lower()
        for scheme, host, prefix, name in self._bases:
            if url.scheme == scheme and fnmatch.fnmatchcase(netloc, host) and (
                    url.path == prefix or url.path.startswith(prefix + "/")):
                return name, url.path[len(prefix):] or "/"
        return None


_DEFAULT_REGISTRY = SpecRegistry()


class _Request:
    """openapi-core ``Request`` protocol over an httpx.Request, re-rooted at the spec host."""

    host_url = _SPEC_HOST

    def __init__(self, request: httpx.Request, path: str):
        self.path, self.method = path, request.method.lower()
        self.body = _content(request) or None
        self.content_type = request.headers.get("content-type", "")
        cookies = SimpleCookie(request.headers.get("cookie", ""))
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(request.url.params.multi_items()),
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict({k: v.value for k, v in cookies.items()}))


class _Response:
    def __init__(self, response: httpx.Response):
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.headers = Headers(list(response.headers.items()))
        self.data = _content(response) or None


def _content(message: httpx.Request | httpx.Response) -> bytes:
    try:
        return message.content
    except (httpx.RequestNotRead, httpx.ResponseNotRead):
        return message.read()


def _describe(exc: BaseException) -> str:
    """Flatten openapi-core's exception chain into one readable (multi-line) message."""
    head, details, cause = str(exc), [], exc.__cause__
    while cause is not None:
        schema_errors = list(getattr(cause, "schema_errors", None) or [])
        if schema_errors:
            details += [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                        for e in schema_errors]
            if isinstance(exc, (RequestBodyValidationError, InvalidData)):
                head = "body does not match its schema"
            break
        details.append(str(cause))
        cause = cause.__cause__
    details = [d for d in details if d not in head]
    return "\n".join([head, *details]).replace("\n", "\n      ")


def _resolve(registry: SpecRegistry | None, request: httpx.Request):
    match = (registry or _DEFAULT_REGISTRY).match(request.url)
    if match is None:
        return None, None
    name, path = match
    for spec, method, pattern, target in ALIASES:
        if spec == name and method == request.method and pattern.match(path):
            return name, pattern.sub(target, path)
    return name, path


def _operation(spec: LoadedSpec, method: str, path: str):
    try:
        return APICallPathFinder(spec.requests.spec).find(method.lower(), _SPEC_HOST + path)
    except PathError:
        return None


def _documented(spec: LoadedSpec) -> str:
    return ", ".join(f"{m.upper()} {p}" for p, item in spec.raw["paths"].items()
                     for m in item if m not in ("parameters", "servers", "summary", "description"))


def _security_errors(spec: LoadedSpec, operation: Any, request: httpx.Request, cookies: dict) -> list[str]:
    requirements = operation / "security" if "security" in operation else (
        spec.requests.spec / "security" if "security" in spec.requests.spec else None)
    if requirements is None:
        return []
    schemes = spec.raw.get("components", {}).get("securitySchemes", {})
    options = [list(req.str_keys()) for req in requirements]
    if not options:
        return []
    for names in options:
        if all(_has_credential(schemes.get(n, {}), request, cookies) for n in names):
            return []
    return [f"no credentials for any declared security requirement {options} "
            "(expected e.g. Authorization: Bearer ... or the named API-key header)"]


def _has_credential(scheme: dict, request: httpx.Request, cookies: dict) -> bool:
    kind = scheme.get("type")
    if kind == "apiKey":
        where = {"header": request.headers, "query": request.url.params, "cookie": cookies}
        return bool(where[scheme["in"]].get(scheme["name"]))
    auth = request.headers.get("authorization", "")
    word = scheme.get("scheme", "bearer") if kind == "http" else "bearer"
    return auth.lower().startswith(word.lower() + " ") and bool(auth.split(" ", 1)[1].strip())


def _unknown_query_errors(found: Any, request: httpx.Request) -> list[str]:
    names, prefixes = set(), []
    for container in (found.path, found.operation):
        for param in container.get("parameters", []):
            if (param / "in").read_str() != "query":
                continue
            name = (param / "name").read_str()
            if (param / "style").read_str(default="form") == "deepObject":
                prefixes.append(name + "[")
            elif (param / "schema" / "type").read_str(default="") == "object":
                return []  # exploded object: its keys are free-form
            names.add(name)
    unknown = sorted(k for k in request.url.params if k not in names
                     and not any(k.startswith(p) for p in prefixes))
    return [f"unknown query parameter {k!r} (declared: {sorted(names)})" for k in unknown]


def _multipart_errors(found: Any, request: httpx.Request) -> list[str]:
    """openapi-core reads only declared form fields, so a misnamed part would pass silently."""
    content = found.operation / "requestBody" / "content"
    if not request.headers.get("content-type", "").startswith("multipart/form-data") or (
            "requestBody" not in found.operation or "multipart/form-data" not in content):
        return []
    schema = content / "multipart/form-data" / "schema"
    declared = set((schema / "properties").str_keys()) if "properties" in schema else None
    sent = re.findall(rb'(?im)^content-disposition:\s*form-data;\s*name="([^"]*)"', _content(request))
    return [f"undeclared multipart field {n.decode()!r} (declared: {sorted(declared)})"
            for n in sent if declared is not None and n.decode() not in declared]


def _posthog_flags_errors(request: httpx.Request) -> list[str]:
    """Flags contract from posthog.com/docs/api/flags (no OpenAPI spec exists): `POST /flags?v=2`,
    a JSON object with non-empty `api_key` and `distinct_id`."""
    errors = [] if request.url.params.get("v") == "2" else ["flags: the v=2 query parameter is required"]
    try:
        body = json.loads(_content(request))
    except ValueError as exc:
        return errors + [f"flags body is not JSON: {exc}"]
    if not isinstance(body, dict):
        return errors + ["flags body must be a JSON object"]
    return errors + [f"flags: {key!r} must be a non-empty string" for key in ("api_key", "distinct_id")
                     if not isinstance(body.get(key), str) or not body[key]]


def _posthog_errors(request: httpx.Request, path: str) -> list[str]:
    """Capture contract from posthog.com/docs/api/capture, and the flags endpoint (no OpenAPI
    spec exists for either)."""
    if (request.method, path) == ("POST", "/flags"):
        return _posthog_flags_errors(request)
    if (request.method, path) != ("POST", "/i/v0/e/"):
        return [f"{request.method} {path}: only POST /i/v0/e/ and POST /flags are known PostHog endpoints"]
    if not request.headers.get("content-type", "").startswith("application/json"):
        return ["capture body must be sent as application/json"]
    try:
        body = json.loads(_content(request))
    except ValueError as exc:
        return [f"capture body is not JSON: {exc}"]
    if not isinstance(body, dict):
        return ["capture body must be a JSON object"]
    props = body.get("properties", {})
    errors = [] if isinstance(props, dict) else ["'properties' must be an object"]
    for key in ("api_key", "event"):
        if not isinstance(body.get(key), str) or not body[key]:
            errors.append(f"{key!r} must be a non-empty string")
    distinct = body.get("distinct_id", props.get("distinct_id") if isinstance(props, dict) else None)
    if not isinstance(distinct, str) or not distinct:
        errors.append("'distinct_id' (or properties.distinct_id) must be a non-empty string")
    return errors


def _request_errors(request: httpx.Request, registry: SpecRegistry | None = None) -> list[str]:
    name, path = _resolve(registry, request)
    if name is None:
        return ["no spec registered for this URL (add it with spec_base(base_url, spec))"]
    if name == POSTHOG:
        return _posthog_errors(request, path)
    spec = load_spec(name)
    found = _operation(spec, request.method, path)
    if found is None:
        return [f"{request.method} {path} is not in {name}.json; documented: {_documented(spec)}"]
    wrapped = _Request(request, path)
    errors = _security_errors(spec, found.operation, request, dict(wrapped.parameters.cookie))
    errors += _unknown_query_errors(found, request)
    errors += _multipart_errors(found, request)
    errors += [_describe(exc) for exc in spec.requests.iter_request_errors(wrapped)]
    return errors


def _response_errors(request: httpx.Request, response: httpx.Response,
                     registry: SpecRegistry | None = None) -> list[str]:
    name, path = _resolve(registry, request)
    if name is None or name == POSTHOG:
        return []  # unknown host is reported by the request check; PostHog replies are not checked
    spec = load_spec(name)
    if _operation(spec, request.method, path) is None:
        return []
    return [f"response {response.status_code}: {_describe(exc)}" for exc in
            spec.responses.iter_response_errors(_Request(request, path), _Response(response))]


def _fail(request: httpx.Request, errors: list[str]) -> str:
    return f"{request.method} {request.url}\n" + "\n".join(f"  - {e}" for e in errors)


def validate_request(request: httpx.Request, registry: SpecRegistry | None = None) -> None:
    """Raise AssertionError listing every way ``request`` departs from its spec."""
    errors = _request_errors(request, registry)
    if errors:
        raise AssertionError("request does not match the API spec:\n" + _fail(request, errors))


def validate_response(request: httpx.Request, response: httpx.Response,
                      registry: SpecRegistry | None = None) -> None:
    """Raise AssertionError if ``response`` (to ``request``) is not documented by the spec."""
    errors = _response_errors(request, response, registry)
    if errors:
        raise AssertionError("response does not match the API spec:\n" + _fail(request, errors))


def validate_all(router: respx.MockRouter, registry: SpecRegistry | None = None) -> None:
    """Validate every recorded call of ``router``; one AssertionError lists all failures."""
    registry = registry or getattr(router, "registry", None)
    failures = []
    for call in router.calls:
        errors = _request_errors(call.request, registry)
        if call.optional_response is not None:
            errors += _response_errors(call.request, call.optional_response, registry)
        if errors:
            failures.append(_fail(call.request, errors))
    if failures:
        raise AssertionError(f"{len(failures)} of {len(router.calls)} HTTP call(s) break the "
                             "provider API spec:\n" + "\n".join(failures))


class SpecCheckedRouter(respx.MockRouter):
    """A respx router that knows which spec each base URL belongs to."""

    def __init__(self, *, registry: SpecRegistry | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.registry = registry or SpecRegistry()

    def spec_base(self, base_url: str, spec: str) -> None:
        """Validate calls under ``base_url`` against ``spec`` (e.g. a GitHub Enterprise URL)."""
        self.registry.add(base_url, spec)

    def validate_calls(self) -> None:
        validate_all(self, self.registry)


@contextmanager
def spec_checked_router(registry: SpecRegistry | None = None, **kwargs: Any) -> Iterator[SpecCheckedRouter]:
    """``with spec_checked_router() as mock:`` - mock HTTP, then validate all calls on exit."""
    kwargs.setdefault("assert_all_called", False)
    router = SpecCheckedRouter(registry=registry, **kwargs)
    with router:
        yield router
        router.validate_calls()  # before __exit__, which clears router.calls


@pytest.fixture
def respx_spec() -> Iterator[SpecCheckedRouter]:
    """respx router whose calls must all match the providers' specs (checked at teardown)."""
    with spec_checked_router() as router:
        yield router
