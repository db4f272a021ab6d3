"""A minimal app that shows one screen, so a screen can be tested without the dashboard,
and a provider fake that only answers `discover` (what the orphans scan asks)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from textual.app import App
from textual.screen import Screen

from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import FoundResource, Slot
from mk0r_tui.core.provider import Provider


class ScreenHost(App):
    """Pushes `make_screen()` on mount; popping it leaves an empty default screen."""

    TITLE = "mk0r-tui"

    def __init__(self, make_screen: Callable[[], Screen]) -> None:
        super().__init__()
        self.make_screen = make_screen

    def on_mount(self) -> None:
        self.push_screen(self.make_screen())


class DiscoverOnly(Provider):
    """Says `found` exists upstream (or raises `error`); teardown records what it was asked,
    after waiting for `gate` if one is given."""

    def __init__(self, name: str, slot: Slot = Slot.DATABASE, *, found: Sequence[FoundResource] = (),
                 error: Exception | None = None, gate: asyncio.Event | None = None) -> None:
        self.name = name
        self.slot = slot
        self.env_keys = ()
        #: like the real local providers: under this data dir, this ledger's by construction
        self.owner_marks = "local" if name.startswith("local-") else "none"
        self.found = list(found)
        self.error = error
        self.gate = gate
        self.torn_down: list[str] = []

    async def provision(self, ctx):  # pragma: no cover - never provisioned in screen tests
        raise AssertionError("screen tests do not provision")

    async def teardown(self, resource: ResourceRow) -> bool:
        if self.gate is not None:
            await self.gate.wait()
        self.torn_down.append(resource.name)
        before = len(self.found)
        self.found = [f for f in self.found if f.name != resource.name]
        return len(self.found) < before

    async def discover(self) -> list[FoundResource]:
        if self.error is not None:
            raise self.error
        return list(self.found)

    async def aclose(self) -> None:
        return None
