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
from urllib.parse import quote, urlsplit

import psycopg
from psycopg import sql

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.envfile import remember_secrets
from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import FoundResource, ProvisionOutcome, ResourceRef, Slot
from mk0r_tui.core.provider import Provider, ProvisionContext
from mk0r_tui.providers.embedded_pg import AdminInfo, EmbeddedPostgres

ROLE, DATABASE = "role", "database"


def admin_from_url(url: str) -> AdminInfo:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
        raise ProviderError("MK0R_LOCAL_POSTGRES_URL must look like postgresql://admin:password@host:5432/postgres")
    return AdminInfo(parts.hostname, parts.port or 5432, parts.username or "postgres", parts.password or "")


class LocalPostgresProvider(Provider):
    name = "local-postgres"
    owner_marks = "local"
    slot = Slot.DATABASE
    env_keys = ("DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")

    def __init__(self, *, settings: Settings, credentials: Credentials | None = None) -> None:
        self.settings = settings
        self.server = None if settings.local_postgres_url else EmbeddedPostgres(settings.postgres_dir)

    async def admin(self) -> AdminInfo:
        if self.settings.local_postgres_url:
            return admin_from_url(self.settings.local_postgres_url)
        assert self.server is not None
        return await asyncio.to_thread(self.server.ensure_running)

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
            role_row = ctx.intend(ROLE, ident)
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
            ctx.created(role_row, ident)

            db_row = ctx.intend(DATABASE, ident)
            if not await self._exists(conn, "pg_database", "datname", ident):
                ctx.progress(f"creating database {ident}")
                await conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(ident), sql.Identifier(ident)))
            await conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(ident)))
            ctx.created(db_row, ident)
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
