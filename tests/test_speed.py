"""Issue 17, start-up and tail: ledger writes never block the event loop (and the intent is still
committed before the create is sent), one TLS context for every provider's client, and no heavy
module on CLI paths that do not need it (each checked in a fresh interpreter)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cloudmock import GITHUB, github_repo, github_user
from fakes import FakeProvider, plan_of, registry_of

from mk0r_tui.core import tls
from mk0r_tui.core.config import load_settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.events import Collector
from mk0r_tui.core.ledger import Ledger
from mk0r_tui.core.models import Session, Slot
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.providers import DEFAULT_REGISTRY

ROOT = Path(__file__).resolve().parents[1]

#: what every ledger write costs in these tests: far above any loop lag a healthy run shows
SLOW_WRITE_S = 0.25
WRITES = ("ensure_session", "set_session_state", "intend", "mark_created", "mark_state", "record_run",
          "append_journal", "acquire_lease", "beat_lease", "release_lease")


class SlowLedger(Ledger):
    """The real SQLite ledger whose every write first waits `SLOW_WRITE_S` (a slow disk, a
    remote Postgres), and that notes which thread each write ran on."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.write_threads: list[str] = []

    def __getattribute__(self, name: str):
        attr = super().__getattribute__(name)
        if name in WRITES:
            def slow(*args, **kwargs):
                import threading

                self.write_threads.append(threading.current_thread().name)
                time.sleep(SLOW_WRITE_S)
                return attr(*args, **kwargs)

            return slow
        return attr


class LagProbe:
    """How late the event loop wakes a 5 ms sleeper: the longest a callback waited for the loop."""

    def __init__(self) -> None:
        self.worst_s = 0.0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            self.worst_s = max(self.worst_s, loop.time() - before - 0.005)

    def __enter__(self) -> LagProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc) -> None:
        assert self._task is not None
        self._task.cancel()


async def test_a_slow_ledger_never_stalls_the_event_loop(mk0r_home, session_key):
    """Every write of the run (session, lease, intents, creations, runs, journal) takes 250 ms;
    the loop still wakes a 5 ms timer within a fraction of that: the writes run on the writer
    thread. Before issue 17 each of them ran on the loop, so the worst lag was >= 250 ms."""
    fakes = [FakeProvider(f"p{i}", slot, delay=0.05) for i, slot in enumerate((Slot.DATABASE, Slot.EMAIL, Slot.REPO))]
    ledger = SlowLedger(mk0r_home / "ledger.sqlite3")
    runtime = Runtime(load_settings(), ledger=ledger, registry=registry_of(*fakes))
    try:
        with LagProbe() as probe:
            report = await provision_services(runtime, Session.parse(session_key), plan_of(fakes, "local-folder"),
                                              sink=Collector())
        assert report.ok, report.errors
        assert len(ledger.write_threads) >= 10, "the run wrote the ledger"
        assert all(name.startswith("mk0r-ledger-writer") for name in ledger.write_threads), set(ledger.write_threads)
        assert probe.worst_s < SLOW_WRITE_S / 2, f"the loop stalled {probe.worst_s * 1000:.0f} ms"
        # and what was written is all there when the run returns
        rows = {r.provider: r.state for r in runtime.ledger.resources(session_key)}
        assert rows == {"p0": "created", "p1": "created", "p2": "created", "local-folder": "created"}
        assert {run.provider for run in runtime.ledger.latest_runs(session_key).values()} >= {"p0", "p1", "p2", "local-folder"}
        kinds = [row.kind for row in runtime.ledger.journal(session=session_key)]
        assert kinds[0] == "RunStarted" and kinds[-1] == "SessionProvisioned"
    finally:
        await runtime.aclose()
        runtime.close()


async def test_the_intent_is_committed_before_the_create_is_sent_even_off_the_loop(mk0r_home, session_key, respx_spec):
    """The real GitHub provider, a slow ledger: when `POST /user/repos` reaches the network, a
    separate connection to the ledger file already reads the `pending` row naming the repo."""
    session = Session.parse(session_key)
    name = session.resource_name
    seen_at_send: list[tuple[str, str] | None] = []

    def create(request: httpx.Request) -> httpx.Response:
        with sqlite3.connect(mk0r_home / "ledger.sqlite3") as other:
            seen_at_send.append(other.execute(
                "SELECT name, state FROM resources WHERE provider = 'github' AND kind = 'repo'").fetchone())
        return httpx.Response(201, json=github_repo("octo", name))

    respx_spec.get(f"{GITHUB}/user").mock(return_value=httpx.Response(200, json=github_user("octo")))
    respx_spec.post(f"{GITHUB}/user/repos").mock(side_effect=create)
    credentials = Credentials({"GITHUB_PROVISIONING_TOKEN": "ghp_speed_test_token_0001"}, use_keyring=False)
    runtime = Runtime(load_settings(profile="cloud"), credentials, SlowLedger(mk0r_home / "ledger.sqlite3"),
                      registry=DEFAULT_REGISTRY)
    github = runtime.provider("github")
    try:
        with LagProbe() as probe:
            report = await provision_services(runtime, session, plan_of([github], "local-folder"), sink=Collector())
        assert report.ok, report.errors
        assert seen_at_send == [(name, "pending")]
        assert [r.state for r in runtime.ledger.resources(session.key, provider="github")] == ["created"]
        assert probe.worst_s < SLOW_WRITE_S / 2, f"the loop stalled {probe.worst_s * 1000:.0f} ms"
    finally:
        await runtime.aclose()
        runtime.close()


async def test_a_failed_run_record_still_fails_the_run_after_the_writes_drain(mk0r_home, session_key):
    """A write handed over without waiting (a provider's run record) that fails is not lost:
    the run raises it at its end, as it did when the write was made on the loop."""
    from mk0r_tui.core.errors import ConfigError

    class FullDisk(Ledger):
        def record_run(self, *args, **kwargs):
            raise ConfigError("cannot write the ledger: database or disk is full")

    fake = FakeProvider("p0", Slot.DATABASE)
    runtime = Runtime(load_settings(), ledger=FullDisk(mk0r_home / "ledger.sqlite3"), registry=registry_of(fake))
    try:
        with pytest.raises(ConfigError, match="disk is full"):
            await provision_services(runtime, Session.parse(session_key), plan_of([fake], "local-folder"))
        assert runtime.ledger.get_session(session_key).state == "interrupted"
    finally:
        await runtime.aclose()
        runtime.close()


async def test_every_provider_client_shares_one_tls_context_built_once(mk0r_home, monkeypatch):
    built: list[object] = []
    real_build = tls.build_ssl_context

    def counting():
        context = real_build()
        built.append(context)
        return context

    monkeypatch.setattr(tls, "build_ssl_context", counting)
    monkeypatch.setattr(tls, "_context", [])
    monkeypatch.setattr(tls, "_thread", None)
    keys = {"NEON_PROVISIONING_KEY": "k1", "RESEND_PROVISIONING_KEY": "k2", "GITHUB_PROVISIONING_TOKEN": "k3",
            "POSTHOG_PROJECT_KEY": "phc_k4"}
    runtime = Runtime(load_settings(profile="cloud"), Credentials(keys, use_keyring=False), registry=DEFAULT_REGISTRY)
    try:
        clients = [runtime.provider(name).api._http() for name in ("neon", "resend", "github", "posthog")]
        contexts = {id(client._transport._pool._ssl_context) for client in clients}
        assert len(built) == 1 and contexts == {id(built[0])}
        assert built[0].verify_mode.name == "CERT_REQUIRED" and built[0].check_hostname
    finally:
        await runtime.aclose()
        runtime.close()


# -- what each CLI path imports, in a fresh interpreter ---------------------------------------------

HEAVY = ("pydantic_settings", "keyring", "rich", "httpx._main", "pygments", "textual")

PROBE = """
import atexit, json, os, sys
def report():
    mods = sorted(m for m, mod in list(sys.modules.items()) if mod is not None and (m.split('.')[0] in {heavy} or m in {heavy} or m in ('asyncio', 'pydantic')))
    with open(os.environ['MODULES_OUT'], 'w') as out:
        json.dump(mods, out)
atexit.register(report)
sys.argv = ['mk0r-tui', *{argv!r}]
from mk0r_tui.cli import main
main()
"""


def modules_of(argv: list[str], env: dict[str, str], tmp_path: Path) -> tuple[set[str], subprocess.CompletedProcess]:
    out = tmp_path / f"modules-{len(list(tmp_path.glob('modules-*')))}.json"
    top = sorted({m.split('.')[0] for m in HEAVY})
    code = PROBE.format(heavy=repr(set(top)), argv=argv)
    done = subprocess.run([sys.executable, "-c", code], env={**env, "MODULES_OUT": str(out)}, capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    return set(json.loads(out.read_text())), done


def heavy_in(modules: set[str]) -> set[str]:
    return {m for m in modules if m in HEAVY or m.split(".")[0] in {"pydantic_settings", "keyring", "rich", "pygments", "textual"}}


def test_version_loads_nothing_heavy_not_even_asyncio(mk0r_home, tmp_path):
    modules, done = modules_of(["--version"], dict(os.environ), tmp_path)
    assert done.returncode == 0 and "version 0.1.0" in done.stdout, done.stderr
    assert heavy_in(modules) == set() and "asyncio" not in modules, sorted(modules)


def test_the_version_printed_is_the_package_version():
    from importlib.metadata import version

    import mk0r_tui

    assert mk0r_tui.__version__ == version("mk0r-tui")


def test_sessions_json_loads_no_settings_library_keyring_rich_or_http_client(mk0r_home, tmp_path):
    modules, done = modules_of(["sessions", "--json"], dict(os.environ), tmp_path)
    assert done.returncode == 0 and json.loads(done.stdout) == [], done.stderr
    assert heavy_in(modules) == set(), sorted(modules)
    assert "httpx" not in modules and "pydantic" not in modules  # settings are not a pydantic model


@pytest.mark.slow
def test_provision_with_keys_in_the_environment_loads_no_keyring_rich_or_httpx_cli(mk0r_home, tmp_path):
    from fakeupstream import FakeUpstream

    with FakeUpstream(use_subprocess=True) as fake:
        env = {**os.environ, "MK0R_PROFILE": "cloud", "MK0R_TARGET": "local", "MK0R_NEON_API_URL": fake.neon_url,
               "MK0R_RESEND_API_URL": fake.resend_url, "MK0R_GITHUB_API_URL": fake.github_url,
               "POSTHOG_HOST": fake.posthog_url, "MK0R_GITHUB_MUTATION_GAP_S": "0",
               "NEON_PROVISIONING_KEY": "napi_speed_test_key_0001", "RESEND_PROVISIONING_KEY": "re_speed_test_key_0001",
               "GITHUB_PROVISIONING_TOKEN": "ghp_speed_test_token_0001", "POSTHOG_PROJECT_KEY": "phc_speed_test_key_0001"}
        env.pop("MK0R_NO_KEYRING", None)  # the keys are in the environment: the keyring is never asked
        modules, done = modules_of(["provision", "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    assert heavy_in(modules) == set(), sorted(modules)


@pytest.mark.slow
def test_warm_local_provision_loads_no_http_client_or_pgserver(mk0r_home, tmp_path, pg_admin):
    """The local profile makes no HTTP request: a warm `provision` process must not pay for
    httpx or pgserver's import (the binaries are found without it), nor psycopg's (~150 ms of
    CPU): the role and database are made through `psql`, unless the ledger itself is on Postgres
    (team mode), whose driver psycopg is."""
    env = {**os.environ, "MK0R_PROFILE": "local", "MK0R_TARGET": "local"}
    warm_up = subprocess.run([sys.executable, "-m", "mk0r_tui", "provision", "--json"], env=env, capture_output=True,
                             text=True, timeout=120, cwd=ROOT)  # starts the mail catcher (the server runs: pg_admin)
    assert warm_up.returncode == 0, warm_up.stderr
    code = PROBE.format(heavy=repr({"httpx", "pgserver", "psycopg"}), argv=["provision", "--json"])
    out = tmp_path / "modules-local.json"
    done = subprocess.run([sys.executable, "-c", code], env={**env, "MODULES_OUT": str(out)}, capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and json.loads(done.stdout)["ok"] is True, done.stderr
    modules = set(json.loads(out.read_text()))
    assert "asyncio" in modules  # the probe sees what loads
    heavy = {"httpx", "pgserver"} | (set() if env.get("MK0R_LEDGER_URL") else {"psycopg"})
    assert {m for m in modules if m.split(".")[0] in heavy} == set(), sorted(modules)


def test_keyrings_own_no_keyring_switch_is_honoured_without_importing_keyring(tmp_path):
    """PYTHON_KEYRING_BACKEND naming keyring's fail backend says "no keyring": a key looked up
    in a fresh process is absent with the usual note, and keyring (~25 ms of imports) never loads.
    A program that chose a backend with `keyring.set_keyring` (keyring imported) is still asked."""
    code = (
        "import sys\n"
        "from mk0r_tui.core.credentials import Credentials\n"
        "c = Credentials({}, use_keyring=True)\n"
        "from mk0r_tui.core.config import load_settings\n"
        "from mk0r_tui.core.pool_crypto import PoolCipher\n"
        "source = PoolCipher(load_settings()).source\n"
        "print(c.get('POSTHOG_PROJECT_KEY').present, 'keyring' in sys.modules, source, c.keyring_problem)\n"
    )
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", "MK0R_HOME": str(tmp_path)}
    env.pop("MK0R_NO_KEYRING", None)
    env.pop("MK0R_POOL_KEY", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    # the key, and the warm pool's key (then kept in a 0600 file), asked without importing keyring
    assert done.stdout.split(maxsplit=3) == ["False", "False", "file", "no recommended backend was found\n"], done.stderr


def test_a_backend_set_by_the_program_wins_over_the_no_keyring_switch(memory_keyring, monkeypatch):
    from mk0r_tui.core.credentials import Credentials

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    memory_keyring.set_password("mk0r-tui", "POSTHOG_PROJECT_KEY", "phc_from_the_program")
    assert Credentials({}, use_keyring=True).get("POSTHOG_PROJECT_KEY").value == "phc_from_the_program"
