"""The library entry point, for a code generator's backend that provisions a session each time a
user submits a prompt (as the seed calls `provisionServices(sessionKey)` from `createSession`):

    from mk0r_tui import provision
    report = provision("3f2504e0-4f89-11d3-9a0c-0305e82c3301")   # the same dict as `provision --json`

`provision` / `teardown` are synchronous; `provision_async` / `teardown_async` are for a caller
already in an event loop. Each call opens the runtime the CLI would (settings, keys, the ledger
of the data dir), runs the same orchestrator, so it writes the same ledger and the same journal
(every dashboard following it sees the run live), and closes it. The CLI's JSON shapes are built
here too (`provision_report_json`, `teardown_report_json`): one place for both callers.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from mk0r_tui.core.envfile import masked_env
from mk0r_tui.core.errors import ConfigError, Mk0rError, UsageError
from mk0r_tui.core.events import EventSink, null_sink
from mk0r_tui.core.models import ProvisionReport, Session, Slot
from mk0r_tui.core.plan import Plan

if TYPE_CHECKING:
    from mk0r_tui.core.config import Settings
    from mk0r_tui.engine.runtime import Runtime
    from mk0r_tui.engine.teardown import TeardownReport

T = TypeVar("T")


def open_runtime() -> Runtime:
    """The process's runtime with the default registry: what the CLI and the library use."""
    from mk0r_tui.core.config import load_settings
    from mk0r_tui.core.logs import configure_logging
    from mk0r_tui.engine.runtime import Runtime
    from mk0r_tui.providers import DEFAULT_REGISTRY

    settings = load_settings()
    settings.ensure_data_dir()
    runtime = Runtime(settings, registry=DEFAULT_REGISTRY)
    configure_logging(settings.log_path, runtime.secrets)
    return runtime


def preflight(plan: Plan, runtime: Runtime | None = None) -> None:
    """Refuse before creating anything when the machine cannot finish the job (ConfigError, exit
    2): a target or provider whose key is missing (`--target e2b` without E2B_API_KEY used to
    create the database and the repo, then fail the target), a cloud profile that can provide
    nothing, no `git` for the local repo or folder, a bad MK0R_LOCAL_POSTGRES_URL or no embedded
    Postgres binaries."""
    if runtime is not None:
        registry, credentials, settings = runtime.registry, runtime.credentials, runtime.settings
        for step in plan.steps:
            if not step.runs:
                continue
            try:
                spec = registry.spec(step.name)
            except KeyError:
                continue
            if spec.key_name and not credentials.get(spec.key_name).present:
                what = "target" if step.slot is Slot.TARGET else f"{step.slot.value} provider"
                raise ConfigError(
                    f"the {spec.name} {what} needs {spec.key_name}, which is not set (env var or "
                    f"`mk0r-tui keys set {spec.key_name}`); nothing was created"
                )
        if settings.profile == "cloud":
            cloud = [s.name for s in registry.providers if s.cloud and s.name in plan.running]
            if not cloud:
                keys = ", ".join(dict.fromkeys(s.key_name for s in registry.providers if s.cloud and s.key_name))
                raise ConfigError(
                    f"MK0R_PROFILE=cloud but no provisioning key is set, so no cloud provider can run (set one of {keys}, "
                    "or use MK0R_PROFILE=auto for the local profile); nothing was created"
                )
        if "local-postgres" in plan.running:
            _check_local_postgres(settings)
    if "local-git" in plan.running or plan.target.name == "local-folder":
        from mk0r_tui.providers.local_git import git_binary

        git_binary()


def _check_local_postgres(settings: Settings) -> None:
    from mk0r_tui.core.errors import ProviderError

    if settings.local_postgres_url:
        from mk0r_tui.providers.local_postgres import admin_from_url

        try:
            admin_from_url(settings.local_postgres_url)
        except ProviderError as exc:
            raise ConfigError(f"{exc}; nothing was created") from None
        return
    from mk0r_tui.providers.embedded_pg import binaries_missing

    missing = binaries_missing()
    if missing:
        raise ConfigError(f"the embedded Postgres cannot run: {missing}; nothing was created")


def plan_run(runtime: Runtime, target: str | None, sandbox_id: str | None) -> Plan:
    """The run's plan (resolved once), checked: what is printed or returned is what runs."""
    plan = runtime.plan(target)
    preflight(plan, runtime)
    cloud = any(s.cloud and s.name in plan.running for s in runtime.registry.providers)
    if plan.target.name == "e2b" or (cloud and not runtime.settings.pool_on):
        from mk0r_tui.core.tls import prefetch_ssl_context

        # built in a thread (loading the CA bundle releases the GIL) while the providers import.
        # None for the local profile (no TLS connection), nor when the warm pool may serve the
        # cloud slots (a claim needs no request; a provider built after all prefetches it)
        prefetch_ssl_context()
    if sandbox_id:
        if plan.target.name != "e2b":
            raise UsageError("--sandbox only applies to the e2b target (set E2B_API_KEY or pass --target e2b)")
        runtime.settings = runtime.settings.model_copy(update={"e2b_sandbox_id": sandbox_id})
    return plan


def provision_report_json(report: ProvisionReport, *, reveal: bool) -> dict[str, Any]:
    """`provision --json`: the stable shape scripts (and the library's callers) depend on."""
    return {
        "session": report.session.key,
        "slug": report.session.slug,
        "env_file": report.env_file,
        "target": report.target,
        "ok": report.ok,
        "providers": [r.to_json() for r in report.results],
        "env": dict(report.env) if reveal else masked_env(report.env),
    }


def teardown_report_json(report: TeardownReport) -> dict[str, Any]:
    """`teardown --json`."""
    return {"session": report.session, "ok": report.ok, "resources": [o.to_json() for o in report.outcomes]}


def _leaf_error(exc: BaseException) -> BaseException:
    """A task group's wrapper around one of our errors is that error: the caller gets one
    `Mk0rError` (with its exit code and message), never an ExceptionGroup."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def provision_async(
    session_key: str, *, target: str | None = None, sandbox: str | None = None, reveal: bool = False,
    sink: EventSink = null_sink,
) -> dict[str, Any]:
    """Provision every service of `session_key` (again: what exists is reused, only failures are
    retried) and return the `provision --json` dict; secret values masked unless `reveal`.
    Raises `Mk0rError` (a `UsageError` or `ConfigError`) when nothing could start."""
    from mk0r_tui.engine.orchestrator import provision_services

    session = Session.parse(session_key)
    runtime = open_runtime()
    try:
        plan = plan_run(runtime, target, sandbox)
        try:
            report = await provision_services(runtime, session, plan, sink=sink)
        except BaseExceptionGroup as group:
            leaf = _leaf_error(group)
            if isinstance(leaf, Mk0rError):
                raise leaf from None
            raise
        return provision_report_json(report, reveal=reveal)
    finally:
        await runtime.aclose()
        runtime.close()


async def teardown_async(session_key: str, *, sink: EventSink = null_sink) -> dict[str, Any]:
    """Delete every resource of a session (idempotent) and return the `teardown --json` dict.
    No confirmation is asked: the call is the confirmation."""
    from mk0r_tui.engine.teardown import teardown_session

    runtime = open_runtime()
    try:
        row = runtime.ledger.require_session(session_key)
        try:
            report = await teardown_session(runtime, row.key, sink=sink)
        except BaseExceptionGroup as group:
            leaf = _leaf_error(group)
            if isinstance(leaf, Mk0rError):
                raise leaf from None
            raise
        return teardown_report_json(report)
    finally:
        await runtime.aclose()
        runtime.close()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import asyncio

        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise UsageError("called inside a running event loop: await provision_async()/teardown_async() instead")


def provision(session_key: str, *, target: str | None = None, sandbox: str | None = None, reveal: bool = False) -> dict[str, Any]:
    """The synchronous form of `provision_async`."""
    return _run(provision_async(session_key, target=target, sandbox=sandbox, reveal=reveal))


def teardown(session_key: str) -> dict[str, Any]:
    """The synchronous form of `teardown_async`."""
    return _run(teardown_async(session_key))


__all__ = [
    "open_runtime", "plan_run", "preflight", "provision", "provision_async", "provision_report_json", "teardown",
    "teardown_async", "teardown_report_json",
]
