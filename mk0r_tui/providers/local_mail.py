"""The local profile's email: a mailbox per session on the embedded mail catcher
(`mail_catcher.py`), which catches every mail and sends nothing anywhere.

A session gets SMTP credentials and a Resend-style API key, both new random secrets; the
catcher keeps only their SHA-256 (in `<mail dir>/accounts/`, 0600), the app's `.env` the clear
values. The base URL goes under both names the Resend SDKs read: `RESEND_BASE_URL`
(resend-node) and `RESEND_API_URL` (resend-python). One ledger resource, kind `mailbox`,
stands for the mailbox and its credentials: teardown removes both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import FoundResource, ProvisionOutcome, ResourceRef, Slot
from mk0r_tui.core.provider import Provider, ProvisionContext
from mk0r_tui.providers.mail_catcher import MailCatcher

KIND = "mailbox"


class LocalMailProvider(Provider):
    name = "local-mail"
    owner_marks = "local"
    slot = Slot.EMAIL
    env_keys = (
        "RESEND_API_KEY", "RESEND_BASE_URL", "RESEND_API_URL", "SMTP_HOST", "SMTP_PORT", "SMTP_USER", "SMTP_PASSWORD",
    )

    def __init__(self, *, settings: Settings, credentials: Credentials | None = None) -> None:
        self.settings = settings
        self.catcher = MailCatcher(settings.mail_dir)

    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome:
        name = ctx.session.resource_name
        other = ctx.owned_by_other_session(KIND, name)
        if other:
            raise ProviderError(f"mailbox {name} belongs to session {other!r}", call="local mail")
        ctx.progress("starting the local mail catcher")
        endpoints = await asyncio.to_thread(self.catcher.ensure_running)
        ctx.attempt()
        row = ctx.intend(KIND, name)
        creds = await asyncio.to_thread(self.catcher.store.create_account, name)
        box = str(self.catcher.store.box_dir(name))
        ctx.created(row, box)
        env = {
            "RESEND_API_KEY": creds.api_key,
            "RESEND_BASE_URL": endpoints.base_url,
            "RESEND_API_URL": endpoints.base_url,
            "SMTP_HOST": endpoints.host,
            "SMTP_PORT": str(endpoints.smtp_port),
            "SMTP_USER": creds.smtp_user,
            "SMTP_PASSWORD": creds.smtp_password,
        }
        return ProvisionOutcome(env=env, resources=(ResourceRef(self.name, KIND, name, box),))

    async def not_reusable(self, env: Mapping[str, str], rows: Sequence[ResourceRow]) -> str | None:
        """The catcher is started if it was stopped; its ports must still be the env's, and the
        session's mailbox account must still exist."""
        endpoints = await asyncio.to_thread(self.catcher.ensure_running)
        if env.get("SMTP_PORT") != str(endpoints.smtp_port) or env.get("RESEND_BASE_URL") != endpoints.base_url:
            return f"the mail catcher now listens on smtp {endpoints.smtp_port}, api {endpoints.base_url}"
        names = await asyncio.to_thread(self.catcher.store.names)
        if not all(row.name in names for row in rows):
            return "the session's mailbox is gone"
        return None

    async def teardown(self, resource: ResourceRow) -> bool:
        try:
            return await asyncio.to_thread(self.catcher.store.remove, resource.name)
        except ValueError as exc:
            raise ProviderError(str(exc), call="remove mailbox") from None

    async def discover(self) -> list[FoundResource]:
        """Mailboxes and credentials on disk; reads the folder, never starts the catcher."""
        store = self.catcher.store
        names = await asyncio.to_thread(store.names)
        return [FoundResource(self.name, KIND, name, str(store.box_dir(name)), created) for name, created in sorted(names.items())]

    async def aclose(self) -> None:
        return None
