"""The local folder's `origin`: a repo the run has just made gets its remote written into
`.git/config` as `git remote add` writes it (no second git process on the critical path); real
`git` must read back exactly the URL, the default fetch refspec, and nothing else changed. A repo
that existed before still goes through `git remote` (add or set-url)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mk0r_tui.core.config import load_settings
from mk0r_tui.core.events import null_sink
from mk0r_tui.core.ledger import Ledger
from mk0r_tui.core.models import Session
from mk0r_tui.core.provider import ProvisionContext, SessionResources
from mk0r_tui.targets.local import ORIGIN_FETCH, LocalFolderTarget


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


async def provision_with_origin(session_key: str, url: str, *, prepared: bool = True) -> Path:
    settings = load_settings()
    settings.ensure_data_dir()
    session = Session.parse(session_key)
    ledger = Ledger(settings.ledger_path)
    ledger.ensure_session(session, target="local-folder")
    resources = SessionResources(ledger, session)
    target = LocalFolderTarget(settings=settings)

    def ctx(env: dict[str, str]) -> ProvisionContext:
        return ProvisionContext(session=session, provider=target.name, settings=settings, resources=resources,
                                sink=null_sink, env=env)

    if prepared:
        await target.prepare(ctx({}))
    await target.provision(ctx({"GIT_REMOTE_URL": url}))
    ledger.close()
    return settings.apps_dir / session.slug


@pytest.mark.parametrize("url", [
    "https://github.com/octocat/mk0r-abc123def456.git",
    # what git config must quote or escape (a value the .env can still hold: not both kinds of quote)
    "file:///tmp/a folder/with #hash; and \"quotes\"/mk0r-x.git",
    "file:///tmp/back\\slash ;x/mk0r-x.git",
    "git@github.com:octocat/mk0r-abc123def456.git",
])
async def test_a_fresh_repo_gets_the_origin_git_reads_back(mk0r_home, session_key, url):
    folder = await provision_with_origin(session_key, url)
    assert git(folder, "remote") == "origin"
    assert git(folder, "remote", "get-url", "origin") == url
    assert git(folder, "config", "--get-all", "remote.origin.fetch") == ORIGIN_FETCH
    assert git(folder, "config", "--get", "core.bare") == "false"  # what git init wrote is kept
    assert git(folder, "symbolic-ref", "HEAD") == "refs/heads/main"
    # the same as `git remote add` makes in a repo of its own
    twin = folder.parent / "twin"
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main", str(twin)], check=True)
    git(twin, "remote", "add", "--", "origin", url)
    assert git(folder, "config", "--get-regexp", "^remote\\.") == git(twin, "config", "--get-regexp", "^remote\\.")


async def test_a_repo_made_before_goes_through_git_remote(mk0r_home, session_key):
    first = "https://github.com/octocat/mk0r-old.git"
    folder = await provision_with_origin(session_key, first)
    assert git(folder, "remote", "get-url", "origin") == first
    # provisioned again (this process did not make the repo now): git sets the new URL, one origin
    second = "https://github.com/octocat/mk0r-new.git"
    await provision_with_origin(session_key, second, prepared=False)
    assert git(folder, "remote", "get-url", "origin") == second
    assert git(folder, "config", "--get-all", "remote.origin.url") == second
