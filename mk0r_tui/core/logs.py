"""The log file under the data dir. Every record passes a filter that masks known secrets.

Levels: every run's events are logged (`log_event`: a failure at ERROR, an outcome at INFO, a
progress line at DEBUG), HTTP retries at INFO, refused calls at WARNING. The file takes INFO and
above; `mk0r-tui --verbose` takes DEBUG too and mirrors the records (but the events, which the
CLI prints already) on stderr.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from mk0r_tui.core.envfile import scrub
from mk0r_tui.core.events import (
    Event,
    EventSink,
    ProviderFailed,
    ProviderProgressed,
    ProviderRetrying,
    SessionProvisioned,
    SessionTornDown,
    TeardownFailed,
)

EVENTS_LOGGER = "mk0r_tui.events"
_verbose = {"on": False}


def set_verbose(on: bool) -> None:
    """`--verbose`: DEBUG in the log file, and the records mirrored on stderr."""
    _verbose["on"] = on
    logger = logging.getLogger("mk0r_tui")
    if any(getattr(h, "_mk0r", False) for h in logger.handlers):
        logger.setLevel(logging.DEBUG if on else logging.INFO)


def event_level(event: Event) -> int:
    if isinstance(event, (ProviderFailed, TeardownFailed)):
        return logging.ERROR
    if isinstance(event, (SessionProvisioned, SessionTornDown)) and not event.ok:
        return logging.WARNING
    if isinstance(event, (ProviderProgressed, ProviderRetrying)):
        return logging.DEBUG
    return logging.INFO


def log_event(slug: str, event: Event) -> None:
    """One run's event as a log line (the same words as the CLI's progress, no secret)."""
    from mk0r_tui.core.render import describe_event

    logger = logging.getLogger(EVENTS_LOGGER)
    level = event_level(event)
    if logger.isEnabledFor(level):
        logger.log(level, "%s %s", slug, describe_event(event))


def logged(slug: str, sink: EventSink) -> EventSink:
    """`sink`, with every event also logged (`log_event`)."""

    def both(event: Event) -> None:
        try:
            log_event(slug, event)
        except Exception:  # a log line must never fail a run
            pass
        sink(event)

    return both


class ScrubFilter(logging.Filter):
    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = scrub(message, self._secrets())
        record.args = None
        return True


def configure_logging(path: Path, secrets: Callable[[], Iterable[str]]) -> None:
    logger = logging.getLogger("mk0r_tui")
    if any(getattr(h, "_mk0r", False) for h in logger.handlers):
        return
    try:
        # created 0600 whatever the umask (and tightened if it exists); never through a link
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return
    handler._mk0r = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(ScrubFilter(secrets))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if _verbose["on"] else logging.INFO)
    logger.propagate = False
    if _verbose["on"]:
        mirror = logging.StreamHandler(sys.stderr)
        mirror.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        mirror.addFilter(ScrubFilter(secrets))
        mirror.addFilter(lambda record: record.name != EVENTS_LOGGER)  # the CLI prints events already
        logger.addHandler(mirror)
