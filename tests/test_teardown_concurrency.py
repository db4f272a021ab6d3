"""Deletes run in parallel within a provider, up to its configured limit, while one session's
rows of one provider still go newest first, one at a time.

Found by bench/orphan_teardown.py: orphans were deleted one provider at a time, one by one
(max 1 in flight), so 200 Neon orphans took 200 round trips end to end.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest
from fakes import registry_of

from mk0r_tui.core.config import load_settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.ledger import Ledger, ResourceRow
from mk0r_tui.core.models import FoundResource, Session, Slot
from mk0r_tui.core.provider import Provider
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.engine.teardown import delete_orphans, find_orphans, teardown_session


class CountingProvider(Provider):
    """Holds `names` upstream; each delete takes a moment and is counted while in flight."""

    slot: ClassVar[Slot] = Slot.DATABASE
    env_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, names: list[str], delay_s: float = 0.02) -> None:
        self.name = name
        self.upstream = set(names)
        self.delay_s = delay_s
        self.in_flight = 0
        self.max_in_flight = 0
        self.order: list[str] = []

    async def provision(self, ctx):  # pragma: no cover - these tests only delete
        raise AssertionError("teardown tests do not provision")

    async def teardown(self, resource: ResourceRow) -> bool:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.order.append(resource.name)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        if resource.name not in self.upstream:
            return False
        self.upstream.discard(resource.name)
        return True

    async def discover(self) -> list[FoundResource]:
        return [FoundResource(self.name, "thing", n, n, 0.0) for n in sorted(self.upstream)]

    async def aclose(self) -> None:
        return None


@pytest.fixture
def make_runtime(tmp_path):
    made: list[Runtime] = []

    def make(providers: dict, **settings) -> Runtime:
        runtime = Runtime(load_settings(home=tmp_path, **settings), Credentials({}, use_keyring=False),
                          Ledger(tmp_path / f"ledger-{len(made)}.sqlite3"), registry=registry_of(*providers.values()))
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.close()


async def test_orphans_of_one_provider_are_deleted_in_parallel_up_to_its_limit(make_runtime):
    neon = CountingProvider("neon", [f"mk0r-n{i:02d}" for i in range(12)])
    github = CountingProvider("github", [f"mk0r-g{i:02d}" for i in range(12)])
    runtime = make_runtime({"neon": neon, "github": github}, concurrency=3, github_concurrency=2)

    scan = await find_orphans(runtime, providers=["neon", "github"])
    assert len(scan.orphans) == 24
    # strays no ledger records, on providers without owner marks: foreign, so deleted on request only
    outcomes = await delete_orphans(runtime, scan.orphans, include_foreign=True)

    assert [o.outcome for o in outcomes] == ["deleted"] * 24
    assert neon.upstream == set() and github.upstream == set()
    assert (neon.max_in_flight, github.max_in_flight) == (3, 2)


async def test_one_sessions_rows_of_a_provider_go_newest_first_one_at_a_time(make_runtime):
    names = ["mk0r-first", "mk0r-second", "mk0r-third"]
    neon = CountingProvider("neon", names)
    runtime = make_runtime({"neon": neon}, concurrency=8)
    session = Session.parse("ordered0001-test")
    runtime.ledger.ensure_session(session)
    for name in names:
        row = runtime.ledger.intend(session.key, "neon", "thing", name, None)
        runtime.ledger.mark_created(row.id, name)

    report = await teardown_session(runtime, session.key)

    assert report.ok
    assert neon.order == names[::-1]
    assert neon.max_in_flight == 1
