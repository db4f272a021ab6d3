"""Administering a Postgres server with `psql`, the C client that ships with the embedded server
(pgserver's `pginstall/bin`), and the SCRAM secret a role's password is stored as.

Why `psql` and not psycopg here: the local profile's whole job on the server is a handful of
DDL statements per session, and importing psycopg is ~600 M instructions (~150 ms of CPU), more
than everything else a warm `provision` process does. `psql` starts in a few milliseconds, runs
on the other core while this process does the rest, and speaks to any server the operator points
`MK0R_LOCAL_POSTGRES_URL` at. psycopg stays the driver of the shared ledger and the job queue.

How it is driven, so nothing leaks and nothing is misread:
- the script goes on stdin (never argv, which any local user can read in /proc); the password on
  `PGPASSWORD` in the child's own environment, which is otherwise minimal (no inherited `PG*`
  variables, no `~/.psqlrc`, no password file, C locale so messages parse the same everywhere);
- `ON_ERROR_STOP` and `VERBOSITY verbose`: the first failing statement ends the script and its
  SQLSTATE comes back (`role "x" already exists` is 42710, not a guess from the wording);
- values are quoted here (`ident`, `literal`), and the scripts only interpolate identifiers made
  of [a-z0-9_] and SCRAM secrets (base64, `$` and `:`), never a password;
- progress markers (`\\echo mk0r:<step>`) after each statement that changes something tell the
  caller how far a failed script got, so the ledger records exactly what was made.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mk0r_tui.core.errors import ProviderError

#: the iteration count and salt length PostgreSQL itself uses (`scram_iterations`' default, 16 bytes)
SCRAM_ITERATIONS = 4096
SCRAM_SALT_BYTES = 16
MARK = "mk0r:"

_ERROR = re.compile(r"^(?:psql:[^:]*:\d+: )?(?:ERROR|FATAL):\s+(?:(?P<code>[0-9A-Z]{5}): )?(?P<message>.*)$")


def scram_sha_256_secret(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 secret PostgreSQL stores for `password` (RFC 5802 / RFC 7677, in the
    server's `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` form), so the server is
    handed a verifier, never the password, and cannot log it. libpq's `PQencryptPasswordConn`
    computes the same thing (tests check the two agree byte for byte on the same salt).

    PostgreSQL runs the password through SASLprep first; for printable ASCII that is the identity,
    and the passwords made here are `secrets.token_urlsafe`: anything else is refused rather than
    stored under a verifier the server might normalise differently."""
    if not password or not all(" " <= ch <= "~" for ch in password):
        raise ValueError("a SCRAM secret is only computed here for printable ASCII passwords")
    salt = secrets.token_bytes(SCRAM_SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A quoted SQL string literal (standard_conforming_strings: a backslash is just a backslash)."""
    if "\\" in value or "\0" in value:
        raise ValueError("refusing a literal with a backslash or NUL")
    return "'" + value.replace("'", "''") + "'"


class Target:
    """Where `psql` connects: the keywords of a libpq connection string, the password apart."""

    __slots__ = ("host", "port", "user", "dbname", "password")

    def __init__(self, host: str, port: int, user: str, password: str, dbname: str = "postgres") -> None:
        self.host, self.port, self.user, self.password, self.dbname = host, port, user, password, dbname

    @classmethod
    def from_url(cls, url: str) -> Target:
        """A `postgresql://user:password@host:port/db` URL (the `.env`'s DATABASE_URL)."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
            raise ProviderError("not a postgresql:// URL", call="psql")
        return cls(parts.hostname, parts.port or 5432, unquote(parts.username or ""), unquote(parts.password or ""),
                   unquote(parts.path.lstrip("/")) or "postgres")

    def conninfo(self) -> str:
        def value(v: str) -> str:
            return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"

        return (f"host={value(self.host)} port={self.port} user={value(self.user)} dbname={value(self.dbname)} "
                "connect_timeout=10 application_name=mk0r-tui")


class Outcome:
    """What a script printed: its rows (tab-separated fields) and the markers it passed."""

    __slots__ = ("rows", "marks")

    def __init__(self, stdout: str) -> None:
        lines = [line for line in stdout.splitlines() if line]
        self.marks = [line[len(MARK):] for line in lines if line.startswith(MARK)]
        self.rows = [line.split("\t") for line in lines if not line.startswith(MARK)]


class ScriptError(ProviderError):
    """A statement failed (or the connection did): `sqlstate` when the server gave one, and the
    markers the script passed before it stopped."""

    def __init__(self, message: str, *, sqlstate: str | None, marks: Sequence[str], call: str) -> None:
        super().__init__(message, call=call)
        self.sqlstate = sqlstate
        self.marks = list(marks)


def _child_env(password: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PGPASSWORD": password,
        "PGPASSFILE": os.devnull,
        "PGSYSCONFDIR": os.devnull,  # no pg_service.conf
        "PGCLIENTENCODING": "UTF8",
        "LC_ALL": "C",
        "HOME": os.devnull,
    }


class PsqlRun:
    """One `psql` process on one connection: started (and connecting) by `start`, handed its
    script by `run`. Starting first lets the connection and authentication overlap what the
    caller must finish before anything is created (its ledger intents)."""

    def __init__(self, psql: Path, target: Target, *, call: str) -> None:
        self.psql, self.target, self.call = psql, target, call
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> PsqlRun:
        try:
            self.proc = await asyncio.create_subprocess_exec(
                str(self.psql), "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
                "-d", self.target.conninfo(), "-f", "-",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=_child_env(self.target.password), cwd="/",
            )
        except OSError as exc:
            raise ProviderError(f"cannot run psql ({self.psql}): {exc.strerror or exc}", call=self.call) from None
        return self

    async def run(self, script: str) -> Outcome:
        """Run `script` (the session's only one) and wait for psql to end; a failure raises
        `ScriptError` with the first error line; cancelling kills psql."""
        if self.proc is None:
            await self.start()
        assert self.proc is not None
        try:
            out, err = await self.proc.communicate(script.encode())
        except BaseException:
            await self.abandon()
            raise
        outcome = Outcome(out.decode(errors="replace"))
        if self.proc.returncode != 0:
            raise _error(err.decode(errors="replace"), outcome.marks, self.target, self.call)
        return outcome

    async def abandon(self) -> None:
        """End psql without running anything more (nothing was sent, or the caller gave up)."""
        if self.proc is not None and self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            await self.proc.wait()


async def run(psql: Path, target: Target, script: str, *, call: str) -> Outcome:
    return await PsqlRun(psql, target, call=call).run(script)


def _error(stderr: str, marks: Sequence[str], target: Target, call: str) -> ScriptError:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        found = _ERROR.match(line)
        if found:
            return ScriptError(found["message"], sqlstate=found["code"], marks=marks, call=call)
    first = lines[0] if lines else "psql failed"
    if first.startswith("psql: error: "):  # no connection: say where it tried
        detail = first[len("psql: error: "):]
        return ScriptError(f"cannot connect to Postgres at {target.host}:{target.port}: {_connection_reason(detail)}",
                           sqlstate=None, marks=marks, call="connect")
    return ScriptError(first, sqlstate=None, marks=marks, call=call)


def _connection_reason(detail: str) -> str:
    # `connection to server at "127.0.0.1", port 5 failed: Connection refused` → what failed
    _, sep, reason = detail.partition(" failed: ")
    return (reason if sep else detail).strip()
