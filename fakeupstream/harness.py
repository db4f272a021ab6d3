"""Start the fake for a test or a benchmark: in a background thread (default) or as a subprocess,
and talk to its control plane."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .common import HOST, MOUNTS
from .server import FakeServer

__all__ = ["FakeUpstream"]

PACKAGE_PARENT = Path(__file__).resolve().parent.parent


class FakeUpstream:
    """Start the fake for a test: in a background thread (default) or as a subprocess.

    >>> with FakeUpstream(state_file=p, config={"latency_ms": {"github": 50}}) as fake:
    ...     fake.github_url, fake.state(), fake.control(faults=[...]), fake.reset()
    """

    def __init__(self, *, state_file: str | os.PathLike | None = None, config: dict | None = None,
                 port: int = 0, use_subprocess: bool = False, startup_timeout: float = 10.0):
        self.state_file = str(state_file) if state_file else None
        self.config = dict(config or {})
        self.requested_port = port
        self.use_subprocess = use_subprocess
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: FakeServer | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- urls
    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeUpstream is not started")
        return f"http://{HOST}:{self.port}"

    neon_url = property(lambda self: self.base_url + MOUNTS["neon"])
    resend_url = property(lambda self: self.base_url + MOUNTS["resend"])
    github_url = property(lambda self: self.base_url + MOUNTS["github"])
    posthog_url = property(lambda self: self.base_url + MOUNTS["posthog"])

    # -- lifecycle
    def start(self) -> FakeUpstream:
        if self.use_subprocess:
            self._start_subprocess()
        else:
            self._start_thread()
        return self

    def _start_thread(self) -> None:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._server = FakeServer(self.config, self.state_file)
                self.port = loop.run_until_complete(self._server.start(self.requested_port))
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_until_complete(self._server.wait_stopped())
                loop.run_until_complete(self._server.close())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="fakeupstream", daemon=True)
        self._thread.start()
        if not ready.wait(self.startup_timeout):
            raise RuntimeError("fakeupstream did not start in time")
        if errors:
            raise RuntimeError(f"fakeupstream failed to start: {errors[0]!r}") from errors[0]

    def _start_subprocess(self) -> None:
        cmd = [sys.executable, "-m", "fakeupstream", "--port", str(self.requested_port)]
        if self.state_file:
            cmd += ["--state-file", self.state_file]
        if self.config:
            cmd += ["--config", json.dumps(self.config)]
        env = dict(os.environ)  # the package's parent on the child's path, wherever it runs from
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()  # blocks until LISTENING or exit
        m = re.match(r"LISTENING http://127\.0\.0\.1:(\d+)", line or "")
        if not m:
            self.proc.kill()
            err = self.proc.stderr.read()
            raise RuntimeError(f"fakeupstream subprocess failed to start: {line!r} {err}")
        self.port = int(m.group(1))

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream:
                    stream.close()
            self.proc = None
        if self._thread is not None:
            if self._loop is not None and self._server is not None and not self._loop.is_closed():
                try:
                    self._loop.call_soon_threadsafe(self._server.request_stop)
                except RuntimeError:
                    pass
            self._thread.join(10)
            self._thread = None
        self.port = None

    def kill(self) -> None:
        """SIGKILL the subprocess (no clean-up at all), to test state-file durability."""
        if self.proc is None:
            raise RuntimeError("kill() needs use_subprocess=True")
        self.proc.kill()
        self.proc.wait()
        self.stop()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- control plane
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=10) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from None

    def state(self, full: bool = False) -> dict:
        return self._call("GET", "/_state" + ("?full=1" if full else ""))

    def control(self, **kw: Any) -> dict:
        return self._call("POST", "/_control", kw)

    def add_fault(self, **fault: Any) -> dict:
        return self.control(faults=[fault])

    def reset(self) -> dict:
        return self._call("POST", "/_reset", {})
