"""The sandbox operations the e2b target needs, behind one small interface.

`SandboxBackend` is what the target calls; `E2BSandboxBackend` implements it over the `e2b`
SDK's async API. The split exists for testing: the SDK's REST and file calls go through httpx
(respx can check them against the API specs), but command execution is Connect-RPC over the
SDK's own transport, which nothing can mock, so the target's logic is tested against a fake
of this interface and the real backend's HTTP part with respx.

Every SDK failure leaves this module as a `ProviderError` (or `AuthenticationError`) that
names the call, the HTTP status and what to do; a sandbox that does not exist is `SandboxGone`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from mk0r_tui.core.errors import AuthenticationError, ProviderError

if TYPE_CHECKING:
    from e2b import ApiParams, AsyncSandbox, SandboxLifecycle

#: E2B's default user in its templates; commands that need more run as root
SANDBOX_USER = "user"


class SandboxGone(ProviderError):
    """The sandbox does not exist (any more): killed, or past its timeout."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True, slots=True)
class SandboxSummary:
    """One sandbox as a list call reports it."""

    sandbox_id: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    started_at: float | None = None  # epoch seconds
    state: str | None = None


@dataclass(frozen=True, slots=True)
class SandboxPage:
    sandboxes: tuple[SandboxSummary, ...]
    next_token: str | None = None  # None: this was the last page


@runtime_checkable
class SandboxBackend(Protocol):
    async def create(self, *, template: str, timeout_s: int, metadata: Mapping[str, str], idempotency_key: str | None = None) -> str:
        """Create a sandbox; returns its id."""
        ...

    async def connect(self, sandbox_id: str, *, timeout_s: int) -> str:
        """Attach to a running (or paused: it resumes) sandbox; raises SandboxGone."""
        ...

    async def write_file(self, sandbox_id: str, path: str, data: str) -> None: ...

    async def read_file(self, sandbox_id: str, path: str) -> str | None:
        """The file's text, or None when it does not exist."""
        ...

    async def run(self, sandbox_id: str, command: str, *, user: str | None = None, cwd: str | None = None) -> CommandResult: ...

    async def kill(self, sandbox_id: str) -> bool:
        """True if killed, False if it was already gone."""
        ...

    async def list_page(self, metadata: Mapping[str, str], next_token: str | None = None) -> SandboxPage: ...

    async def aclose(self) -> None: ...


def _epoch(value: object) -> float | None:
    return value.timestamp() if isinstance(value, dt.datetime) else None


class E2BSandboxBackend:
    """`SandboxBackend` over `e2b.AsyncSandbox`. Sandboxes it created or connected to in this
    process are kept by id, so a file write does not reconnect."""

    def __init__(
        self,
        *,
        api_key: str | None,
        domain: str | None = None,
        api_url: str | None = None,
        request_timeout_s: float | None = None,
        retries: int | None = None,
        sandbox_timeout_s: int = 3600,
        on_timeout: str = "kill",
    ) -> None:
        self._api_key = api_key
        self._sandbox_timeout_s = sandbox_timeout_s
        #: E2B lifecycle: "pause" keeps the sandbox's disk at the timeout and resumes it on use
        self._on_timeout = on_timeout
        #: the SDK's per-request options (its `ApiParams` TypedDict), passed to every call
        self._opts: ApiParams = {"api_key": api_key}
        if domain:
            self._opts["domain"] = domain
        if api_url:
            self._opts["api_url"] = api_url
        if request_timeout_s is not None:
            self._opts["request_timeout"] = request_timeout_s
        if retries is not None:
            self._opts["retries"] = retries
        self._sandboxes: dict[str, AsyncSandbox] = {}

    def _require_key(self, call: str) -> None:
        if not self._api_key:
            raise AuthenticationError("no E2B API key", call=call, hint="set E2B_API_KEY (env var or `mk0r-tui keys`)",
                                      nothing_sent=True)

    async def create(self, *, template: str, timeout_s: int, metadata: Mapping[str, str], idempotency_key: str | None = None) -> str:
        from e2b import AsyncSandbox

        call = "POST /v2/sandboxes"
        self._require_key(call)
        try:
            lifecycle: SandboxLifecycle | None = (
                {"on_timeout": "pause", "auto_resume": True} if self._on_timeout == "pause" else None
            )
            # lifecycle=None is the SDK's default: the request then carries no lifecycle fields
            sandbox = await AsyncSandbox.create(
                template=template, timeout=timeout_s, metadata=dict(metadata), idempotency_key=idempotency_key,
                lifecycle=lifecycle, **self._opts
            )
        except Exception as exc:
            raise translate(exc, call, creating=True) from None
        self._sandboxes[sandbox.sandbox_id] = sandbox
        return sandbox.sandbox_id

    async def connect(self, sandbox_id: str, *, timeout_s: int) -> str:
        from e2b import AsyncSandbox

        call = f"POST /v2/sandboxes/{sandbox_id}/connect"
        self._require_key(call)
        try:
            sandbox = await AsyncSandbox.connect(sandbox_id, timeout=timeout_s, **self._opts)
        except Exception as exc:
            raise translate(exc, call) from None
        self._sandboxes[sandbox.sandbox_id] = sandbox
        return sandbox.sandbox_id

    async def _sandbox(self, sandbox_id: str) -> AsyncSandbox:
        if sandbox_id not in self._sandboxes:
            await self.connect(sandbox_id, timeout_s=self._sandbox_timeout_s)
        return self._sandboxes[sandbox_id]

    async def write_file(self, sandbox_id: str, path: str, data: str) -> None:
        sandbox = await self._sandbox(sandbox_id)
        try:
            await sandbox.files.write(path, data)
        except Exception as exc:
            raise translate(exc, f"POST /files?path={path}") from None

    async def read_file(self, sandbox_id: str, path: str) -> str | None:
        from e2b.exceptions import FileNotFoundException

        sandbox = await self._sandbox(sandbox_id)
        try:
            return await sandbox.files.read(path)
        except FileNotFoundException:
            return None
        except Exception as exc:
            raise translate(exc, f"GET /files?path={path}") from None

    async def run(self, sandbox_id: str, command: str, *, user: str | None = None, cwd: str | None = None) -> CommandResult:
        from e2b.sandbox.commands.command_handle import CommandExitException

        sandbox = await self._sandbox(sandbox_id)
        try:
            result = await sandbox.commands.run(command, user=user, cwd=cwd)
        except CommandExitException as exc:
            return CommandResult(exc.exit_code, exc.stdout or "", exc.stderr or "")
        except Exception as exc:
            raise translate(exc, "process.Start") from None
        return CommandResult(result.exit_code, result.stdout or "", result.stderr or "")

    async def kill(self, sandbox_id: str) -> bool:
        from e2b import AsyncSandbox

        call = f"DELETE /sandboxes/{sandbox_id}"
        self._require_key(call)
        try:
            killed = await AsyncSandbox.kill(sandbox_id, **self._opts)
        except Exception as exc:
            raise translate(exc, call) from None
        self._sandboxes.pop(sandbox_id, None)
        return bool(killed)

    async def list_page(self, metadata: Mapping[str, str], next_token: str | None = None) -> SandboxPage:
        from e2b import AsyncSandbox, SandboxQuery

        call = "GET /v2/sandboxes"
        self._require_key(call)
        paginator = AsyncSandbox.list(query=SandboxQuery(metadata=dict(metadata)), next_token=next_token, **self._opts)
        try:
            items = await paginator.next_items()
        except Exception as exc:
            raise translate(exc, call) from None
        summaries = tuple(
            SandboxSummary(
                item.sandbox_id,
                dict(item.metadata or {}),
                _epoch(item.started_at),
                getattr(item.state, "value", item.state),
            )
            for item in items
        )
        return SandboxPage(summaries, paginator.next_token if paginator.has_next else None)

    async def probe(self) -> int:
        """doctor's check: list at most one sandbox (any key that may use the API may list)."""
        from e2b import AsyncSandbox

        call = "GET /v2/sandboxes"
        self._require_key(call)
        try:
            return len(await AsyncSandbox.list(limit=1, **self._opts).next_items())
        except Exception as exc:
            raise translate(exc, call) from None

    async def aclose(self) -> None:
        self._sandboxes.clear()


def translate(exc: BaseException, call: str, *, creating: bool = False) -> ProviderError:
    """An SDK exception as a ProviderError an operator can act on."""
    from e2b.exceptions import (
        AuthenticationException,
        FileNotFoundException,
        NotEnoughSpaceException,
        NotFoundException,
        RateLimitException,
        SandboxException,
        SandboxNotRunningException,
        ServiceBusyException,
        TimeoutException,
    )

    detail = str(exc).strip() or type(exc).__name__
    status = getattr(exc, "status_code", None)
    if isinstance(exc, AuthenticationException):
        return AuthenticationError("E2B refused the API key", call=call, status=401, hint="check E2B_API_KEY")
    if isinstance(exc, RateLimitException):
        return ProviderError(
            "E2B rate limit or concurrent-sandbox quota reached",
            call=call, status=429, retryable=True,
            hint="kill sandboxes you no longer need (`mk0r-tui orphans --delete`) or wait, then retry",
        )
    if isinstance(exc, ServiceBusyException):
        return ProviderError("E2B has no capacity right now", call=call, status=503, retryable=True, hint="retry in a minute")
    if isinstance(exc, FileNotFoundException):
        # a subclass of NotFoundException: a missing file is not a gone sandbox
        return ProviderError(f"file not found: {detail}", call=call, status=404)
    if isinstance(exc, (NotFoundException, SandboxNotRunningException)):
        return SandboxGone(f"not found: {detail}", call=call, status=404, hint="the sandbox was killed or timed out")
    if isinstance(exc, NotEnoughSpaceException):
        return ProviderError("the sandbox's disk is full", call=call, status=507)
    if isinstance(exc, TimeoutException):
        # a create that timed out may still have made a sandbox: discovery finds it by metadata
        return ProviderError(f"timed out: {detail}", call=call, retryable=True, outcome_unknown=creating)
    if isinstance(exc, SandboxException) and status is not None:
        if status == 403:
            return AuthenticationError(f"E2B refused the request: {detail}", call=call, status=403, hint="check E2B_API_KEY and the team's plan")
        if status >= 500:
            return ProviderError(f"E2B failed: {detail}", call=call, status=status, retryable=True, hint="retry later")
        return ProviderError(detail, call=call, status=status)
    if isinstance(exc, SandboxException):
        return ProviderError(detail, call=call)
    if isinstance(exc, KeyError) and exc.args and exc.args[0] in ("code", "message"):
        # the SDK's generated client reads every error body as {"code", "message"}; a body without
        # one (a proxy's page, a gateway error) fails inside it with a bare KeyError
        return ProviderError(
            f"E2B answered with an error the SDK cannot read (its body has no {exc.args[0]!r} field)",
            call=call, retryable=True, outcome_unknown=creating,
            hint="usually a proxy or gateway error in front of E2B; check E2B_DOMAIN / E2B_API_URL and retry",
        )
    return ProviderError(f"{type(exc).__name__}: {detail}", call=call, retryable=True, outcome_unknown=creating)
