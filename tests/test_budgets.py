"""The budget store shared by processes (core/budgets.py), on both databases: a SQLite file
and the embedded Postgres. Two stores on one database stand for two processes (each has its own
connection and holder id); the dead-process test uses a real second process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mk0r_tui.core.budgets import Budgets, Rule, SqlBudgetStore, budget_key, budget_timeout, memory_budgets

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["sqlite", "postgres"])
def two_stores(request, tmp_path):
    """Two stores on one database (two processes' view of it), on one injected clock."""
    clock = Clock()
    if request.param == "sqlite":
        def make():
            return SqlBudgetStore(sqlite_path=tmp_path / "budgets.sqlite3", now=clock)
    else:
        url = request.getfixturevalue("pg_ledger_url")  # a fresh database on the embedded Postgres

        def make():
            return SqlBudgetStore(postgres_url=url, now=clock)
    a, b = make(), make()
    yield a, b, clock
    a.close()
    b.close()


MUTATION = Rule("github:x:mutations", slots=1, gap_s=1.0)


def test_one_mutation_at_a_time_with_the_gap_counted_start_to_start_across_stores(two_stores):
    a, b, clock = two_stores

    first = a.acquire("lane", [MUTATION], queue=False)
    assert first.granted
    held = b.acquire("lane", [MUTATION], queue=False)
    assert not held.granted  # the other "process" sees the slot taken

    clock.t += 0.4  # the first mutation answered after 0.4 s
    a.release(first.holds)
    early = b.acquire("lane", [MUTATION], queue=False)
    assert not early.granted and early.wait_s == pytest.approx(0.6)  # start to start: 1 s after the first began

    clock.t += 0.6
    assert b.acquire("lane", [MUTATION], queue=False).granted


def test_a_sliding_window_holds_across_stores(two_stores):
    a, b, clock = two_stores
    rule = Rule("github:x:creates", windows=((60.0, 3),))
    for store in (a, b, a):
        assert store.acquire("creates", [rule], queue=False).granted
        clock.t += 10
    refused = b.acquire("creates", [rule], queue=False)
    assert not refused.granted and refused.wait_s == pytest.approx(30.0)  # the first leaves the window at +60 s
    clock.t += 30
    assert b.acquire("creates", [rule], queue=False).granted


def test_tickets_are_served_first_come_and_count_who_is_ahead(two_stores):
    a, b, clock = two_stores
    rule = Rule("resend:x:rate", gap_s=0.5)
    assert a.acquire("resend", [rule], queue=False).granted
    first = b.acquire("resend", [rule])          # b waits first: ticket 1
    second = a.acquire("resend", [rule])         # then a: ticket 2, one ahead
    assert (first.granted, second.granted) == (False, False)
    assert (first.ahead, second.ahead) == (0, 1)

    clock.t += 0.5
    assert not a.acquire("resend", [rule], second.ticket).granted  # the budget is free, but b came first
    assert b.acquire("resend", [rule], first.ticket).granted
    clock.t += 0.5
    assert a.acquire("resend", [rule], second.ticket).granted


def test_all_rules_or_none(two_stores):
    a, b, _clock = two_stores
    in_flight = Rule("neon:x:in-flight", slots=2)
    assert a.acquire("l", [in_flight, MUTATION], queue=False).granted
    refused = b.acquire("l", [in_flight, MUTATION], queue=False)  # the mutation slot is taken
    assert not refused.granted
    assert a.acquire("other", [in_flight], queue=False).granted  # so the refused one holds no in-flight slot


def test_budget_keys_never_hold_the_key():
    token = "ghp_secret_token_0123456789"
    key = budget_key("github", token, "mutations")
    assert token not in key and key.startswith("github:") and key == budget_key("github", token, "mutations")
    assert key != budget_key("github", token + "x", "mutations")


def test_a_slot_of_a_process_that_died_is_taken_back(tmp_path):
    db = tmp_path / "budgets.sqlite3"
    script = (
        "import sys; from mk0r_tui.core.budgets import SqlBudgetStore, Rule\n"
        f"s = SqlBudgetStore(sqlite_path={str(db)!r})\n"
        "d = s.acquire('lane', [Rule('github:x:mutations', slots=1, lease_s=3600)], queue=False)\n"
        "assert d.granted\n"
        "import os; os._exit(0)  # dies holding the slot, no release\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=60,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    store = SqlBudgetStore(sqlite_path=db)
    try:
        assert store.acquire("lane", [Rule("github:x:mutations", slots=1)], queue=False).granted
    finally:
        store.close()


async def test_waiters_report_how_many_are_ahead_and_the_wait_does_not_spend_the_timeout():
    """Three waiters for one slot with a 1 s gap, inside a 0.5 s timeout of their own: the
    timeout counts only the work, so none times out; each says how many are ahead."""
    loop_time = asyncio.get_running_loop().time
    budgets = memory_budgets(loop_time, asyncio.sleep)
    rule = Rule("github:x:mutations", slots=1, gap_s=0.3)
    said: dict[int, list[str]] = {0: [], 1: [], 2: []}

    async def one(n: int) -> float:
        async with budget_timeout(0.2) as clock:
            grant = await budgets.acquire("github", [rule], label="GitHub's rate limit", report=said[n].append)
            budgets.release(grant)
            return clock.paused_s

    waited = await asyncio.gather(*(one(n) for n in range(3)))

    assert said[0] == [] and said[1] == ["waiting for GitHub's rate limit (0 ahead)"]
    assert said[2][0] == "waiting for GitHub's rate limit (1 ahead)"
    assert waited[2] >= 0.5  # waited two gaps, longer than its own 0.2 s timeout, and did not time out


async def test_a_timeout_still_counts_the_work():
    budgets: Budgets = memory_budgets(asyncio.get_running_loop().time, asyncio.sleep)
    with pytest.raises(TimeoutError):
        async with budget_timeout(0.05):
            await budgets.acquire("l", [Rule("k", slots=1)], label="x")
            await asyncio.sleep(1)  # the work itself is what the timeout is for


def test_a_background_request_gives_way_to_every_waiter_of_its_lane(two_stores):
    """The warm pool's refill (core.provider.background_work) never starves a session: while a
    session's request waits in a lane, in any process, the lane's background twin is not served."""
    from mk0r_tui.core.budgets import background_lane

    a, b, clock = two_stores
    rule = Rule("github:x:mutations", slots=1, gap_s=1.0)
    first = a.acquire("lane", [rule], queue=False)
    assert first.granted
    waiting = b.acquire("lane", [rule])  # a session's request queues (a ticket in the lane)
    assert not waiting.granted and waiting.ticket is not None

    clock.t += 5  # the gap has long passed and the slot is free: only the waiter holds it back
    a.release(first.holds)
    refill = a.acquire(background_lane("lane"), [rule], queue=False)
    assert not refill.granted and refill.ahead == 1

    served = b.acquire("lane", [rule], waiting.ticket)
    assert served.granted  # the session goes first
    assert not a.acquire(background_lane("lane"), [rule], queue=False).granted  # its mutation holds the slot
    clock.t += 5
    b.release(served.holds)
    assert a.acquire(background_lane("lane"), [rule], queue=False).granted  # no one waits: the refill's turn
