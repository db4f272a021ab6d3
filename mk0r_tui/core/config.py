"""Settings from the environment and the data directory (platformdirs).

Provisioning keys are not settings: they come from `credentials` (env var, else OS keyring).

`Settings` is declared as a pydantic model was (a field per line: `Field(default,
validation_alias=_env("MK0R_..."))`, `@field_validator`), but built by `core/envmodel.py`: neither
pydantic-settings nor pydantic is imported for it (issue 17: ~50 ms of imports for
pydantic-settings, ~110 ms of CPU for pydantic and the schema, on every process). What mattered
is kept: each field is read from the env var(s) of its alias (names matched case-insensitively),
a value passed to `Settings(...)` wins over the environment, env strings are coerced as pydantic's
lax mode did ("1"/"true" → True, "17" → 17, a path → Path), `ge`/`le` bounds and validators run,
and a bad value is one `ConfigError` naming the variable (`load_settings`).
"""

from __future__ import annotations

import math
import os
import stat
from functools import cached_property
from pathlib import Path
from typing import Literal

from mk0r_tui.core.envmodel import AliasChoices, EnvModel, Field, field_validator
from mk0r_tui.core.errors import ConfigError

APP_NAME = "mk0r-tui"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(EnvModel):
    """Every knob, each read from the environment variable named in its alias (core/envmodel.py)."""

    home: Path | None = Field(None, validation_alias=_env("MK0R_HOME"))
    profile: Literal["auto", "local", "cloud"] = Field("auto", validation_alias=_env("MK0R_PROFILE"))
    target: Literal["auto", "local", "e2b"] = Field("auto", validation_alias=_env("MK0R_TARGET"))

    local_postgres_url: str | None = Field(None, validation_alias=_env("MK0R_LOCAL_POSTGRES_URL"))
    postgres_dir_override: Path | None = Field(None, validation_alias=_env("MK0R_POSTGRES_DIR"))
    mail_dir_override: Path | None = Field(None, validation_alias=_env("MK0R_MAIL_DIR"))

    neon_api_url: str = Field("https://console.neon.tech/api/v2", validation_alias=_env("MK0R_NEON_API_URL"))
    neon_org_id: str | None = Field(None, validation_alias=_env("NEON_ORG_ID"))
    neon_region: str = Field("aws-us-east-2", validation_alias=_env("MK0R_NEON_REGION"))
    neon_pg_version: int = Field(17, validation_alias=_env("MK0R_NEON_PG_VERSION"))

    resend_api_url: str = Field("https://api.resend.com", validation_alias=_env("MK0R_RESEND_API_URL"))
    resend_domain_id: str | None = Field(None, validation_alias=_env("RESEND_DOMAIN_ID"))
    resend_requests_per_second: float = Field(2.0, validation_alias=_env("MK0R_RESEND_RPS"))

    github_api_url: str = Field("https://api.github.com", validation_alias=_env("MK0R_GITHUB_API_URL"))
    github_owner: str | None = Field(None, validation_alias=_env("GITHUB_OWNER"))
    github_mutation_gap_s: float = Field(1.0, validation_alias=_env("MK0R_GITHUB_MUTATION_GAP_S"))

    posthog_host: str = Field("https://us.i.posthog.com", validation_alias=_env("POSTHOG_HOST"))

    e2b_domain: str = Field("e2b.app", validation_alias=_env("E2B_DOMAIN"))
    e2b_api_url: str | None = Field(None, validation_alias=_env("E2B_API_URL"))
    e2b_template: str = Field("base", validation_alias=_env("MK0R_E2B_TEMPLATE"))
    e2b_timeout_s: int = Field(3600, validation_alias=_env("MK0R_E2B_TIMEOUT_S"))
    #: what E2B does at the timeout: kill (work not pushed is lost) or pause (resumed on next use)
    e2b_on_timeout: Literal["kill", "pause"] = Field("kill", validation_alias=_env("MK0R_E2B_ON_TIMEOUT"))
    #: deliver into this existing sandbox instead of creating one (`provision --sandbox ID`)
    e2b_sandbox_id: str | None = Field(None, validation_alias=_env("MK0R_E2B_SANDBOX_ID"))

    provider_timeout_s: float = Field(120.0, validation_alias=_env("MK0R_PROVIDER_TIMEOUT_S"))
    http_timeout_s: float = Field(30.0, validation_alias=_env("MK0R_HTTP_TIMEOUT_S"))
    max_attempts: int = Field(5, ge=1, le=20, validation_alias=_env("MK0R_MAX_ATTEMPTS"))
    concurrency: int = Field(8, ge=1, validation_alias=_env("MK0R_CONCURRENCY"))
    #: per-provider limits on requests in flight (shared by every session); unset = `concurrency`
    neon_concurrency: int | None = Field(None, ge=1, validation_alias=_env("MK0R_CONCURRENCY_NEON"))
    resend_concurrency: int | None = Field(None, ge=1, validation_alias=_env("MK0R_CONCURRENCY_RESEND"))
    github_concurrency: int | None = Field(None, ge=1, validation_alias=_env("MK0R_CONCURRENCY_GITHUB"))
    posthog_concurrency: int | None = Field(None, ge=1, validation_alias=_env("MK0R_CONCURRENCY_POSTHOG"))
    no_keyring: bool = Field(False, validation_alias=_env("MK0R_NO_KEYRING"))
    #: a session's run lease whose owner has not beaten for this long is gone (its process died elsewhere)
    lease_stale_s: float = Field(15.0, validation_alias=_env("MK0R_LEASE_STALE_S"))
    #: how long a provision or teardown waits for a busy session before saying who holds it
    lease_wait_s: float = Field(60.0, validation_alias=_env("MK0R_LEASE_WAIT_S"))
    # -- provider budgets shared across processes (core/budgets.py, on the ledger's database) --
    #: GitHub's secondary limits on content creation, per token (docs: "Rate limits for the REST API")
    github_creates_per_minute: int = Field(80, ge=1, validation_alias=_env("MK0R_GITHUB_CREATES_PER_MIN"))
    github_creates_per_hour: int = Field(500, ge=1, validation_alias=_env("MK0R_GITHUB_CREATES_PER_HOUR"))
    #: Neon's API limit per key (700 requests/min)
    neon_requests_per_minute: int = Field(700, ge=1, validation_alias=_env("MK0R_NEON_RPM"))
    #: the length of the budgets' "minute" (an hour is 60 of them): tests shrink it to run the
    #: per-minute limits scaled; never change it against the real providers
    budget_minute_s: float = Field(60.0, gt=0, validation_alias=_env("MK0R_BUDGET_MINUTE_S"))

    @field_validator("home", "postgres_dir_override", mode="before")
    @classmethod
    def _absolute_dir(cls, value: object) -> object:
        """A relative or empty folder would be resolved against whatever the cwd is at the time
        (the target failed after the cloud resources existed): refused, never guessed."""
        if value is None:
            return None
        text = str(value)
        if not text.strip():
            raise ValueError("is empty; unset it, or give an absolute folder")
        if "\x00" in text:
            raise ValueError("holds a NUL character")
        if not Path(text).expanduser().is_absolute():
            raise ValueError(f"{text!r} is a relative path; give an absolute folder (e.g. $HOME/mk0r)")
        return value

    @field_validator("provider_timeout_s", "http_timeout_s", "resend_requests_per_second")
    @classmethod
    def _positive_finite(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"must be a number above 0 (got {value})")
        return value

    @field_validator("lease_stale_s")
    @classmethod
    def _stale(cls, value: float) -> float:
        if not math.isfinite(value) or value < 1:
            raise ValueError(f"must be at least 1 second (got {value})")
        return value

    @field_validator("lease_wait_s", "github_mutation_gap_s")
    @classmethod
    def _zero_or_more_seconds(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"must be 0 or more seconds (got {value})")
        return value

    @field_validator("e2b_timeout_s")
    @classmethod
    def _e2b_timeout(cls, value: int) -> int:
        if value <= 0:
            raise ValueError(f"must be a number of seconds above 0 (got {value})")
        return value

    def concurrency_for(self, provider: str) -> int:
        """Requests one provider may have in flight at once in this process."""
        return getattr(self, f"{provider}_concurrency", None) or self.concurrency

    @cached_property
    def data_dir(self) -> Path:
        if self.home is not None:
            return self.home.expanduser()
        import platformdirs  # only when MK0R_HOME does not say where

        return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"

    @property
    def apps_dir(self) -> Path:
        return self.data_dir / "apps"

    def env_file_for(self, slug: str) -> Path:
        """The operator's copy of a session's `.env`, whatever the target (and the local
        target's own `.env`): written before the target runs, so a failed delivery loses nothing."""
        return self.apps_dir / slug / ".env"

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def postgres_dir(self) -> Path:
        """The embedded server's folder (shareable between data dirs with MK0R_POSTGRES_DIR)."""
        return self.postgres_dir_override or self.data_dir / "postgres"

    @property
    def mail_dir(self) -> Path:
        """The local mail catcher's folder: its state, the sessions' credentials and mailboxes."""
        return self.mail_dir_override or self.data_dir / "mail"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "mk0r-tui.log"

    @property
    def data_dir_mode(self) -> int:
        """0700; 0711 when root runs the embedded Postgres inside it. Postgres refuses to run as
        root, so a system user runs it (as pgserver does) and must be able to *traverse* the data
        dir to reach its own files: a 0700 data dir made its checkpointer PANIC on the next
        checkpoint (a DROP DATABASE: "server closed the connection"). 0711 lets no one list the
        folder; every entry in it keeps its own private mode (apps/, repos/, mail/ 0700; the
        ledger and the log 0600)."""
        root_runs_postgres_inside = os.geteuid() == 0 and self.postgres_dir.is_relative_to(self.data_dir)
        return 0o711 if root_runs_postgres_inside else 0o700

    def ensure_data_dir(self) -> Path:
        """Create the data dir (`data_dir_mode`, tightened when it exists, whatever the umask) or
        raise ConfigError saying why it cannot be used."""
        path = self.data_dir
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            if stat.S_IMODE(path.stat().st_mode) != self.data_dir_mode:
                os.chmod(path, self.data_dir_mode)
            probe = path / f".write-probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
            from mk0r_tui.core.paths import private_dir

            for folder in (self.apps_dir, self.repos_dir):  # 0700, never a link, whatever the umask
                private_dir(folder, path)
        except OSError as exc:
            raise ConfigError(
                f"cannot use the data dir {path}: {exc.strerror or exc}. "
                "Set MK0R_HOME to a folder you can write to."
            ) from None
        return path

    # -- team mode (issue 12): the ledger on a shared Postgres --------------------------------
    #: `postgresql://user:password@host:port/db`: the ledger (sessions, resources, runs, leases,
    #: journal) lives there for every process and machine that names it; unset = the SQLite file
    #: under the data dir. Its password is never printed (core/ledger/backends.mask_url).
    ledger_url: str | None = Field(None, validation_alias=_env("MK0R_LEDGER_URL"))

    @field_validator("ledger_url")
    @classmethod
    def _ledger_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql://user:password@host:port/database URL (or unset for the local SQLite ledger)")
        return value.strip()

    # -- the provisioning service (issue 13: `mk0r-tui serve` and `mk0r-tui worker`) --------
    #: the job queue's Postgres; unset: the team ledger's Postgres, else the embedded server's `service_queue_of_mk0r`
    queue_url: str | None = Field(None, validation_alias=_env("MK0R_QUEUE_URL"))
    #: jobs one process runs at once (serve's in-process workers, or `mk0r-tui worker`)
    worker_concurrency: int = Field(16, ge=1, le=1000, validation_alias=_env("MK0R_WORKER_CONCURRENCY"))
    #: a worker's heartbeat; a job whose worker is silent for `worker_stalled_s` is queued again
    worker_heartbeat_s: float = Field(5.0, gt=0, le=3600, validation_alias=_env("MK0R_WORKER_HEARTBEAT_S"))
    worker_stalled_s: float = Field(30.0, gt=0, le=86400, validation_alias=_env("MK0R_WORKER_STALLED_S"))
    #: how long a POST or DELETE waits for its job before answering 202 with a Location
    service_wait_s: float = Field(600.0, gt=0, validation_alias=_env("MK0R_SERVICE_WAIT_S"))

    # -- the warm pool (issue 14, engine/pool.py) -------------------------------------------
    #: ready items kept per pooled provider (0: no pool); MK0R_POOL_SIZE_<PROVIDER> overrides it
    pool_size: int = Field(0, ge=0, le=1000, validation_alias=_env("MK0R_POOL_SIZE"))
    neon_pool_size: int | None = Field(None, ge=0, le=1000, validation_alias=_env("MK0R_POOL_SIZE_NEON"))
    resend_pool_size: int | None = Field(None, ge=0, le=1000, validation_alias=_env("MK0R_POOL_SIZE_RESEND"))
    github_pool_size: int | None = Field(None, ge=0, le=1000, validation_alias=_env("MK0R_POOL_SIZE_GITHUB"))
    local_postgres_pool_size: int | None = Field(None, ge=0, le=1000, validation_alias=_env("MK0R_POOL_SIZE_LOCAL_POSTGRES"))
    local_git_pool_size: int | None = Field(None, ge=0, le=1000, validation_alias=_env("MK0R_POOL_SIZE_LOCAL_GIT"))
    #: a ready item older than this is recycled (deleted and made again) instead of claimed
    pool_max_age_s: float = Field(7 * 24 * 3600.0, gt=0, validation_alias=_env("MK0R_POOL_MAX_AGE"))
    #: creates the refill runs at once per provider (kept low: a session's own creates go first)
    pool_fill_concurrency: int = Field(1, ge=1, le=16, validation_alias=_env("MK0R_POOL_FILL_CONCURRENCY"))
    #: the Fernet key of pooled items' secrets (else the keyring, else <data dir>/pool.key)
    pool_key: str | None = Field(None, validation_alias=_env("MK0R_POOL_KEY"))

    @field_validator("pool_max_age_s", mode="before")
    @classmethod
    def _pool_age(cls, value: object) -> object:
        """Seconds, or a duration: 90s, 30m, 12h, 7d."""
        if isinstance(value, str):
            import re

            found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
            if not found:
                raise ValueError(f"{value!r} is not a duration: use seconds or e.g. 30m, 12h, 7d")
            return float(found.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[found.group(2)]
        return value

    @property
    def pool_on(self) -> bool:
        """A pool size above 0, for all providers or one (no ledger read, no key look-up)."""
        sizes = (self.pool_size, self.neon_pool_size, self.resend_pool_size, self.github_pool_size,
                 self.local_postgres_pool_size, self.local_git_pool_size)
        return any((size or 0) > 0 for size in sizes)

    def pool_target(self, provider: str) -> int:
        """Ready items this provider's pool keeps (0: none)."""
        override = getattr(self, f"{provider.replace('-', '_')}_pool_size", None)
        return self.pool_size if override is None else int(override)

    @property
    def pool_key_path(self) -> Path:
        return self.data_dir / "pool.key"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; a bad value is a ConfigError, not a traceback."""
    from mk0r_tui.core.envmodel import SettingsValidationError as ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"bad configuration: {problems}") from None
