"""Team mode's own server: `mk0r-tui ledger serve-local` runs an embedded Postgres (the
`pgserver` wheel's binaries, providers/embedded_pg.py) as a shared ledger, so a team on one LAN
needs nothing installed.

It is its own cluster (`<postgres dir>/team-ledger`, not the local profile's, whose databases
are the sessions' own), with one role and one database, both `mk0r_ledger`; the role's password
is generated once (`secrets.token_urlsafe`) and kept in `team-ledger/ledger.json` (0600), so
every start prints the same URL. It listens on 127.0.0.1 only, unless `listen` names an address:
then it also listens there, and `pg_hba.conf` admits only that role, only to that database,
only with scram-sha-256 (the server refuses any other method or role from the network).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from mk0r_tui.core.errors import ConfigError, UsageError
from mk0r_tui.core.ledger import Ledger, mask_url
from mk0r_tui.providers.embedded_pg import EmbeddedPostgres

ROLE = "mk0r_ledger"
DATABASE = "mk0r_ledger"
HBA_MARK = "# mk0r-tui team ledger (serve-local --listen)"


@dataclass(frozen=True, slots=True)
class TeamServer:
    url: str  # with the password: printed once for the operator to hand out; never logged
    listen: str
    port: int
    root: Path

    @property
    def masked(self) -> str:
        return mask_url(self.url)


def _password(root: Path) -> str:
    state = root / "ledger.json"
    try:
        return str(json.loads(state.read_text())["password"])
    except (OSError, ValueError, KeyError):
        pass
    password = secrets.token_urlsafe(24)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"password": password}, handle)
    return password


def _check_listen(listen: str | None) -> str | None:
    if listen is None or listen in ("127.0.0.1", "localhost"):
        return None
    try:
        socket.getaddrinfo(listen, None)
    except OSError:
        raise UsageError(f"--listen {listen!r} is not an address of this machine") from None
    return listen


def serve_local(root: Path, *, listen: str | None = None, port: int | None = None) -> TeamServer:
    """Start (or find running) the team ledger server under `root`; return its URL."""
    import psycopg
    from psycopg import sql

    extra = _check_listen(listen)
    server = EmbeddedPostgres(root)
    if port is not None and server.running_port() not in (None, port):
        raise UsageError(f"the team ledger already runs on port {server.running_port()}; stop it first (--stop) to move it")
    if port is not None and server.running_port() is None:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        (root / "server.json").write_text(json.dumps({"port": port}))
    admin = server.ensure_running()
    password = _password(root)
    want = "127.0.0.1" if extra is None else f"127.0.0.1,{extra}"
    with psycopg.connect(admin.dsn(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone() is None:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN")
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(ROLE), password))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        conn.execute(f"REVOKE CONNECT ON DATABASE {DATABASE} FROM PUBLIC")
        conn.execute(f"GRANT CONNECT ON DATABASE {DATABASE} TO {ROLE}")
        hba = Path(str(conn.execute("SHOW hba_file").fetchone()[0]))  # type: ignore[index]
        _write_hba(hba, extra is not None)
        conn.execute("SELECT pg_reload_conf()")
        current = str(conn.execute("SHOW listen_addresses").fetchone()[0])  # type: ignore[index]
        restart = current != want
        if restart:
            conn.execute(sql.SQL("ALTER SYSTEM SET listen_addresses = {}").format(want))
    if restart:  # listen_addresses is read only at start
        server.stop()
        admin = server.ensure_running()
    host = "127.0.0.1" if extra is None else (socket.gethostname() if extra in ("0.0.0.0", "::", "*") else extra)
    url = f"postgresql://{ROLE}:{quote(password, safe='')}@{_url_host(host)}:{admin.port}/{DATABASE}"
    try:
        Ledger(url.replace(_url_host(host), "127.0.0.1", 1)).close()  # created at the current schema now
    except ConfigError as exc:
        raise ConfigError(f"the team ledger started but cannot be opened: {exc}") from None
    return TeamServer(url, want, admin.port, root)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _write_hba(hba: Path, remote: bool) -> None:
    """Only the ledger role, only its database, only scram, from the network; nothing when loopback."""
    lines = [line for line in hba.read_text().splitlines() if HBA_MARK not in line]
    if remote:
        lines += [
            f"host {DATABASE} {ROLE} 0.0.0.0/0 scram-sha-256 {HBA_MARK}",
            f"host {DATABASE} {ROLE} ::/0 scram-sha-256 {HBA_MARK}",
        ]
    hba.write_text("\n".join(lines) + "\n")


def stop_local(root: Path) -> bool:
    return EmbeddedPostgres(root).stop()
