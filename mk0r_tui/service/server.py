"""`mk0r-tui serve`: the API on uvicorn with job workers in the same process; `mk0r-tui worker`:
the workers alone. Both open the process's one runtime (engine/library.open_runtime: the default
registry, the data dir's ledger) and the job queue (service/jobs.py).

`BACKGROUND` is the hook for other long-running work a serving process should carry (e.g. a pool
refill): each entry is called with the runtime once the server is up, and cancelled at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from mk0r_tui.core.errors import ConfigError, UsageError
from mk0r_tui.engine.pool import pool_configured
from mk0r_tui.engine.pool_upkeep import PoolKeeper
from mk0r_tui.engine.runtime import Runtime

log = logging.getLogger("mk0r_tui.service")

TOKEN_NAME = "MK0R_SERVICE_TOKEN"
#: long-running tasks `serve` starts beside the API (called with the runtime; cancelled at shutdown)
BACKGROUND: list[Callable[[Runtime], Awaitable[Any]]] = []


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def service_token(runtime: Runtime) -> str | None:
    """MK0R_SERVICE_TOKEN from the environment, else the keyring (`keys set MK0R_SERVICE_TOKEN`)."""
    return runtime.credentials.get(TOKEN_NAME).value


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the listening
    # socket says TCP (base_events._set_nodelay); with proto 0 every answer waited ~40 ms for a
    # delayed ACK (headers and body are two writes)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _open(log_format: str, check: Callable[[Runtime], None] | None = None) -> tuple[Runtime, Any, Any]:
    from mk0r_tui.engine.library import open_runtime
    from mk0r_tui.service.jobs import JobQueue, queue_url
    from mk0r_tui.service.logjson import configure_service_logging
    from mk0r_tui.service.metrics import Metrics
    from mk0r_tui.service.runner import JobRunner

    runtime = open_runtime()
    configure_service_logging(log_format, runtime.secrets)
    metrics = Metrics()
    try:
        if check is not None:
            check(runtime)  # refusals come before the queue's Postgres is started
        url = await asyncio.to_thread(queue_url, runtime.settings)
    except BaseException:
        runtime.close()
        raise
    queue = JobQueue(url, JobRunner(runtime, metrics), pool_size=max(4, min(32, runtime.settings.worker_concurrency + 4)))
    try:
        await queue.open()
    except BaseException:
        await runtime.aclose()
        runtime.close()
        raise
    return runtime, queue, metrics


async def serve(host: str, port: int, *, workers: bool = True, log_format: str = "text",
                say: Callable[[str], None] = print) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's handlers), then let in-flight jobs finish."""
    import uvicorn

    from mk0r_tui.service.app import Service, create_app

    def check(runtime: Runtime) -> None:
        if not service_token(runtime) and not is_loopback(host):
            raise UsageError(f"refusing to serve on {host} without a token: set {TOKEN_NAME} "
                             f"(or `mk0r-tui keys set {TOKEN_NAME}`)")

    runtime, queue, metrics = await _open(log_format, check)
    settings = runtime.settings
    token = service_token(runtime)
    tasks: list[asyncio.Task[Any]] = []
    try:
        sock = _bind(host, port)
        if not token:
            token = secrets.token_urlsafe(24)
            say(f"no {TOKEN_NAME} set: this run's token is {token}")
        bound = sock.getsockname()[1]
        service = Service(runtime=runtime, queue=queue, metrics=metrics, token=token, wait_s=settings.service_wait_s)
        config = uvicorn.Config(create_app(service), log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=5, server_header=False)
        server = uvicorn.Server(config)
        if workers:
            tasks.append(asyncio.create_task(queue.run_worker(
                concurrency=settings.worker_concurrency, heartbeat_s=settings.worker_heartbeat_s,
                stalled_s=settings.worker_stalled_s, name=f"serve-{os.getpid()}"), name="mk0r-worker"))
        tasks.extend(asyncio.create_task(_logged(job(runtime)), name="mk0r-background") for job in BACKGROUND)
        if pool_configured(settings):  # the warm pool refills behind the claims this service makes
            tasks.append(asyncio.create_task(_logged(PoolKeeper(runtime).run()), name="mk0r-pool"))
        shown = f"[{host}]" if ":" in host else host
        say(f"serving on http://{shown}:{bound} (pid {os.getpid()}, workers: {settings.worker_concurrency if workers else 0})")
        with _signals_kept_for_shutdown():
            await server.serve(sockets=[sock])
        say("stopping: letting running jobs finish")
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await queue.close()
        await runtime.aclose()
        runtime.close()


@contextlib.contextmanager
def _signals_kept_for_shutdown() -> Iterator[None]:
    """uvicorn stops on SIGINT/SIGTERM, then raises the signal again under the handlers it found:
    with the default ones the process died right there, before the workers' graceful stop and the
    queue's close. Handlers of ours that only note it stand in for them during `serve`."""
    import signal

    noted: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, _frame: noted.append(number)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def _logged(work: Awaitable[Any]) -> None:
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("a background task of serve failed")


async def work(*, log_format: str = "text", concurrency: int | None = None, say: Callable[[str], None] = print) -> None:
    """`mk0r-tui worker`: run jobs until SIGINT/SIGTERM (procrastinate's handlers: in-flight jobs finish)."""
    runtime, queue, _ = await _open(log_format)
    settings = runtime.settings
    try:
        say(f"worker {os.getpid()} running jobs (concurrency {concurrency or settings.worker_concurrency})")
        await queue.run_worker(concurrency=concurrency or settings.worker_concurrency, heartbeat_s=settings.worker_heartbeat_s,
                               stalled_s=settings.worker_stalled_s, install_signal_handlers=True, name=f"worker-{os.getpid()}")
    finally:
        await queue.close()
        await runtime.aclose()
        runtime.close()


__all__ = ["BACKGROUND", "TOKEN_NAME", "ConfigError", "is_loopback", "serve", "service_token", "work"]
