"""PostHog analytics: a tag on a shared project, `VITE_POSTHOG_APP_ID=mk0r-<12 chars of key>`.

With `POSTHOG_PROJECT_KEY` set, the app also gets the project key and host, and one capture
event (`mk0r_app_provisioned`) is sent to `POSTHOG_HOST` at once, so the panel shows a real
latency and a wrong key or host fails now rather than silently in the app. Nothing is created,
so there is nothing to tear down or discover.
"""

from __future__ import annotations

from typing import ClassVar

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import FoundResource, ProvisionOutcome, Slot
from mk0r_tui.providers.base import ProvisionContext
from mk0r_tui.providers.http import SYSTEM_CLOCK, ApiClient, Clock

CAPTURE_PATH = "/i/v0/e/"
EVENT = "mk0r_app_provisioned"


def _hint(status: int, message: str, call: str) -> str | None:
    if status == 401 or "api key" in message.lower() or "api_key" in message.lower():
        return "check POSTHOG_PROJECT_KEY: it must be the project API key (phc_...)"
    if status in (404, 405):
        return "check POSTHOG_HOST: it must be the ingestion host, e.g. https://us.i.posthog.com"
    return None


class PostHogProvider:
    name: ClassVar[str] = "posthog"
    slot: ClassVar[Slot] = Slot.ANALYTICS
    env_keys: ClassVar[tuple[str, ...]] = ("VITE_POSTHOG_APP_ID", "VITE_POSTHOG_KEY", "VITE_POSTHOG_HOST")

    def __init__(self, *, settings: Settings, credentials: Credentials, clock: Clock | None = None) -> None:
        self.settings = settings
        self.project_key = credentials.value("POSTHOG_PROJECT_KEY")
        # the project key travels in the body (PostHog's capture contract), never in a header
        self.api = ApiClient(provider=self.name, base_url=settings.posthog_host, settings=settings, key_name=None,
                             token=None, hinter=_hint, clock=clock or SYSTEM_CLOCK)

    def tag_env(self, ctx: ProvisionContext) -> dict[str, str]:
        env = {"VITE_POSTHOG_APP_ID": ctx.session.analytics_app_id}
        if self.project_key:
            env["VITE_POSTHOG_KEY"] = self.project_key
            env["VITE_POSTHOG_HOST"] = self.settings.posthog_host
        return env

    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome:
        if not self.project_key:
            return ProvisionOutcome(env=self.tag_env(ctx), note="tag only (set POSTHOG_PROJECT_KEY to send events)")
        app_id = ctx.session.analytics_app_id
        event = {"api_key": self.project_key, "event": EVENT, "distinct_id": app_id,
                 "properties": {"app_id": app_id, "session_slug": ctx.session.slug}}
        try:
            await self.api.request("POST", CAPTURE_PATH, json=event, ctx=ctx, main=True)
        except ProviderError as exc:
            if not exc.outcome_unknown:
                # the tag is still right; the key or host is not, so only the tag stays
                exc.kept_env = {"VITE_POSTHOG_APP_ID": app_id}
                raise
            return ProvisionOutcome(env=self.tag_env(ctx), note=f"{EVENT} sent, but no answer came back")
        return ProvisionOutcome(env=self.tag_env(ctx), note=f"{EVENT} captured")

    async def teardown(self, resource: ResourceRow) -> bool:
        return False

    async def discover(self) -> list[FoundResource]:
        return []

    async def aclose(self) -> None:
        await self.api.aclose()
