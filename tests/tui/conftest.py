"""Fixtures for the dashboard tests: a runtime holding fake providers and an app wired to them."""

from __future__ import annotations

import pytest
from tui_fakes import fake_set, registry_for

from mk0r_tui.engine.runtime import Runtime


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
