"""Secrets hygiene: provision with recognisable fake secrets, then look for them everywhere an
operator or a log reader could see them. The only places allowed to hold them are the
session's `.env` files (0600) and the keyring/environment they came from."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from crashkit import cli_env
from dotenv import dotenv_values
from ledgerkit import POSTGRES_PASS, open_test_ledger

from fakeupstream import FakeUpstream

CANARY_KEYS = {
    "NEON_PROVISIONING_KEY": "napi_CANARYneonprovisioningkey0001",
    "RESEND_PROVISIONING_KEY": "re_CANARYresendprovisioningkey0002",
    "GITHUB_PROVISIONING_TOKEN": "ghp_CANARYgithubprovisioningtoken03",
    "POSTHOG_PROJECT_KEY": "phc_CANARYposthogprojectkey00000004",
}
#: env vars of a session whose values are secrets (chosen here, not by the code under test)
SECRET_ENV = ("NEON_ROLE_PASSWORD", "PGPASSWORD", "RESEND_API_KEY", "VITE_POSTHOG_KEY")


def cli(*args, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "mk0r_tui", *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture
def fake():
    with FakeUpstream(config={"neon_operation_ms": 0}) as upstream:
        yield upstream


@pytest.fixture
def cloud_env(fake, mk0r_home):
    return cli_env(fake, mk0r_home, keys=CANARY_KEYS, MK0R_MAX_ATTEMPTS="2", MK0R_TARGET="local")


def leaks(text: str | bytes, secrets: list[str]) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [s for s in secrets if s.encode() in data]


def test_no_secret_outside_the_env_files(fake, cloud_env, mk0r_home):
    outputs: list[str] = []

    ok = cli("provision", "--session", "hygiene-ok-0001", "--json", env=cloud_env)
    assert ok.returncode == 0, ok.stderr
    outputs += [ok.stdout, ok.stderr]
    report = json.loads(ok.stdout)

    # a second session where providers fail, so error paths write messages and logs too
    fake.control(faults=[
        {"provider": "github", "method": "POST", "path_prefix": "/user/repos", "status": 401, "times": 1},
        {"provider": "resend", "method": "POST", "path_prefix": "/segments", "status": 500, "times": -1},
        {"provider": "neon", "method": "POST", "path_prefix": "/projects", "malformed": True, "times": 1},
    ])
    bad = cli("provision", "--session", "hygiene-bad-0002", "--json", env=cloud_env)
    assert bad.returncode == 1, bad.stderr
    outputs += [bad.stdout, bad.stderr]
    fake.control(clear_faults=True)

    for args in (("sessions", "--json"), ("sessions",), ("env", "hygiene-ok-0001"), ("env", "hygiene-ok-0001", "--json"),
                 ("orphans", "--json"), ("doctor", "--json"), ("doctor",), ("keys", "list")):
        result = cli(*args, env=cloud_env)
        outputs += [result.stdout, result.stderr]

    env_file = Path(report["env_file"])
    session_env = dotenv_values(env_file)
    secrets = list(CANARY_KEYS.values()) + [session_env[k] for k in SECRET_ENV if session_env.get(k)]
    assert len(secrets) >= 7, "the run produced the secrets this test looks for"
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600

    down = cli("teardown", "hygiene-ok-0001", "--yes", "--json", env=cloud_env)
    outputs += [down.stdout, down.stderr]
    assert down.returncode == 0, down.stderr

    found = {f"output {i}": leaks(text, secrets) for i, text in enumerate(outputs)}
    for path in mk0r_home.rglob("*"):
        if path.is_file() and path.name != ".env":
            found[str(path.relative_to(mk0r_home))] = leaks(path.read_bytes(), secrets)
    with open_test_ledger(mk0r_home) as ledger:  # every text it holds, whichever backend
        found["ledger"] = leaks("\n".join(ledger.iter_all_text()), secrets)
    leaked = {where: which for where, which in found.items() if which}
    assert leaked == {}, f"secrets leaked: {leaked}"
    assert (mk0r_home / "mk0r-tui.log").exists()
    assert (mk0r_home / "ledger.sqlite3").exists() == (not POSTGRES_PASS)

    revealed = cli("env", "hygiene-bad-0002", "--reveal", env=cloud_env)
    assert revealed.returncode == 0
    assert "RESEND_API_KEY" not in revealed.stdout  # the failed email slot wrote no key


def test_local_profile_password_never_reaches_the_ledger_log_or_postgres_log(mk0r_home, shared_postgres_dir):
    env = {**os.environ, "MK0R_HOME": str(mk0r_home)}
    result = cli("provision", "--session", "hygiene-local-03", "--json", env=env)
    assert result.returncode == 0, result.stderr
    session_env = dotenv_values(json.loads(result.stdout)["env_file"])
    password = session_env["PGPASSWORD"]
    places = [p for p in mk0r_home.rglob("*") if p.is_file() and p.name != ".env"]
    places += [p for p in shared_postgres_dir.rglob("*.log")] + [p for p in (shared_postgres_dir / "data").rglob("log/*")]
    assert any(p.name == "server.log" for p in places)
    assert {str(p): leaks(p.read_bytes(), [password]) for p in places if leaks(p.read_bytes(), [password])} == {}
    assert not leaks(result.stdout + result.stderr, [password])
