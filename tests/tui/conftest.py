"""Fixtures for the dashboard tests: a runtime holding fake providers and an app wired to them."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from tui_fakes import fake_set, registry_for

from mk0r_tui.engine.runtime import Runtime

#: the snapshot scenes' clock (tests/tui/test_dashboard_snapshots.py, test_responsive.py)
FROZEN = dt.datetime(2025, 5, 14, 9, 30, 0, tzinfo=ZoneInfo("UTC"))


@pytest.fixture
def fakes():
    return fake_set()


@pytest.fixture
def make_app(mk0r_home):
    """`make_app(fakes, read_only=False)`: a Mk0rApp whose runtime provisions with `fakes`."""
    from mk0r_tui.tui.app import Mk0rApp

    runtimes: list[Runtime] = []

    def make(providers, *, read_only: bool = False, skipped_email: bool = True, app_class=Mk0rApp):
        runtime = Runtime(registry=registry_for(providers, skipped_email=skipped_email))
        runtimes.append(runtime)
        return app_class(runtime, read_only=read_only)

    yield make
    for runtime in runtimes:
        runtime.close()


@pytest.fixture
def working_keyring(memory_keyring):
    """A machine with a keyring: the snapshot scenes show no "no keyring" notice."""
    return memory_keyring


@pytest.fixture
def frozen():
    """The clock stopped at FROZEN; its timestamp."""
    with time_machine.travel(FROZEN, tick=False):
        yield FROZEN.timestamp()


@pytest.fixture
def seeded_app(frozen, mk0r_home):
    """`seeded_app(read_only=False, partial_state=None)`: a Mk0rApp on the snapshot scenes'
    ledger (tui_scenarios.seed_ledger); `partial_state` overrides the partial session's state."""
    from tui_scenarios import PARTIAL, seed_ledger

    from mk0r_tui.providers import DEFAULT_REGISTRY
    from mk0r_tui.tui.app import Mk0rApp

    runtimes: list[Runtime] = []

    def make(*, read_only: bool = False, partial_state: str | None = None) -> Mk0rApp:
        runtime = Runtime(registry=DEFAULT_REGISTRY)
        runtimes.append(runtime)
        seed_ledger(runtime, frozen)
        if partial_state is not None:
            runtime.ledger.set_session_state(PARTIAL.key, partial_state)
        return Mk0rApp(runtime, read_only=read_only)

    yield make
    for runtime in runtimes:
        runtime.close()
