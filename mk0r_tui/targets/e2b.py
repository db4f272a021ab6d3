"""The E2B sandbox target: the app's `/app/.env`, its agent instructions and its repo wiring,
inside a real E2B sandbox.

Runs last, after the orchestrator has written the operator's copy of the env
(`<data dir>/apps/<slug>/.env`), so a sandbox failure loses nothing and a retry re-delivers.
One sandbox per session, named by its metadata (`mk0r=1`, `mk0r_session=mk0r-<slug>`) so orphan
discovery can find it; the ledger row (kind `sandbox`, name `mk0r-<slug>`) holds its id, and a
second provision connects to that sandbox instead of creating another.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import AsyncIterator, Awaitable
from typing import ClassVar, TypeVar
from urllib.parse import urlsplit, urlunsplit

from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.errors import ProviderError
from mk0r_tui.core.instructions import merge_gitignore, render_app_files
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.core.models import RESOURCE_PREFIX, FoundResource, ProvisionOutcome, ResourceRef, ResourceState, Slot
from mk0r_tui.core.provider import AuthCheck, Provider, ProvisionContext
from mk0r_tui.providers.local_git import check_remote_url
from mk0r_tui.targets.sandbox import SANDBOX_USER, CommandResult, E2BSandboxBackend, SandboxBackend, SandboxGone, SandboxSummary

T = TypeVar("T")

APP_DIR = "/app"
KIND = "sandbox"
OURS = {"mk0r": "1"}
SESSION_META = "mk0r_session"
MAX_LIST_PAGES = 200
_NETWORK_SCHEMES = ("http", "https", "ssh", "git")


def idempotency_key(text: str) -> str:
    """E2B accepts idempotency keys matching `[a-z0-9-]{1,255}`: anything else becomes `-`."""
    key = re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-")[:255]
    return key or "mk0r"


#: the sandbox metadata key holding the owner mark: the id of the ledger that created it
LEDGER_META = "mk0r_ledger"


def sandbox_metadata(name: str) -> dict[str, str]:
    return {**OURS, SESSION_META: name}


def sandbox_origin(remote: str | None) -> tuple[str | None, str | None]:
    """The `origin` a remote sandbox can use for `remote`, and a note when it differs.

    A file:// URL (the local profile's bare repo) lives on the operator's machine, out of the
    sandbox's reach; credentials in a URL are dropped so they never land in `.git/config`.
    """
    if not remote:
        return None, "no repository was provisioned: /app has no origin"
    check_remote_url(remote)
    if "://" not in remote:
        if ":" in remote.split("/", 1)[0] and not remote.startswith("/"):
            return remote, None  # scp-like: git@github.com:owner/repo.git
        return None, f"origin not set: {remote} is a path on this machine, which the sandbox cannot reach"
    parts = urlsplit(remote)
    if parts.scheme not in _NETWORK_SCHEMES:
        return None, f"origin not set: {parts.scheme}:// remotes (on this machine) cannot be reached from the sandbox"
    if parts.password is not None:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), "credentials removed from the origin URL"
    return remote, None


def git_wiring_script(origin: str | None) -> str:
    """Make `APP_DIR` a git repo with `origin` set. It never adds, commits or pushes anything."""
    lines = ["set -e", "[ -d .git ] || git init -q"]
    if origin:
        quoted = shlex.quote(origin)
        lines.append(
            f"if git remote get-url origin >/dev/null 2>&1; then git remote set-url -- origin {quoted}; "
            f"else git remote add -- origin {quoted}; fi"
        )
    return "\n".join(lines)


class E2BTarget(Provider):
    name = "e2b"
    owner_marks: ClassVar[str] = "mark"
    slot = Slot.TARGET
    env_keys = ()
    kind = KIND

    def __init__(
        self, *, settings: Settings, credentials: Credentials | None = None, backend: SandboxBackend | None = None
    ) -> None:
        self.settings = settings
        if backend is None:
            backend = E2BSandboxBackend(
                api_key=credentials.value("E2B_API_KEY") if credentials is not None else None,
                domain=settings.e2b_domain,
                api_url=settings.e2b_api_url,
                request_timeout_s=settings.http_timeout_s,
                sandbox_timeout_s=settings.e2b_timeout_s,
                on_timeout=settings.e2b_on_timeout,
            )
        self.backend = backend

    # -- provisioning ---------------------------------------------------------------------

    async def provision(self, ctx: ProvisionContext) -> ProvisionOutcome:
        name = ctx.session.resource_name
        sandbox_id = await self._sandbox_for(ctx, name)
        try:
            await self._deliver(ctx, sandbox_id, name)
        except ProviderError as exc:
            local = self.settings.env_file_for(ctx.session.slug)
            raise ProviderError(
                f"sandbox {sandbox_id}: {exc.args[0]}",
                call=exc.call, status=exc.status, retryable=exc.retryable,
                hint=f"the env is kept in {local}; retry (r, or provision again) re-delivers into the same sandbox",
            ) from None
        return ProvisionOutcome(
            env={},
            resources=(ResourceRef(self.name, KIND, name, sandbox_id),),
            note=f"E2B_SANDBOX_ID={sandbox_id}; wrote {APP_DIR}/.env, AGENTS.md, CLAUDE.md, .gitignore",
        )

    async def _timed(self, ctx: ProvisionContext, label: str, work: Awaitable[T]) -> T:
        """Await `work` and report it as a progress event with its latency."""
        started = time.monotonic()
        result = await work
        ctx.progress(f"{label} ({(time.monotonic() - started) * 1000:.0f} ms)")
        return result

    async def _sandbox_for(self, ctx: ProvisionContext, name: str) -> str:
        """The session's sandbox: the ledger's (connect), the operator's (`--sandbox`), one
        found upstream after a crash, or a new one."""
        requested = self.settings.e2b_sandbox_id
        row = ctx.existing(KIND, name)
        if row is not None and row.state == ResourceState.CREATED.value and row.remote_id:
            if requested and requested != row.remote_id:
                raise ProviderError(
                    f"this session already has sandbox {row.remote_id}, not {requested}",
                    call="connect", hint="omit --sandbox, or tear the session down first",
                )
            ctx.attempt()
            try:
                return await self._timed(
                    ctx, f"connected to sandbox {row.remote_id}",
                    self.backend.connect(row.remote_id, timeout_s=self.settings.e2b_timeout_s),
                )
            except SandboxGone:
                # a 404 from connect alone is not proof (a paused sandbox, a flaky proxy): it is
                # "already gone" only once a kill was sent and answered (404, or killed now). Any
                # other kill failure propagates, and the row stays for teardown and orphans.
                try:
                    killed = await self.backend.kill(row.remote_id)
                except SandboxGone:
                    killed = False
                why = "connect answered 404; killed it" if killed else "gone: connect and kill both answered 404"
                ctx.progress(f"sandbox {row.remote_id}: {why}; a new one takes its place")
                ctx.dropped(row, why)
        if requested:
            row = ctx.intend(KIND, name, meta={"adopted": True})
            ctx.attempt()
            sandbox_id = await self._timed(
                ctx, f"connected to sandbox {requested}",
                self.backend.connect(requested, timeout_s=self.settings.e2b_timeout_s),
            )
            ctx.created(row, sandbox_id, meta={"adopted": True})
            return sandbox_id
        interrupted = row is not None and row.state == ResourceState.PENDING.value
        row = ctx.intend(KIND, name, meta={"template": self.settings.e2b_template})
        if interrupted:
            found = await self._find(name)
            if found:
                ctx.progress(f"found sandbox {found} from an interrupted run: using it")
                ctx.created(row, found)
                return found
        ctx.attempt()
        try:
            sandbox_id = await self._timed(
                ctx, f"created sandbox from template {self.settings.e2b_template!r}",
                self.backend.create(
                    template=self.settings.e2b_template,
                    timeout_s=self.settings.e2b_timeout_s,
                    metadata={**sandbox_metadata(name), LEDGER_META: ctx.resources.ledger_id},
                    idempotency_key=idempotency_key(f"{name}-{row.id}"),
                ),
            )
        except ProviderError as exc:
            if exc.nothing_sent or (not exc.outcome_unknown and exc.status is not None and exc.status < 500):
                ctx.dropped(row, str(exc))  # refused, or never sent: nothing exists
            raise
        ctx.created(row, sandbox_id, meta={"template": self.settings.e2b_template})
        return sandbox_id

    async def _deliver(self, ctx: ProvisionContext, sandbox_id: str, name: str) -> None:
        backend = self.backend
        env_path = f"{APP_DIR}/.env"
        await self._command(
            ctx, sandbox_id, f"mkdir -p {APP_DIR} && chown {SANDBOX_USER}: {APP_DIR}", f"prepared {APP_DIR}", user="root"
        )
        merged = merge_gitignore(await backend.read_file(sandbox_id, f"{APP_DIR}/.gitignore"))
        if merged is not None:
            await self._timed(ctx, f"wrote {APP_DIR}/.gitignore", backend.write_file(sandbox_id, f"{APP_DIR}/.gitignore", merged))
        # created private before the secrets go in; chmod again after, in case the write replaced it
        await self._command(ctx, sandbox_id, f"touch {env_path} && chmod 600 {env_path}", f"created {env_path} (0600)")
        for relative, text, mode in render_app_files(ctx.results, ctx.env, name=name).entries():
            path = f"{APP_DIR}/{relative}"
            await self._timed(ctx, f"wrote {path}", backend.write_file(sandbox_id, path, text))
            if mode != 0o644:
                await self._command(ctx, sandbox_id, f"chmod {mode:o} {path}", f"chmod {mode:o} {path}")
        origin, note = sandbox_origin(ctx.env.get("GIT_REMOTE_URL"))
        await self._command(
            ctx, sandbox_id, git_wiring_script(origin),
            f"{APP_DIR} is a git repo with origin {origin}" if origin else f"{APP_DIR} is a git repo", cwd=APP_DIR,
        )
        if note:
            ctx.progress(note)

    async def _command(
        self, ctx: ProvisionContext, sandbox_id: str, command: str, label: str, *, user: str | None = None, cwd: str | None = None
    ) -> CommandResult:
        result = await self._timed(ctx, label, self.backend.run(sandbox_id, command, user=user, cwd=cwd))
        if not result.ok:
            why = (result.stderr or result.stdout).strip().splitlines()
            raise ProviderError(
                f"`{command.splitlines()[-1]}` exited with {result.exit_code}" + (f": {why[-1]}" if why else ""),
                call="process.Start",
            )
        return result

    # -- teardown and discovery -----------------------------------------------------------

    async def teardown(self, resource: ResourceRow) -> bool:
        sandbox_id = resource.remote_id or await self._find(resource.name)
        if not sandbox_id:
            return False
        return await self.backend.kill(sandbox_id)

    async def _pages(self, metadata: dict[str, str]) -> AsyncIterator[tuple[SandboxSummary, ...]]:
        token: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_LIST_PAGES):
            page = await self.backend.list_page(metadata, token)
            yield page.sandboxes
            if not page.next_token or page.next_token in seen:
                return
            seen.add(page.next_token)
            token = page.next_token

    async def _find(self, name: str) -> str | None:
        """The id of the sandbox carrying our metadata for `name`, if one runs."""
        async for sandboxes in self._pages(sandbox_metadata(name)):
            for sandbox in sandboxes:
                if sandbox.metadata.get(SESSION_META) == name:
                    return sandbox.sandbox_id
        return None

    async def discover(self) -> list[FoundResource]:
        found: list[FoundResource] = []
        async for sandboxes in self._pages(dict(OURS)):
            for sandbox in sandboxes:
                session = sandbox.metadata.get(SESSION_META, "")
                if sandbox.metadata.get("mk0r") == OURS["mk0r"] and session.startswith(RESOURCE_PREFIX):
                    found.append(FoundResource(self.name, KIND, session, sandbox.sandbox_id, sandbox.started_at,
                                               owner=sandbox.metadata.get(LEDGER_META) or None))
        return found

    async def check_auth(self) -> AuthCheck:
        probe = getattr(self.backend, "probe", None)
        if probe is None:
            await self.backend.list_page(dict(OURS), None)
        else:
            await probe()
        lifecycle = "pause (resumed on use)" if self.settings.e2b_on_timeout == "pause" else "kill"
        return AuthCheck(ok=True, detail=f"E2B accepts the key on {self.settings.e2b_domain} (listed sandboxes); "
                                         f"at the timeout a sandbox is: {lifecycle}")

    async def aclose(self) -> None:
        await self.backend.aclose()
