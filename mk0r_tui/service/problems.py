"""Errors as RFC 9457 problem details (`application/problem+json`), with the CLI's messages."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from mk0r_tui.core.errors import ConfigError, Mk0rError, UsageError

PROBLEM_JSON = "application/problem+json"

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    409: "Conflict",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def one_line(text: str) -> str:
    """The message as one printable line (as the CLI prints it)."""
    flat = " ".join(str(text).split())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in flat)


def problem_body(status: int, detail: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status}
    if detail:
        body["detail"] = one_line(detail)
    body.update(extra)
    return body


def problem(status: int, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(problem_body(status, detail, **extra), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def status_of(exc: Mk0rError) -> int:
    """The HTTP status of one of our errors: a busy session 409, a bad request 422, the server's
    own configuration 500 (the caller cannot fix it)."""
    from mk0r_tui.engine.lease import SessionBusy

    if isinstance(exc, SessionBusy):
        return 409
    if isinstance(exc, UsageError):
        return 422
    if isinstance(exc, ConfigError):
        return 500
    return 500


def error_body(exc: Mk0rError) -> dict[str, Any]:
    return problem_body(status_of(exc), str(exc))
