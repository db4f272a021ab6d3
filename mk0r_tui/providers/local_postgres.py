"""A dedicated Postgres database and role per session, on the embedded server or on the
operator's own server (`MK0R_LOCAL_POSTGRES_URL`, an admin URL).

Identifiers come from the slug (`mk0r_<slug>` with `-` → `_`), so they only hold [a-z0-9_];
they are quoted anyway. The password is hashed client-side (SCRAM) before it is sent, so the
server never sees or logs it in clear.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.envfile import remember_secrets
from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import FoundResource, ProvisionOutcome, ResourceRef, Slot
from mk0r_tui.core.provider import Provider, ProvisionContext
from mk0r_tui.providers.embedded_pg import AdminInfo, EmbeddedPostgres

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

ROLE, DATABASE = "role", "database"


def _load_psycopg() -> None:
    """Bind `psycopg` and `sql` here on first use. Importing psycopg is ~150 ms of CPU, most of a
    warm local `provision` process; `admin()` runs it in a thread beside the server check, so the
    loop's other tasks (the bare repo's and the app folder's `git`, the mail catcher, the ledger's
    writer) start their subprocesses and I/O meanwhile instead of queueing behind it."""
    global psycopg, sql
    import psycopg
    from psycopg import sql


def admin_from_url(url: str) -> AdminInfo:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
        raise ProviderError("MK0R_LOCAL_POSTGRES_URL must look like postgresql://admin:password@host:5432/postgres")
    return AdminInfo(parts.hostname, parts.port or 5432, parts.username or "postgres", parts.password or "")


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
        """The admin connection's details (the embedded server started if it is not running);
        psycopg is loaded by the time it returns (every use of it follows this call)."""
        if self.settings.local_postgres_url:
            info = admin_from_url(self.settings.local_postgres_url)
            await asyncio.to_thread(_load_psycopg)
            return info
        assert self.server is not None
        info, _ = await asyncio.gather(asyncio.to_thread(self.server.ensure_running), asyncio.to_thread(_load_psycopg))
        return info

    async def _connect(self, admin: AdminInfo) -> psycopg.AsyncConnection:
        try:
            return await psycopg.AsyncConnection.connect(admin.dsn(), autocommit=True)
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ProviderError(
                f"cannot connect to Postgres at {admin.host}:{admin.port}: {first}",
                call="connect",
                hint="check MK0R_LOCAL_POSTGRES_URL" if self.settings.local_postgres_url else None,
            ) from None

    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome:
        ident = ctx.session.pg_identifier
        for kind in (ROLE, DATABASE):
            other = ctx.owned_by_other_session(kind, ident)
            if other:
                raise ProviderError(f"{kind} {ident} belongs to session {other!r}")
        ctx.progress("starting embedded Postgres" if self.server else "connecting to Postgres")
        admin = await self.admin()
        ctx.attempt()
        password = secrets.token_urlsafe(24)
        remember_secrets([password])  # an error that echoes it is scrubbed everywhere
        conn = await self._connect(admin)
        try:
            prior = ctx.existing(ROLE, ident)
            role_row = await ctx.intend(ROLE, ident)
            role_exists = await self._exists(conn, "pg_roles", "rolname", ident)
            if role_exists and prior is not None:
                # ours (the ledger says so): we cannot read the old password back, so set a new one
                ctx.progress(f"role {ident} exists (this session's): new password")
                verb = "ALTER ROLE {} WITH LOGIN PASSWORD {}"
            elif role_exists:
                raise ProviderError(f"role {ident} already exists and the ledger does not say it is this session's")
            else:
                verb = "CREATE ROLE {} WITH LOGIN PASSWORD {}"
            hashed = conn.pgconn.encrypt_password(password.encode(), ident.encode(), b"scram-sha-256").decode()
            await conn.execute(sql.SQL(verb).format(sql.Identifier(ident), sql.Literal(hashed)))
            await ctx.created(role_row, ident)

            db_row = await ctx.intend(DATABASE, ident)
            if not await self._exists(conn, "pg_database", "datname", ident):
                ctx.progress(f"creating database {ident}")
                await conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(ident), sql.Identifier(ident)))
            await conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(ident)))
            await ctx.created(db_row, ident)
        except psycopg.Error as exc:
            raise ProviderError(_pg_message(exc), call="postgres") from None
        finally:
            await conn.close()

        url = f"postgresql://{ident}:{quote(password, safe='')}@{admin.host}:{admin.port}/{ident}"
        env = {
            "DATABASE_URL": url,
            "PGHOST": admin.host,
            "PGPORT": str(admin.port),
            "PGUSER": ident,
            "PGPASSWORD": password,
            "PGDATABASE": ident,
        }
        where = f"{admin.host}:{admin.port}"
        return ProvisionOutcome(
            env=env,
            resources=(ResourceRef(self.name, ROLE, ident, ident), ResourceRef(self.name, DATABASE, ident, ident, where)),
        )

    async def pool_claimed(self, ctx: ProvisionContext, env: Mapping[str, str]) -> Mapping[str, str]:
        """A pooled role + database become the session's before its `.env` is written: both
        renamed to the session's identifier and the role given a new password, so the pool's
        name, role and password work for no one afterwards (the pooled password was sealed in the
        ledger; this one exists only in the session's `.env`)."""
        ident = ctx.session.pg_identifier
        rows = {r.kind: r for r in ctx.resources.rows(self.name)}
        role_row, db_row = rows.get(ROLE), rows.get(DATABASE)
        if role_row is None or db_row is None:
            raise ProviderError("the pooled local database has no role or database row", call="pool claim")
        old = role_row.name
        admin = await self.admin()
        password = secrets.token_urlsafe(24)
        remember_secrets([password])
        conn = await self._connect(admin)
        try:
            if old != ident:
                # nobody may be connected to a database that is renamed; a pooled one has no users
                await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (old,))
                await conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(ident)))
                db_row = ctx.resources.renamed(db_row, ident, ident, f"{admin.host}:{admin.port}")
                await conn.execute(sql.SQL("ALTER ROLE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(ident)))
                role_row = ctx.resources.renamed(role_row, ident, ident)
            hashed = conn.pgconn.encrypt_password(password.encode(), ident.encode(), b"scram-sha-256").decode()
            await conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(ident), sql.Literal(hashed)))
        except psycopg.Error as exc:
            raise ProviderError(_pg_message(exc), call="pool claim") from None
        finally:
            await conn.close()
        url = f"postgresql://{ident}:{quote(password, safe='')}@{admin.host}:{admin.port}/{ident}"
        return {**env, "DATABASE_URL": url, "PGUSER": ident, "PGPASSWORD": password, "PGDATABASE": ident,
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
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            return f"the database does not answer: {_pg_message(exc)}"
        try:
            await conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return f"the database does not answer: {_pg_message(exc)}"
        finally:
            await conn.close()
        return None

    @staticmethod
    async def _exists(conn: psycopg.AsyncConnection, table: str, column: str, value: str) -> bool:
        query = sql.SQL("SELECT 1 FROM {} WHERE {} = %s").format(sql.Identifier(table), sql.Identifier(column))
        cur = await conn.execute(query, (value,))
        return await cur.fetchone() is not None

    async def teardown(self, resource: ResourceRow) -> bool:
        ident = resource.name
        if not ident.startswith("mk0r_"):
            raise ProviderError(f"refusing to drop {ident!r}: not an mk0r name")
        admin = await self.admin()
        conn = await self._connect(admin)
        try:
            if resource.kind == DATABASE:
                if not await self._exists(conn, "pg_database", "datname", ident):
                    return False
                await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(ident)))
                return True
            if not await self._exists(conn, "pg_roles", "rolname", ident):
                return False
            # the role's database must go first; drop it here too so order never matters
            await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(ident)))
            await conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ident)))
            return True
        except psycopg.Error as exc:
            raise ProviderError(_pg_message(exc), call=f"drop {resource.kind} {ident}") from None
        finally:
            await conn.close()

    async def discover(self) -> list[FoundResource]:
        if self.server is not None and not (self.server.pgdata / "PG_VERSION").exists():
            return []
        admin = await self.admin()
        conn = await self._connect(admin)
        try:
            found = []
            cur = await conn.execute(r"SELECT datname FROM pg_database WHERE datname LIKE 'mk0r\_%' ORDER BY 1")
            found += [FoundResource(self.name, DATABASE, r[0], r[0]) for r in await cur.fetchall()]
            cur = await conn.execute(r"SELECT rolname FROM pg_roles WHERE rolname LIKE 'mk0r\_%' ORDER BY 1")
            found += [FoundResource(self.name, ROLE, r[0], r[0]) for r in await cur.fetchall()]
            return found
        finally:
            await conn.close()

    async def aclose(self) -> None:
        return None


def _pg_message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag else None
    return primary or (str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
