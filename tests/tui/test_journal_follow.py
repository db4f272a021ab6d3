"""A dashboard follows the journal: runs of *other processes* (the CLI, a plain Python script
calling the library) appear and animate in it, each event on screen within the bound, through
the same message and handler as the app's own workers' events."""

from __future__ import annotations

import statistics
import subprocess

import pytest
from crashkit import PYTHON, cli_command, cli_env
from ledgerkit import open_test_ledger
from waiting import wait_until

from fakeupstream import FakeUpstream
from mk0r_tui.core.models import Status
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.providers import DEFAULT_REGISTRY
from mk0r_tui.tui.app import Mk0rApp
from mk0r_tui.tui.widgets.provider_panel import ProviderPanel
from mk0r_tui.tui.widgets.session_list import SessionList

SIZE = (160, 48)
#: the issue's bound is 500 ms on SQLite; CI asserts a generous one (a loaded 2-core machine) and prints the real figures
BOUND_S = 2.0
FAKE_CONFIG = {"latency_ms": {"neon": 300, "resend": 60, "github": 120, "posthog": 30}, "neon_operation_ms": 0}
CLOUD = ("neon", "resend", "github", "posthog")


def figures(app: Mk0rApp) -> str:
    latencies = sorted(app.journal_latencies)
    p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
    return f"{len(latencies)} events: p50 {statistics.median(latencies) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"


@pytest.fixture
def fake():
    with FakeUpstream(config=FAKE_CONFIG) as upstream:
        yield upstream


async def watch_cli_run(app: Mk0rApp, pilot, env: dict[str, str], key: str, command: list[str] | None = None) -> None:
    """`provision` in another process: the session appears while it runs, then every panel is ok."""
    seen_states: list[str] = []
    proc = subprocess.Popen(command or cli_command("provision", "--session", key, "--json"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        def appeared() -> bool:
            state = app.sessions.get(key)
            if state is not None:
                seen_states.append(state.state)
            return key in app.query_one(SessionList).shown_keys

        await wait_until(appeared, pilot=pilot, timeout=30, what="the CLI's session listed")
        await wait_until(lambda: app.sessions[key].state == "ready", pilot=pilot, timeout=30, what="ready")
        await wait_until(lambda: proc.poll() is not None, pilot=pilot, what="the provision process ended")
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "provisioning" in seen_states  # it was seen under way, not only once done
    panels = {p.provider: p.status for p in app.sessions[key].panels}
    assert {name: panels.get(name) for name in CLOUD} == dict.fromkeys(CLOUD, Status.OK)
    assert panels.get("local-folder") is Status.OK


async def test_a_dashboard_sees_another_process_provision_and_tear_down_within_the_bound(mk0r_home, fake):
    env = cli_env(fake, mk0r_home)
    runtime = Runtime(registry=DEFAULT_REGISTRY)  # the same data dir as the CLI's (MK0R_HOME)
    app = Mk0rApp(runtime)
    key = "from-cli-0001"
    try:
        async with app.run_test(size=SIZE) as pilot:
            await watch_cli_run(app, pilot, env, key)
            app.dashboard.query_one(SessionList).show(app.sessions.values(), keep=key)
            await wait_until(lambda: app.dashboard.selected_key == key, pilot=pilot, what="selected")
            await wait_until(
                lambda: {p.panel.provider: p.panel.status for p in app.dashboard.query(ProviderPanel) if p.panel}.get("neon") is Status.OK,
                pilot=pilot, what="the neon panel on screen is ok",
            )
            provisioned = len(app.journal_latencies)
            assert provisioned >= 10
            print("\nprovision by another process:", figures(app))

            # Popen, never run(): blocking here would block the dashboard's own loop
            teardown = subprocess.Popen(cli_command("teardown", "--yes", key), env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            await wait_until(lambda: app.sessions[key].state == "deleted", pilot=pilot, timeout=30, what="deleted")
            await wait_until(lambda: teardown.poll() is not None, pilot=pilot, what="the teardown process ended")
            assert teardown.returncode == 0, teardown.stderr.read() if teardown.stderr else ""
            gone = {p.provider: p.status for p in app.sessions[key].panels}
            assert all(gone[name] is Status.GONE for name in ("neon", "resend", "github")), gone
            print("with the teardown by another process:", figures(app))
            assert max(app.journal_latencies) < BOUND_S, figures(app)
            # nothing from this app's own runtime came back through the journal (none ran here)
            assert len(app.journal_latencies) > provisioned
    finally:
        runtime.close()


async def test_a_dashboard_opened_mid_run_shows_where_the_run_is_and_continues(mk0r_home, fake):
    env = cli_env(fake, mk0r_home)
    key = "mid-run-00001"
    fake.control(latency_ms={"github": 2500})
    proc = subprocess.Popen(cli_command("provision", "--session", key), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:

        def neon_done() -> bool:
            with open_test_ledger(mk0r_home) as ledger:
                return any(r.kind == "ProviderSucceeded" and r.provider == "neon" for r in ledger.journal(0, session=key))

        from waiting import wait_until_sync

        wait_until_sync(neon_done, timeout=30, what="neon done in the other process")
        runtime = Runtime(registry=DEFAULT_REGISTRY)
        app = Mk0rApp(runtime)
        try:
            # at once, before any follow: the replayed run (neon ok, github still running)
            state = app.sessions[key]
            panels = {p.provider: p.status for p in state.panels}
            assert state.state == "provisioning"
            assert panels["neon"] is Status.OK and panels["github"] is Status.RUNNING, panels
            async with app.run_test(size=SIZE) as pilot:
                await wait_until(lambda: app.sessions[key].state == "ready", pilot=pilot, timeout=30, what="ready")
                assert app.sessions[key].panel("github").status is Status.OK
        finally:
            runtime.close()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()



async def test_a_dashboard_follows_the_library_called_from_a_plain_python_script(mk0r_home, fake, tmp_path):
    script = tmp_path / "backend.py"
    script.write_text("import sys\nfrom mk0r_tui import provision\nassert provision(sys.argv[1])['ok']\n")
    env = cli_env(fake, mk0r_home)
    runtime = Runtime(registry=DEFAULT_REGISTRY)
    app = Mk0rApp(runtime)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await watch_cli_run(app, pilot, env, "from-lib-0001", [PYTHON, str(script), "from-lib-0001"])
            print("\nprovision by the library in another process:", figures(app))
            assert max(app.journal_latencies) < BOUND_S, figures(app)
    finally:
        runtime.close()


async def test_the_dashboards_own_run_is_not_applied_twice(make_app, fakes):
    """Its workers' events reach the panels directly; its own journal rows are skipped by origin."""
    from mk0r_tui.core.models import Session

    app = make_app(fakes)
    async with app.run_test(size=SIZE) as pilot:
        worker = app.start_provision(Session.parse("own-run-00001"))
        await worker.wait()
        written = app.runtime.ledger.journal_max_id()
        assert written > 0
        await wait_until(lambda: app.journal_cursor >= written, pilot=pilot, what="the follower read past the run")
        await pilot.pause()
        assert list(app.journal_latencies) == []
        ok_lines = [line for line in app.logs["own-run-00001"] if "ok in" in line.text]
        assert len(ok_lines) == len({line.text.split(":")[0].split()[-1] for line in ok_lines})  # one per provider


async def test_another_process_retrying_animates_on_screen(mk0r_home, fake):
    """A 429 in another process's run: the on-screen panel shows `retrying 2/N` and its spinner
    and time move (the ticker runs for any running panel, not only this app's own work)."""
    fake.add_fault(provider="neon", method="POST", path_prefix="/projects", status=429, headers={"Retry-After": "1"})
    env = cli_env(fake, mk0r_home)
    key = "retried-00001"
    runtime = Runtime(registry=DEFAULT_REGISTRY)
    app = Mk0rApp(runtime)
    try:
        async with app.run_test(size=SIZE) as pilot:
            proc = subprocess.Popen(cli_command("provision", "--session", key), env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            try:
                await wait_until(lambda: key in app.query_one(SessionList).shown_keys, pilot=pilot, what="listed")
                app.dashboard.query_one(SessionList).show(app.sessions.values(), keep=key)

                def neon_status() -> str:
                    for widget in app.dashboard.query(ProviderPanel):
                        if widget.panel is not None and widget.panel.provider == "neon":
                            # a panel mounted a moment ago may not have composed its lines yet
                            return "".join(str(status.render()) for status in widget.query(".panel-status"))
                    return ""

                await wait_until(lambda: "retrying 2/" in neon_status(), pilot=pilot, what="retrying on screen")
                first = neon_status()
                await wait_until(lambda: neon_status() != first and "retrying" in neon_status(), pilot=pilot,
                                 what="the retrying panel's spinner and time move")
                await wait_until(lambda: app.sessions[key].state == "ready", pilot=pilot, timeout=30, what="ready")
                assert "ok" in neon_status()
                await wait_until(lambda: proc.poll() is not None, pilot=pilot, what="the provision process ended")
            finally:
                if proc.poll() is None:
                    proc.kill()
    finally:
        runtime.close()


async def test_a_run_of_another_runtime_in_this_process_is_followed_and_no_secret_reaches_it(make_app, fakes):
    """What a second dashboard (or a service hosting runtimes) starts has another origin: this
    dashboard shows it; the fake secrets of its env never reach the journal or the panels."""
    from tui_fakes import FAKE_SECRETS, fake_set, registry_for

    from mk0r_tui.core.models import Session
    from mk0r_tui.engine.orchestrator import provision_services

    app = make_app(fakes)
    other = Runtime(registry=registry_for(fake_set()))
    try:
        async with app.run_test(size=SIZE) as pilot:
            session = Session.parse("other-rt-0001")
            await provision_services(other, session, other.plan(None))
            await wait_until(lambda: app.sessions.get(session.key) is not None and app.sessions[session.key].state == "ready",
                             pilot=pilot, what="the other runtime's session ready here")
            assert {p.provider: p.status for p in app.sessions[session.key].panels}["fake-db"] is Status.OK
            assert app.journal_latencies
            shown = "\n".join(line.text for line in app.logs[session.key])
            stored = "\n".join(app.runtime.ledger.iter_all_text())
            assert not any(secret in shown or secret in stored for secret in FAKE_SECRETS)
    finally:
        other.close()
