"""A real local bare git repository, `<data dir>/repos/mk0r-<slug>.git`, the local stand-in
for a GitHub repo. The app folder's `origin` points at it, so `git push` works."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.errors import ConfigError, ProviderError
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import RESOURCE_PREFIX, FoundResource, ProvisionOutcome, ResourceRef, Slot
from mk0r_tui.core.paths import is_link, private_dir, refuse_link
from mk0r_tui.core.provider import Provider, ProvisionContext


def git_binary() -> str:
    """The git executable, or a ConfigError that says how to get one."""
    found = shutil.which("git")
    if not found:
        raise ConfigError("git is not installed or not on PATH; install git (e.g. `apt-get install git`) and try again")
    return found


_TRANSPORT_FORM = re.compile(r"^[A-Za-z0-9+.-]+::")


def check_remote_url(url: str) -> str:
    """`url` if git may be handed it as a remote; a ProviderError otherwise. Refused: the
    `<transport>::<address>` form (`ext::sh -c …` runs a command), and anything starting with
    `-` (git would read it as an option), or holding a control character."""
    if not url or url.startswith("-") or _TRANSPORT_FORM.match(url) or any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise ProviderError(
            f"refusing the repository URL {url!r}: git remotes must be a plain https://, ssh://, git:// or "
            "file:// URL (or user@host:path); `<transport>::` forms and leading '-' are never passed to git",
            call="git remote",
        )
    return url


async def run_git(*args: str, cwd: Path | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        git_binary(),
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(cwd or Path.home())},
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise ProviderError(err.decode(errors="replace").strip() or f"exit {proc.returncode}", call=f"git {args[0]}")
    return out.decode(errors="replace")


class LocalGitProvider(Provider):
    name = "local-git"
    owner_marks = "local"
    slot = Slot.REPO
    env_keys = ("GIT_REMOTE_URL", "LOCAL_GIT_REPO")
    kind = "bare-repo"

    def __init__(self, *, settings: Settings, credentials: Credentials | None = None) -> None:
        self.settings = settings
        self.root = settings.repos_dir

    def path_for(self, name: str) -> Path:
        if not name.startswith(RESOURCE_PREFIX) or "/" in name or ".." in name:
            raise ProviderError(f"refusing to touch {name!r}: not an mk0r repository name")
        return self.root / f"{name}.git"

    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome:
        name = ctx.session.resource_name
        path = self.path_for(name)
        other = ctx.owned_by_other_session(self.kind, name)
        if other:
            raise ProviderError(f"{path} belongs to session {other!r}", call="git init")
        refuse_link(path, "local repository")
        row = ctx.intend(self.kind, name)
        ctx.attempt()
        if path.exists() and row.state == "pending" and not (path / "HEAD").exists():
            shutil.rmtree(path)
        if not (path / "HEAD").exists():
            if path.exists() and row.state != "pending":
                raise ProviderError(f"{path} exists and is not a git repository", call="git init")
            private_dir(self.root, self.settings.data_dir)
            await run_git("init", "--bare", "--quiet", "--initial-branch=main", str(path), cwd=self.root)
        url = path.resolve().as_uri()
        ctx.created(row, str(path), url=url)
        return ProvisionOutcome(
            env={"GIT_REMOTE_URL": url, "LOCAL_GIT_REPO": str(path)},
            resources=(ResourceRef(self.name, self.kind, name, str(path), url),),
        )

    async def not_reusable(self, env: Mapping[str, str], rows: Sequence[ResourceRow]) -> str | None:
        """The bare repository must still be there."""
        for row in rows:
            if not (self.path_for(row.name) / "HEAD").exists():
                return f"{self.path_for(row.name)} is gone"
        return None

    async def teardown(self, resource: ResourceRow) -> bool:
        path = self.path_for(resource.name)
        if is_link(path):
            path.unlink()  # the link itself, never what it points to
            return True
        if not path.exists():
            return False
        await asyncio.to_thread(shutil.rmtree, path)
        return True

    async def discover(self) -> list[FoundResource]:
        if not self.root.exists():
            return []
        found = []
        for path in sorted(self.root.glob(f"{RESOURCE_PREFIX}*.git")):
            name = path.name[: -len(".git")]
            found.append(FoundResource(self.name, self.kind, name, str(path), path.stat().st_mtime))
        return found

    async def aclose(self) -> None:
        return None
