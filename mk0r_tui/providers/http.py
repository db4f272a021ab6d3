"""The one HTTP behaviour every cloud provider shares.

`ApiClient` wraps one `httpx.AsyncClient` per provider instance (and the runtime holds one
instance per process, so every session shares its pool and its limits). It:

- retries 429, 5xx (and any extra status a provider names, e.g. Neon's 423) and connection
  failures with tenacity: exponential backoff with jitter, at most `settings.max_attempts`;
- honours `Retry-After` (seconds or an HTTP date), `x-ratelimit-reset` (GitHub: epoch seconds)
  and `ratelimit-reset` (Resend, IETF draft: seconds) when the remaining budget is 0, and holds
  every later request of the process until that moment;
- never retries 400/401/403/404/422 (a 403 that is a rate limit is a rate limit, not a refusal);
- does not resend a request whose answer was lost after it was written when the request is not
  idempotent: it raises `ProviderError(outcome_unknown=True)` and `create_or_adopt` looks the
  resource up by name before deciding to create it again. A 500/502/504 to a `POST` is the same
  "outcome unknown": the server may have committed the create before failing (Neon's error
  description: only 503 and 423 are safe to retry for non-GET methods; GitHub and Resend promise
  no idempotency), so only the statuses a provider names in `blind_retry_statuses` (and 429, a
  request refused before it ran) are resent as they are;
- counts every try of a provider's main call (`main=True`) with `ctx.attempt()`, retries included;
- keeps the provider's budgets (core/budgets.py), shared by every process on the data dir or
  the Postgres ledger: requests in flight per provider, requests per second (Resend) or per
  minute (Neon), mutating requests one at a time with a gap counted start to start, and
  windows on creates (GitHub); a wait is reported as "waiting for GitHub's rate limit
  (n ahead)" and does not spend the provider's timeout;
- lets a create that was sent finish after its caller gave up (`late`), so its answer is
  recorded, never orphaned;
- turns every failure into a `ProviderError` naming the call, the status, the provider's own
  message and a hint, and parses answers into small pydantic models so a missing field or a
  truncated body is a clear error.

Time comes from a `Clock`, so tests drive waits with a fake one and never sleep.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from mk0r_tui.core.budgets import (
    Budgets,
    Grant,
    Rule,
    background_lane,
    budget_key,
    memory_budgets,
    outlive,
    release_shared,
    shared_budgets,
)
from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.errors import AuthenticationError, ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import ResourceState
from mk0r_tui.core.provider import Provider, ProvisionContext, background_work
from mk0r_tui.core.tls import prefetch_ssl_context, shared_ssl_context

log = logging.getLogger("mk0r_tui.http")

T = TypeVar("T")
M = TypeVar("M")

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENT_METHODS = SAFE_METHODS | {"PUT", "DELETE"}
#: attempts for "connection refused": fail fast-ish, nothing was sent anyway
CONNECT_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Clock:
    """Wall time (for HTTP dates and reset epochs), monotonic time and sleep, injectable."""

    now: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


SYSTEM_CLOCK = Clock()


class RetryReporter(Protocol):
    """What a provisioning context offers the client: the panel's "retrying n/N" and progress."""

    def retrying(self, attempt: int, max_attempts: int, delay_s: float, reason: str) -> None: ...

    def progress(self, message: str) -> None: ...

    def attempt(self) -> int:
        """Count one try of the provider's main call (issue 15: attempts tell the truth)."""
        ...


class RetryableError(ProviderError):
    """A failure worth another attempt; `retry_after` is the provider's own wait, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, min_wait_s: float = 0.0,
                 connect: bool = False, **kwargs: Any) -> None:
        super().__init__(message, retryable=True, **kwargs)
        self.retry_after = retry_after
        self.min_wait_s = min_wait_s
        self.connect = connect


# -- parsing -------------------------------------------------------------------------------


def provider_message(response: httpx.Response) -> str | None:
    """The provider's own words from an error body (`message`, plus GitHub's `errors[].message`)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:200] or None
    if not isinstance(body, dict):
        return None
    message = body.get("message") or body.get("error") or body.get("detail")
    details = []
    for item in body.get("errors") or []:
        if isinstance(item, dict):
            detail = item.get("message") or " ".join(str(item.get(k)) for k in ("field", "code") if item.get(k))
            if detail:
                details.append(str(detail))
        elif isinstance(item, str):
            details.append(item)
    parts = [str(message)] if message else []
    parts.extend(d for d in details if d not in parts)
    return ": ".join(parts) or None


def body_field(response: httpx.Response, key: str) -> str | None:
    """One top-level string field of a JSON error body (Neon's `code`, `request_id`), if any."""
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get(key) if isinstance(body, dict) else None
    return str(value) if value not in (None, "") else None


def parse_model(response: httpx.Response, model: type[M], call: str) -> M:
    """The answer as `model` (a pydantic model or a type like `list[Model]`), or a
    ProviderError saying which field is missing or malformed."""
    try:
        data = response.json()
    except ValueError:
        raise ProviderError(
            "the answer is not valid JSON (truncated or not JSON)", call=call, status=response.status_code,
            hint="the provider or a proxy in between sent a broken body; try again",
        ) from None
    try:
        return TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the body"
        raise ProviderError(
            f"unexpected answer: {where}: {first['msg'].lower()}", call=call, status=response.status_code,
            hint="the provider's API may have changed; please report it",
        ) from None


def iso_epoch(text: str | None) -> float | None:
    """Epoch seconds from the ISO 8601 timestamps providers send (`Z`, `+00:00` or `+00`)."""
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def rate_limit_reset(headers: httpx.Headers, now: float) -> float | None:
    """Seconds until the budget resets when the provider says none is left, else None.

    GitHub sends `x-ratelimit-reset` as an epoch; Resend sends the IETF draft's
    `ratelimit-reset` as seconds from now.
    """
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - now)
        except ValueError:
            return None
    if headers.get("ratelimit-remaining") == "0" and headers.get("ratelimit-reset"):
        try:
            return max(0.0, float(headers["ratelimit-reset"]))
        except ValueError:
            return None
    return None


# -- the client ----------------------------------------------------------------------------


Hinter = Callable[[int, str, str], str | None]  # (status, message, call) -> hint


@dataclass
class ApiClient:
    """One provider's HTTP client. Build it with `for_provider`; close it with `aclose`."""

    provider: str
    base_url: str
    settings: Settings
    key_name: str | None
    token: str | None
    headers: Mapping[str, str] = field(default_factory=dict)
    hinter: Hinter | None = None
    retry_statuses: frozenset[int] = RETRYABLE_STATUSES
    #: error names (`name` in the body) that are final even on a retryable status: Resend's
    #: daily/monthly quotas answer 429 but no wait within a provision lifts them
    final_error_names: frozenset[str] = frozenset()
    #: statuses after which a non-idempotent request may be resent unchanged (the provider says
    #: nothing was applied); any other retryable status to a POST/PATCH is "outcome unknown"
    blind_retry_statuses: frozenset[int] = frozenset({429})
    #: a rate limit without any header says how long: wait at least this (GitHub: 60 s)
    unhinted_rate_limit_wait_s: float = 0.0
    requests_per_second: float | None = None
    #: requests per minute per key (Neon: 700); the minute is `settings.budget_minute_s`
    requests_per_minute: int | None = None
    mutation_gap_s: float | None = None
    #: (method, path) -> is it a create that GitHub's content-creation windows count
    counts_as_create: Callable[[str, str], bool] | None = None
    #: (span in minutes, creates) windows for those creates, e.g. ((1, 80), (60, 500))
    create_windows: tuple[tuple[float, int], ...] = ()
    clock: Clock = SYSTEM_CLOCK
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    _client: httpx.AsyncClient | None = field(default=None, init=False, repr=False)
    _budgets: Budgets | None = field(default=None, init=False, repr=False)
    _shared: bool = field(default=False, init=False, repr=False)
    _not_before: float = field(default=0.0, init=False, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)

    @property
    def max_attempts(self) -> int:
        return self.settings.max_attempts

    @property
    def longest_wait_s(self) -> float:
        """A provider asking for a longer wait than this fails at once instead of hanging."""
        return self.settings.provider_timeout_s

    def _http(self) -> httpx.AsyncClient:
        """The pooled client, built on first use in this event loop. The CLI may run several
        `asyncio.run`s with one runtime (scan, then delete): a client and the limits bound to a
        finished loop cannot be reused there, so they are built again; rate-limit deadlines
        (`_not_before`, the last mutation) are plain times and carry over."""
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is not loop:
            self._client = None  # its connections belong to a closed loop; nothing to await there
        if self._client is None:
            self._loop = loop
            headers = {"User-Agent": "mk0r-tui", **self.headers}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self._client = httpx.AsyncClient(
                base_url=self.base_url.rstrip("/"), headers=headers, timeout=self.settings.http_timeout_s,
                verify=shared_ssl_context(),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None
        if self._budgets is not None and self._shared:
            release_shared(self._budgets)
        self._budgets = None

    # -- one request, with retries --------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        ctx: RetryReporter | None = None,
        accept: tuple[int, ...] = (),
        label: str | None = None,
        main: bool = False,
        late: Callable[[httpx.Response], Awaitable[None]] | None = None,
    ) -> httpx.Response:
        """Send `method path`; return the response if it is 2xx or in `accept`, else raise.

        `label` names the call in errors when the path holds an id the operator need not see.
        `main` marks the provider's main call: every try of it (retries too) is counted with
        `ctx.attempt()`, so the panel's "attempts" is the number of requests really sent.
        `late`: when the caller gives up (timeout, cancel) after the request went out, the
        request runs on and `late` gets its 2xx answer (a create records what it made).
        """
        if not self.token and self.key_name:
            raise AuthenticationError(
                f"{self.key_name} is not set", call=f"{method} {path}",
                hint=f"run `mk0r-tui keys set {self.key_name}` or export it",
            )
        call = label or f"{method} {path}"
        http = self._http()
        retrying = AsyncRetrying(
            stop=self._stop,
            wait=self._wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, RetryableError)),
            sleep=self.clock.sleep,
            before_sleep=lambda state: self._before_sleep(state, call, ctx),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if main and ctx is not None:
                        ctx.attempt()
                    return await self._send_once(http, method, path, params, json, accept, call, ctx, late)
        except RetryableError as exc:
            attempts = retrying.statistics.get("attempt_number", self.max_attempts)
            raise ProviderError(
                f"{exc.args[0]} (gave up after {attempts} attempt{'s' if attempts != 1 else ''})",
                call=exc.call, status=exc.status, hint=exc.hint,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt_limit(self, state: RetryCallState) -> int:
        """Attempts allowed for the failure at hand: fewer for a connection that is refused."""
        exc = state.outcome.exception() if state.outcome else None
        limit = CONNECT_ATTEMPTS if isinstance(exc, RetryableError) and exc.connect else self.max_attempts
        return min(limit, self.max_attempts)

    def _stop(self, state: RetryCallState) -> bool:
        return state.attempt_number >= self._attempt_limit(state)

    def _backoff(self, state: RetryCallState) -> float:
        return wait_exponential_jitter(
            multiplier=self.backoff_initial_s, max=self.backoff_max_s, jitter=self.backoff_initial_s
        )(state)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return exc.retry_after
        backoff = self._backoff(state)
        if isinstance(exc, RetryableError) and exc.min_wait_s:
            return exc.min_wait_s + backoff
        return backoff

    def _before_sleep(self, state: RetryCallState, call: str, ctx: RetryReporter | None) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        reason = _short_reason(exc)
        limit = self._attempt_limit(state)
        log.info("%s %s: %s; retrying in %.1fs (%d/%d)", self.provider, call, reason, delay,
                 state.attempt_number + 1, limit)
        if ctx is not None:
            ctx.retrying(state.attempt_number + 1, limit, delay, reason)

    async def _send_once(
        self, http: httpx.AsyncClient, method: str, path: str, params: Mapping[str, Any] | None, json: Any,
        accept: tuple[int, ...], call: str, ctx: RetryReporter | None,
        late: Callable[[httpx.Response], Awaitable[None]] | None = None,
    ) -> httpx.Response:
        await self._respect_budget(ctx)
        grant = await self._take_budget(method, path, ctx)
        started = self.clock.monotonic()
        if late is None or method.upper() in IDEMPOTENT_METHODS:
            response = await self._send_held(http, grant, method, path, params, json, call)
        else:
            response = await self._send_outliving(http, grant, method, path, params, json, call, late)
        log.debug("%s %s -> %d in %.0f ms", self.provider, call, response.status_code,
                  (self.clock.monotonic() - started) * 1000)
        self._note_budget(response)
        status = response.status_code
        if 200 <= status < 300 or status in accept:
            return response
        raise self._error_for(response, call, method)

    async def _send_outliving(
        self, http: httpx.AsyncClient, grant: Grant, method: str, path: str, params: Mapping[str, Any] | None,
        json: Any, call: str, late: Callable[[httpx.Response], Awaitable[None]],
    ) -> httpx.Response:
        """A create sent as its own task, holding its budget until the answer: when the caller
        gives up after it went out, it runs on (`outlive`), `late` records its answer, and its
        mutation slot stays taken until then."""
        send = asyncio.ensure_future(self._send_held(http, grant, method, path, params, json, call))
        try:
            return await asyncio.shield(send)
        except asyncio.CancelledError:
            if not send.done():
                async def record_answer() -> None:
                    try:
                        answer = await send
                    except Exception:  # no answer: nothing to record (orphans finds it by name)
                        return
                    if 200 <= answer.status_code < 300:
                        log.info("%s %s answered %d after its session gave up: recording it", self.provider, call,
                                 answer.status_code)
                        await late(answer)

                # the recording is what outlives the caller: the run waits for it (settle_late_answers)
                outlive(asyncio.ensure_future(record_answer()))
            raise

    def _error_for(self, response: httpx.Response, call: str, method: str = "GET") -> ProviderError:
        status = response.status_code
        message = provider_message(response) or response.reason_phrase or "error"
        code = body_field(response, "code")
        if code and code.lower() not in message.lower():
            message = f"{message} [{code}]"  # Neon's machine code (e.g. PROJECTS_LIMIT_EXCEEDED)
        request_id = body_field(response, "request_id")
        if request_id:
            # Neon's support asks for it; it is not a secret
            log.warning("%s %s -> HTTP %d (request_id %s)", self.provider, call, status, request_id)
            message = f"{message} (request_id {request_id})"
        now = self.clock.now()
        retry_after = parse_retry_after(response.headers.get("retry-after"), now)
        if retry_after is None:
            retry_after = rate_limit_reset(response.headers, now)
        name = body_field(response, "name")
        if name and name in self.final_error_names:
            return ProviderError(message, call=call, status=status, hint=self._hint(status, f"{message} [{name}]", call))
        rate_limited = status == 429 or (status == 403 and (retry_after is not None or "rate limit" in message.lower()))
        if (not rate_limited and status in self.retry_statuses and method.upper() not in IDEMPOTENT_METHODS
                and status not in self.blind_retry_statuses):
            # the server may have applied the create before it failed: never resend it blindly;
            # the caller looks the resource up by name (create_or_adopt) before creating again
            log.info("%s %s: HTTP %d to a %s; the outcome is unknown", self.provider, call, status, method.upper())
            return ProviderError(
                f"{message} (the request may have been applied)", call=call, status=status, outcome_unknown=True,
                hint=self._hint(status, message, call),
            )
        if rate_limited or status in self.retry_statuses:
            if retry_after is not None and retry_after > self.longest_wait_s:
                return ProviderError(
                    message, call=call, status=status,
                    hint=f"rate limited: the provider asks to wait {retry_after:.0f}s, longer than "
                         f"MK0R_PROVIDER_TIMEOUT_S ({self.longest_wait_s:.0f}s); try again later",
                )
            if retry_after is not None:
                self._not_before = max(self._not_before, now + retry_after)
            return RetryableError(
                message, call=call, status=status, retry_after=retry_after,
                min_wait_s=self.unhinted_rate_limit_wait_s if rate_limited and retry_after is None else 0.0,
                hint=self._hint(status, message, call),
            )
        error_cls = AuthenticationError if status in (401, 403) else ProviderError
        hint = self._hint(status, message, call)
        accepted = response.headers.get("x-accepted-github-permissions")
        if status == 403 and accepted:
            # GitHub names the fine-grained permissions the call needed, e.g. "administration=write"
            wanted = ", ".join(f"{k.strip().replace('_', ' ').title()}: {v.strip()}"
                               for k, v in (p.split("=", 1) for p in accepted.split(",") if "=" in p))
            hint = (f"the token lacks the permission GitHub asks for ({wanted or accepted}); for a fine-grained "
                    "token grant it, and if the organisation requires approval, wait until it is approved")
        return error_cls(message, call=call, status=status, hint=hint)

    def _hint(self, status: int, message: str, call: str) -> str | None:
        if self.hinter is not None:
            hint = self.hinter(status, message, call)
            if hint:
                return hint
        if status == 401 and self.key_name:
            return f"check {self.key_name}: the provider did not accept it"
        if status == 403 and self.key_name:
            return f"{self.key_name} is not allowed to do this"
        return None

    async def _send_held(
        self, http: httpx.AsyncClient, grant: Grant, method: str, path: str, params: Mapping[str, Any] | None,
        json: Any, call: str,
    ) -> httpx.Response:
        async def trace(event: str, info: Mapping[str, Any]) -> None:
            # httpcore's trace: the moment the request's first bytes are written (after any
            # connection set-up), which is when the provider sees it start
            if event.endswith("send_request_headers.started"):
                self.budgets.left(grant)

        try:
            grant.sent()
            return await http.request(method, path, params=params, json=json, extensions={"trace": trace})
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryableError(
                f"cannot reach {self.base_url} ({_transport_reason(exc)})", call=call, connect=True,
                hint="check the network and the provider's base URL setting",
            ) from None
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            if method.upper() in IDEMPOTENT_METHODS:
                raise RetryableError(f"no answer ({_transport_reason(exc)})", call=call) from None
            raise ProviderError(
                f"no answer after the request was sent ({_transport_reason(exc)}); it may have been applied",
                call=call, outcome_unknown=True,
            ) from None
        finally:
            self.budgets.release(grant)

    # -- limits ---------------------------------------------------------------------------

    @property
    def budgets(self) -> Budgets:
        """The budget store: shared by every process on the data dir (or the Postgres ledger);
        with an injected clock (tests), this client's own, on that clock."""
        if self._budgets is None:
            if self.clock is SYSTEM_CLOCK:
                self._budgets = shared_budgets(self.settings.data_dir, self.settings.ledger_url)
                self._shared = True
            else:
                self._budgets = memory_budgets(self.clock.monotonic, self.clock.sleep)
        return self._budgets

    def rules_for(self, method: str, path: str) -> tuple[str, tuple[Rule, ...]]:
        """The lane a request waits in and every budget it spends."""
        def key(what: str) -> str:
            return budget_key(self.provider, self.token, what)

        minute = self.settings.budget_minute_s
        lease = self.settings.http_timeout_s * 2 + 30.0
        rules = [Rule(key("in-flight"), slots=self.settings.concurrency_for(self.provider), lease_s=lease)]
        if self.requests_per_second:  # no burst: the team limit holds even at start; the next request
            # waits until this one has really left (a slow first connection must not bunch them)
            rules.append(Rule(key("rate"), slots=1, until_sent=True, gap_s=1.0 / self.requests_per_second, lease_s=lease))
        if self.requests_per_minute:
            rules.append(Rule(key("per-minute"), windows=((minute, self.requests_per_minute),)))
        mutation = self.mutation_gap_s is not None and method.upper() not in SAFE_METHODS
        if mutation:
            rules.append(Rule(key("mutations"), slots=1, gap_s=self.mutation_gap_s or 0.0, lease_s=lease))
        if self.create_windows and self.counts_as_create is not None and self.counts_as_create(method, path):
            rules.append(Rule(key("creates"), windows=tuple((span * minute, n) for span, n in self.create_windows)))
        return key("mutation-lane" if mutation else "lane"), tuple(rules)

    async def _take_budget(self, method: str, path: str, ctx: RetryReporter | None) -> Grant:
        lane, rules = self.rules_for(method, path)
        if background_work.get():  # the warm pool's refill: after every session's own request
            lane = background_lane(lane)
        report = ctx.progress if ctx is not None else None
        return await self.budgets.acquire(lane, rules, label=f"{_display(self.provider)}'s rate limit", report=report)

    def _note_budget(self, response: httpx.Response) -> None:
        now = self.clock.now()
        reset = rate_limit_reset(response.headers, now)
        if reset is not None:
            self._not_before = max(self._not_before, now + reset)

    async def _respect_budget(self, ctx: RetryReporter | None) -> None:
        """Hold a request until a rate-limit window the provider announced has passed."""
        wait = self._not_before - self.clock.now()
        if wait > 0:
            if ctx is not None:
                ctx.progress(f"{self.provider} rate limit reached: waiting {wait:.0f}s")
            await self.clock.sleep(wait)


_DISPLAY = {"github": "GitHub", "neon": "Neon", "resend": "Resend", "posthog": "PostHog", "e2b": "E2B"}


def _display(provider: str) -> str:
    return _DISPLAY.get(provider, provider)


def _transport_reason(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    cause: BaseException | None = exc
    while cause is not None:  # httpx says "All connection attempts failed"; the cause says why
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _short_reason(exc: BaseException | None) -> str:
    if isinstance(exc, ProviderError):
        return f"HTTP {exc.status}" if exc.status else str(exc.args[0])
    return type(exc).__name__ if exc else "retry"


# -- create, or adopt what a lost answer created ------------------------------------------


async def create_or_adopt(
    ctx: RetryReporter,
    what: str,
    create: Callable[[], Awaitable[T]],
    find: Callable[[], Awaitable[T | None]],
    *,
    attempts: int,
    clock: Clock = SYSTEM_CLOCK,
    backoff_initial_s: float = 0.5,
    backoff_max_s: float = 30.0,
) -> T:
    """Run `create`; when its outcome is unknown (the answer was lost after the request went
    out, or a 5xx came back that the provider does not call safe to resend), look the resource
    up by name (`find`) and adopt it, and only when it is not there send the create again, after
    a backoff the panel shows as "retrying n/N". So a retry never makes a second project, repo,
    segment or key."""
    import random

    for number in range(1, attempts + 1):
        try:
            return await create()
        except ProviderError as exc:
            if not exc.outcome_unknown:
                raise
            lost = f"HTTP {exc.status} to" if exc.status else "no answer to"
            ctx.progress(f"{lost} {exc.call} after it was sent: looking {what} up by name")
            reason = f"HTTP {exc.status}" if exc.status else "no answer"
            last = exc
        try:
            found = await find()
        except ProviderError as exc:
            raise lookup_failed(exc) from None
        if found is not None:
            ctx.progress(f"{what} was created: adopting it")
            return found
        if number == attempts:
            raise ProviderError(
                f"{str(last.args[0]).removesuffix(' (the request may have been applied)')} (gave up after {attempts} "
                f"attempts; {what} was looked up each time and not created)",
                call=last.call, status=last.status, hint=last.hint,
            ) from None
        ctx.progress(f"{what} was not created: sending the create again")
        delay = min(backoff_max_s, backoff_initial_s * 2 ** (number - 1)) + random.uniform(0, backoff_initial_s)
        ctx.retrying(number + 1, attempts, delay, reason)
        await clock.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def lookup_failed(exc: ProviderError) -> ProviderError:
    """A look-up by name, after a create whose answer was lost, failed: whether the resource
    exists is unknown, so the intent stays pending (never "never created": a 4xx here is the
    look-up's answer, not the create's)."""
    return ProviderError(
        f"{exc.args[0]} (looking it up after a lost create answer; whether it was created is unknown)",
        call=exc.call, status=exc.status, hint=exc.hint or "run `mk0r-tui orphans`, or provision again to adopt it",
        outcome_unknown=True,
    )


@asynccontextmanager
async def dropped_if_refused(ctx: ProvisionContext, row: ResourceRow) -> AsyncIterator[None]:
    """A create the provider refused outright (400/401/403/404/409/422) made nothing: the
    pending intent is closed as deleted, so orphan scans do not chase it. Only the create's own
    answer counts: a failed look-up (`lookup_failed`) is an unknown outcome, left pending."""
    try:
        yield
    except ProviderError as exc:
        refused = exc.status is not None and 400 <= exc.status < 500 and exc.status != 429 and not exc.outcome_unknown
        if refused and row.id is not None and row.state == ResourceState.PENDING.value:
            await ctx.dropped(row, f"never created: {exc}")
        raise


def created_but_unreadable(exc: ProviderError) -> ProviderError:
    """A 2xx create answer we cannot read still means the resource exists: look it up by name."""
    return ProviderError(exc.args[0], call=exc.call, status=exc.status, hint=exc.hint, outcome_unknown=True)


def single_match(items: list[T], what: str, call: str) -> T | None:
    """The one resource with our name; two with the same name is a clear error, not a guess."""
    if len(items) > 1:
        raise ProviderError(
            f"found {len(items)} resources named {what}; expected at most one", call=call,
            hint="delete the extra ones by hand, then provision again",
        )
    return items[0] if items else None


# -- the shared shape of a cloud provider ---------------------------------------------------


class CloudProvider(Provider):
    """Construction and closing shared by the HTTP providers: one `ApiClient` each."""

    key_name: str
    clock: Clock = SYSTEM_CLOCK

    def __init__(self, *, settings: Settings, credentials: Credentials, clock: Clock | None = None) -> None:
        self.settings = settings
        self.credentials = credentials
        if clock is not None:
            self.clock = clock
        self.key = credentials.get(self.key_name)
        self.api = self.build_client()
        prefetch_ssl_context()  # ready by the first request (one context for every provider)

    def build_client(self) -> ApiClient:  # pragma: no cover - every provider overrides it
        raise NotImplementedError

    def client_for(self, base_url: str, **options: Any) -> ApiClient:
        return ApiClient(
            provider=self.name,
            base_url=base_url,
            settings=self.settings,
            key_name=self.key_name,
            token=self.key.value,
            clock=self.clock,
            **options,
        )

    async def aclose(self) -> None:
        await self.api.aclose()
