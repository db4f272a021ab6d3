"""The local app folder, `<data dir>/apps/<slug>/`: a git repo whose `origin` is the session's
repo, with `.env` (0600, git-ignored), `AGENTS.md` and `CLAUDE.md`."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import ClassVar

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.envfile import atomic_write
from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.instructions import merge_gitignore, render_app_files
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import RESOURCE_PREFIX, FoundResource, ProvisionOutcome, ResourceRef, Slot
from mk0r_tui.core.paths import is_link, private_dir, refuse_link
from mk0r_tui.core.provider import Provider, ProvisionContext
from mk0r_tui.providers.local_git import check_remote_url, run_git


def ensure_gitignore(folder: Path) -> None:
    path = refuse_link(folder / ".gitignore", "app's .gitignore")
    merged = merge_gitignore(path.read_text() if path.exists() else None)
    if merged is not None:
        atomic_write(path, merged, mode=0o644, durable=False)


#: what `git remote add` sets as the origin's fetch refspec
ORIGIN_FETCH = "+refs/heads/*:refs/remotes/origin/*"


def _config_value(value: str) -> str:
    """A value as git config reads it back unchanged: between double quotes, `\\` and `"` escaped
    (a remote URL has no control character: `check_remote_url`)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def add_origin(folder: Path, url: str) -> None:
    """`git remote add origin <url>` for a repo this run has just made (`git init` in `prepare`,
    no remote yet, nobody else writing it): the section git itself writes, appended to
    `.git/config` atomically, instead of a second git process on the run's critical path (~3 ms
    of a pool-served CLI provision: bench/pool.py part 2). `git remote get-url origin` reads it."""
    config = refuse_link(folder / ".git" / "config", "app's git config")
    text = config.read_text()
    section = f'[remote "origin"]\n\turl = {_config_value(url)}\n\tfetch = {ORIGIN_FETCH}\n'
    mode = config.stat().st_mode & 0o777
    atomic_write(config, text + ("" if not text or text.endswith("\n") else "\n") + section, mode=mode, durable=False)


def _write_docs(folder: Path, docs: list[tuple[str, str, int]]) -> None:
    """The agent's files: atomic (never half a file) but not fsynced one by one; they are
    rendered again from the ledger's results by the next provision (the `.env` is durable)."""
    for relative, text, mode in docs:
        atomic_write(folder / relative, text, mode=mode, durable=False)


class LocalFolderTarget(Provider):
    name = "local-folder"
    owner_marks: ClassVar[str] = "local"
    slot = Slot.TARGET
    env_keys = ()
    kind = "app-folder"

    def __init__(self, *, settings: Settings, credentials: Credentials | None = None) -> None:
        self.settings = settings
        #: folders `prepare` set up in this process, and whether their repo was made just then
        self._fresh: dict[Path, bool] = {}

    def folder_for(self, name: str) -> Path:
        if not name.startswith(RESOURCE_PREFIX) or "/" in name or ".." in name:
            raise ProviderError(f"refusing to touch {name!r}: not an mk0r app name")
        return self.settings.apps_dir / name[len(RESOURCE_PREFIX):]

    async def prepare(self, ctx: ProvisionContext) -> None:
        """While the providers run: the intent, the folder, `git init` and the .gitignore (none
        of it needs a provider's answer). `provision` then adds the remote and the agent files."""
        folder = self.folder_for(ctx.session.resource_name)
        await ctx.intend(self.kind, ctx.session.resource_name)
        self._fresh[folder] = await self._init(folder)

    async def _init(self, folder: Path) -> bool:
        """The folder (0700, never through a link), a git repo in it, the .gitignore; True when
        the repo was made just now (it has no remote yet)."""
        await asyncio.to_thread(private_dir, folder, self.settings.data_dir)  # a symlinked folder is refused
        refuse_link(folder / ".git", "app's .git")
        fresh = not (folder / ".git").exists()
        if fresh:
            await run_git("init", "--quiet", "--initial-branch=main", cwd=folder)
        await asyncio.to_thread(ensure_gitignore, folder)
        return fresh

    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome:
        name = ctx.session.resource_name
        folder = self.folder_for(name)
        row = await ctx.intend(self.kind, name)
        ctx.attempt()
        fresh = self._fresh.pop(folder, None)
        if fresh is None or not (folder / ".git").exists():  # not prepared (or undone since): do it now
            fresh = await self._init(folder)
        refuse_link(folder / ".git", "app's .git")
        remote = ctx.env.get("GIT_REMOTE_URL")
        if remote:
            check_remote_url(remote)
        env_path = folder / ".env"  # written by the orchestrator, the one writer of this file
        docs = list(render_app_files(ctx.results, ctx.env, name=name).docs())

        async def set_origin(url: str) -> None:
            if fresh:  # a repo made by this run has no remote: the origin written as git would
                await asyncio.to_thread(add_origin, folder, url)
                return
            remotes = (await run_git("remote", cwd=folder)).split()
            verb = "set-url" if "origin" in remotes else "add"
            await run_git("remote", verb, "--", "origin", url, cwd=folder)

        # the remote (a git process) and the agent's files (a thread) touch different files: together
        await asyncio.gather(*([set_origin(remote)] if remote else []), asyncio.to_thread(_write_docs, folder, docs))
        await ctx.created(row, str(folder), url=folder.as_uri())
        return ProvisionOutcome(
            env={}, resources=(ResourceRef(self.name, self.kind, name, str(folder), folder.as_uri()),), note=str(env_path)
        )

    async def teardown(self, resource: ResourceRow) -> bool:
        folder = self.folder_for(resource.name)
        if is_link(folder):
            folder.unlink()  # the link itself, never what it points to
            return True
        if not folder.exists():
            return False
        await asyncio.to_thread(shutil.rmtree, folder)
        return True

    async def discover(self) -> list[FoundResource]:
        root = self.settings.apps_dir
        if not root.exists():
            return []
        return [
            FoundResource(self.name, self.kind, RESOURCE_PREFIX + p.name, str(p), p.lstat().st_mtime)
            for p in sorted(root.iterdir())
            if p.is_dir() or is_link(p)
        ]

    async def aclose(self) -> None:
        return None
