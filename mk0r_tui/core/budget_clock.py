"""A provider's clock and its late answers, apart from the budgets themselves (core/budgets.py),
so that a run that never waits for a budget (one the warm pool serves) does not load the budget
store (sqlite3, its worker thread, its dataclasses): the orchestrator imports these from here,
`core/budgets.py` re-exports them and takes its pauses through `timeout_paused`.

- `budget_timeout`: `asyncio.timeout` whose clock stops while the task waits for a budget
  (`PausableTimeout`, found through a context variable by every wait in `Budgets.acquire`).
- `outlive` / `late_answers` / `settle_late_answers`: a create whose session gave up (timeout,
  cancel) keeps running until its answer comes back, so the answer is still recorded.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

log = logging.getLogger("mk0r_tui.budgets")


# -- waiting without spending a provider's timeout ------------------------------------------


class PausableTimeout:
    """An `asyncio.Timeout` whose clock stops while the task waits for a budget."""

    def __init__(self, timeout: asyncio.Timeout) -> None:
        self.timeout = timeout
        self.depth = 0
        self.paused_s = 0.0
        self._remaining: float | None = None
        self._since = 0.0

    @contextmanager
    def paused(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        if self.depth == 0:
            when = self.timeout.when()
            self._remaining = None if when is None else max(0.0, when - loop.time())
            self._since = loop.time()
            if not self.timeout.expired():
                self.timeout.reschedule(None)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0:
                self.paused_s += loop.time() - self._since
                if self._remaining is not None and not self.timeout.expired():
                    self.timeout.reschedule(loop.time() + self._remaining)


_pauser: contextvars.ContextVar[PausableTimeout | None] = contextvars.ContextVar("mk0r_budget_pauser", default=None)


class budget_timeout:
    """`async with budget_timeout(s) as t:` = `asyncio.timeout(s)`, except that time spent
    waiting for a provider's budget inside it is not counted (`t.paused_s` says how much)."""

    def __init__(self, seconds: float) -> None:
        self._timeout = asyncio.timeout(seconds)
        self._token: contextvars.Token[PausableTimeout | None] | None = None
        self.pausable = PausableTimeout(self._timeout)

    async def __aenter__(self) -> PausableTimeout:
        await self._timeout.__aenter__()
        self._token = _pauser.set(self.pausable)
        return self.pausable

    async def __aexit__(self, *exc: Any) -> None:
        if self._token is not None:
            _pauser.reset(self._token)
        await self._timeout.__aexit__(*exc)


def timeout_paused() -> AbstractContextManager[None]:
    """Pause the enclosing `budget_timeout`, if any, for the time of a budget wait."""
    pauser = _pauser.get()
    return pauser.paused() if pauser is not None else nullcontext()


# -- answers that come back after their session gave up --------------------------------------


_late: contextvars.ContextVar[list[asyncio.Future[Any]] | None] = contextvars.ContextVar("mk0r_late_answers", default=None)
_orphan_late: set[asyncio.Future[Any]] = set()


@contextmanager
def late_answers() -> Iterator[list[asyncio.Future[Any]]]:
    """Collect the creates that outlive their session's provider task in this block."""
    box: list[asyncio.Future[Any]] = []
    token = _late.set(box)
    try:
        yield box
    finally:
        _late.reset(token)


def outlive(send: asyncio.Future[Any]) -> None:
    """Keep a create's request running after its caller gave up, so its answer is recorded."""
    box = _late.get()
    if box is not None:
        box.append(send)
    else:
        _orphan_late.add(send)
        send.add_done_callback(_orphan_late.discard)


async def settle_late_answers(box: list[asyncio.Future[Any]], timeout_s: float) -> int:
    """Wait (at most `timeout_s`) for every create that outlived its session; how many there were."""
    pending = [f for f in box if not f.done()]
    if pending:
        log.info("waiting for %d create answer(s) that came after their session gave up", len(pending))
        await asyncio.wait(pending, timeout=timeout_s)
    return len(box)


__all__ = [
    "PausableTimeout", "budget_timeout", "late_answers", "outlive", "settle_late_answers", "timeout_paused",
]
