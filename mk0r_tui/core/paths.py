"""Paths under the data dir are never followed through a symbolic link for writing or deleting.

A link planted at `apps/<slug>` (or `repos/mk0r-<slug>.git`, a `.gitignore`) would otherwise
send the `.env` and the repo into the link's target, and make teardown impossible.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from mk0r_tui.core.errors import ConfigError


class SymlinkRefused(ConfigError):
    """A path we would write or delete is a symbolic link."""


def is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def refuse_link(path: Path, what: str = "path") -> Path:
    """`path` itself, unless it is a symbolic link (then SymlinkRefused, naming it)."""
    if is_link(path):
        raise SymlinkRefused(
            f"refusing to use {path}: the {what} is a symbolic link (to {os.readlink(path)}); "
            "mk0r-tui never writes or deletes through a link under its data dir. Remove the link and retry"
        )
    return path


def private_dir(path: Path, root: Path) -> Path:
    """Create `path` and every folder between `root` and it with mode 0700 (whatever the umask),
    tightening existing ones; refuse any of them that is a symbolic link."""
    path, root = Path(path), Path(root)
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise ConfigError(f"{path} is not under the data dir {root}") from None
    current = root
    for part in parts:
        current = current / part
        refuse_link(current, "folder")
        try:
            os.mkdir(current, 0o700)
        except FileExistsError:
            if not current.is_dir():
                raise ConfigError(f"cannot use {current}: a file is in the way of the folder") from None
        if stat.S_IMODE(os.lstat(current).st_mode) != 0o700:
            os.chmod(current, 0o700)
    return path


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold `folder/.lock` exclusively (flock): one process at a time starts or stops the daemon
    kept in that folder (the embedded Postgres, the mail catcher)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
