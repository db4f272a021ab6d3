"""PostHog analytics: a tag on a shared project, `VITE_POSTHOG_APP_ID=mk0r-<slug>` (the resource name).

With `POSTHOG_PROJECT_KEY` set, the app also gets the project key and host. The key is checked
with the flags endpoint (`POST {host}/flags?v=2` with `api_key` and `distinct_id`), which answers
401 to an unknown key or a key of the other region: the capture endpoint cannot tell, since it
answers `200 {"status": "Ok"}` to any key (PostHog/posthog#54670), so a wrong key used to pass and
the app's analytics were silently lost. Then one capture event (`mk0r_app_provisioned`) is sent
for the panel's latency, with `$process_person_profile: false` so this bookkeeping event makes
no (billed) person profile. Nothing is created, so there is nothing to tear down or discover.
`doctor` runs the same flags probe.
"""

from __future__ import annotations

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import FoundResource, ProvisionOutcome, Slot
from mk0r_tui.core.provider import AuthCheck, Provider, ProvisionContext
from mk0r_tui.providers.http import SYSTEM_CLOCK, ApiClient, Clock

CAPTURE_PATH = "/i/v0/e/"
FLAGS_PATH = "/flags"
EVENT = "mk0r_app_provisioned"


def _hint(status: int, message: str, call: str) -> str | None:
    if status == 401 and call.startswith(f"POST {FLAGS_PATH}"):
        return ("check POSTHOG_PROJECT_KEY and POSTHOG_HOST: PostHog knows no such project key on this host "
                "(a key of the other region, us vs eu, is refused too); use the project API key (phc_...)")
    if status == 401 or "api key" in message.lower() or "api_key" in message.lower():
        return "check POSTHOG_PROJECT_KEY: it must be the project API key (phc_...)"
    if status in (404, 405):
        return "check POSTHOG_HOST: it must be the ingestion host, e.g. https://us.i.posthog.com"
    return None


class PostHogProvider(Provider):
    name = "posthog"
    slot = Slot.ANALYTICS
    env_keys = ("VITE_POSTHOG_APP_ID", "VITE_POSTHOG_KEY", "VITE_POSTHOG_HOST")

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
                 "properties": {"app_id": app_id, "session_slug": ctx.session.slug, "$process_person_profile": False}}
        try:
            await self._check_key(ctx, app_id)
            await self.api.request("POST", CAPTURE_PATH, json=event, ctx=ctx)
        except ProviderError as exc:
            if not exc.outcome_unknown:
                # the tag is still right; the key or host is not, so only the tag stays
                exc.kept_env = {"VITE_POSTHOG_APP_ID": app_id}
                raise
            return ProvisionOutcome(env=self.tag_env(ctx), note=f"{EVENT} sent, but no answer came back")
        return ProvisionOutcome(env=self.tag_env(ctx), note=f"{EVENT} captured")

    async def _check_key(self, ctx: ProvisionContext | None, distinct_id: str) -> None:
        """401 from the flags endpoint: the key is wrong or belongs to the other region."""
        await self.api.request("POST", FLAGS_PATH, params={"v": "2"}, ctx=ctx, main=True,
                               json={"api_key": self.project_key, "distinct_id": distinct_id}, label=f"POST {FLAGS_PATH}?v=2")

    async def check_auth(self) -> AuthCheck:
        await self._check_key(None, "mk0r-doctor")
        return AuthCheck(ok=True, detail=f"PostHog accepts the project key on {self.settings.posthog_host} (flags probe)")

    async def teardown(self, resource: ResourceRow) -> bool:
        return False

    async def discover(self) -> list[FoundResource]:
        return []

    async def aclose(self) -> None:
        await self.api.aclose()
