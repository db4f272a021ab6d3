"""PostHog with a warm pool (issue 14, bench/pool.py part 1b): nothing of the `.env` depends on
PostHog's answers, so with a pool configured nothing is sent before the `.env`. The key check is a
pooled fact (core/pool_facts.py: any successful probe records it, the keeper refreshes it, a
refusal forgets it) and the capture is a finishing touch after the `.env` whose failure shows on
the panel (a progress line) and in the result's note (`provision --json`). Real providers
against the fake upstream, real ledger."""

from __future__ import annotations

import time

from crashkit import cloud_runtime, route_count
from poolkit import FAKE_CONFIG, POOLED, fake, runtime  # noqa: F401  (fixtures)

from mk0r_tui.core import pool_facts
from mk0r_tui.core.envfile import read_env_file
from mk0r_tui.core.events import ProviderProgressed, ProviderStarted
from mk0r_tui.core.models import Session, Status
from mk0r_tui.engine import pool_upkeep
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.providers import posthog


def counts(fake) -> tuple[int, int]:
    state = fake.state()
    return route_count(state, "posthog", "POST /flags"), route_count(state, "posthog", "POST /i/v0/e/")


async def provision(runtime, fake):
    """Provision a new session; PostHog's (flags, captures) counted when the `.env` was written."""
    session = Session.new()
    at_env: list[tuple[int, int]] = []
    lines: list[str] = []
    target = runtime.plan().target.name

    def sink(event) -> None:
        if isinstance(event, ProviderStarted) and event.provider == target and not at_env:
            at_env.append(counts(fake))
        if isinstance(event, ProviderProgressed) and event.provider == "posthog":
            lines.append(event.message)

    report = await provision_services(runtime, session, runtime.plan(), sink=sink)
    result = next(r for r in report.results if r.name == "posthog")
    return session, report, result, at_env[0], lines


async def test_with_a_pool_nothing_goes_to_posthog_before_the_env_once_the_key_is_a_pooled_fact(runtime, fake):
    # no fact yet: the run checks the key itself (as without a pool) and records it; the capture follows the .env
    session, report, result, at_env, _ = await provision(runtime, fake)
    assert report.ok and result.status is Status.OK
    assert at_env == (1, 0) and counts(fake) == (1, 1)
    assert "captured" in (result.note or "")
    assert pool_facts.fresh(runtime.settings, posthog.KEY_FACT, runtime.settings.posthog_host,
                            runtime.credentials.value("POSTHOG_PROJECT_KEY") or "") is not None
    env = read_env_file(runtime.settings.env_file_for(session.slug))
    assert env["VITE_POSTHOG_KEY"] and env["VITE_POSTHOG_APP_ID"] == session.analytics_app_id

    # the fact is trusted: no request before the .env, one capture after it, no second check
    _, report, result, at_env, lines = await provision(runtime, fake)
    assert report.ok and at_env == (1, 1) and counts(fake) == (1, 2)
    assert "warm pool" in (result.note or "") and any("captured" in line for line in lines)


async def test_a_failed_capture_after_the_env_is_on_the_panel_and_in_the_note(runtime, fake):
    pool_facts.record(runtime.settings, posthog.KEY_FACT, runtime.settings.posthog_host,
                      runtime.credentials.value("POSTHOG_PROJECT_KEY") or "")
    fake.control(faults=[{"provider": "posthog", "path_prefix": "/i/v0/e", "status": 400, "times": -1}])
    session, report, result, at_env, lines = await provision(runtime, fake)
    assert at_env == (0, 0)
    assert report.ok and result.status is Status.OK  # the .env is right: the key was checked
    assert "not captured" in (result.note or "") and any("not captured" in line for line in lines)
    assert "not captured" in str(result.to_json()["note"])
    assert read_env_file(runtime.settings.env_file_for(session.slug))["VITE_POSTHOG_KEY"]


async def test_the_keeper_refreshes_the_fact_and_a_refused_key_is_checked_again_in_the_run(runtime, fake):
    parts = (runtime.settings.posthog_host, runtime.credentials.value("POSTHOG_PROJECT_KEY") or "")
    # a fresh fact: the keeper leaves it alone
    pool_facts.record(runtime.settings, posthog.KEY_FACT, *parts)
    assert await pool_upkeep.refresh_facts(runtime) == [] and counts(fake) == (0, 0)
    # an old one: checked again ahead of any claim
    pool_facts.record(runtime.settings, posthog.KEY_FACT, *parts, at=time.time() - posthog.FACT_REFRESH_S - 1)
    assert await pool_upkeep.refresh_facts(runtime) == ["PostHog key checked (warm pool)"] and counts(fake) == (1, 0)
    assert pool_facts.fresh(runtime.settings, posthog.KEY_FACT, *parts) < 60
    # the key is refused now: the keeper forgets the fact, so the next run checks and fails the slot
    pool_facts.record(runtime.settings, posthog.KEY_FACT, *parts, at=time.time() - posthog.FACT_REFRESH_S - 1)
    fake.control(faults=[{"provider": "posthog", "path_prefix": "/flags", "status": 401, "times": -1}])
    errors: list[str] = []
    assert await pool_upkeep.refresh_facts(runtime, errors) == [] and errors
    assert pool_facts.checked_at(runtime.settings, posthog.KEY_FACT, *parts) is None
    session, report, result, _, _ = await provision(runtime, fake)
    assert result.status is Status.FAILED and "POSTHOG_PROJECT_KEY" in (result.error or "")
    assert "VITE_POSTHOG_KEY" not in read_env_file(runtime.settings.env_file_for(session.slug))


async def test_without_a_pool_posthog_checks_and_captures_before_the_env_and_keeps_no_fact(fake, mk0r_home):
    rt = cloud_runtime(fake)  # MK0R_POOL_SIZE=0
    try:
        _, report, result, at_env, _ = await provision(rt, fake)
        assert report.ok and at_env == (1, 1) and "captured" in (result.note or "")
        assert not (rt.settings.data_dir / pool_facts.FACTS_FILE).exists()
    finally:
        await rt.aclose()
        rt.close()
