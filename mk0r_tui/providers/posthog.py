"""PostHog analytics: a tag on a shared project, `VITE_POSTHOG_APP_ID=mk0r-<12 chars of key>`.

With `POSTHOG_PROJECT_KEY` set, the app also gets the project key and host. Nothing is created,
so there is nothing to tear down or discover.
"""

from __future__ import annotations

from typing import ClassVar

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import FoundResource, ProvisionOutcome, Slot
from mk0r_tui.providers.base import ProvisionContext


class PostHogProvider:
    name: ClassVar[str] = "posthog"
    slot: ClassVar[Slot] = Slot.ANALYTICS
    env_keys: ClassVar[tuple[str, ...]] = ("VITE_POSTHOG_APP_ID", "VITE_POSTHOG_KEY", "VITE_POSTHOG_HOST")

    def __init__(self, *, settings: Settings, credentials: Credentials) -> None:
        self.settings = settings
        self.project_key = credentials.value("POSTHOG_PROJECT_KEY")

    def tag_env(self, ctx: ProvisionContext) -> dict[str, str]:
        env = {"VITE_POSTHOG_APP_ID": ctx.session.analytics_app_id}
        if self.project_key:
            env["VITE_POSTHOG_KEY"] = self.project_key
            env["VITE_POSTHOG_HOST"] = self.settings.posthog_host
        return env

    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome:
        ctx.attempt()
        note = None if self.project_key else "tag only (set POSTHOG_PROJECT_KEY to send events)"
        return ProvisionOutcome(env=self.tag_env(ctx), note=note)

    async def teardown(self, resource: ResourceRow) -> bool:
        return False

    async def discover(self) -> list[FoundResource]:
        return []

    async def aclose(self) -> None:
        return None
