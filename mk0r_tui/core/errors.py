"""Errors the operator sees. Each carries a message that says what happened and what to do."""

from __future__ import annotations


class Mk0rError(Exception):
    """Base class: an error with a message fit to show an operator as it is."""

    exit_code = 1


class UsageError(Mk0rError):
    """Bad input from the caller (a bad session key, an unknown session)."""

    exit_code = 2


class ConfigError(Mk0rError):
    """The machine or the configuration cannot do the job (unwritable data dir, no git)."""

    exit_code = 2


class ProviderError(Mk0rError):
    """A provider call failed. `call` names the request, `status` the HTTP status if any."""

    def __init__(
        self,
        message: str,
        *,
        call: str | None = None,
        status: int | None = None,
        hint: str | None = None,
        retryable: bool = False,
        outcome_unknown: bool = False,
        kept_env: dict[str, str] | None = None,
        nothing_sent: bool = False,
    ) -> None:
        self.call = call
        #: env still valid despite the failure (e.g. the analytics tag when the capture failed)
        self.kept_env = dict(kept_env or {})
        self.status = status
        self.hint = hint
        self.retryable = retryable
        self.outcome_unknown = outcome_unknown
        #: refused before any request left this process (a missing key): provably nothing was made
        self.nothing_sent = nothing_sent
        super().__init__(message)

    def __str__(self) -> str:
        parts = []
        if self.call:
            parts.append(self.call)
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        head = " → ".join(parts)
        text = f"{head}: {self.args[0]}" if head else str(self.args[0])
        if self.hint:
            text += f" ({self.hint})"
        return text


class AuthenticationError(ProviderError):
    """The provider refused the credentials (401/403). Never retried."""
