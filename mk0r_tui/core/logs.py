"""The log file under the data dir. Every record passes a filter that masks known secrets."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from mk0r_tui.core.envfile import scrub


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
    logger.setLevel(logging.INFO)
    logger.propagate = False
