"""Issue 16, the CLI half: exit codes, preconditions before anything is created, reuse that checks
what it reuses, the keyring note, the log file, and the CLI's conveniences (--jq, -V, completion,
several sessions at once, prune). Real subprocesses, the embedded Postgres, real git."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from crashkit import cli_command, cli_env
from ledgerkit import POSTGRES_PASS, open_test_ledger
from waiting import wait_until_sync

from fakeupstream import FakeUpstream


def mk0r(*args, env=None, input=None, timeout=90):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "mk0r_tui", *args], capture_output=True, text=True, env=full_env,
                          input=input, timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)


def assert_clean_failure(result, code, fragment):
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert fragment in result.stderr, result.stderr


def sigint_default() -> None:
    # a test run started in the background (`cmd &`) has SIGINT ignored, and children inherit that
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class StreamReader:
    """Reads a child's stream as it comes (a prompt has no newline) without blocking the test."""

    def __init__(self, stream) -> None:
        import threading

        self.chunks: list[bytes] = []
        self._fd = stream.fileno()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while chunk := os.read(self._fd, 4096):
            self.chunks.append(chunk)

    def finished(self) -> bool:
        return not self._thread.is_alive()

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")


# -- exit codes: interrupted = 130 ----------------------------------------------------------------


@pytest.fixture
def slow_fake():
    with FakeUpstream(config={"latency_ms": {"neon": 2500, "resend": 30, "github": 30, "posthog": 10},
                              "neon_operation_ms": 0}) as upstream:
        yield upstream


def test_a_first_ctrl_c_during_provision_lets_creates_finish_and_exits_130(slow_fake, mk0r_home):
    env = cli_env(slow_fake, mk0r_home)
    proc = subprocess.Popen(cli_command("provision", "--session", "interrupt-0001"), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    err = StreamReader(proc.stderr)
    try:
        wait_until_sync(lambda: "neon" in err.text and "posthog: ok" in err.text, timeout=60, what="the run under way")
        proc.send_signal(signal.SIGINT)
        out = proc.stdout.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_until_sync(err.finished, what="stderr read to its end")
    assert proc.returncode == 130, err.text
    assert "interrupt: letting in-flight creates finish" in err.text and "Traceback" not in err.text
    # the in-flight create finished and was recorded: nothing is lost

    with open_test_ledger(mk0r_home) as ledger:
        neon = ledger.resources("interrupt-0001", provider="neon")
    assert [r.state for r in neon] == ["created"]
    assert "session  interrupt-0001" in out


def test_ctrl_c_at_the_teardown_prompt_exits_130_without_aborted(session_key, mk0r_home):
    assert mk0r("provision", "--session", session_key, "--json").returncode == 0
    master, slave = pty.openpty()
    proc = subprocess.Popen(cli_command("teardown", session_key), stdin=slave, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default, env=os.environ.copy())
    os.close(slave)
    err = StreamReader(proc.stderr)
    try:
        wait_until_sync(lambda: "Type the slug" in err.text, timeout=60, what="the confirmation prompt")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    wait_until_sync(err.finished, what="stderr read to its end")
    assert proc.returncode == 130, err.text
    assert "Aborted!" not in err.text and "Traceback" not in err.text
    assert "interrupted" in err.text
    listed = json.loads(mk0r("sessions", "--json").stdout)
    assert listed[0]["state"] == "ready"  # nothing was deleted


# -- preconditions before anything is created -------------------------------------------------


def nothing_created(home: Path, key: str) -> None:

    if (home / "ledger.sqlite3").exists() or POSTGRES_PASS:
        with open_test_ledger(home) as ledger:
            assert ledger.resources(key) == []
    assert not (home / "apps" / key[:12]).exists()
    assert not list((home / "repos").glob(f"*{key[:12]}*")) if (home / "repos").exists() else True


@pytest.mark.parametrize("how", [("--target", "e2b"), ()])
def test_e2b_target_without_its_key_exits_2_creating_nothing(how, session_key, mk0r_home):
    env = {} if how else {"MK0R_TARGET": "e2b"}
    result = mk0r("provision", "--session", session_key, *how, "--json", env=env)
    assert_clean_failure(result, 2, "needs E2B_API_KEY")
    assert "nothing was created" in result.stderr and result.stdout == ""
    nothing_created(mk0r_home, session_key)


def test_cloud_profile_with_no_keys_is_a_configuration_error(session_key, mk0r_home):
    result = mk0r("provision", "--session", session_key, env={"MK0R_PROFILE": "cloud"})
    assert_clean_failure(result, 2, "MK0R_PROFILE=cloud but no provisioning key is set")
    nothing_created(mk0r_home, session_key)


def test_a_bad_local_postgres_url_exits_2_creating_nothing(session_key, mk0r_home):
    result = mk0r("provision", "--session", session_key, env={"MK0R_LOCAL_POSTGRES_URL": "mysql://nope"})
    assert_clean_failure(result, 2, "MK0R_LOCAL_POSTGRES_URL must look like")
    nothing_created(mk0r_home, session_key)


async def test_a_sandbox_intent_that_sent_nothing_is_closed_so_teardown_finishes(session_key, mk0r_home, runtime):
    """Without the plan-time check (a caller of the engine), the e2b target without a key fails
    before any request: its intent is closed, so teardown and orphans never fail on it forever."""
    from mk0r_tui.core.models import Session
    from mk0r_tui.engine.orchestrator import provision_services

    plan = runtime.plan("e2b")
    report = await provision_services(runtime, Session.parse(session_key), plan)
    assert {r.name: r.status.value for r in report.results}["e2b"] == "failed"
    assert [r.state for r in runtime.ledger.resources(session_key, provider="e2b")] == ["deleted"]
    await runtime.aclose()
    assert (mk0r_home / "apps" / session_key[:12]).exists()

    down = mk0r("teardown", session_key, "--yes", "--json")
    assert down.returncode == 0, down.stdout + down.stderr
    assert json.loads(down.stdout)["ok"] is True
    assert not (mk0r_home / "apps" / session_key[:12]).exists()
    orphans = mk0r("orphans", "--json")
    assert orphans.returncode == 0, orphans.stderr
    assert [o for o in json.loads(orphans.stdout) if session_key[:12] in o["name"]] == []


# -- reuse checks what it reuses; local-postgres start; doctor checks the local profile -----------


@pytest.fixture
def own_postgres(tmp_path):
    """An embedded server of this test's own (it is stopped and started here: the shared one
    serves other tests)."""
    from mk0r_tui.providers.embedded_pg import EmbeddedPostgres

    path = tmp_path / "own-pg"
    yield {"MK0R_POSTGRES_DIR": str(path)}
    EmbeddedPostgres(path).stop()


def answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def test_provision_after_local_postgres_stop_starts_the_server_and_checks_the_database(session_key, own_postgres):
    env = own_postgres
    first = mk0r("provision", "--session", session_key, "--json", "--reveal", env=env)
    assert first.returncode == 0, first.stderr
    url = json.loads(first.stdout)["env"]["DATABASE_URL"]
    assert answers(url)

    assert mk0r("local-postgres", "stop", env=env).stdout.strip() == "stopped"
    assert not answers(url)
    again = mk0r("provision", "--session", session_key, "--json", "--reveal", env=env)
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert answers(data["env"]["DATABASE_URL"]), "reused while the database refuses connections"
    assert mk0r("local-postgres", "status", env=env).stdout.startswith("running on 127.0.0.1:")

    # a database dropped behind our back is not reused: it is made again
    import psycopg

    from mk0r_tui.providers.embedded_pg import EmbeddedPostgres

    admin = EmbeddedPostgres(Path(env["MK0R_POSTGRES_DIR"])).ensure_running()
    ident = "mk0r_" + session_key[:12].replace("-", "_")
    with psycopg.connect(admin.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{ident}" WITH (FORCE)')
    third = mk0r("provision", "--session", session_key, "--json", "--reveal", env=env)
    assert third.returncode == 0, third.stderr
    pg = next(p for p in json.loads(third.stdout)["providers"] if p["name"] == "local-postgres")
    assert pg.get("note") != "already provisioned (reused)"
    assert answers(json.loads(third.stdout)["env"]["DATABASE_URL"])


def test_local_postgres_start(own_postgres):
    env = own_postgres
    started = mk0r("local-postgres", "start", env=env)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("started on 127.0.0.1:")
    assert mk0r("local-postgres", "start", env=env).stdout.startswith("already running on 127.0.0.1:")
    assert mk0r("local-postgres", "stop", env=env).stdout.strip() == "stopped"
    assert mk0r("local-postgres", "status", env=env).stdout.strip() == "not running"


def test_doctor_checks_the_local_profile_and_fails_when_it_is_broken(tmp_path, mk0r_home):
    healthy = mk0r("doctor", "--json")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    parts = {c["part"]: c["status"] for c in json.loads(healthy.stdout)["local"]}
    assert parts == {"data-dir": "ok", "git": "ok", "postgres": "ok"}

    empty = tmp_path / "bin"
    empty.mkdir()
    no_git = mk0r("doctor", env={"PATH": str(empty)})
    assert no_git.returncode == 1 and "Traceback" not in no_git.stderr
    assert "failing   git" in no_git.stdout and "git is not installed" in no_git.stdout

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    broken_pg = mk0r("doctor", "--json", env={"MK0R_POSTGRES_DIR": str(blocker)})
    assert broken_pg.returncode == 1, broken_pg.stderr
    assert {c["part"]: c["status"] for c in json.loads(broken_pg.stdout)["local"]}["postgres"] == "failing"



def test_doctor_asks_the_server_through_psql_and_names_a_refused_password(mk0r_home, pg_admin):
    """The check runs what provisioning runs (`psql`): an operator's server URL with the wrong
    password fails with the server's own reason, and the password is not shown."""
    url = f"postgresql://postgres:not-the-right-one@{pg_admin.host}:{pg_admin.port}/postgres"
    result = mk0r("doctor", "--json", env={"MK0R_LOCAL_POSTGRES_URL": url})
    assert result.returncode == 1, result.stderr
    check = next(c for c in json.loads(result.stdout)["local"] if c["part"] == "postgres")
    assert check["status"] == "failing"
    assert f"cannot connect to Postgres at {pg_admin.host}:{pg_admin.port}" in check["detail"]
    assert "password authentication failed" in check["detail"] and "not-the-right-one" not in result.stdout
    good = f"postgresql://postgres:{pg_admin.password}@{pg_admin.host}:{pg_admin.port}/postgres"
    ok = mk0r("doctor", "--json", env={"MK0R_LOCAL_POSTGRES_URL": good})
    assert {c["part"]: c["status"] for c in json.loads(ok.stdout)["local"]}["postgres"] == "ok"

# -- the keyring: checked before a prompt, its note said once ---------------------------------------


def test_keys_set_without_a_keyring_says_so_before_prompting(mk0r_home):
    result = mk0r("keys", "set", "NEON_PROVISIONING_KEY", input="napi_typed_but_never_stored_0001\n")
    assert_clean_failure(result, 2, "no OS keyring is available")
    assert "GetPassWarning" not in result.stderr and "may be echoed" not in result.stderr
    assert "NEON_PROVISIONING_KEY:" not in result.stderr  # no prompt was shown


def test_the_keyring_note_is_said_once_per_data_dir(mk0r_home):
    first = mk0r("orphans", "--provider", "local-git", "--json")
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("no OS keyring is available") == 1
    second = mk0r("orphans", "--provider", "local-git", "--json")
    assert second.returncode == 0 and "keyring" not in second.stderr
    # where the keyring's state is the point, it is always shown
    assert "no OS keyring is available" in mk0r("keys", "list").stderr


def test_the_keyring_note_is_never_said_with_mk0r_no_keyring(mk0r_home):
    for _ in range(2):
        result = mk0r("orphans", "--provider", "local-git", "--json", env={"MK0R_NO_KEYRING": "1"})
        assert result.returncode == 0 and "keyring" not in result.stderr, result.stderr
    assert "keyring" not in mk0r("keys", "list", env={"MK0R_NO_KEYRING": "1"}).stderr


# -- the log file ----------------------------------------------------------------------------------


@pytest.fixture
def fake():
    with FakeUpstream(config={"latency_ms": {"neon": 5, "resend": 5, "github": 5, "posthog": 5}, "neon_operation_ms": 0}) as upstream:
        yield upstream


def test_a_failing_provision_is_in_the_log_with_no_secret(fake, mk0r_home):
    from crashkit import KEYS

    from mk0r_tui.core.envfile import secret_values

    bad_neon = "bad_neon_key_that_must_never_be_logged_0001"
    env = cli_env(fake, mk0r_home, keys={**KEYS, "NEON_PROVISIONING_KEY": bad_neon})
    result = subprocess.run(cli_command("provision", "--session", "logged-failure-01", "--json"), env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=90)
    assert result.returncode == 1, result.stderr
    revealed = subprocess.run(cli_command("env", "logged-failure-01", "--reveal", "--json"), env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    secrets = [*secret_values(json.loads(revealed.stdout)["env"]), bad_neon, *KEYS.values()]

    log = mk0r_home / "mk0r-tui.log"
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    text = log.read_text()
    error_lines = [line for line in text.splitlines() if " ERROR " in line]
    assert any("neon" in line and "logged-failu" in line for line in error_lines), text
    assert any(" INFO " in line and "github: ok" in line for line in text.splitlines()), text
    assert " DEBUG " not in text  # progress lines only with --verbose
    leaked = [s for s in secrets if s and s in text]
    assert not leaked, "secrets in the log"

    verbose = subprocess.run(cli_command("--verbose", "provision", "--session", "logged-failure-01", "--json"), env=env,
                             capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=90)
    assert verbose.returncode == 1
    assert " DEBUG " in log.read_text()
    assert not [s for s in secrets if s and s in log.read_text() + verbose.stderr]


def test_a_usage_error_is_in_the_log(mk0r_home):
    assert mk0r("sessions").returncode == 0  # the data dir and its log exist
    assert_clean_failure(mk0r("env", "no-such-session-1"), 2, "no session")
    assert "ERROR mk0r_tui.cli env failed (exit 2)" in (mk0r_home / "mk0r-tui.log").read_text()


def test_every_name_of_a_session_follows_one_case_rule(mk0r_home):
    key = "MiXeDCaSe-0001-KEY"
    result = mk0r("provision", "--session", key, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["slug"] == "mixedcase-00"
    assert data["env"]["VITE_POSTHOG_APP_ID"] == "mk0r-mixedcase-00"  # it kept the key's upper case
    names = [r["name"] for p in data["providers"] for r in p["resources"]]
    assert names and all(name == name.lower() for name in names)
    assert mk0r("teardown", key, "--yes").returncode == 0


# -- the CLI's conveniences ---------------------------------------------------------------------


def provision_local(key: str) -> dict:
    result = mk0r("provision", "--session", key, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_sessions_has_a_header_an_age_and_a_target_column(session_key, mk0r_home):
    provision_local(session_key)
    lines = mk0r("sessions").stdout.splitlines()
    assert lines[0].split() == ["SLUG", "STATE", "TARGET", "AGE", "PROVIDERS"]
    cells = lines[1].split()
    assert cells[:3] == [session_key[:12], "ready", "local-folder"]
    assert cells[3][-1] in "smhdw" and cells[3][:-1].isdigit()


def test_jq_filters_every_json_command(session_key, mk0r_home):
    provision_local(session_key)
    assert mk0r("sessions", "--json", "--jq", ".[0].slug").stdout == f"{session_key[:12]}\n"  # a string prints raw
    assert mk0r("sessions", "--json", "--jq", ".[0].providers | length").stdout == "5\n"
    env = mk0r("env", session_key, "--json", "--jq", ".env.PGPASSWORD")
    assert env.stdout == "••••\n"
    kinds = mk0r("events", "--json", "--jq", ".kind").stdout.splitlines()  # NDJSON: per object
    assert kinds[0] == "RunStarted" and "SessionProvisioned" in kinds
    assert_clean_failure(mk0r("sessions", "--jq", ".[0]"), 2, "--jq filters JSON: add --json")
    assert_clean_failure(mk0r("sessions", "--json", "--jq", ".["), 2, "bad --jq expression")
    # every command with --json takes --jq
    from mk0r_tui.cli import cli

    def walk(group):
        for command in group.commands.values():
            yield command
            if hasattr(command, "commands"):
                yield from walk(command)

    with_json = [c for c in walk(cli) if any(p.name == "as_json" for p in c.params)]
    assert len(with_json) >= 8
    assert all(any(p.name == "jq" for p in c.params) for c in with_json)


def test_version_flags():
    for flag in ("-V", "--version"):
        result = mk0r(flag)
        assert result.returncode == 0 and result.stdout.startswith("mk0r-tui, version ")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell):
    result = mk0r("completion", shell)
    assert result.returncode == 0, result.stderr
    assert "_MK0R_TUI_COMPLETE" in result.stdout


def test_completion_offers_the_ledgers_session_keys_and_slugs(session_key, mk0r_home):
    provision_local(session_key)
    env = {"_MK0R_TUI_COMPLETE": "bash_complete", "COMP_WORDS": f"mk0r-tui teardown {session_key[:4]}", "COMP_CWORD": "2"}
    offered = mk0r(env=env).stdout.splitlines()
    assert f"plain,{session_key[:12]}" in offered and f"plain,{session_key}" in offered
    env["COMP_WORDS"] = "mk0r-tui env zzzz"
    assert mk0r(env=env).stdout.strip() == ""


def test_teardown_of_several_sessions_at_once(mk0r_home):
    keys = ["several-0001-a", "several-0002-b"]
    for key in keys:
        provision_local(key)
    assert_clean_failure(mk0r("teardown", *keys, "no-such-session", "--yes"), 2, "no session 'no-such-session'")
    assert {s["state"] for s in json.loads(mk0r("sessions", "--json").stdout)} == {"ready"}  # checked first: nothing deleted
    down = mk0r("teardown", *keys, "--yes", "--json")
    assert down.returncode == 0, down.stderr
    reports = json.loads(down.stdout)
    assert [r["session"] for r in reports] == keys and all(r["ok"] for r in reports)
    assert {s["state"] for s in json.loads(mk0r("sessions", "--json").stdout)} == {"deleted"}
    assert not any((mk0r_home / "apps" / key[:12]).exists() for key in keys)


def test_prune_forgets_deleted_sessions(mk0r_home):
    provision_local("pruned-0001-aa")
    provision_local("kept-0002-bbbb")
    assert mk0r("teardown", "pruned-0001-aa", "--yes").returncode == 0
    kept_by_age = mk0r("prune", "--older-than", "2w")
    assert kept_by_age.returncode == 0 and "0 deleted session(s)" in kept_by_age.stderr
    assert len(json.loads(mk0r("sessions", "--json").stdout)) == 2
    pruned = mk0r("sessions", "--prune", "--json")
    assert pruned.returncode == 0 and "pruned 1 deleted session(s)" in pruned.stderr
    assert [s["session"] for s in json.loads(pruned.stdout)] == ["kept-0002-bbbb"]
    assert "pruned-000" not in mk0r("events").stdout  # its journal went with it
    provision_local("pruned-0003-cc")
    assert mk0r("teardown", "pruned-0003-cc", "--yes").returncode == 0
    assert "1 deleted session(s)" in mk0r("prune", "--older-than", "0").stderr
    assert mk0r("teardown", "kept-0002-bbbb", "--yes").returncode == 0


def test_older_than_accepts_weeks_and_orphans_yes_needs_delete(mk0r_home):
    weeks = mk0r("orphans", "--provider", "local-git", "--older-than", "2w", "--json")
    assert weeks.returncode == 0, weeks.stderr
    assert_clean_failure(mk0r("orphans", "--yes"), 2, "--yes confirms a delete")


def test_no_short_help_is_cut_mid_sentence():
    from mk0r_tui.cli import cli

    def groups(group, path):
        yield path
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from groups(command, [*path, name])

    for path in groups(cli, []):
        listing = mk0r(*path, "--help", env={"COLUMNS": "80"}).stdout.split("Commands:", 1)[1]
        entries = []
        for line in listing.splitlines():
            if line.startswith("  ") and not line.startswith("   "):
                entries.append(line.split(None, 1)[1])
            elif line.strip():
                entries[-1] += " " + line.strip()
        assert entries, path
        for text in entries:
            assert not text.endswith("..."), (path, text)
            assert text.count("(") == text.count(")"), (path, text)
            assert text.endswith((".", ")")), (path, text)


# -- the README's JSON example is a real run's shape ----------------------------------------------


def readme_provision_example() -> dict:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    after = readme.split("`provision --json`", 1)[1]
    block = after.split("```json\n", 1)[1].split("```", 1)[0]
    return json.loads(block)


def test_the_readme_json_example_has_a_real_runs_keys(session_key, mk0r_home):
    example = readme_provision_example()
    real = provision_local(session_key)
    assert list(example) == list(real)
    assert [p["name"] for p in example["providers"]] == [p["name"] for p in real["providers"]]
    for shown, got in zip(example["providers"], real["providers"], strict=True):
        assert list(shown) == list(got), got["name"]
        assert [(r["kind"], list(r)) for r in shown["resources"]] == [(r["kind"], list(r)) for r in got["resources"]]
    assert list(example["env"]) == list(real["env"])
    # the masks in the example are the ones a real run shows
    for name, value in example["env"].items():
        if "••••" in value or "••••" in real["env"][name]:
            assert ("••••" in value) and ("••••" in real["env"][name]), name
    assert mk0r("teardown", session_key, "--yes").returncode == 0


def test_keys_set_without_a_terminal_reads_stdin_with_no_getpass_warning(mk0r_home):
    # a keyring that works (and stores nothing): the null backend
    result = mk0r("keys", "set", "NEON_PROVISIONING_KEY", input="napi_from_a_pipe_000000001\n",
                  env={"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"})
    assert result.returncode == 0, result.stderr
    assert "GetPassWarning" not in result.stderr and "may be echoed" not in result.stderr
    assert "stored NEON_PROVISIONING_KEY in the OS keyring (napi_••••, 26 chars)" in result.stderr
    assert "napi_from_a_pipe" not in result.stdout + result.stderr


def test_teardown_of_several_sessions_finishes_the_others_when_one_is_busy(mk0r_home):

    keys = ["busy-0001-aaaa", "free-0002-bbbb"]
    for key in keys:
        provision_local(key)
    with open_test_ledger(mk0r_home) as ledger:  # this test process holds the first one's lease
        assert ledger.acquire_lease("mk0r-busy-0001-aa", keys[0], "provision", "held-by-the-test", stale_s=600) is None
        env = {"MK0R_LEASE_WAIT_S": "0", "MK0R_LEASE_STALE_S": "600"}
        down = mk0r("teardown", *keys, "--yes", "--json", env=env)
        assert down.returncode == 2, down.stderr
        assert [r["session"] for r in json.loads(down.stdout)] == [keys[1]]
        assert f"error: session {keys[0]}:" in down.stderr and "Traceback" not in down.stderr
        states = {s["session"]: s["state"] for s in json.loads(mk0r("sessions", "--json").stdout)}
        assert states == {keys[0]: "ready", keys[1]: "deleted"}
        ledger.release_lease("mk0r-busy-0001-aa", "held-by-the-test")
    assert mk0r("teardown", keys[0], "--yes").returncode == 0
