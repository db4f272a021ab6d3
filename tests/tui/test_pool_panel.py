"""The dashboard with a warm pool (issue 14): the pool panel shows each pooled provider's level
against its target and the claims' latency; the keeper it runs refills behind a claim; a panel
whose resources came from the pool says so. Real local providers (embedded Postgres, bare git)."""

from __future__ import annotations

import pytest
from pilot_kit import settle
from waiting import wait_until

from mk0r_tui.core.config import load_settings
from mk0r_tui.core.models import Session
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.providers import DEFAULT_REGISTRY
from mk0r_tui.tui.app import Mk0rApp
from mk0r_tui.tui.widgets.pool_panel import PoolPanel, level_bar
from mk0r_tui.tui.widgets.provider_panel import ProviderPanel

pytestmark = pytest.mark.slow


def panel_text(app) -> str:
    return str(app.screen.query_one(PoolPanel).render())


def test_level_bar_scales_to_its_width():
    assert level_bar(3, 5) == "●●●○○"
    assert level_bar(0, 2) == "○○"
    assert level_bar(50, 100, width=8) == "●●●●○○○○"


async def test_the_pool_panel_shows_levels_and_a_claimed_session_says_from_pool(session_key):
    settings = load_settings(profile="local", target="local", local_git_pool_size=1)
    runtime = Runtime(settings, registry=DEFAULT_REGISTRY)
    app = Mk0rApp(runtime)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_until(lambda: app.screen.query(PoolPanel), pilot=pilot, what="the pool panel")
            pool_panel = app.screen.query_one(PoolPanel)
            await wait_until(lambda: (pool_panel.refresh_status(), "1/1" in panel_text(app))[1], pilot=pilot, timeout=60,
                             what="the keeper to fill local-git to 1/1")
            assert "local-git" in panel_text(app)

            app.start_provision(Session.parse(session_key))
            await settle(app, pilot)
            state = app.sessions[session_key]
            assert state.panel("local-git").from_pool and not state.panel("local-postgres").from_pool
            shown = {p.panel.provider: p.border_title for p in app.screen.query(ProviderPanel)}
            assert shown["local-git"].endswith("· from pool")
            assert "from pool" not in shown["local-postgres"]
            # the keeper refills behind the claim, and the claim's latency is shown
            await wait_until(lambda: (pool_panel.refresh_status(), "1/1" in panel_text(app) and "claim p50" in panel_text(app))[1],
                             pilot=pilot, timeout=60, what="the refill after the claim")
            assert "1 claimed" in panel_text(app)
    finally:
        from mk0r_tui.engine import pool_upkeep

        await pool_upkeep.drain(runtime)
        await runtime.aclose()
        runtime.close()
