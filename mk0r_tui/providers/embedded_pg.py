"""An embedded PostgreSQL server kept under the data dir, started on demand.

The binaries come from the `pgserver` wheel (PostgreSQL in a wheel: nothing to install, no
download at run time). We drive them ourselves rather than through `pgserver.get_server`
because that server only listens on a Unix socket with `trust` auth; ours listens on
127.0.0.1 with scram-sha-256, so a session's role and password really guard its database and
the `DATABASE_URL` works from any client. The server keeps running between invocations (warm
start); `mk0r-tui local-postgres stop` or `EmbeddedPostgres.stop()` ends it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mk0r_tui.core.errors import ConfigError
from mk0r_tui.core.paths import folder_lock

SUPERUSER = "postgres"


@dataclass(frozen=True, slots=True)
class AdminInfo:
    host: str
    port: int
    user: str
    password: str

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} password={self.password} dbname={dbname} connect_timeout=10"


def _bin_dir() -> Path:
    """pgserver's `pginstall/bin`, found without importing pgserver (its import asks platformdirs
    and psutil for things, ~30 ms of every warm `provision` process that only checks the path)."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("No module named 'pgserver'")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def binary(exe: str) -> Path:
    """One of the embedded server's programs (`psql`, `pg_ctl`...)."""
    return _bin_dir() / exe


def _import_pgserver() -> None:
    import warnings

    with warnings.catch_warnings():  # pgserver asks platformdirs for a runtime dir on import
        warnings.simplefilter("ignore")
        import pgserver._commands  # noqa: F401


def binaries_missing() -> str | None:
    """Why the embedded server's binaries cannot be used here, or None when they can."""
    try:
        bin_dir = _bin_dir()
    except ImportError as exc:
        return f"the pgserver package is not importable ({exc}); reinstall mk0r-tui"
    missing = [exe for exe in ("initdb", "pg_ctl", "postgres", "psql") if not os.access(bin_dir / exe, os.X_OK)]
    if missing:
        return f"{', '.join(missing)} not found in {bin_dir}; reinstall the pgserver wheel"
    return None


class _PgserverUtils(Protocol):
    """The part of `pgserver.utils` used here (POSIX only: pgserver defines these off Windows)."""

    def ensure_user_exists(self, username: str, /) -> object: ...
    def ensure_prefix_permissions(self, path: Path, /) -> object: ...
    def ensure_folder_permissions(self, path: Path, flag: int, /) -> object: ...


def _pgserver_utils() -> _PgserverUtils:
    _import_pgserver()  # quietly first
    from pgserver import utils

    return utils


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Can the server listen on `port`? Asked as the server binds (SO_REUSEADDR): connections
    its last run left in TIME_WAIT do not make its own port look taken after a restart."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _traversable_to(path: Path) -> None:
    """Let the server's system user reach `path`: execute (traverse) for group and others on
    every folder above it, never read (list). Group too: the server process keeps root's group,
    so a root-group folder checks its group bits. pgserver's own helper opens every parent to
    g+rx,o+rx, which would make the data dir listable by anyone."""
    traverse = stat.S_IXGRP | stat.S_IXOTH
    for parent in path.parents:
        mode = stat.S_IMODE(parent.stat().st_mode)
        if mode & traverse != traverse:
            os.chmod(parent, mode | traverse)


class EmbeddedPostgres:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.pgdata = self.root / "data"
        self.password_file = self.root / "admin.pw"
        self.log_file = self.pgdata / "server.log"
        self.host = "127.0.0.1"

    # -- running as root: postgres refuses to, so a system user runs it (as pgserver does); the
    # data dir stays 0711 for it (Settings.data_dir_mode) --
    def _system_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        _pgserver_utils().ensure_user_exists("pgserver")
        return "pgserver"

    def _prepare_for_user(self, user: str | None) -> None:
        if user is None:
            return
        import pwd

        utils = _pgserver_utils()
        entry = pwd.getpwnam(user)
        _traversable_to(self.pgdata)
        utils.ensure_prefix_permissions(_bin_dir())
        read = stat.S_IRGRP | stat.S_IROTH
        utils.ensure_folder_permissions(_bin_dir(), read | stat.S_IXGRP | stat.S_IXOTH)
        utils.ensure_folder_permissions(_bin_dir().parent / "lib", read)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    def _run(self, exe: str, *args: str, user: str | None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        if user is not None and self.pgdata.exists():
            _traversable_to(self.pgdata)  # a parent may have been re-created 0700
        try:
            return subprocess.run(
                [str(_bin_dir() / exe), *args],
                user=user,
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd="/",
            )
        except subprocess.CalledProcessError as exc:
            tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
            log_tail = ""
            if self.log_file.exists():
                log_tail = " | ".join(self.log_file.read_text(errors="replace").strip().splitlines()[-3:])
            raise ConfigError(f"embedded Postgres: {exe} failed: {' | '.join(tail)} {log_tail}".strip()) from None
        except subprocess.TimeoutExpired:
            raise ConfigError(f"embedded Postgres: {exe} did not finish within {timeout:.0f}s") from None

    def running_port(self) -> int | None:
        """The port of a live server on this data dir, from postmaster.pid, or None."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        if len(lines) >= 8 and lines[7].strip() not in ("ready", ""):
            return None
        return port

    def ensure_running(self) -> AdminInfo:
        """Init the cluster if needed and start it if it is not running. Safe across processes."""
        with folder_lock(self.root):
            # running already (the warm case): nothing of pgserver is needed, so none of it is
            # imported (pgserver, psutil, fasteners: ~200 ms of a warm `provision` process here)
            port = self.running_port() if (self.pgdata / "PG_VERSION").exists() else None
            if port is None:
                user = self._system_user()
                if not (self.pgdata / "PG_VERSION").exists():
                    self._initdb(user)
                port = self.running_port()
                if port is None:
                    port = self._start(user)
            return AdminInfo(self.host, port, SUPERUSER, self.password_file.read_text().strip())

    def _initdb(self, user: str | None) -> None:
        if self.pgdata.exists():
            import shutil

            shutil.rmtree(self.pgdata)
        self.pgdata.mkdir(parents=True, mode=0o700)
        self._prepare_for_user(user)
        password = secrets.token_urlsafe(24)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        pwfile = self.root / ".initpw"
        pwfile.write_text(password + "\n")
        if user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        os.chmod(pwfile, 0o600)
        try:
            self._run(
                "initdb",
                "-D", str(self.pgdata),
                "-U", SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-instructions",
                user=user,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.pgdata / "postgresql.auto.conf", "a") as conf:
            conf.write(
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "password_encryption = 'scram-sha-256'\n"
                # a failing statement may carry a password literal: never log statement text
                "log_min_error_statement = 'panic'\n"
                "log_statement = 'none'\n"
                "max_connections = 200\n"
                "shared_buffers = '32MB'\n"
                "fsync = on\n"
            )

    def _start(self, user: str | None) -> int:
        state_file = self.root / "server.json"
        port = None
        with contextlib.suppress(OSError, ValueError, KeyError):
            port = int(json.loads(state_file.read_text())["port"])
        if port is None or not _port_free(port):
            port = _free_port()
        stale = self.pgdata / "postmaster.pid"
        if stale.exists():
            stale.unlink()
        self._run(
            "pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l", str(self.log_file), "-o", f"-p {port}", "start",
            user=user, timeout=90,
        )
        state_file.write_text(json.dumps({"port": port}))
        deadline = time.monotonic() + 10
        while self.running_port() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return port

    def stop(self) -> bool:
        """Stop the server if it runs; True if it was running."""
        if not (self.pgdata / "PG_VERSION").exists() or self.running_port() is None:
            return False
        with folder_lock(self.root):
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", "fast", "stop", user=self._system_user())
        return True
