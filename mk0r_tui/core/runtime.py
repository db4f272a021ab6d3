"""One process's working set: settings, credentials, the ledger and provider instances.

Provider instances are built once per process and shared by every session, so an HTTP
client (and its connection pool and rate limits) is shared the same way.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Mapping

from mk0r_tui.core.config import Settings, load_settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.ledger import Ledger

if TYPE_CHECKING:
    from mk0r_tui.providers.base import Provider

log = logging.getLogger("mk0r_tui")


class Runtime:
    def __init__(
        self,
        settings: Settings | None = None,
        credentials: Credentials | None = None,
        ledger: Ledger | None = None,
        *,
        providers: Mapping[str, "Provider"] | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.credentials = credentials or Credentials(use_keyring=not self.settings.no_keyring)
        if ledger is None:
            self.settings.ensure_data_dir()
            ledger = Ledger(self.settings.ledger_path)
        self.ledger = ledger
        self._providers: dict[str, "Provider"] = dict(providers or {})
        #: session keys being provisioned or torn down in this process right now
        self.in_flight: set[str] = set()

    def provider(self, name: str) -> "Provider":
        """The shared instance of provider (or target) `name`."""
        if name not in self._providers:
            from mk0r_tui.providers import spec_named

            self._providers[name] = spec_named(name).build(self.settings, self.credentials)
        return self._providers[name]

    def secrets(self) -> list[str]:
        return self.credentials.secret_values()

    async def aclose(self) -> None:
        for provider in self._providers.values():
            try:
                await provider.aclose()
            except Exception:  # closing must never hide the real outcome
                log.exception("closing provider %s", getattr(provider, "name", provider))
        self._providers.clear()

    def close(self) -> None:
        self.ledger.close()
