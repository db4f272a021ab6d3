"""Provision: execute a run's plan. Emits typed events to a sink; knows no UI.

`provision_services` executes a plan: every provider of the session concurrently, all-settled:
each has its own timeout, and one that raises or hangs never blocks or cancels the others. Then
the target (local folder or sandbox) receives the flattened env. Teardown and orphans are
`teardown.py`'s: a provision does not load them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from mk0r_tui.core.budget_clock import budget_timeout, late_answers, settle_late_answers
from mk0r_tui.core.config import Settings
from mk0r_tui.core.envfile import EnvWriteError, read_env_file, write_env_file
from mk0r_tui.core.errors import Mk0rError, ProviderError
from mk0r_tui.core.events import (
    Event,
    EventSink,
    ProviderFailed,
    ProviderProgressed,
    ProviderSkipped,
    ProviderStarted,
    ProviderSucceeded,
    RunStarted,
    SessionProvisioned,
    null_sink,
)
from mk0r_tui.core.instructions import ENV_HEADER
from mk0r_tui.core.ledger import Ledger, ResourceRow
from mk0r_tui.core.logs import logged
from mk0r_tui.core.models import (
    ProviderResult,
    ProvisionReport,
    ResourceState,
    Session,
    Slot,
    Status,
)
from mk0r_tui.core.plan import Plan, PlanStep
from mk0r_tui.core.provider import Provider, ProvisionContext, SessionResources
from mk0r_tui.core.render import describe_error
from mk0r_tui.core.states import SessionPhase, provisioned_state
from mk0r_tui.engine import pool
from mk0r_tui.engine.runtime import Runtime

log = logging.getLogger("mk0r_tui.orchestrator")

# -- provisioning ------------------------------------------------------------------------


def _reusable(resources: SessionResources, provider: Provider, previous_env: Mapping[str, str]) -> tuple[ResourceRow, ...] | None:
    """A provider whose every ledger row is `created` and whose env is still on disk is not
    called again: provisioning a session twice creates nothing new."""
    keys = provider.env_keys
    if not keys or keys[0] not in previous_env:
        return None
    rows = resources.rows(provider.name)
    if not rows or any(r.state != ResourceState.CREATED.value for r in rows):
        return None
    return rows


async def _not_reusable(
    runtime: Runtime, provider: Provider, env: Mapping[str, str], rows: Sequence[ResourceRow]
) -> str | None:
    """Why what the ledger records cannot be reused as it is (the provider's own check, e.g. the
    embedded Postgres stopped or its database not answering), or None."""
    timeout = provider.timeout_s or runtime.settings.provider_timeout_s
    try:
        async with asyncio.timeout(timeout):
            return await provider.not_reusable(env, rows)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        return f"its check did not answer within {timeout:g}s"
    except Exception as exc:  # a broken check is a reason to provision again, never a crash
        return describe_error(exc, runtime.secrets())


async def _run_provider(
    runtime: Runtime,
    resources: SessionResources,
    provider: Provider,
    sink: EventSink,
    previous_env: Mapping[str, str],
    *,
    env: Mapping[str, str] | None = None,
    results: Sequence[ProviderResult] = (),
    claims: pool.RunClaims | None = None,
) -> ProviderResult:
    session = resources.session
    name, slot = provider.name, provider.slot
    sink(ProviderStarted(session=session.key, provider=name, slot=slot))
    started = time.monotonic()
    reused = None if slot is Slot.TARGET else _reusable(resources, provider, previous_env)
    if reused is not None:
        why = await _not_reusable(runtime, provider, previous_env, reused)
        if why is not None:
            sink(ProviderProgressed(session=session.key, provider=name, message=f"not reused: {why}; provisioning again"))
            reused = None
    if reused is not None:
        result = ProviderResult(
            name, slot, Status.OK, 0.0, 0,
            resources=tuple(r.ref for r in reused),
            env={k: previous_env[k] for k in provider.env_keys if k in previous_env},
            note="already provisioned (reused)",
        )
        sink(ProviderSucceeded(session=session.key, provider=name, result=result))
        return result
    ctx = ProvisionContext(
        session=session, provider=name, settings=runtime.settings, resources=resources, sink=sink,
        previous_env=previous_env, results=tuple(results), env=dict(env or {}),
    )
    timeout = provider.timeout_s or runtime.settings.provider_timeout_s
    # the provider's timeout counts its own work, not time spent waiting for a rate limit shared
    # with every other session and process (core/budgets.py: budget_timeout)
    clock = budget_timeout(timeout)
    try:
        async with clock:
            # a ready item of the warm pool when there is one (engine/pool.py), else a create
            outcome = None if slot is Slot.TARGET else await pool.claim_into(runtime, resources, provider, ctx, claims)
            if outcome is None:
                outcome = await provider.provision(ctx)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # all-settled: every failure becomes a result
        latency = (time.monotonic() - started) * 1000
        if isinstance(exc, TimeoutError):
            waited = clock.pausable.paused_s
            message = f"timed out after {timeout:g}s of work" + (
                f" (plus {waited:.0f}s waiting for rate limits, not counted)" if waited >= 0.5 else "")
        else:
            message = describe_error(exc, runtime.secrets())
        if not isinstance(exc, (Mk0rError, TimeoutError)):
            log.error("%s failed for %s: %s", name, session.slug, message, exc_info=(type(exc), exc, None))
        kept = exc.kept_env if isinstance(exc, ProviderError) else {}
        result = ProviderResult(name, slot, Status.FAILED, latency, max(ctx.attempts, 1), error=message, env=kept)
        sink(ProviderFailed(session=session.key, provider=name, result=result))
        return result
    latency = (time.monotonic() - started) * 1000
    result = ProviderResult(
        name, slot, Status.OK, latency, ctx.attempts if outcome.from_pool else max(ctx.attempts, 1),
        resources=tuple(outcome.resources), env=dict(outcome.env), note=outcome.note, from_pool=outcome.from_pool,
    )
    sink(ProviderSucceeded(session=session.key, provider=name, result=result))
    return result


def flatten_env(results: Sequence[ProviderResult]) -> dict[str, str]:
    """Every ok provider's env, plus what a failed provider said is still valid."""
    env: dict[str, str] = {}
    for result in results:
        if result.status in (Status.OK, Status.FAILED):
            env.update(result.env)
    return env


def write_operator_env(settings: Settings, session: Session, env: Mapping[str, str]) -> Path:
    """The operator's copy of the session's `.env`, in `<data dir>/apps/<slug>/`: the one writer
    of that file. The local-folder target delivers into the same folder and leaves it alone."""
    path = settings.env_file_for(session.slug)
    write_env_file(path, env, header=ENV_HEADER.format(name=session.resource_name))
    return path


async def provision_services(
    runtime: Runtime, session: Session, plan: Plan, *, sink: EventSink = null_sink
) -> ProvisionReport:
    """Provision every running step of `plan` for `session` concurrently (all-settled), write the
    operator's copy of the `.env` (the one writer of that file), then run the target. The whole
    run holds the session's lease: a second provision or a teardown of it, in any process, waits."""
    async with runtime.lease(session.resource_name, session.key, "provision"):
        with pool.session_running(runtime):  # the pool's refill waits while a session runs here
            report = await _provision_services(runtime, session, plan, sink=sink)
    if any(r.from_pool for r in report.results):
        pool.after_provision(runtime, session)  # the renames, after the lease is released
    return report


async def _provision_services(runtime: Runtime, session: Session, plan: Plan, *, sink: EventSink) -> ProvisionReport:
    sink = logged(session.slug, runtime.journal.wrap(session.slug, sink))  # every run writes the journal and the log
    ledger, writer = runtime.ledger, runtime.writer  # every ledger write goes through the writer thread
    target = runtime.provider(plan.target.name)
    await writer.run(_open_session, ledger, session, target.name)
    sink(RunStarted(session=session.key, provider="*", kind="provision", state=SessionPhase.PROVISIONING.value, target=target.name))

    def record(event: Event) -> None:
        if isinstance(event, (ProviderSucceeded, ProviderFailed, ProviderSkipped)):
            writer.submit(ledger.record_run, session.key, event.result)  # a failure surfaces at `drain`
        sink(event)

    try:
        resources = await SessionResources.load(ledger, session, writer)
        env_path = runtime.settings.env_file_for(session.slug)
        previous_env = await asyncio.to_thread(read_env_file, env_path)
        results: list[ProviderResult | None] = [None] * len(plan.providers)
        # every provider of the plan is built before anything is created: a broken one stops the run
        # here; one that a ready pool item serves as is is not built at all (engine/pool.py)
        chosen = list(zip(plan.providers, pool.run_providers(runtime, plan, resources), strict=True))

        async def settle(index: int, step: PlanStep, provider: Provider | None) -> None:
            if provider is None:
                result = ProviderResult(step.name, step.slot, Status.SKIPPED, note=step.skipped, error=None)
                record(ProviderSkipped(session=session.key, provider=result.name, result=result))
                results[index] = result
                return
            results[index] = await _run_provider(runtime, resources, provider, record, previous_env, claims=claims)

        # Tasks start in order: the analytics tag, which never waits, settles first. The target
        # prepares what needs no provider's answer (the local folder's git init) meanwhile,
        # started last so that no provider's first request waits behind it; but first when the
        # warm pool serves a slot: a claim sends no request, and its transaction and the item's
        # decryption (milliseconds) then run while the `git init` process works instead of
        # before it; the slots the pool serves take their items in one transaction (`claims`).
        # A create whose provider gave up (timeout) after sending it runs on; its
        # answer is recorded before the run ends (core/budget_clock.py: late answers), so
        # nothing it made is orphaned.
        claims = pool.plan_claims(runtime, [provider for _step, provider in chosen], resources)
        with late_answers() as late:
            async with asyncio.TaskGroup() as group:
                if claims is not None:
                    group.create_task(_prepare(runtime, resources, target, sink, previous_env))
                for index, (step, provider) in enumerate(chosen):
                    group.create_task(settle(index, step, provider))
                if claims is None:
                    group.create_task(_prepare(runtime, resources, target, sink, previous_env))
            await settle_late_answers(late, runtime.settings.http_timeout_s)
        settled = tuple(r for r in results if r is not None)
        env = flatten_env(settled)

        env_file: str | None = None
        try:
            env_file = str(await asyncio.to_thread(write_operator_env, runtime.settings, session, env))
        except (EnvWriteError, ValueError) as exc:
            failed = ProviderResult(target.name, Slot.TARGET, Status.FAILED, 0.0, 1, error=describe_error(exc, runtime.secrets()))
            record(ProviderFailed(session=session.key, provider=target.name, result=failed))
            delivered = failed
        else:
            # the providers' finishing touches after the .env (Provider.after_env) beside the delivery
            async with asyncio.TaskGroup() as group:
                touched = group.create_task(_after_env(runtime, resources, chosen, results, record))
                delivering = group.create_task(
                    _run_provider(runtime, resources, target, record, previous_env, env=env, results=settled))
            settled, delivered = touched.result(), delivering.result()
        all_results = (*settled, delivered)
        report = ProvisionReport(session, all_results, env, env_file=env_file, target=target.name)
        state = provisioned_state(all_results)
        await writer.run(ledger.set_session_state, session.key, state, env_file=env_file)
        await writer.drain()  # every run recorded (a write that failed fails the run here)
        sink(SessionProvisioned(session=session.key, provider="*", ok=report.ok, state=state.value, env_file=env_file))
        await writer.drain()  # and the journal has it all when the run returns
        return report
    except BaseException:
        # interrupted or broken before every provider settled: never leave it "provisioning"
        await writer.run_to_end(ledger.set_session_state, session.key, SessionPhase.INTERRUPTED)
        sink(SessionProvisioned(session=session.key, provider="*", ok=False, state=SessionPhase.INTERRUPTED.value))
        raise


async def _after_env(
    runtime: Runtime, resources: SessionResources, chosen: Sequence[tuple[PlanStep, Provider | None]],
    results: Sequence[ProviderResult | None], sink: EventSink,
) -> tuple[ProviderResult, ...]:
    """Each ok provider's `after_env`, side by side; what it says (or why it failed) is a line on
    its panel and joins its result's note (`provision --json`). Never fails the run: the `.env`
    is written and right whatever a finishing touch does."""

    async def one(provider: Provider | None, result: ProviderResult) -> ProviderResult:
        if provider is None or result.status is not Status.OK:
            return result
        ctx = ProvisionContext(session=resources.session, provider=provider.name, settings=runtime.settings,
                               resources=resources, sink=sink)
        try:
            async with asyncio.timeout(provider.timeout_s or runtime.settings.provider_timeout_s):
                line = await provider.after_env(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else describe_error(exc, runtime.secrets())
            line = f"after the .env: {why}"
        if line is None:
            return result
        sink(ProviderProgressed(session=resources.session.key, provider=provider.name, message=line))
        return replace(result, note="; ".join(n for n in (result.note, line) if n))

    pairs = [(provider, result) for (_step, provider), result in zip(chosen, results, strict=True) if result is not None]
    return tuple(await asyncio.gather(*(one(p, r) for p, r in pairs)))


async def redeliver(
    runtime: Runtime, session: Session, target_name: str, env: Mapping[str, str], *, sink: EventSink = null_sink
) -> ProviderResult:
    """Deliver `env` (what the operator's `.env` holds, written by its one writer) again through
    the session's target, outside a provisioning run: the warm pool's finisher after a claim's
    renames changed values (engine/pool.py). The providers' results are the ledger's latest runs
    with this env's values, as the target's agent files need them. The caller holds the lease."""
    ledger = runtime.ledger
    resources = await SessionResources.load(ledger, session, runtime.writer)
    results: list[ProviderResult] = []
    for run in ledger.latest_runs(session.key).values():
        if run.slot == Slot.TARGET.value:
            continue
        try:
            keys: tuple[str, ...] = runtime.provider(run.provider).env_keys
        except Exception:  # a provider that cannot be built now: its names are left out of the docs
            keys = ()
        results.append(ProviderResult(
            run.provider, Slot(run.slot), Status(run.status), run.latency_ms, run.attempts, error=run.error,
            note=run.note, env={k: env[k] for k in keys if k in env}, resources=tuple(r.ref for r in resources.rows(run.provider)),
        ))
    target = runtime.provider(target_name)
    return await _run_provider(runtime, resources, target, sink, env, env=env, results=results)


def _open_session(ledger: Ledger, session: Session, target: str) -> None:
    ledger.ensure_session(session, target=target)
    ledger.set_session_state(session.key, SessionPhase.PROVISIONING)


async def _prepare(
    runtime: Runtime, resources: SessionResources, target: Provider, sink: EventSink, previous_env: Mapping[str, str],
) -> None:
    """The target's `prepare`, while the providers run. Never fails the run: whatever it could
    not do, `provision` does (or reports) after the providers."""
    ctx = ProvisionContext(
        session=resources.session, provider=target.name, settings=runtime.settings, resources=resources, sink=sink,
        previous_env=previous_env,
    )
    try:
        await target.prepare(ctx)
    except Exception as exc:
        log.info("%s: preparing %s left to its provision: %s", target.name, resources.session.slug, exc)
