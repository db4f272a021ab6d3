"""The warm pool's secrets at rest: a pooled item's env (a Neon password, a Resend key, a local
role's password) exists before any session owns it, so it is kept only as a Fernet token
(AES-128-CBC + HMAC-SHA256, `cryptography`) in the ledger, never in the clear.

Where the key comes from, first found wins:
1. `MK0R_POOL_KEY` (a Fernet key: 32 url-safe base64 bytes). Every process that claims from a
   shared ledger (team mode) must be given the same one.
2. The OS keyring entry `mk0r-tui` / `MK0R_POOL_KEY`, when a keyring works here.
3. `<data dir>/pool.key`, mode 0600, made on first use (O_EXCL, so two processes starting at
   once agree on one key). Chosen over generating into the keyring because every process on the
   data dir (the CLI, the dashboard, `pool keep`, the service, often headless with no keyring
   session) must find the same key without asking anyone, and because what encryption buys here
   is that the ledger, its WAL, copies and backups of it (and a shared Postgres ledger) never hold
   a usable secret: the key lives outside them. Losing the file only loses the unclaimed items'
   secrets: `pool drain` deletes those items (it needs no secret), the pool refills.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import KEYRING_SERVICE, keyring_switched_off
from mk0r_tui.core.envfile import is_secret, remember_secrets
from mk0r_tui.core.errors import ConfigError
from mk0r_tui.core.paths import refuse_link

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

KEY_NAME = "MK0R_POOL_KEY"


def _checked(key: str, where: str) -> Fernet:
    from cryptography.fernet import Fernet  # only when a pool is used: a provision without one never loads it

    try:
        return Fernet(key.strip().encode())
    except (ValueError, TypeError):
        raise ConfigError(
            f"the pool key from {where} is not a Fernet key (32 url-safe base64 bytes); "
            "make one with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
        ) from None


def _from_keyring(settings: Settings) -> str | None:
    if settings.no_keyring or keyring_switched_off():
        return None
    try:
        import keyring

        value = keyring.get_password(KEYRING_SERVICE, KEY_NAME)
    except Exception:  # no backend, locked, refused: the key file is the fallback
        return None
    return value or None


def _from_file(path: Path) -> str:
    refuse_link(path, "pool key file")
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    from cryptography.fernet import Fernet

    key = Fernet.generate_key()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, key + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # the first process wins; a second reads the first's key
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path.read_text().strip()


class PoolCipher:
    """Encrypts a pooled item's env to a token and back. The key is looked up once."""

    def __init__(self, settings: Settings) -> None:
        if settings.pool_key:
            self.source = "env"
            self._fernet = _checked(settings.pool_key, KEY_NAME)
        elif (stored := _from_keyring(settings)) is not None:
            self.source = "keyring"
            self._fernet = _checked(stored, "the keyring")
        else:
            self.source = "file"
            self._fernet = _checked(_from_file(settings.pool_key_path), str(settings.pool_key_path))

    def seal(self, env: Mapping[str, str]) -> str:
        return self._fernet.encrypt(json.dumps(dict(env), separators=(",", ":")).encode()).decode()

    def open(self, token: str) -> dict[str, str]:
        from cryptography.fernet import InvalidToken

        try:
            data = json.loads(self._fernet.decrypt(token.encode()))
        except (InvalidToken, ValueError):
            raise ConfigError(
                "a pooled item's secrets cannot be decrypted with this pool key (MK0R_POOL_KEY, the keyring "
                "or pool.key changed?); run `mk0r-tui pool drain --yes` to delete the unclaimed items"
            ) from None
        env = {str(k): str(v) for k, v in dict(data).items()}
        remember_secrets([v for k, v in env.items() if is_secret(k, v)])
        return env
