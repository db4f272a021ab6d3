"""Helpers for the provisioning service's tests and bench: a queue database of its own on the
embedded Postgres, `mk0r-tui serve` / `worker` as real subprocesses on 127.0.0.1, and a bearer
client."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
from crashkit import cli_command

from mk0r_tui.providers.embedded_pg import EmbeddedPostgres

TOKEN = "svc-test-token-0123456789abcdef"
SERVING = re.compile(r"serving on (http://[^\s]+) \(pid (\d+)")


@contextlib.contextmanager
def queue_database(postgres_dir: Path) -> Iterator[str]:
    """A fresh database for one test's job queue (jobs of concurrent tests never mix), dropped after."""
    admin = EmbeddedPostgres(Path(postgres_dir)).ensure_running()
    name = "svcq_" + uuid.uuid4().hex[:12]  # never mk0r_*: that is a session's database to an orphan scan
    with psycopg.connect(admin.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.dsn(name)
    finally:
        with psycopg.connect(admin.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ServeProcess:
    """`mk0r-tui serve --port 0` (or `worker`) in a subprocess; its stderr is collected on a thread."""

    def __init__(self, env: dict[str, str], *args: str, command: str = "serve") -> None:
        self.env = env
        self.args = args
        self.command = command
        self.proc: subprocess.Popen[str] | None = None
        self.url: str | None = None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self, timeout: float = 60.0) -> ServeProcess:
        extra = ["--port", "0"] if self.command == "serve" else []
        self.proc = subprocess.Popen(cli_command(self.command, *extra, *self.args), env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise AssertionError(f"{self.command} did not start:\n" + "".join(self.lines))
        if self.proc.poll() is not None and self.url is None and self.command == "serve":
            raise AssertionError(f"{self.command} exited {self.proc.returncode}:\n" + "".join(self.lines))
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            match = SERVING.search(line)
            if match:
                self.url = match.group(1)
                self._ready.set()
            elif self.command == "worker" and "running jobs" in line:
                self._ready.set()
        self._ready.set()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no release of anything."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def client(url: str, token: str | None = TOKEN, **kw: object) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=kw.pop("timeout", 60.0), trust_env=False, **kw)  # type: ignore[arg-type]


def async_client(url: str, token: str | None = TOKEN, **kw: object) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=kw.pop("timeout", 60.0), trust_env=False, **kw)  # type: ignore[arg-type]


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False
