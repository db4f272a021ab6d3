"""`mk0r-tui doctor`: for every keyed provider, is the key there, where from, does it work, and
which region/org/owner would be used. UI-agnostic: returns data; the CLI prints it.

A provider takes part in the authentication check through its contract's `check_auth` (one
cheap read-only call); one whose `check_auth` answers None is reported as present but unchecked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.envfile import scrub
from mk0r_tui.core.errors import Mk0rError
from mk0r_tui.core.provider import AuthCheck, Provider
from mk0r_tui.providers import ProviderSpec, Registry

CheckStatus = Literal["ok", "failing", "missing", "unchecked"]


@dataclass(frozen=True, slots=True)
class ProviderCheck:
    provider: str
    key_name: str
    key_present: bool
    key_source: str | None
    status: CheckStatus
    detail: str
    settings: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "key": self.key_name,
            "key_present": self.key_present,
            "key_source": self.key_source,
            "status": self.status,
            "detail": self.detail,
            "problems": list(self.problems),
            "settings": dict(self.settings),
        }


@dataclass(frozen=True, slots=True)
class LocalCheck:
    """One part of the local profile the plan uses: the data dir, `git`, the Postgres server."""

    part: str
    status: CheckStatus
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"part": self.part, "status": self.status, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class DoctorReport:
    checks: tuple[ProviderCheck, ...]
    keyring_message: str | None = None
    local: tuple[LocalCheck, ...] = ()

    @property
    def ok(self) -> bool:
        return all(c.status != "failing" for c in self.checks) and all(c.status != "failing" for c in self.local)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "keyring": self.keyring_message, "providers": [c.to_json() for c in self.checks],
                "local": [c.to_json() for c in self.local]}


def _neon(s: Settings) -> dict[str, str]:
    return {"api": s.neon_api_url, "region": s.neon_region, "pg_version": str(s.neon_pg_version),
            "org": s.neon_org_id or "(NEON_ORG_ID unset: the key's own organization)"}


def _resend(s: Settings) -> dict[str, str]:
    return {"api": s.resend_api_url, "domain_id": s.resend_domain_id or "(any domain: RESEND_DOMAIN_ID unset)",
            "requests_per_second": f"{s.resend_requests_per_second:g}"}


def _github(s: Settings) -> dict[str, str]:
    return {"api": s.github_api_url, "owner": s.github_owner or "(the token's user: GITHUB_OWNER unset)"}


def _posthog(s: Settings) -> dict[str, str]:
    return {"host": s.posthog_host}


def _e2b(s: Settings) -> dict[str, str]:
    return {"domain": s.e2b_domain, "template": s.e2b_template}


SETTINGS_IN_USE: dict[str, Callable[[Settings], dict[str, str]]] = {
    "neon": _neon, "resend": _resend, "github": _github, "posthog": _posthog, "e2b": _e2b,
}
#: providers whose key lives under a name the registry does not list (PostHog needs none to run)
EXTRA_KEYS = {"posthog": "POSTHOG_PROJECT_KEY"}


async def check_local_profile(settings: Settings, credentials: Credentials, registry: Registry) -> tuple[LocalCheck, ...]:
    """The parts of the local profile that a provision now would use, each tried for real: the
    data dir is writable, `git` runs, the Postgres server answers (the embedded one is started
    if it is stopped, as a provision would)."""
    from mk0r_tui.engine.plan import resolve_plan

    checks = [await asyncio.to_thread(_check_data_dir, settings)]
    try:
        plan = resolve_plan(registry, settings, credentials)
    except Mk0rError as exc:
        return (*checks, LocalCheck("plan", "failing", str(exc)))
    running = set(plan.running)
    if running & {"local-git", "local-folder"}:
        checks.append(await _check_git())
    if "local-postgres" in running:
        checks.append(await _check_postgres(settings))
    return tuple(checks)


def _check_data_dir(settings: Settings) -> LocalCheck:
    try:
        path = settings.ensure_data_dir()
    except Mk0rError as exc:
        return LocalCheck("data-dir", "failing", str(exc))
    return LocalCheck("data-dir", "ok", f"{path} is writable")


async def _check_git() -> LocalCheck:
    from mk0r_tui.providers.local_git import git_binary

    try:
        git = git_binary()
        proc = await asyncio.create_subprocess_exec(git, "--version", stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
    except (Mk0rError, OSError) as exc:
        return LocalCheck("git", "failing", str(exc))
    if proc.returncode != 0:
        return LocalCheck("git", "failing", f"`git --version` exited {proc.returncode}: {err.decode(errors='replace').strip()}")
    return LocalCheck("git", "ok", f"{out.decode(errors='replace').strip()} ({git})")


async def _check_postgres(settings: Settings) -> LocalCheck:
    """The server answers `SELECT 1` through `psql`, the client provisioning uses."""
    from mk0r_tui.providers.embedded_pg import EmbeddedPostgres, binaries_missing
    from mk0r_tui.providers.local_postgres import admin_from_url, admin_psql

    started = ""
    try:
        if settings.local_postgres_url:
            admin = admin_from_url(settings.local_postgres_url)
            what = f"Postgres at {admin.host}:{admin.port} (MK0R_LOCAL_POSTGRES_URL)"
        else:
            missing = binaries_missing()
            if missing:
                return LocalCheck("postgres", "failing", f"the embedded server cannot run: {missing}")
            server = EmbeddedPostgres(settings.postgres_dir)
            was_running = server.running_port() is not None
            admin = await asyncio.to_thread(server.ensure_running)
            what = f"the embedded server on {admin.host}:{admin.port} ({settings.postgres_dir})"
            started = "" if was_running else " (it was stopped: started it)"
        await admin_psql(admin, "SELECT 1").run("SELECT 1;\n")
    except (Mk0rError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return LocalCheck("postgres", "failing", scrub(first))
    return LocalCheck("postgres", "ok", f"{what} answers{started}")


async def run_doctor(settings: Settings, credentials: Credentials, registry: Registry, *, local: bool = False) -> DoctorReport:
    """Check every keyed provider of `registry` concurrently (and with `local`, the local
    profile: `check_local_profile`); providers built here are closed afterwards."""
    built: list[Provider] = []
    specs = [s for s in registry.specs if s.key_name or s.name in EXTRA_KEYS]

    async def check(spec: ProviderSpec) -> ProviderCheck:
        key_name = spec.key_name or EXTRA_KEYS[spec.name]
        cred = credentials.get(key_name)
        shown = SETTINGS_IN_USE[spec.name](settings) if spec.name in SETTINGS_IN_USE else {}
        base: dict[str, Any] = dict(
            provider=spec.name, key_name=key_name, key_present=cred.present, key_source=cred.source, settings=shown
        )
        if not cred.present:
            return ProviderCheck(**base, status="missing", detail=f"{key_name} is not set (env var or `mk0r-tui keys set`)")
        provider = spec.build(settings, credentials)
        built.append(provider)
        try:
            async with asyncio.timeout(settings.provider_timeout_s):
                result: AuthCheck | None = await provider.check_auth()
        except TimeoutError:
            return ProviderCheck(**base, status="failing", detail="timed out")
        except Mk0rError as exc:
            return ProviderCheck(**base, status="failing", detail=scrub(str(exc), credentials.secret_values()))
        if result is None:
            return ProviderCheck(**base, status="unchecked", detail="key present (no authentication check for this provider)")
        status: CheckStatus = "ok" if result.ok and not result.problems else "failing"
        return ProviderCheck(**base, status=status, detail=result.detail, problems=result.problems)

    try:
        checks = await asyncio.gather(*(check(spec) for spec in specs))
    finally:
        for provider in built:
            await provider.aclose()
    local_checks = await check_local_profile(settings, credentials, registry) if local else ()
    return DoctorReport(tuple(checks), credentials.keyring_message, local_checks)
