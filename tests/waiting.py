"""Wait on a condition, never on a fixed time: a test that sleeps "long enough" fails on a
loaded machine and wastes time on an idle one.

    await wait_until(lambda: app.sessions[key].busy == "provisioning", pilot=pilot)
    await wait_until(lambda: fake_state()["in_flight"] >= 1)
    wait_until_sync(lambda: proc.poll() is not None)

The timeout only bounds a test that would otherwise hang; it is generous on purpose, since
reaching it means the condition never came true (a failure), not that the machine was slow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

__all__ = ["wait_until", "wait_until_sync"]

DEFAULT_TIMEOUT_S = 30.0


def _describe(what: str | None, predicate: Callable[[], Any]) -> str:
    return what or getattr(predicate, "__name__", "condition")


def _polls(predicate: Callable[[], Any], timeout: float, what: str | None):
    """Yield until `predicate` is truthy (then return its value); fail past the deadline."""
    deadline = time.monotonic() + timeout
    turns = 0
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {_describe(what, predicate)}")
        turns += 1
        yield turns


async def wait_until(predicate: Callable[[], Any], *, timeout: float = DEFAULT_TIMEOUT_S, pilot: Any = None,
                     what: str | None = None) -> Any:
    """Poll `predicate` until it returns something truthy (returned). Between polls: one
    `pilot.pause()` (Textual processes its pending messages) when a pilot is given, else one
    turn of the event loop (`asyncio.sleep(0)`), with a short real pause after many turns so a
    condition that waits on another thread or process does not spin the CPU."""
    polls = _polls(predicate, timeout, what)
    try:
        while True:
            turns = next(polls)
            if pilot is not None:
                await pilot.pause()
            else:
                await asyncio.sleep(0 if turns % 50 else 0.005)
    except StopIteration as done:
        return done.value


def wait_until_sync(predicate: Callable[[], Any], *, timeout: float = DEFAULT_TIMEOUT_S, poll_s: float = 0.005,
                    what: str | None = None) -> Any:
    """`wait_until` for code outside an event loop (subprocesses, the fake upstream's state)."""
    polls = _polls(predicate, timeout, what)
    try:
        while True:
            next(polls)
            time.sleep(poll_s)
    except StopIteration as done:
        return done.value
