"""`mk0r-tui events`: the journal as lines or NDJSON, resumable with --since, streamed with
--follow while another process runs; `prune` keeps live sessions' rows; the library entry point
from a plain Python script writes the same journal and returns the `provision --json` dict."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time

import pytest
from crashkit import PYTHON, cli_command, cli_env, run_cli
from ledgerkit import open_test_ledger
from waiting import wait_until_sync

from fakeupstream import FakeUpstream
from mk0r_tui.core.envfile import secret_values
from mk0r_tui.core.events import EVENT_KINDS

FAKE_CONFIG = {"latency_ms": {"neon": 150, "resend": 40, "github": 80, "posthog": 20}, "neon_operation_ms": 0}
ENVELOPE = ("id", "at", "session", "slug", "provider", "kind")


@pytest.fixture
def fake():
    with FakeUpstream(config=FAKE_CONFIG) as upstream:
        yield upstream


def check_line(obj: dict) -> None:
    assert tuple(obj)[:6] == ENVELOPE
    assert obj["kind"] in EVENT_KINDS
    at = dt.datetime.fromisoformat(obj["at"])
    assert at.utcoffset() == dt.timedelta(0)


def test_events_follow_json_streams_another_process_run_in_order(mk0r_home, fake):
    env = cli_env(fake, mk0r_home)
    key = "followed-0001"
    run_cli(env, "sessions")  # the ledger exists before the follower opens it
    # Ctrl+C as a terminal sends it: a runner started in the background (`cmd &` in a script) has
    # SIGINT ignored, which a child would inherit and then never see the Ctrl+C this test sends
    follower = subprocess.Popen(cli_command("events", "--follow", "--json"), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        provision = run_cli(env, "provision", "--session", key, "--json")
        assert provision.returncode == 0, provision.stderr
        secrets = secret_values(json.loads(run_cli(env, "env", key, "--reveal", "--json").stdout)["env"])
        lines: list[str] = []

        def got_the_end() -> bool:
            line = follower.stdout.readline()
            if line:
                lines.append(line)
            return bool(line) and json.loads(line)["kind"] == "SessionProvisioned"

        wait_until_sync(got_the_end, timeout=30, what="SessionProvisioned streamed")
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 130
    finally:
        if follower.poll() is None:
            follower.kill()
    objects = [json.loads(line) for line in lines]
    for obj in objects:
        check_line(obj)
    assert [o["id"] for o in objects] == sorted(o["id"] for o in objects)
    assert objects[0]["kind"] == "RunStarted" and objects[0]["state"] == "provisioning"
    assert {o["session"] for o in objects} == {key} and {o["slug"] for o in objects} == {key[:12]}
    kinds = [(o["kind"], o["provider"]) for o in objects]
    for provider in ("neon", "resend", "github", "posthog"):
        assert kinds.index(("ProviderStarted", provider)) < kinds.index(("ProviderSucceeded", provider))
    ok = next(o for o in objects if o["kind"] == "ProviderSucceeded" and o["provider"] == "neon")
    assert ok["result"]["status"] == "ok" and ok["result"]["resources"][0]["kind"] == "project"
    assert "env" not in ok["result"]
    text = "\n".join(lines)
    assert secrets and not any(secret in text for secret in secrets)

    # --since resumes: what comes after the id a reader saw, and nothing before it
    middle = objects[len(objects) // 2]["id"]
    resumed = [json.loads(line) for line in run_cli(env, "events", "--json", "--since", str(middle)).stdout.splitlines()]
    assert [o["id"] for o in resumed] == [o["id"] for o in objects if o["id"] > middle]
    human = run_cli(env, "events", "--session", key[:12]).stdout.splitlines()
    assert len(human) == len(objects) and "neon: ok in" in "\n".join(human)


def test_prune_removes_only_old_rows_of_deleted_sessions(mk0r_home):
    with open_test_ledger(mk0r_home) as ledger:
        from mk0r_tui.core.models import Session

        for key, state in (("pruned-session", "deleted"), ("kept-session-1", "ready")):
            ledger.ensure_session(Session.parse(key))
            ledger.set_session_state(key, state)
            ledger.append_journal([(time.time() - 31 * 86400, key, key[:12], "*", "RunStarted", '{"kind": "provision", "state": "provisioning"}', "")])
    proc = subprocess.run(cli_command("prune", "--older-than", "30d"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "pruned 1 journal row" in proc.stderr
    with open_test_ledger(mk0r_home) as ledger:
        assert [r.session for r in ledger.journal(0)] == ["kept-session-1"]


LIBRARY_SCRIPT = """
import json, sys
import mk0r_tui
call = getattr(mk0r_tui, sys.argv[1])
print(json.dumps(call(sys.argv[2])))
"""


def test_the_library_from_a_plain_script_returns_the_provision_json_and_writes_the_journal(mk0r_home, fake, tmp_path):
    env = cli_env(fake, mk0r_home)
    script = tmp_path / "backend.py"
    script.write_text(LIBRARY_SCRIPT)
    key = "library-call-01"

    def call(name: str) -> dict:
        proc = subprocess.run([PYTHON, str(script), name, key], env=env, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    report = call("provision")
    assert set(report) == {"session", "slug", "env_file", "target", "ok", "providers", "env"}
    assert report["ok"] and report["session"] == key
    assert {p["name"]: p["status"] for p in report["providers"]}["neon"] == "ok"
    assert report["env"] == json.loads(run_cli(env, "env", key, "--json").stdout)["env"]  # masked, as `provision --json`
    again = json.loads(run_cli(env, "provision", "--session", key, "--json").stdout)
    assert set(again) == set(report) and again["env"] == report["env"]
    gone = call("teardown")
    assert gone["ok"] and gone["session"] == key and {r["outcome"] for r in gone["resources"]} <= {"deleted", "already_gone"}
    kinds = [json.loads(line)["kind"] for line in run_cli(env, "events", "--json", "--session", key).stdout.splitlines()]
    assert kinds[0] == "RunStarted" and kinds.count("SessionProvisioned") == 2 and kinds[-1] == "SessionTornDown"


def test_importing_the_package_stays_cheap():
    code = "import sys, mk0r_tui; print(sorted(m for m in ('mk0r_tui.engine.library', 'httpx', 'pydantic') if m in sys.modules)); print(callable(mk0r_tui.provision))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    first, second = proc.stdout.splitlines()
    assert first == "[]" and second == "True", proc.stderr
