"""After a claim's renames (issue 14), the finisher delivers what changed again through the
session's target: the sandbox's `.env` and git `origin`, the local folder's `origin`, the agent
files. Until then they hold the pool's names (GitHub redirects them meanwhile). Real providers
against the fake upstream, a real git folder, the E2B target on an in-memory sandbox backend."""

from __future__ import annotations

import io
import subprocess

import pytest
from crashkit import KEYS, fake_settings, keyed
from dotenv import dotenv_values
from fakes import registry_of
from test_e2b_target import FakeSandboxBackend

from fakeupstream import FakeUpstream
from mk0r_tui.core.envfile import read_env_file
from mk0r_tui.core.models import Session
from mk0r_tui.engine import pool_upkeep
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.providers.github import GitHubProvider
from mk0r_tui.providers.neon import NeonProvider
from mk0r_tui.providers.posthog import PostHogProvider
from mk0r_tui.providers.resend import ResendProvider
from mk0r_tui.targets.e2b import APP_DIR, E2BTarget

FAKE_CONFIG = {"latency_ms": {"neon": 5, "resend": 5, "github": 5, "posthog": 5}, "neon_operation_ms": 0}


@pytest.fixture
def fake():
    with FakeUpstream(config=FAKE_CONFIG) as upstream:
        yield upstream


@pytest.mark.parametrize("target", ["local", "e2b"])
async def test_the_finisher_delivers_the_renamed_values_through_the_target(fake, mk0r_home, session_key, target):
    settings = fake_settings(fake, pool_size=1, target=target)
    credentials = keyed(**KEYS)
    backend = FakeSandboxBackend()
    providers = [cls(settings=settings, credentials=credentials)
                 for cls in (NeonProvider, ResendProvider, GitHubProvider, PostHogProvider)]
    runtime = Runtime(settings, credentials, registry=registry_of(*providers, E2BTarget(settings=settings, backend=backend)))
    try:
        await pool_upkeep.fill(runtime, {"github": 1})
        session = Session.parse(session_key)
        report = await provision_services(runtime, session, runtime.plan())
        assert report.ok, report.errors
        assert next(r for r in report.results if r.name == "github").from_pool

        def delivered() -> tuple[dict[str, str | None], str]:
            """The env and the git origin where the app lives (the sandbox or the local folder)."""
            if target == "e2b":
                box = next(iter(backend.sandboxes.values()))
                env = dotenv_values(stream=io.StringIO(box.files[f"{APP_DIR}/.env"]))
                wiring = [c for _, c, _ in backend.commands if "origin" in c]
                return env, wiring[-1]
            folder = runtime.settings.env_file_for(session.slug).parent
            origin = subprocess.run(["git", "-C", str(folder), "remote", "get-url", "origin"],
                                    capture_output=True, text=True, check=True).stdout.strip()
            return dict(read_env_file(folder / ".env")), origin

        env, origin = delivered()
        assert "mk0r-pool-" in str(env["GITHUB_REPO"]) and "mk0r-pool-" in origin

        outcomes = await pool_upkeep.finish_claims(runtime, session.key)
        assert outcomes and all(o.error is None for o in outcomes), outcomes
        env, origin = delivered()
        assert str(env["GITHUB_REPO"]).endswith(f"/{session.resource_name}")
        assert str(env["GIT_REMOTE_URL"]).endswith(f"/{session.resource_name}.git")
        assert f"/{session.resource_name}.git" in origin and "mk0r-pool-" not in origin
        assert env["DATABASE_URL"] == read_env_file(runtime.settings.env_file_for(session.slug))["DATABASE_URL"]
    finally:
        await runtime.aclose()
        runtime.close()
