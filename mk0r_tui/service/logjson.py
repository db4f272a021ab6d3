"""Logs of the service: `--log-format json` writes one JSON object per line on stderr (time,
level, logger, message, and the request id, session slug and provider when known); `text` writes
plain lines. Every record passes core/logs.ScrubFilter first: a secret the process has seen is
masked in the message, whatever the format.

The request id, slug and provider come from a context variable (`log_context`): the API sets the
request id per request, the job runner the slug and the request id that queued the job, the event
logger the provider; asyncio tasks copy it, so a provider's own log lines carry them too.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mk0r_tui.core.logs import ScrubFilter

_CONTEXT: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("mk0r_log_context", default={})  # noqa: B039  (never mutated)
FIELDS = ("request_id", "slug", "provider")


def current_context() -> dict[str, str]:
    return dict(_CONTEXT.get())


@contextlib.contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    """Add request id / slug / provider to every record logged inside the block."""
    merged = {**_CONTEXT.get(), **{k: v for k, v in values.items() if v}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class ContextFilter(logging.Filter):
    """Copies the context's fields onto the record (an explicit `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = " ".join(f"{k}={getattr(record, k)}" for k in FIELDS if getattr(record, k, None) is not None)
        return f"{line} [{tags}]" if tags else line


def configure_service_logging(fmt: str, secrets: Callable[[], Iterable[str]], *, stream: Any = None) -> logging.Handler:
    """One stderr handler for our loggers, uvicorn's and procrastinate's, in `fmt` (text|json),
    scrubbed. Returns the handler (tests remove it)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    # the CLI says its own errors on stderr (one line) and logs them to the file: not twice here
    handler.addFilter(lambda record: not record.name.startswith("mk0r_tui.cli"))
    handler.addFilter(ContextFilter())
    handler.addFilter(ScrubFilter(secrets))
    handler._mk0r_service = True  # type: ignore[attr-defined]
    for name in ("mk0r_tui", "uvicorn.error", "procrastinate"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_mk0r_service", False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.propagate = False
    logging.getLogger("procrastinate").setLevel(logging.WARNING)  # a line per job state is too many
    return handler


__all__ = ["ContextFilter", "JsonFormatter", "configure_service_logging", "current_context", "log_context"]
