"""Provisioning keys: from an environment variable, else the OS keyring.

A machine with no keyring backend (a headless server, CI) is normal: we say so once, in
plain words, and work from environment variables.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

KEYRING_SERVICE = "mk0r-tui"
#: keyring's own "no keyring" backend (`PYTHON_KEYRING_BACKEND`), recognised without importing keyring
FAIL_BACKEND = "keyring.backends.fail.Keyring"

def keyring_switched_off() -> bool:
    """keyring's own switch (`PYTHON_KEYRING_BACKEND`) names its fail backend and keyring, which
    reads that switch first, is not imported, so no program chose another backend with
    `set_keyring`: "no keyring" is known without the import (its backends, jaraco and
    urllib.request: ~25 ms of every process that asks for a key)."""
    return os.environ.get("PYTHON_KEYRING_BACKEND") == FAIL_BACKEND and "keyring" not in sys.modules


KEY_NAMES: tuple[str, ...] = (
    "NEON_PROVISIONING_KEY",
    "RESEND_PROVISIONING_KEY",
    "GITHUB_PROVISIONING_TOKEN",
    "POSTHOG_PROJECT_KEY",
    "E2B_API_KEY",
)

NO_KEYRING_MESSAGE = (
    "no OS keyring is available on this machine ({detail}); "
    "provisioning keys are read from environment variables only "
    "(e.g. export NEON_PROVISIONING_KEY=...)"
)

Source = Literal["env", "keyring"]


@dataclass(frozen=True, slots=True)
class Credential:
    name: str
    value: str | None
    source: Source | None

    @property
    def present(self) -> bool:
        return bool(self.value)


class KeyringUnavailable(Exception):
    """The keyring cannot be used here; the message says why and what to do."""


class _KeyringApi(Protocol):
    """The `keyring` module's functions used here; the module itself satisfies this."""

    def get_password(self, service_name: str, username: str, /) -> str | None: ...
    def set_password(self, service_name: str, username: str, password: str, /) -> None: ...
    def delete_password(self, service_name: str, username: str, /) -> None: ...


class Credentials:
    """Looks keys up: the environment first (it overrides), then the keyring."""

    def __init__(self, environ: Mapping[str, str] | None = None, *, use_keyring: bool = True) -> None:
        self._environ = os.environ if environ is None else environ
        self._use_keyring = use_keyring
        self._keyring_problem: str | None = None if use_keyring else "disabled by MK0R_NO_KEYRING"
        self._cache: dict[str, Credential] = {}

    @property
    def keyring_problem(self) -> str | None:
        """Why the keyring cannot be used, once something tried it; None if it works."""
        return self._keyring_problem

    @property
    def keyring_disabled(self) -> bool:
        """The operator turned the keyring off (MK0R_NO_KEYRING=1): nothing to warn about."""
        return not self._use_keyring

    def check_keyring(self) -> None:
        """Raise KeyringUnavailable (saying why) unless a keyring can store keys here: asked
        before prompting for a secret that could not be stored anyway."""
        self._keyring()

    @property
    def keyring_message(self) -> str | None:
        if self._keyring_problem is None:
            return None
        return NO_KEYRING_MESSAGE.format(detail=self._keyring_problem)

    def get(self, name: str) -> Credential:
        if name in self._cache:
            return self._cache[name]
        value = self._environ.get(name)
        if value:
            cred = Credential(name, value, "env")
        else:
            stored = self._keyring_get(name)
            cred = Credential(name, stored, "keyring" if stored else None)
        self._cache[name] = cred
        if cred.value:
            from mk0r_tui.core.envfile import remember_secrets

            remember_secrets([cred.value])
        return cred

    def value(self, name: str) -> str | None:
        return self.get(name).value

    def all(self) -> list[Credential]:
        return [self.get(name) for name in KEY_NAMES]

    def secret_values(self) -> list[str]:
        """Every key value this process has looked up, for scrubbing them out of any text we show
        or log: a value never looked up cannot be in our text, and asking the keyring for every
        name would load it on every logged line (the log filter asks this)."""
        return [c.value for c in self._cache.values() if c.value]

    def set(self, name: str, value: str) -> None:
        keyring = self._keyring()
        try:
            keyring.set_password(KEYRING_SERVICE, name, value)
        except Exception as exc:  # keyring backends raise many kinds
            raise KeyringUnavailable(self._note_problem(exc)) from None
        self._cache.pop(name, None)

    def delete(self, name: str) -> bool:
        keyring = self._keyring()
        try:
            keyring.delete_password(KEYRING_SERVICE, name)
        except Exception as exc:
            from keyring.errors import PasswordDeleteError

            if isinstance(exc, PasswordDeleteError):
                return False
            raise KeyringUnavailable(self._note_problem(exc)) from None
        self._cache.pop(name, None)
        return True

    def _keyring(self) -> _KeyringApi:
        if not self._use_keyring:
            raise KeyringUnavailable(NO_KEYRING_MESSAGE.format(detail="disabled by MK0R_NO_KEYRING"))
        if keyring_switched_off():
            raise KeyringUnavailable(self._note_problem(RuntimeError("no recommended backend was found")))
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring):
            raise KeyringUnavailable(self._note_problem(RuntimeError("no recommended backend was found")))
        return keyring

    def _keyring_get(self, name: str) -> str | None:
        if self._keyring_problem is not None:
            return None
        try:
            keyring = self._keyring()
            return keyring.get_password(KEYRING_SERVICE, name)
        except KeyringUnavailable:
            return None
        except Exception as exc:
            self._note_problem(exc)
            return None

    def _note_problem(self, exc: BaseException) -> str:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self._keyring_problem = detail
        return NO_KEYRING_MESSAGE.format(detail=detail)
