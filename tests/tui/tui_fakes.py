"""Fake providers for the dashboard's tests: the real Protocol, with controllable gates,
retries and failures, and recognisable fake secrets (to prove none reaches the screen)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace

from fakes import registry_of

from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import FoundResource, ProvisionOutcome, ResourceRef, Slot
from mk0r_tui.core.provider import Provider
from mk0r_tui.providers import ProviderSpec, Registry

FAKE_DB_PASSWORD = "hunter2-FAKE-db-password"
FAKE_API_KEY = "sk_test_FAKE_SECRET_0123456789abcdef"
FAKE_SECRETS = (FAKE_DB_PASSWORD, FAKE_API_KEY)
#: the scenes' local mail password (the fake providers do not hand it out)
FAKE_SMTP_PASSWORD = "FAKE-smtp-password-0123456789"
REPO_URL = "https://github.com/acme/mk0r-demo"


class FakeProvider(Provider):
    """Provisions one resource named after the session. `gate` holds it mid-create (after
    the intent is recorded), `fail_times` fails that many calls, `retries` emits retry events,
    `progress` emits that many progress lines."""

    def __init__(
        self,
        name: str,
        slot: Slot,
        *,
        kind: str = "thing",
        env: Mapping[str, str] | None = None,
        fail_times: int = 0,
        error: str = "quota exceeded",
        retries: int = 0,
        progress: int = 1,
        gate: asyncio.Event | None = None,
        teardown_error: str | None = None,
    ) -> None:
        self.name = name
        self.slot = slot
        self.kind = kind
        self.env = dict(env or {})
        self.env_keys = tuple(self.env) or (f"{name.upper().replace('-', '_')}_ID",)
        self.fail_times = fail_times
        self.error = error
        self.retries = retries
        self.progress = progress
        self.gate = gate
        self.teardown_error = teardown_error
        self.calls = 0
        self.deleted: list[str] = []

    async def provision(self, ctx) -> ProvisionOutcome:
        self.calls += 1
        name = ctx.session.resource_name
        row = await ctx.intend(self.kind, name)
        for attempt in range(2, self.retries + 2):
            ctx.attempt()
            ctx.retrying(attempt, 5, 0.0, "HTTP 429: slow down")
        ctx.attempt()
        for step in range(self.progress):
            ctx.progress(f"creating {self.kind} {name} (step {step + 1})")
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ProviderError(self.error, call=f"POST /{self.kind}s", status=500, hint="try again later")
        remote_id = f"{self.kind}-{ctx.session.slug}"
        await ctx.created(row, remote_id, url=f"https://fake.example/{remote_id}")
        env = dict(self.env) or {self.env_keys[0]: remote_id}
        return ProvisionOutcome(env=env, resources=(ResourceRef(self.name, self.kind, name, remote_id, f"https://fake.example/{remote_id}"),))

    async def teardown(self, resource: ResourceRow) -> bool:
        if self.gate is not None:
            await self.gate.wait()
        if self.teardown_error:
            raise ProviderError(self.teardown_error, call=f"DELETE /{self.kind}s/{resource.remote_id}", status=409)
        self.deleted.append(resource.name)
        return True

    async def discover(self) -> list[FoundResource]:
        return []

    async def aclose(self) -> None:
        return None


def fake_set(**overrides) -> dict[str, FakeProvider]:
    """analytics, db (with fake secrets), repo (a GitHub URL) and a target; override by name."""
    providers = {
        "fake-analytics": FakeProvider("fake-analytics", Slot.ANALYTICS, kind="tag", env={"VITE_APP_ID": "mk0r-demo"}, progress=0),
        "fake-db": FakeProvider(
            "fake-db", Slot.DATABASE, kind="database",
            env={
                "DATABASE_URL": f"postgresql://app:{FAKE_DB_PASSWORD}@db.fake.internal:5432/app",
                "FAKE_API_KEY": FAKE_API_KEY,
                "PGHOST": "db.fake.internal",
            },
        ),
        "fake-repo": FakeProvider("fake-repo", Slot.REPO, kind="repo", env={"GITHUB_REPO_URL": REPO_URL}),
        "fake-target": FakeProvider("fake-target", Slot.TARGET, kind="app-folder", env={}, progress=0),
    }
    providers.update(overrides)
    return providers


def registry_for(providers: Mapping[str, FakeProvider], *, skipped_email: bool = True) -> Registry:
    """The registry a dashboard test's runtime is handed: one fake per slot (the plan picks them
    as it picks real providers) and, with `skipped_email`, an email slot whose key is never set."""
    fakes = registry_of(*providers.values(), base=None)
    extra: tuple[ProviderSpec, ...] = ()
    if skipped_email:
        extra = (ProviderSpec("fake-mail", Slot.EMAIL, "tui_fakes:FakeProvider", key_name="FAKE_MAIL_KEY", cloud=True),)
    slots = tuple(slot for slot in fakes.slots if any(s.slot is slot for s in (*fakes.providers, *extra)))
    return replace(fakes, providers=(*fakes.providers, *extra), slots=slots, missing_key_hints={Slot.EMAIL: "set FAKE_MAIL_KEY"})
