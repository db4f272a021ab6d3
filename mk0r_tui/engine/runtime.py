"""One process's working set: settings, credentials, the ledger, the registry it was handed, and
one shared instance per provider.

Provider instances are built once per process and shared by every session, so an HTTP client
(and its connection pool and rate limits) is shared the same way.
"""

from __future__ import annotations

import contextlib
import logging

from mk0r_tui.core.config import Settings, load_settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.ledger import Ledger, open_ledger
from mk0r_tui.core.plan import Plan
from mk0r_tui.core.provider import Provider
from mk0r_tui.engine import plan as planning
from mk0r_tui.engine.journal import JournalWriter
from mk0r_tui.engine.lease import session_lease
from mk0r_tui.providers import Registry

log = logging.getLogger("mk0r_tui")


class Runtime:
    def __init__(
        self,
        settings: Settings | None = None,
        credentials: Credentials | None = None,
        ledger: Ledger | None = None,
        *,
        registry: Registry,
    ) -> None:
        self.settings = settings or load_settings()
        self.credentials = credentials or Credentials(use_keyring=not self.settings.no_keyring)
        if ledger is None:
            if self.settings.ledger_url:
                self.settings.ensure_data_dir()  # the app folders, logs and local parts still live here
            ledger = open_ledger(self.settings)  # MK0R_LEDGER_URL → Postgres, else the SQLite file
        self.ledger = ledger
        self.registry = registry
        self._providers: dict[str, Provider] = {}
        #: every run of this process appends its events here (engine/journal.py)
        self.journal = JournalWriter(self.ledger)

    def lease(self, name: str, session_key: str, kind: str) -> contextlib.AbstractAsyncContextManager[object]:
        """Hold the lease on session `name` (engine/lease.py) for a provision or a teardown: what
        every process reads as "in flight"; waits `MK0R_LEASE_WAIT_S` for a live holder."""
        return session_lease(
            self.ledger, name, session_key, kind,
            stale_s=self.settings.lease_stale_s, wait_s=self.settings.lease_wait_s,
        )

    def plan(self, target: str | None = None) -> Plan:
        """What a provisioning run does now: resolved once per run, by the caller that starts it."""
        return planning.resolve_plan(self.registry, self.settings, self.credentials, target)

    def provider(self, name: str) -> Provider:
        """The shared instance of provider (or target) `name`."""
        if name not in self._providers:
            self._providers[name] = self.registry.spec(name).build(self.settings, self.credentials)
        return self._providers[name]

    def scannable(self) -> list[str]:
        """Every provider and target that can be asked what exists: local ones always, cloud
        ones when their key is present."""
        return [
            spec.name
            for spec in self.registry.specs
            if spec.key_name is None or self.credentials.get(spec.key_name).present
        ]

    def secrets(self) -> list[str]:
        return self.credentials.secret_values()

    async def aclose(self) -> None:
        self.journal.flush()
        for provider in self._providers.values():
            try:
                await provider.aclose()
            except Exception:  # closing must never hide the real outcome
                log.exception("closing provider %s", provider.name)
        self._providers.clear()

    def close(self) -> None:
        self.journal.flush()
        self.ledger.close()
