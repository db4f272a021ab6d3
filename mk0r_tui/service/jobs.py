"""Durable jobs with procrastinate (a maintained Postgres-backed task queue), not a queue of our own.

Each provision or teardown is one job, `lock`ed on the session (`session:<slug>`: no two jobs of a
session run at once, and they run in the order they were queued) with a `queueing_lock` per kind
(one waiting provision and one waiting teardown per session at most). A second POST of a session
whose provision is queued or running waits for that job instead of queueing another.

Every process that runs workers (`serve`, `worker`) also sweeps for stalled jobs: a job `doing` on a
worker with no heartbeat for `MK0R_WORKER_STALLED_S` (its process was killed) is put back to `todo`
(procrastinate's `get_stalled_jobs` + `retry_job`, as its "retry stalled jobs" how-to does, here on
a loop of its own because a periodic task's cron has a one-minute grain). The job then runs again
somewhere else and resumes from the ledger: what was created is reused, a `pending` create is
adopted, and the session's ledger lease (engine/lease.py) makes a run whose first owner is not quite
dead wait instead of running twice.

Results: the job writes its outcome (HTTP status and body: the `provision --json` / `teardown
--json` dict with env masked, or a problem) to `mk0r_job_results` in the queue's database, keyed by
job id, and NOTIFYs `mk0r_job_results`; a waiting request reads it there (each process listens,
then reads all its waiters' results in one query; a slow poll catches a missed notification) or,
when this process's own worker ran the job, gets it at once (with the env, for `reveal`). Nothing secret is
stored: values are masked; a reveal reads the operator's `.env`.

Where the queue lives: `MK0R_QUEUE_URL` when set; else the team ledger's Postgres
(`MK0R_LEDGER_URL`, when it is a Postgres URL); else the data dir's embedded Postgres (the local
profile's server), database `service_queue_of_mk0r`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import psycopg_pool
from procrastinate import exceptions as pq_exceptions
from procrastinate.schema import SchemaManager

from mk0r_tui.core.config import Settings
from mk0r_tui.core.errors import ConfigError, Mk0rError
from mk0r_tui.core.models import Session
from mk0r_tui.engine.jobs_view import COUNTS_SQL, ENDED, QUEUE, counts_from_rows
from mk0r_tui.service.logjson import log_context
from mk0r_tui.service.problems import error_body, problem_body, status_of

log = logging.getLogger("mk0r_tui.service.jobs")

#: not named mk0r_*: the local-postgres provider lists every `mk0r_*` database of the server as a session's (orphans would drop it)
QUEUE_DB = "service_queue_of_mk0r"
PROVISION = "mk0r.provision"
TEARDOWN = "mk0r.teardown"
#: pg_advisory_lock key that serialises schema creation across processes
SCHEMA_LOCK = 0x6D6B3072  # "mk0r"
RESULTS_DDL = """
CREATE TABLE IF NOT EXISTS mk0r_job_results (
    job_id bigint PRIMARY KEY,
    session text NOT NULL,
    kind text NOT NULL,
    status integer NOT NULL,
    body jsonb NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
)
"""
RESULTS_CHANNEL = "mk0r_job_results"


@dataclass
class JobOutcome:
    status: int
    body: dict[str, Any]
    #: the unmasked env, only when this process ran the job (never stored)
    env: dict[str, str] | None = field(default=None, repr=False)


def queue_url(settings: Settings) -> str:
    """The Postgres the jobs live in (see the module's docstring)."""
    if settings.queue_url:
        return settings.queue_url
    if settings.ledger_url:  # the team ledger's Postgres (validated as a postgresql:// URL)
        return settings.ledger_url
    from mk0r_tui.providers.embedded_pg import EmbeddedPostgres

    admin = EmbeddedPostgres(Path(settings.postgres_dir)).ensure_running()
    try:
        with psycopg.connect(admin.dsn(), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (QUEUE_DB,)).fetchone() is None:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                    conn.execute(f'CREATE DATABASE "{QUEUE_DB}"')
    except psycopg.Error as exc:
        raise ConfigError(f"cannot prepare the job queue on the embedded Postgres: {' '.join(str(exc).split())}") from None
    return admin.dsn(QUEUE_DB)


def _pool_without_check(**kwargs: Any) -> psycopg_pool.AsyncConnectionPool:
    """procrastinate's pool, without its check on every checkout (a `SELECT 1` round trip before
    each of a job's five or so queries: a tenth of a POST's overhead on a loaded machine). A
    connection that broke is still replaced: psycopg_pool discards a connection returned in a bad
    state, and the next query reconnects."""
    kwargs.pop("check", None)
    return psycopg_pool.AsyncConnectionPool(**kwargs)


class JobQueue:
    def __init__(self, conninfo: str, runner: Any = None, *, queue: str = QUEUE, pool_size: int = 8) -> None:
        self.conninfo = conninfo
        self.queue = queue
        self.runner = runner
        self.connector = procrastinate.PsycopgConnector(conninfo=conninfo, min_size=min(4, pool_size), max_size=pool_size,
                                                        pool_factory=_pool_without_check)
        self.app = procrastinate.App(connector=self.connector)
        self._waiters: dict[int, asyncio.Future[JobOutcome]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        #: a stored result NOTIFYs `mk0r_job_results`; this poll only catches what a notification missed
        self.poll_s = 1.0

        @self.app.task(name=PROVISION, queue=queue, pass_context=True)
        async def provision_job(context: procrastinate.JobContext, session: str, target: str | None = None,
                                sandbox: str | None = None, request_id: str | None = None) -> None:
            await self._run(context, "provision", session, request_id, target=target, sandbox=sandbox)

        @self.app.task(name=TEARDOWN, queue=queue, pass_context=True)
        async def teardown_job(context: procrastinate.JobContext, session: str, request_id: str | None = None) -> None:
            await self._run(context, "teardown", session, request_id)

        self.provision_task = provision_job
        self.teardown_task = teardown_job

    # -- life ---------------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            await self.ensure_schema()
            await self.app.open_async()
            self._listener = asyncio.create_task(self._listen(), name="mk0r-job-results-listen")
        except (psycopg.Error, pq_exceptions.ConnectorException, OSError) as exc:
            raise ConfigError(f"cannot open the job queue: {' '.join(str(exc).split())}") from None

    async def close(self) -> None:
        for task in (self._poller, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._poller = self._listener = None
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_result(JobOutcome(503, problem_body(503, "the service is shutting down; ask again")))
        self._waiters.clear()
        await self.app.close_async()

    async def ensure_schema(self) -> None:
        """procrastinate's schema and our results table, once, whichever process comes first."""
        async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
            try:
                row = await (await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")).fetchone()
                if not (row and row[0]):
                    await conn.execute(SchemaManager.get_schema())
                await conn.execute(RESULTS_DDL)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))

    # -- submitting -----------------------------------------------------------------------------

    async def submit_provision(self, session: Session, *, target: str | None, sandbox: str | None,
                               request_id: str | None) -> tuple[int, bool]:
        """The job that provisions `session`: a queued or running one (True) or a new one (False)."""
        lock = f"session:{session.slug}"
        existing = await self.active_job(PROVISION, lock)
        if existing is not None:
            return existing, True
        try:
            job_id = await self.provision_task.configure(lock=lock, queueing_lock=f"provision:{session.slug}").defer_async(
                session=session.key, target=target, sandbox=sandbox, request_id=request_id)
        except pq_exceptions.AlreadyEnqueued:
            existing = await self.active_job(PROVISION, lock)
            if existing is None:
                raise
            return existing, True
        return job_id, False

    async def submit_teardown(self, session: Session, *, request_id: str | None) -> tuple[int, bool]:
        lock = f"session:{session.slug}"
        # a teardown queued behind a provision must wait for it: only a teardown *not yet started* is joined
        existing = await self.active_job(TEARDOWN, lock, statuses=("todo",))
        if existing is not None:
            return existing, True
        try:
            job_id = await self.teardown_task.configure(lock=lock, queueing_lock=f"teardown:{session.slug}").defer_async(
                session=session.key, request_id=request_id)
        except pq_exceptions.AlreadyEnqueued:
            existing = await self.active_job(TEARDOWN, lock, statuses=("todo",))
            if existing is None:
                raise
            return existing, True
        return job_id, False

    async def active_job(self, task: str, lock: str, *, statuses: tuple[str, ...] = ("todo", "doing")) -> int | None:
        async with self.connector.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM procrastinate_jobs WHERE task_name = %s AND lock = %s AND status::text = ANY(%s)"
                " ORDER BY id DESC LIMIT 1", (task, lock, list(statuses)))
            row = await cur.fetchone()
        return None if row is None else int(row[0])

    # -- waiting --------------------------------------------------------------------------------

    async def wait(self, job_id: int, *, wait_s: float | None = None) -> JobOutcome:
        """The job's outcome, when it has one (this process's worker tells at once, another
        process's through the results table)."""
        loop = asyncio.get_running_loop()
        fut = self._waiters.get(job_id)
        if fut is None:
            fut = self._waiters[job_id] = loop.create_future()
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="mk0r-job-results")
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(fut), wait_s)
        finally:
            if fut.done():
                self._waiters.pop(job_id, None)

    async def _poll(self) -> None:
        while True:
            pending = [job_id for job_id, fut in self._waiters.items() if not fut.done()]
            if not pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                for job_id, outcome in (await self.outcomes(pending)).items():
                    self._resolve(job_id, outcome)
            except (psycopg.Error, pq_exceptions.ConnectorException) as exc:
                log.warning("reading job results failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()

    async def _listen(self) -> None:
        """Wake the poller when any process stores a result of a job someone here waits for."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {RESULTS_CHANNEL}")
                    self._wake.set()  # whatever finished while no one listened
                    async for note in conn.notifies():
                        if note.payload.isdigit() and int(note.payload) in self._waiters:
                            self._wake.set()
            except (psycopg.Error, OSError) as exc:
                log.warning("listening for job results failed (polling meanwhile): %s", exc)
                await asyncio.sleep(1.0)

    async def outcomes(self, job_ids: list[int]) -> dict[int, JobOutcome]:
        """The outcome of each of `job_ids` that has one (a stored result, or an end without one)."""
        async with self.connector.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT j.id, j.status::text, r.status, r.body FROM procrastinate_jobs j"
                " LEFT JOIN mk0r_job_results r ON r.job_id = j.id WHERE j.id = ANY(%s)", (job_ids,))
            rows = await cur.fetchall()
        out: dict[int, JobOutcome] = {}
        for job_id, job_status, status, body in rows:
            if status is not None:
                out[int(job_id)] = JobOutcome(int(status), body if isinstance(body, dict) else json.loads(body))
            elif job_status in ENDED:
                out[int(job_id)] = JobOutcome(500, problem_body(500, f"job {job_id} ended ({job_status}) without a result; see the service's log"))
        return out

    def _resolve(self, job_id: int, outcome: JobOutcome) -> None:
        fut = self._waiters.get(job_id)
        if fut is not None and not fut.done():
            fut.set_result(outcome)

    # -- running --------------------------------------------------------------------------------

    async def _run(self, context: procrastinate.JobContext, kind: str, key: str, request_id: str | None, **kw: Any) -> None:
        job_id = context.job.id
        assert job_id is not None
        if self.runner is None:
            raise RuntimeError("this process runs no jobs (no runner)")
        slug = None
        try:
            slug = Session.parse(key).slug
        except Mk0rError:
            pass
        with log_context(request_id=request_id, slug=slug):
            env: dict[str, str] | None = None
            try:
                if kind == "provision":
                    body, env = await self.runner.provision(key, kw.get("target"), kw.get("sandbox"))
                    status = 201
                else:
                    body = await self.runner.teardown(key)
                    status = 200
            except Mk0rError as exc:
                status, body = status_of(exc), error_body(exc)
                log.warning("%s of %s: %s", kind, key, body.get("detail"))
            except Exception as exc:  # stored as a problem, then failed in procrastinate's eyes
                log.exception("%s of %s failed", kind, key)
                await self._store(job_id, key, kind, 500, problem_body(500, f"{kind} failed: {type(exc).__name__}: {exc}"))
                raise
            # this process's waiter first (one round trip less on the answer's path), then the
            # row every other process's waiter reads
            self._resolve(job_id, JobOutcome(status, body, env))
            await self._store(job_id, key, kind, status, body)

    async def _store(self, job_id: int, key: str, kind: str, status: int, body: dict[str, Any]) -> None:
        async with self.connector.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO mk0r_job_results (job_id, session, kind, status, body) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (job_id) DO UPDATE SET status = EXCLUDED.status, body = EXCLUDED.body, finished_at = now()",
                (job_id, key, kind, status, psycopg.types.json.Jsonb(body)))
            await conn.execute("SELECT pg_notify(%s, %s)", (RESULTS_CHANNEL, str(job_id)))

    async def run_worker(self, *, concurrency: int, heartbeat_s: float, stalled_s: float,
                         install_signal_handlers: bool = False, name: str | None = None) -> None:
        """Run jobs until cancelled (or a signal, with `install_signal_handlers`), sweeping for
        stalled jobs alongside."""
        sweeper = asyncio.create_task(self._sweep(heartbeat_s, stalled_s), name="mk0r-stalled-jobs")
        try:
            await self.app.run_worker_async(
                queues=[self.queue], concurrency=concurrency, wait=True, name=name or f"{socket.gethostname()}",
                install_signal_handlers=install_signal_handlers, update_heartbeat_interval=heartbeat_s,
                stalled_worker_timeout=stalled_s, listen_notify=True, fetch_job_polling_interval=max(0.5, heartbeat_s),
                shutdown_graceful_timeout=30.0,
            )
        finally:
            sweeper.cancel()
            with contextlib.suppress(BaseException):
                await sweeper

    async def _sweep(self, every_s: float, stalled_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.retry_stalled(stalled_s)
            except (psycopg.Error, pq_exceptions.ConnectorException) as exc:
                log.warning("looking for stalled jobs failed: %s", exc)

    async def retry_stalled(self, stalled_s: float) -> list[int]:
        """Put every job of a worker silent for `stalled_s` back in the queue (its worker died)."""
        retried = []
        for job in await self.app.job_manager.get_stalled_jobs(queue=self.queue, seconds_since_heartbeat=stalled_s):
            assert job.id is not None
            try:
                await self.app.job_manager.retry_job(job)
            except (psycopg.Error, pq_exceptions.ConnectorException) as exc:
                cause = exc.__cause__ if isinstance(exc, pq_exceptions.ConnectorException) else exc
                if isinstance(cause, psycopg.errors.UniqueViolation):
                    # a waiting job of the same kind and session holds the queueing lock: that one
                    # does the work; this one is failed so that it is not swept again
                    log.warning("stalled job %s not queued again: job of the same kind waits; marked failed", job.id)
                    await self.app.job_manager.finish_job_by_id_async(job.id, status=procrastinate.jobs.Status.FAILED, delete_job=False)
                else:  # another process's sweep was first (the job is no longer `doing`): nothing to do
                    log.info("stalled job %s: %s", job.id, " ".join(str(exc).split()))
                continue
            log.warning("job %s (%s) was stalled (its worker stopped beating): queued again", job.id, job.task_name)
            retried.append(job.id)
        return retried

    # -- reading --------------------------------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        """Jobs by state over every process: queued, running, succeeded, failed (a job whose
        result is an error counts as failed)."""
        async with self.connector.pool.connection() as conn:
            cur = await conn.execute(COUNTS_SQL, (self.queue,))
            rows = await cur.fetchall()
        return counts_from_rows([(str(r[0]), int(r[1]), int(r[2])) for r in rows]).to_json()

    async def latest_job(self, session: Session) -> dict[str, Any] | None:
        """The newest job of a session: id, kind, state, and its result's status when it has one."""
        async with self.connector.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT j.id, j.task_name, j.status::text, j.attempts, r.status FROM procrastinate_jobs j"
                " LEFT JOIN mk0r_job_results r ON r.job_id = j.id WHERE j.lock = %s ORDER BY j.id DESC LIMIT 1",
                (f"session:{session.slug}",))
            row = await cur.fetchone()
        if row is None:
            return None
        job_id, task, status, attempts, result_status = row
        state = {"todo": "queued", "doing": "running"}.get(status, status)
        if result_status is not None and result_status >= 400:
            state = "failed"
        return {"id": int(job_id), "kind": task.removeprefix("mk0r."), "state": state, "attempts": int(attempts),
                "result_status": result_status}


__all__ = ["PROVISION", "QUEUE", "QUEUE_DB", "TEARDOWN", "JobOutcome", "JobQueue", "queue_url"]
