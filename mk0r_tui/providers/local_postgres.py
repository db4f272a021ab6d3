"""A dedicated Postgres database and role per session, on the embedded server or on the
operator's own server (`MK0R_LOCAL_POSTGRES_URL`, an admin URL).

Identifiers come from the slug (`mk0r_<slug>` with `-` → `_`), so they only hold [a-z0-9_];
they are quoted anyway. The password is hashed client-side (SCRAM) before it is sent, so the
server never sees or logs it in clear. The SQL runs through `psql` (providers/psql.py says why
not psycopg): one process and one connection per operation, its script on stdin.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, urlsplit

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.envfile import remember_secrets
from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import FoundResource, ProvisionOutcome, ResourceRef, Slot
from mk0r_tui.core.provider import Provider, ProvisionContext
from mk0r_tui.providers import psql
from mk0r_tui.providers.embedded_pg import AdminInfo, EmbeddedPostgres, binary
from mk0r_tui.providers.psql import PsqlRun, ScriptError, Target, ident, literal, scram_sha_256_secret

ROLE, DATABASE = "role", "database"
#: SQLSTATE duplicate_object: CREATE ROLE of a name that exists
DUPLICATE_OBJECT = "42710"
_NAME = re.compile(r"^mk0r_[a-z0-9_]+$")


def admin_from_url(url: str) -> AdminInfo:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
        raise ProviderError("MK0R_LOCAL_POSTGRES_URL must look like postgresql://admin:password@host:5432/postgres")
    return AdminInfo(parts.hostname, parts.port or 5432, parts.username or "postgres", parts.password or "")


def admin_psql(admin: AdminInfo, call: str) -> PsqlRun:
    """A `psql` run as the server's admin (what provisioning, teardown and `doctor` use)."""
    return PsqlRun(binary("psql"), Target(admin.host, admin.port, admin.user, admin.password), call=call)


def _checked_name(name: str) -> str:
    if not _NAME.match(name):
        raise ProviderError(f"refusing {name!r}: not an mk0r Postgres name")
    return name


def provision_script(name: str, secret: str, *, may_alter: bool) -> str:
    """The role (created, or given the new password when the ledger says an existing one is this
    session's) and its database (created unless it exists), closed to PUBLIC. A marker follows
    each thing that now exists, so a script that stops half-way says what it made."""
    quoted = ident(name)
    if may_alter:
        make_role = (f"SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {literal(name)}) AS role_exists \\gset\n"
                     "\\if :role_exists\n"
                     f"\\echo {psql.MARK}role-existed\n"
                     f"ALTER ROLE {quoted} WITH LOGIN PASSWORD {literal(secret)};\n"
                     "\\else\n"
                     f"CREATE ROLE {quoted} WITH LOGIN PASSWORD {literal(secret)};\n"
                     "\\endif\n")
    else:  # an existing role is someone else's: CREATE fails with 42710 and nothing else runs
        make_role = f"CREATE ROLE {quoted} WITH LOGIN PASSWORD {literal(secret)};\n"
    return (
        make_role
        + f"\\echo {psql.MARK}{ROLE}\n"
        + f"SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = {literal(name)}) AS db_missing \\gset\n"
        + "\\if :db_missing\n"
        + f"CREATE DATABASE {quoted} OWNER {quoted};\n"
        + "\\endif\n"
        + f"\\echo {psql.MARK}{DATABASE}\n"
        + f"REVOKE ALL ON DATABASE {quoted} FROM PUBLIC;\n"
    )


class LocalPostgresProvider(Provider):
    name = "local-postgres"
    owner_marks = "local"
    poolable = True
    slot = Slot.DATABASE
    env_keys = ("DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")

    def __init__(self, *, settings: Settings, credentials: Credentials | None = None) -> None:
        self.settings = settings
        self.server = None if settings.local_postgres_url else EmbeddedPostgres(settings.postgres_dir)

    async def admin(self) -> AdminInfo:
        """The admin connection's details (the embedded server started if it is not running)."""
        if self.settings.local_postgres_url:
            return admin_from_url(self.settings.local_postgres_url)
        assert self.server is not None
        return await asyncio.to_thread(self.server.ensure_running)

    @property
    def psql(self) -> Path:
        return binary("psql")

    def _hint(self, exc: ScriptError) -> ScriptError:
        if exc.call == "connect" and self.settings.local_postgres_url:
            exc.hint = "check MK0R_LOCAL_POSTGRES_URL"
        return exc

    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome:
        name = _checked_name(ctx.session.pg_identifier)
        for kind in (ROLE, DATABASE):
            other = ctx.owned_by_other_session(kind, name)
            if other:
                raise ProviderError(f"{kind} {name} belongs to session {other!r}")
        ctx.progress("starting embedded Postgres" if self.server else "connecting to Postgres")
        admin = await self.admin()
        ctx.attempt()
        password = secrets.token_urlsafe(24)
        remember_secrets([password])  # an error that echoes it is scrubbed everywhere
        secret = scram_sha_256_secret(password)
        prior = ctx.existing(ROLE, name)
        # psql connects and authenticates while the intents become durable; its script (the
        # creates) is only sent once they are
        run = await admin_psql(admin, "postgres").start()
        try:
            role_row = await ctx.intend(ROLE, name)
            db_row = await ctx.intend(DATABASE, name)
        except BaseException:
            await run.abandon()
            raise
        ctx.progress(f"creating role and database {name}")
        try:
            outcome = await run.run(provision_script(name, secret, may_alter=prior is not None))
        except ScriptError as exc:
            # the server answered: what has no marker was not made (the failed statement rolled
            # back, the rest never ran), so its intent is closed rather than left to `orphans`
            made = set(exc.marks)
            for kind, row in ((ROLE, role_row), (DATABASE, db_row)):
                if kind in made:
                    await ctx.created(row, name)
                else:
                    await ctx.dropped(row, f"not created: {exc}")
            if exc.sqlstate == DUPLICATE_OBJECT and ROLE not in made:
                raise ProviderError(f"role {name} already exists and the ledger does not say it is this session's") from None
            raise self._hint(exc) from None
        if "role-existed" in outcome.marks:
            ctx.progress(f"role {name} existed (this session's): new password")
        await ctx.created(role_row, name)
        await ctx.created(db_row, name)

        url = f"postgresql://{name}:{quote(password, safe='')}@{admin.host}:{admin.port}/{name}"
        env = {
            "DATABASE_URL": url,
            "PGHOST": admin.host,
            "PGPORT": str(admin.port),
            "PGUSER": name,
            "PGPASSWORD": password,
            "PGDATABASE": name,
        }
        where = f"{admin.host}:{admin.port}"
        return ProvisionOutcome(
            env=env,
            resources=(ResourceRef(self.name, ROLE, name, name), ResourceRef(self.name, DATABASE, name, name, where)),
        )

    async def pool_claimed(self, ctx: ProvisionContext, env: Mapping[str, str]) -> Mapping[str, str]:
        """A pooled role + database become the session's before its `.env` is written: both
        renamed to the session's identifier and the role given a new password, so the pool's
        name, role and password work for no one afterwards (the pooled password was sealed in the
        ledger; this one exists only in the session's `.env`)."""
        name = _checked_name(ctx.session.pg_identifier)
        rows = {r.kind: r for r in ctx.resources.rows(self.name)}
        role_row, db_row = rows.get(ROLE), rows.get(DATABASE)
        if role_row is None or db_row is None:
            raise ProviderError("the pooled local database has no role or database row", call="pool claim")
        old = _checked_name(role_row.name)
        admin = await self.admin()
        password = secrets.token_urlsafe(24)
        remember_secrets([password])
        script, marks = "", []
        if old != name:
            # nobody may be connected to a database that is renamed; a pooled one has no users
            script += (f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {literal(old)};\n"
                       f"ALTER DATABASE {ident(old)} RENAME TO {ident(name)};\n"
                       f"\\echo {psql.MARK}{DATABASE}\n"
                       f"ALTER ROLE {ident(old)} RENAME TO {ident(name)};\n"
                       f"\\echo {psql.MARK}{ROLE}\n")
        script += f"ALTER ROLE {ident(name)} WITH LOGIN PASSWORD {literal(scram_sha_256_secret(password))};\n"
        try:
            marks = (await admin_psql(admin, "pool claim").run(script)).marks
        except ScriptError as exc:
            marks = exc.marks
            raise self._hint(exc) from None
        finally:
            # the ledger follows each rename the server made, even when a later statement failed
            # (a cancelled claim leaves the rows as they were: the claim's repair looks again)
            if DATABASE in marks:
                ctx.resources.renamed(db_row, name, name, f"{admin.host}:{admin.port}")
            if ROLE in marks:
                ctx.resources.renamed(role_row, name, name)
        url = f"postgresql://{name}:{quote(password, safe='')}@{admin.host}:{admin.port}/{name}"
        return {**env, "DATABASE_URL": url, "PGUSER": name, "PGPASSWORD": password, "PGDATABASE": name,
                "PGHOST": admin.host, "PGPORT": str(admin.port)}

    async def not_reusable(self, env: Mapping[str, str], rows: Sequence[ResourceRow]) -> str | None:
        """The embedded server is started if it was stopped (`local-postgres stop`); then the
        session's own DATABASE_URL must answer `SELECT 1`."""
        admin = await self.admin()
        if env.get("PGPORT") != str(admin.port) or env.get("PGHOST") != admin.host:
            return f"the server now listens on {admin.host}:{admin.port}"
        url = env.get("DATABASE_URL")
        if not url:
            return "the env has no DATABASE_URL"
        try:
            await psql.run(self.psql, Target.from_url(url), "SELECT 1;\n", call="reuse check")
        except ProviderError as exc:
            return f"the database does not answer: {exc.args[0]}"
        return None

    async def teardown(self, resource: ResourceRow) -> bool:
        name = resource.name
        if not _NAME.match(name):
            raise ProviderError(f"refusing to drop {name!r}: not an mk0r name")
        if resource.kind == DATABASE:
            found = f"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = {literal(name)}) AS found \\gset\n"
            drop = f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE);\n"
        else:
            # the role's database must go first; drop it here too so order never matters
            found = f"SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {literal(name)}) AS found \\gset\n"
            drop = f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE);\nDROP ROLE IF EXISTS {ident(name)};\n"
        script = found + "\\if :found\n" + drop + f"\\echo {psql.MARK}dropped\n" + "\\endif\n"
        admin = await self.admin()
        try:
            outcome = await admin_psql(admin, f"drop {resource.kind} {name}").run(script)
        except ScriptError as exc:
            raise self._hint(exc) from None
        return "dropped" in outcome.marks

    async def discover(self) -> list[FoundResource]:
        if self.server is not None and not (self.server.pgdata / "PG_VERSION").exists():
            return []
        admin = await self.admin()
        script = ("SELECT 'database', datname FROM pg_database WHERE datname LIKE 'mk0r\\_%'\n"
                  "UNION ALL SELECT 'role', rolname FROM pg_roles WHERE rolname LIKE 'mk0r\\_%' ORDER BY 1, 2;\n")
        try:
            outcome = await admin_psql(admin, "discover").run(script)
        except ScriptError as exc:
            raise self._hint(exc) from None
        kinds = {"database": DATABASE, "role": ROLE}
        return [FoundResource(self.name, kinds[kind], found, found) for kind, found in outcome.rows]

    async def aclose(self) -> None:
        return None
