"""The app's `.env`: which values are secret, how they are masked, rendered and written.

This module is the one place that decides which keys are secret; the CLI, the dashboard and
the logs all ask it.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from mk0r_tui.core.errors import Mk0rError

MASK = "••••"
_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE|_KEY$|^KEY$)")
_URL_NAME = re.compile(r"(_URL|_URI|_DSN)$")
_BARE_VALUE = re.compile(r"^[A-Za-z0-9_./:@%+,=~-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EnvWriteError(Mk0rError):
    """The `.env` could not be written; the previous file (if any) is untouched."""


def is_secret(name: str, value: str | None = None) -> bool:
    """True for values that must never be shown unmasked: keys, tokens, passwords and URLs
    that embed a password."""
    upper = name.upper()
    if _SECRET_NAME.search(upper):
        return True
    if value is not None and _URL_NAME.search(upper):
        return _url_password(value) is not None
    # any URL that embeds a password is secret, whatever its name (DATABASE_URL_UNPOOLED)
    return value is not None and "://" in value and _url_password(value) is not None


def _url_password(value: str) -> str | None:
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return parts.password if parts.scheme and parts.password else None


#: the public prefixes of the providers' keys and tokens: they say which kind of key it is and
#: are the same for every key of that kind, so showing one reveals nothing of the secret
PUBLIC_PREFIXES: tuple[str, ...] = (
    "github_pat_", "napi_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "phc_", "phx_", "e2b_", "re_", "sk_",
)
_PASSWORD_NAME = re.compile(r"(PASSWORD|PASSWD|_PW$|SECRET)")


def mask_value(name: str, value: str) -> str:
    """The one masking rule for every secret: no character of a password or token is shown,
    nor its length. A key's public prefix (`re_`, `napi_`, `ghp_`, `github_pat_`, ...) is:
    `re_••••`; a password, or a token with no known prefix, is `••••`; a URL keeps everything
    but its password: `postgresql://user:••••@host/db`. (`keys list` shows a key's length
    beside it, to spot a truncated paste.)"""
    if not is_secret(name, value):
        return value
    if _url_password(value) is not None:
        parts = urlsplit(value)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port:
            host = f"{host}:{parts.port}"
        netloc = f"{parts.username}:{MASK}@{host}" if parts.username else f"{MASK}@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    if not _PASSWORD_NAME.search(name.upper()):
        for prefix in PUBLIC_PREFIXES:
            if value.startswith(prefix) and len(value) > len(prefix) + 8:
                return f"{prefix}{MASK}"
    return MASK


def masked_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: mask_value(k, v) for k, v in env.items()}


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The secret values in `env` (and the passwords inside URLs), for scrubbing text."""
    found: list[str] = []
    for name, value in env.items():
        if not value or not is_secret(name, value):
            continue
        password = _url_password(value)
        if password:
            found.extend(sorted({password, unquote(password)}))
        else:
            found.append(value)
    return found


#: every secret value this process has seen: provisioning keys and provisioned ones (a generated
#: database password, a new API key). `scrub` always masks these too, so a provider's error that
#: echoes one never reaches the ledger, a log or `--json`.
_KNOWN_SECRETS: set[str] = set()


def remember_secrets(values: Iterable[str | None]) -> None:
    """Add values to the process's known secrets (see `scrub`)."""
    for value in values:
        if value and len(value) >= 4:
            _KNOWN_SECRETS.add(value)
            quoted = quote(value, safe="")
            if quoted != value:
                _KNOWN_SECRETS.add(quoted)  # as it appears inside a URL


def remember_env_secrets(env: Mapping[str, str]) -> None:
    """Remember the secret values of an env (and the passwords inside its URLs)."""
    remember_secrets(secret_values(env))


def known_secrets() -> frozenset[str]:
    return frozenset(_KNOWN_SECRETS)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace every secret value that appears in `text` (those given and every one this process
    knows, see `remember_secrets`) with a mask."""
    if not text:
        return text
    for secret in sorted({s for s in (*secrets, *_KNOWN_SECRETS) if s and len(s) >= 4}, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, mask_value("TOKEN", secret))  # the same rule as every screen
    return text


def quote_value(value: str) -> str:
    """Quote a value so python-dotenv and Node's dotenv both read back exactly `value`."""
    if "\n" in value or "\r" in value or "\x00" in value:
        raise ValueError("a .env value may not contain a newline or NUL")
    if _BARE_VALUE.match(value):
        return value
    if "'" not in value and "\\" not in value:
        return f"'{value}'"
    if '"' not in value and "\\" not in value and "$" not in value:
        return f'"{value}"'
    # both quote kinds (or a quote and a backslash): left unquoted, both parsers read it
    # literally, as long as nothing in it looks like a comment, a quote or padding to either
    problems = []
    if value[0] in "'\"`":
        problems.append(f"it starts with {value[0]!r}")
    if "#" in value:
        problems.append("it holds '#' (Node's dotenv reads an unquoted '#' as a comment)")
    if value != value.strip():
        problems.append("it starts or ends with whitespace")
    if problems:
        raise ValueError(
            "it holds both ' and \" (or a quote and a backslash), so it cannot be quoted, and it cannot stay "
            "unquoted because " + " and ".join(problems)
        )
    return value


def render_env(env: Mapping[str, str], *, header: str | None = None) -> str:
    lines: list[str] = []
    if header:
        lines.extend(f"# {line}" if line else "#" for line in header.splitlines())
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid environment variable name")
        try:
            lines.append(f"{name}={quote_value(value)}")
        except ValueError as exc:
            raise ValueError(f"the value of {name} cannot be written to a .env that python-dotenv and Node's dotenv both read back: {exc}") from None
    return "\n".join(lines) + "\n"


def atomic_write(path: Path, data: str, *, mode: int = 0o600) -> None:
    """Write `data` to `path` through a temp file in the same folder, then rename.

    Readers see the old file or the new one, never half of either; on any failure the temp
    file is removed and the old file is untouched.
    """
    path = Path(path)
    folder = path.parent
    if os.path.islink(folder):
        raise EnvWriteError(
            f"refusing to write {path}: its folder {folder} is a symbolic link (to {os.readlink(folder)}); "
            "remove the link and retry"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise EnvWriteError(_describe_os_error(path, exc)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise EnvWriteError(_describe_os_error(path, exc)) from None
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def write_env_file(path: Path, env: Mapping[str, str], *, header: str | None = None) -> Path:
    remember_env_secrets(env)
    atomic_write(Path(path), render_env(env, header=header), mode=0o600)
    return Path(path)


def read_env_file(path: Path) -> dict[str, str]:
    """Read a `.env` back (python-dotenv), or {} if there is none."""
    from dotenv import dotenv_values

    path = Path(path)
    if not path.exists():
        return {}
    values = {k: v for k, v in dotenv_values(path, interpolate=False).items() if v is not None}
    remember_env_secrets(values)
    return values


def _describe_os_error(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        why = "the disk is full"
    elif exc.errno == errno.EDQUOT:
        why = "the disk quota is exceeded"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        why = "permission denied"
    elif exc.errno == errno.EROFS:
        why = "the file system is read-only"
    elif exc.errno in (errno.EEXIST, errno.ENOTDIR):
        why = "a file is in the way of its folder"
    else:
        why = exc.strerror or str(exc)
    return f"cannot write {path}: {why}; the previous file, if any, is untouched"
