"""The e2b target's logic against a fake `SandboxBackend`: what lands in the sandbox, what the
ledger keeps when a write fails, retries into the same sandbox, teardown and discovery.

The SDK-backed backend's HTTP traffic is tested in test_e2b_http.py."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import pytest
from dotenv import dotenv_values
from fakes import FakeProvider, plan_of, registry_of, skipped_step

from mk0r_tui.core.config import load_settings
from mk0r_tui.core.errors import AuthenticationError, ProviderError
from mk0r_tui.core.events import Collector, ProviderProgressed
from mk0r_tui.core.models import Session, Slot, Status
from mk0r_tui.core.plan import PlanStep
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.engine.teardown import find_orphans, teardown_session
from mk0r_tui.targets.e2b import E2BTarget, sandbox_origin
from mk0r_tui.targets.sandbox import CommandResult, SandboxBackend, SandboxGone, SandboxPage, SandboxSummary

DB_PASSWORD = "pw-Zq81xK3mN0rT"
RESEND_KEY = "re_live_9f8e7d6c5b4a3210"


@dataclass
class FakeSandbox:
    metadata: dict[str, str]
    started_at: float
    files: dict[str, str] = field(default_factory=dict)
    alive: bool = True


class FakeSandboxBackend:
    """In-memory sandboxes: files are a dict, commands are recorded (never executed)."""

    def __init__(self, *, page_size: int = 2) -> None:
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.calls: list[tuple[str, ...]] = []
        self.commands: list[tuple[str, str, str | None]] = []  # (sandbox id, command, user)
        self.fail_writes: dict[str, ProviderError] = {}
        self.fail_create: ProviderError | None = None
        self.page_size = page_size
        self.list_tokens: list[str | None] = []

    def add(self, sandbox_id: str, metadata: dict[str, str], started_at: float = 1_700_000_000.0) -> None:
        self.sandboxes[sandbox_id] = FakeSandbox(dict(metadata), started_at)

    def _live(self, sandbox_id: str) -> FakeSandbox:
        box = self.sandboxes.get(sandbox_id)
        if box is None or not box.alive:
            raise SandboxGone(f"sandbox {sandbox_id} not found", call="connect", status=404)
        return box

    async def create(self, *, template, timeout_s, metadata, idempotency_key=None) -> str:
        self.calls.append(("create", template, str(timeout_s), idempotency_key or ""))
        if self.fail_create is not None:
            raise self.fail_create
        sandbox_id = f"sbx{len(self.sandboxes) + 1}"
        self.add(sandbox_id, dict(metadata))
        return sandbox_id

    async def connect(self, sandbox_id, *, timeout_s) -> str:
        self.calls.append(("connect", sandbox_id))
        self._live(sandbox_id)
        return sandbox_id

    async def write_file(self, sandbox_id, path, data) -> None:
        self.calls.append(("write", sandbox_id, path))
        if path in self.fail_writes:
            raise self.fail_writes[path]
        self._live(sandbox_id).files[path] = data

    async def read_file(self, sandbox_id, path):
        self.calls.append(("read", sandbox_id, path))
        return self._live(sandbox_id).files.get(path)

    async def run(self, sandbox_id, command, *, user=None, cwd=None) -> CommandResult:
        self._live(sandbox_id)
        self.calls.append(("run", sandbox_id, command))
        self.commands.append((sandbox_id, command, user))
        return CommandResult(0)

    async def kill(self, sandbox_id) -> bool:
        self.calls.append(("kill", sandbox_id))
        box = self.sandboxes.get(sandbox_id)
        if box is None or not box.alive:
            return False
        box.alive = False
        return True

    async def list_page(self, metadata, next_token=None) -> SandboxPage:
        self.list_tokens.append(next_token)
        matching = [
            SandboxSummary(sid, dict(box.metadata), box.started_at, "running")
            for sid, box in self.sandboxes.items()
            if box.alive and all(box.metadata.get(k) == v for k, v in metadata.items())
        ]
        start = int(next_token or 0)
        end = start + self.page_size
        return SandboxPage(tuple(matching[start:end]), str(end) if end < len(matching) else None)

    async def aclose(self) -> None:
        return None


def services() -> list:
    return [
        FakeProvider("local-postgres", Slot.DATABASE, env={"DATABASE_URL": f"postgresql://app:{DB_PASSWORD}@db.example:5432/app"}, kind="database"),
        FakeProvider("resend", Slot.EMAIL, env={"RESEND_API_KEY": RESEND_KEY, "RESEND_SEGMENT_ID": "seg_1"}, kind="segment"),
        FakeProvider("github", Slot.REPO, env={"GIT_REMOTE_URL": "https://github.com/acme/mk0r-app.git", "GITHUB_REPO": "acme/mk0r-app"}, kind="repo"),
        skipped_step(Slot.ANALYTICS, "set POSTHOG_PROJECT_KEY", "posthog"),
    ]


@pytest.fixture
def backend() -> FakeSandboxBackend:
    return FakeSandboxBackend()


def make_runtime(backend: FakeSandboxBackend, selection: list, **settings) -> tuple[Runtime, E2BTarget]:
    runtime_settings = load_settings(**settings)
    target = E2BTarget(settings=runtime_settings, backend=backend)
    providers = [p for p in selection if not isinstance(p, PlanStep)]
    return Runtime(runtime_settings, registry=registry_of(*providers, target)), target


async def provision(runtime: Runtime, target: E2BTarget, session: Session, selection: list, sink=None):
    return await provision_services(runtime, session, plan_of(selection, target), sink=sink or Collector())


def target_result(report):
    return next(r for r in report.results if r.name == "e2b")


def commands_of(backend: FakeSandboxBackend) -> list[str]:
    return [command for _, command, _ in backend.commands]


async def provisioned_once(backend: FakeSandboxBackend, session_key: str):
    """A session with one database, provisioned into a new fake sandbox."""
    selection = services()[:1]
    runtime, target = make_runtime(backend, selection)
    session = Session.parse(session_key)
    await provision(runtime, target, session, selection)
    return runtime, target, session, selection


async def test_delivers_env_instructions_gitignore_and_origin(backend, session_key):
    selection = services()
    runtime, target = make_runtime(backend, selection)
    session = Session.parse(session_key)
    events = Collector()
    report = await provision(runtime, target, session, selection, events)

    assert target_result(report).status is Status.OK, target_result(report).error
    assert [c[0] for c in backend.calls].count("create") == 1
    (sandbox_id, box), = backend.sandboxes.items()
    assert box.metadata == {"mk0r": "1", "mk0r_session": session.resource_name, "mk0r_ledger": runtime.ledger.ledger_id}

    env_text = box.files["/app/.env"]
    assert dotenv_values(stream=io.StringIO(env_text), interpolate=False) == dict(report.env)
    assert "E2B_SANDBOX_ID" not in env_text and sandbox_id not in env_text
    assert f"E2B_SANDBOX_ID={sandbox_id}" in target_result(report).note
    assert target_result(report).resources[0].remote_id == sandbox_id

    ignored = box.files["/app/.gitignore"].splitlines()
    assert ".env" in ignored
    assert box.files["/app/CLAUDE.md"].count("AGENTS.md") >= 1

    commands = commands_of(backend)
    env_write = backend.calls.index(("write", sandbox_id, "/app/.env"))
    chmod_after = [i for i, c in enumerate(backend.calls) if c == ("run", sandbox_id, "chmod 600 /app/.env")]
    assert chmod_after and chmod_after[0] > env_write, "the .env is made 0600 after it is written"
    assert backend.calls.index(("write", sandbox_id, "/app/.gitignore")) < env_write, ".gitignore lists .env before .env exists"
    git = [c for c in commands if "git " in c]
    assert len(git) == 1 and "git init" in git[0]
    assert "git remote add -- origin https://github.com/acme/mk0r-app.git" in git[0]
    for command in commands:
        assert not re.search(r"git\s+(add|commit|push|stash)", command), command

    progress = [e.message for e in events.of(ProviderProgressed) if e.provider == "e2b"]
    assert any(m.startswith("created sandbox") for m in progress)
    assert any(m.startswith("wrote /app/.env (") and m.endswith(" ms)") for m in progress)

    rows = runtime.ledger.resources(session_key, provider="e2b", live_only=True)
    assert [(r.kind, r.name, r.remote_id, r.state) for r in rows] == [("sandbox", session.resource_name, sandbox_id, "created")]


async def test_agents_md_lists_exactly_the_provisioned_services_and_no_secret(backend, session_key):
    selection = services()
    runtime, target = make_runtime(backend, selection)
    report = await provision(runtime, target, Session.parse(session_key), selection)
    (box,) = backend.sandboxes.values()
    agents = box.files["/app/AGENTS.md"]

    rows = [line for line in agents.splitlines() if line.startswith("| ") and not line.startswith("| service") and "---" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["Postgres (local)", "Email (Resend)", "Git repository (GitHub)"]
    assert "`DATABASE_URL`" in rows[0] and "`RESEND_API_KEY`, `RESEND_SEGMENT_ID`" in rows[1]
    assert "analytics (posthog): not provisioned (skipped: set POSTHOG_PROJECT_KEY)" in agents
    for value in report.env.values():
        if value not in ("seg_1",):
            assert value not in agents
    assert DB_PASSWORD not in agents and RESEND_KEY not in agents


async def test_a_local_file_remote_is_not_set_as_origin(backend, session_key):
    selection = [FakeProvider("local-git", Slot.REPO, env={"GIT_REMOTE_URL": "file:///home/op/repos/mk0r-x.git", "LOCAL_GIT_REPO": "/home/op/repos/mk0r-x.git"})]
    runtime, target = make_runtime(backend, selection)
    events = Collector()
    report = await provision(runtime, target, Session.parse(session_key), selection, events)

    assert target_result(report).status is Status.OK
    git = [c for c in commands_of(backend) if "git " in c]
    assert len(git) == 1 and "git init" in git[0] and "origin" not in git[0]
    assert any("cannot be reached from the sandbox" in e.message for e in events.of(ProviderProgressed))


async def test_a_failed_write_fails_the_target_keeps_the_ledger_and_a_retry_redelivers(backend, session_key):
    selection = services()
    runtime, target = make_runtime(backend, selection)
    session = Session.parse(session_key)
    backend.fail_writes["/app/.env"] = ProviderError("the sandbox's disk is full", call="POST /files?path=/app/.env", status=507)

    report = await provision(runtime, target, session, selection)

    failed = target_result(report)
    assert failed.status is Status.FAILED
    assert "/app/.env" in failed.error and "disk is full" in failed.error and "HTTP 507" in failed.error
    local_copy = runtime.settings.apps_dir / session.slug / ".env"
    assert str(local_copy) in failed.error, "the error says where the env is kept"
    assert dotenv_values(local_copy, interpolate=False) == dict(report.env)
    live = {(r.provider, r.state) for r in runtime.ledger.resources(session_key, live_only=True)}
    assert live == {("local-postgres", "created"), ("resend", "created"), ("github", "created"), ("e2b", "created")}
    (sandbox_id,) = backend.sandboxes

    backend.fail_writes.clear()
    backend.calls.clear()
    retried = await provision(runtime, target, session, selection)

    assert target_result(retried).status is Status.OK
    assert ("connect", sandbox_id) in backend.calls
    assert not [c for c in backend.calls if c[0] == "create"], "the retry reuses the sandbox the ledger names"
    assert dotenv_values(stream=io.StringIO(backend.sandboxes[sandbox_id].files["/app/.env"]), interpolate=False) == dict(retried.env)
    assert len(runtime.ledger.resources(session_key, provider="e2b", live_only=True)) == 1


async def test_a_refused_create_is_a_clear_error_and_leaves_no_pending_row(backend, session_key):
    selection = services()[:1]
    runtime, target = make_runtime(backend, selection)
    backend.fail_create = AuthenticationError("E2B refused the API key", call="POST /v2/sandboxes", status=401, hint="check E2B_API_KEY")

    report = await provision(runtime, target, Session.parse(session_key), selection)

    failed = target_result(report)
    assert failed.status is Status.FAILED
    assert failed.error == "POST /v2/sandboxes → HTTP 401: E2B refused the API key (check E2B_API_KEY)"
    assert runtime.ledger.resources(session_key, provider="e2b", live_only=True) == []
    assert (runtime.settings.apps_dir / Session.parse(session_key).slug / ".env").exists()
    scan = await find_orphans(runtime, providers=["e2b"])
    assert scan.orphans == []


async def test_a_sandbox_gone_since_the_last_run_is_replaced(backend, session_key):
    runtime, target, session, selection = await provisioned_once(backend, session_key)
    (first,) = backend.sandboxes
    await backend.kill(first)  # timed out upstream

    report = await provision(runtime, target, session, selection)

    assert target_result(report).status is Status.OK
    second = target_result(report).resources[0].remote_id
    assert second != first and backend.sandboxes[second].alive
    rows = runtime.ledger.resources(session_key, provider="e2b")
    assert [(r.remote_id, r.state) for r in rows] == [(first, "deleted"), (second, "created")]


async def test_an_interrupted_create_adopts_the_sandbox_found_by_metadata(backend, session_key):
    selection = services()[:1]
    runtime, target = make_runtime(backend, selection)
    session = Session.parse(session_key)
    runtime.ledger.ensure_session(session, target="e2b")
    runtime.ledger.intend(session_key, "e2b", "sandbox", session.resource_name)  # crash after this
    backend.add("sbx-made-before-crash", {"mk0r": "1", "mk0r_session": session.resource_name})

    report = await provision(runtime, target, session, selection)

    assert target_result(report).status is Status.OK
    assert not [c for c in backend.calls if c[0] == "create"]
    (row,) = runtime.ledger.resources(session_key, provider="e2b", live_only=True)
    assert (row.remote_id, row.state) == ("sbx-made-before-crash", "created")


async def test_the_sandbox_option_connects_instead_of_creating(backend, session_key):
    selection = services()[:1]
    runtime, target = make_runtime(backend, selection, e2b_sandbox_id="sbx-operator")
    backend.add("sbx-operator", {})

    report = await provision(runtime, target, Session.parse(session_key), selection)

    assert target_result(report).status is Status.OK
    assert ("connect", "sbx-operator") in backend.calls and not [c for c in backend.calls if c[0] == "create"]
    assert "/app/.env" in backend.sandboxes["sbx-operator"].files
    (row,) = runtime.ledger.resources(session_key, provider="e2b", live_only=True)
    assert row.remote_id == "sbx-operator" and row.meta == {"adopted": True}


async def test_teardown_kills_the_sandbox_and_a_gone_one_is_done(backend, session_key):
    runtime, target, session, selection = await provisioned_once(backend, session_key)
    (sandbox_id,) = backend.sandboxes

    report = await teardown_session(runtime, session_key)
    outcomes = {o.resource.provider: o.outcome for o in report.outcomes}
    assert outcomes["e2b"] == "deleted" and ("kill", sandbox_id) in backend.calls
    assert not backend.sandboxes[sandbox_id].alive

    other = Session.parse("gone" + session_key)
    await provision(runtime, target, other, selection)
    gone_id = next(sid for sid in backend.sandboxes if sid != sandbox_id)
    await backend.kill(gone_id)
    report = await teardown_session(runtime, other.key)
    assert {o.resource.provider: o.outcome for o in report.outcomes}["e2b"] == "already_gone"
    assert report.ok


async def test_teardown_of_a_pending_row_looks_the_sandbox_up_by_name(backend):
    target = E2BTarget(settings=load_settings(), backend=backend)
    backend.add("sbx-a", {"mk0r": "1", "mk0r_session": "mk0r-aaaa"})
    backend.add("sbx-b", {"mk0r": "1", "mk0r_session": "mk0r-bbbb"})
    backend.add("sbx-c", {"mk0r": "1", "mk0r_session": "mk0r-cccc"})
    from mk0r_tui.core.ledger import ResourceRow

    row = ResourceRow(1, "k", "e2b", "sandbox", "mk0r-cccc", None, None, "pending")
    assert await target.teardown(row) is True
    assert ("kill", "sbx-c") in backend.calls and backend.sandboxes["sbx-a"].alive
    assert await target.teardown(ResourceRow(2, "k", "e2b", "sandbox", "mk0r-none", None, None, "pending")) is False


async def test_discovery_pages_through_our_sandboxes_only(backend, session_key):
    for i in range(5):
        backend.add(f"ours{i}", {"mk0r": "1", "mk0r_session": f"mk0r-app{i}"}, started_at=1_700_000_000.0 + i)
    backend.add("foreign", {"team": "other"})
    backend.add("unnamed", {"mk0r": "1"})
    target = E2BTarget(settings=load_settings(), backend=backend)

    found = await target.discover()

    assert [(f.name, f.remote_id, f.kind, f.created_at) for f in found] == [
        (f"mk0r-app{i}", f"ours{i}", "sandbox", 1_700_000_000.0 + i) for i in range(5)
    ]
    assert backend.list_tokens == [None, "2", "4"], "three pages of two, each asked for with the previous page's token"


async def test_orphans_are_our_sandboxes_without_a_live_session(backend, session_key):
    runtime, *_ = await provisioned_once(backend, session_key)
    backend.add("sbx-left", {"mk0r": "1", "mk0r_session": "mk0r-leftbehind1"})

    scan = await find_orphans(runtime, providers=["e2b"])

    assert [(o.name, o.remote_id) for o in scan.orphans] == [("mk0r-leftbehind1", "sbx-left")]


def test_the_fake_follows_the_protocol():
    assert isinstance(FakeSandboxBackend(), SandboxBackend)


@pytest.mark.parametrize(
    ("remote", "origin", "noted"),
    [
        ("https://github.com/acme/app.git", "https://github.com/acme/app.git", False),
        ("ssh://git@github.com/acme/app.git", "ssh://git@github.com/acme/app.git", False),
        ("git@github.com:acme/app.git", "git@github.com:acme/app.git", False),
        ("https://x-access-token:ghs_secret@github.com/acme/app.git", "https://github.com/acme/app.git", True),
        ("file:///home/op/repos/mk0r-x.git", None, True),
        ("/home/op/repos/mk0r-x.git", None, True),
        (None, None, True),
    ],
)
def test_sandbox_origin(remote, origin, noted):
    got, note = sandbox_origin(remote)
    assert got == origin
    assert (note is not None) is noted
    if note:
        assert "ghs_secret" not in note


async def test_a_reconnect_404_is_gone_only_after_a_kill_was_sent(backend, session_key):
    # issue 9: a sandbox whose reconnect answered 404 was marked deleted without a kill
    runtime, target, session, selection = await provisioned_once(backend, session_key)
    (first,) = backend.sandboxes
    live = backend._live

    def connect_404(sandbox_id):  # a paused sandbox / flaky proxy: connect says 404, it still runs
        if sandbox_id == first and backend.calls[-1] == ("connect", first):
            raise SandboxGone(f"sandbox {sandbox_id} not found", call="connect", status=404)
        return live(sandbox_id)

    backend._live = connect_404
    report = await provision(runtime, target, session, selection)

    assert target_result(report).status is Status.OK
    assert ("kill", first) in backend.calls
    assert not backend.sandboxes[first].alive  # killed, not left running unrecorded
    rows = runtime.ledger.resources(session_key, provider="e2b")
    assert rows[0].remote_id == first and rows[0].state == "deleted" and "killed" in rows[0].error


async def test_a_reconnect_404_whose_kill_fails_keeps_the_row(backend, session_key):
    runtime, target, session, selection = await provisioned_once(backend, session_key)
    (first,) = backend.sandboxes
    backend.sandboxes[first].alive = False

    async def kill_fails(sandbox_id):
        backend.calls.append(("kill", sandbox_id))
        raise ProviderError("E2B failed: boom", call=f"DELETE /sandboxes/{sandbox_id}", status=500)

    backend.kill = kill_fails
    report = await provision(runtime, target, session, selection)

    assert target_result(report).status is Status.FAILED
    (row,) = runtime.ledger.resources(session_key, provider="e2b", live_only=True)
    assert row.remote_id == first and row.state == "created"  # teardown and orphans still know it
