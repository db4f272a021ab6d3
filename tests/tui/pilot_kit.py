"""What Pilot tests of the dashboard share."""

from __future__ import annotations

from textual.worker import WorkerFailed


async def settle(app, pilot) -> None:
    """Wait for every worker; a failed one is not an error here (tests check how it is shown)."""
    try:
        await app.workers.wait_for_complete()
    except WorkerFailed:
        pass
    for _ in range(3):
        await pilot.pause()
