"""What the dashboard (and `/metrics`) read of the service's job queue (mk0r_tui/service/jobs.py):
jobs by state over every process. Textual-free and procrastinate-free: one query on its tables.

The queue is the service's; it exists where the service put it: `MK0R_QUEUE_URL`, else the team
ledger's Postgres. (A service on the embedded server's queue is a single machine's: nothing to
show beside a team ledger.)
"""

from __future__ import annotations

from dataclasses import dataclass

from mk0r_tui.core.config import Settings

QUEUE = "mk0r"

#: per procrastinate status: jobs whose result is fine (or not in yet), and those whose result is an error
COUNTS_SQL = (
    "SELECT j.status::text, count(*) FILTER (WHERE r.status IS NULL OR r.status < 400), count(r.status) FILTER (WHERE r.status >= 400)"
    " FROM procrastinate_jobs j LEFT JOIN mk0r_job_results r ON r.job_id = j.id WHERE j.queue_name = %s GROUP BY 1"
)
ENDED = ("failed", "cancelled", "aborted")


@dataclass(frozen=True, slots=True)
class QueueCounts:
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0

    def to_json(self) -> dict[str, int]:
        return {"queued": self.queued, "running": self.running, "succeeded": self.succeeded, "failed": self.failed}


def counts_from_rows(rows: list[tuple[str, int, int]]) -> QueueCounts:
    """Rows of `COUNTS_SQL` → counts; a job whose stored result is an error counts as failed."""
    by_status = {status: (int(good), int(bad)) for status, good, bad in rows}
    failed = sum(by_status.get(s, (0, 0))[0] for s in ENDED) + sum(bad for _, bad in by_status.values())
    return QueueCounts(
        queued=by_status.get("todo", (0, 0))[0],
        running=by_status.get("doing", (0, 0))[0] + by_status.get("aborting", (0, 0))[0],
        succeeded=by_status.get("succeeded", (0, 0))[0],
        failed=failed,
    )


def queue_location(settings: Settings) -> str | None:
    """Where a team's job queue is: MK0R_QUEUE_URL, else the team ledger's Postgres; None without either."""
    return settings.queue_url or settings.ledger_url


def read_queue_counts(url: str, *, timeout_s: int = 3) -> QueueCounts | None:
    """The queue's counts, or None when it has no jobs table yet (no service ever ran there).
    Raises `psycopg.Error` when the database cannot be reached."""
    import psycopg  # here, not at the top: the dashboard's first frame asks `queue_location` (~80 ms of import)

    with psycopg.connect(url, autocommit=True, connect_timeout=timeout_s) as conn:
        exists = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL AND to_regclass('mk0r_job_results') IS NOT NULL").fetchone()
        if not (exists and exists[0]):
            return None
        rows = conn.execute(COUNTS_SQL, (QUEUE,)).fetchall()
    return counts_from_rows([(str(r[0]), int(r[1]), int(r[2])) for r in rows])


__all__ = ["COUNTS_SQL", "QUEUE", "QueueCounts", "counts_from_rows", "queue_location", "read_queue_counts"]
