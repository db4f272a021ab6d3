"""PostHog analytics: a tag on a shared project, `VITE_POSTHOG_APP_ID=mk0r-<slug>` (the resource name).

With `POSTHOG_PROJECT_KEY` set, the app also gets the project key and host. The key is checked
with the flags endpoint (`POST {host}/flags?v=2` with `api_key` and `distinct_id`), which answers
401 to an unknown key or a key of the other region: the capture endpoint cannot tell, since it
answers `200 {"status": "Ok"}` to any key (PostHog/posthog#54670), so a wrong key used to pass and
the app's analytics were silently lost. Then one capture event (`mk0r_app_provisioned`) is sent
for the panel's latency, with `$process_person_profile: false` so this bookkeeping event makes
no (billed) person profile. Nothing is created, so there is nothing to tear down or discover.
`doctor` runs the same flags probe.

With a warm pool configured (issue 14), none of the `.env`'s values depend on an answer (the key,
the host, the app id from the session key), so nothing is sent before the `.env`: the key check
is a pooled fact (core/pool_facts.py: every successful probe records when; the pool's keeper
re-checks it every `FACT_REFRESH_S`; a fact younger than `MK0R_POOL_MAX_AGE` is trusted, an older
or missing one is checked in the run as without a pool), and the capture is a finishing touch
after the `.env` (`after_env`), whose failure is a line on the panel and in the result's note.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from mk0r_tui.core import pool_facts
from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import FoundResource, ProvisionOutcome, Slot
from mk0r_tui.core.provider import AuthCheck, Provider, ProvisionContext

if TYPE_CHECKING:  # the HTTP stack (httpx, tenacity) loads only when a key asks for a request
    from mk0r_tui.providers.http import ApiClient, Clock

CAPTURE_PATH = "/i/v0/e/"
FLAGS_PATH = "/flags"
EVENT = "mk0r_app_provisioned"
#: the pooled fact (core/pool_facts.py) of a key check
KEY_FACT = "posthog_key"
#: the pool's keeper checks the key again once the fact is this old (a claim trusts it up to
#: MK0R_POOL_MAX_AGE): a key revoked meanwhile is found within minutes while a keeper runs
FACT_REFRESH_S = 600.0

log = logging.getLogger("mk0r_tui.posthog")


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
        self._clock = clock
        self._api: ApiClient | None = None
        #: sessions whose capture waits for `after_env` (a pool is configured)
        self._deferred: set[str] = set()

    @property
    def api(self) -> ApiClient:
        """The HTTP client, built on first use: without a key (the tag only, e.g. the local
        profile) no request is ever made, and the process never imports the HTTP stack."""
        if self._api is None:
            from mk0r_tui.providers.http import SYSTEM_CLOCK, ApiClient

            # the project key travels in the body (PostHog's capture contract), never in a header
            self._api = ApiClient(provider=self.name, base_url=self.settings.posthog_host, settings=self.settings,
                                  key_name=None, token=None, hinter=_hint, clock=self._clock or SYSTEM_CLOCK)
        return self._api

    def tag_env(self, ctx: ProvisionContext) -> dict[str, str]:
        env = {"VITE_POSTHOG_APP_ID": ctx.session.analytics_app_id}
        if self.project_key:
            env["VITE_POSTHOG_KEY"] = self.project_key
            env["VITE_POSTHOG_HOST"] = self.settings.posthog_host
        return env

    def _event(self, ctx: ProvisionContext) -> dict[str, object]:
        app_id = ctx.session.analytics_app_id
        return {"api_key": self.project_key, "event": EVENT, "distinct_id": app_id,
                "properties": {"app_id": app_id, "session_slug": ctx.session.slug, "$process_person_profile": False}}

    def _fact_parts(self) -> tuple[str, str]:
        return self.settings.posthog_host, self.project_key or ""

    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome:
        if not self.project_key:
            return ProvisionOutcome(env=self.tag_env(ctx), note="tag only (set POSTHOG_PROJECT_KEY to send events)")
        app_id = ctx.session.analytics_app_id
        if self.settings.pool_on:
            # the warm pool: nothing is sent before the .env (the capture follows it, `after_env`)
            age = pool_facts.fresh(self.settings, KEY_FACT, *self._fact_parts())
            note = f"key checked {age:.0f}s ago (warm pool)" if age is not None else "key checked"
            if age is None:
                try:
                    await self._check_key(ctx, app_id)
                except ProviderError as exc:
                    if not exc.outcome_unknown:
                        exc.kept_env = {"VITE_POSTHOG_APP_ID": app_id}
                        raise
                    note = "key check sent, but no answer came back"
            self._deferred.add(ctx.session.key)
            return ProvisionOutcome(env=self.tag_env(ctx), note=f"{note}; {EVENT} sent after the .env")
        event = self._event(ctx)
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

    async def after_env(self, ctx: ProvisionContext) -> str | None:
        """The capture a pooled run defers until its `.env` is written."""
        if ctx.session.key not in self._deferred:
            return None
        self._deferred.discard(ctx.session.key)
        try:
            await self.api.request("POST", CAPTURE_PATH, json=self._event(ctx), ctx=ctx)
        except ProviderError as exc:
            if exc.outcome_unknown:
                return f"{EVENT} sent, but no answer came back"
            raise ProviderError(f"{EVENT} not captured: {exc}", call=f"POST {CAPTURE_PATH}") from None
        return f"{EVENT} captured"

    async def refresh_pool_facts(self) -> str | None:
        """The keeper's turn: the key probed again once its fact is `FACT_REFRESH_S` old."""
        if not self.project_key or not self.settings.pool_on:
            return None
        at = pool_facts.checked_at(self.settings, KEY_FACT, *self._fact_parts())
        if at is not None and time.time() - at < min(FACT_REFRESH_S, self.settings.pool_max_age_s / 2):
            return None
        await self._check_key(None, "mk0r-pool")
        return "PostHog key checked (warm pool)"

    async def _check_key(self, ctx: ProvisionContext | None, distinct_id: str) -> None:
        """401 from the flags endpoint: the key is wrong or belongs to the other region. Either
        answer is remembered for the warm pool (core/pool_facts.py)."""
        try:
            await self.api.request("POST", FLAGS_PATH, params={"v": "2"}, ctx=ctx, main=True,
                                   json={"api_key": self.project_key, "distinct_id": distinct_id},
                                   label=f"POST {FLAGS_PATH}?v=2")
        except ProviderError as exc:
            if exc.status in (401, 403):  # refused: no run trusts an earlier check of it
                self._note_fact(None)
            raise
        self._note_fact(time.time())

    def _note_fact(self, checked_at: float | None) -> None:
        if not self.settings.pool_on:  # only a pool trusts an earlier check: no file without one
            return
        try:
            if checked_at is None:
                pool_facts.forget(self.settings, KEY_FACT)
            else:
                pool_facts.record(self.settings, KEY_FACT, *self._fact_parts(), at=checked_at)
        except Exception as exc:  # a fact not kept only costs the next run a check
            log.warning("the PostHog key check could not be remembered: %s", exc)

    async def check_auth(self) -> AuthCheck:
        await self._check_key(None, "mk0r-doctor")
        return AuthCheck(ok=True, detail=f"PostHog accepts the project key on {self.settings.posthog_host} (flags probe)")

    async def teardown(self, resource: ResourceRow) -> bool:
        return False

    async def discover(self) -> list[FoundResource]:
        return []

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
