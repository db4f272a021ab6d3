"""One process of the 4-process team run (tests/test_team_pacing.py, bench/team_pacing.py):
provisions its session keys at once with one runtime (the library's `open_runtime`: settings,
keys and ledger from the environment), then tears down the ones it owns, and prints one JSON
line: what each session's ledger word was after provisioning and after teardown.

    python tests/team_worker.py --provision k1,k2,race --teardown k1,k2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from mk0r_tui.core.models import Session
from mk0r_tui.engine.library import open_runtime, plan_run
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.teardown import teardown_session


async def run(provision: list[str], teardown: list[str]) -> dict:
    runtime = open_runtime()
    started = time.monotonic()
    try:
        plan = plan_run(runtime, "local", None)
        reports = await asyncio.gather(*(provision_services(runtime, Session.parse(k), plan) for k in provision))
        provisioned = {
            r.session.key: {"ok": r.ok, "state": runtime.ledger.require_session(r.session.key).state,
                            "errors": [f"{x.name}: {x.error}" for x in r.results if x.error]}
            for r in reports
        }
        provision_s = time.monotonic() - started
        torn = await asyncio.gather(*(teardown_session(runtime, k) for k in teardown))
        torn_down = {
            k: {"ok": t.ok, "state": runtime.ledger.require_session(k).state,
                "errors": [o.error for o in t.outcomes if o.error]}
            for k, t in zip(teardown, torn)
        }
        return {"provisioned": provisioned, "torn_down": torn_down, "provision_s": provision_s,
                "wall_s": time.monotonic() - started}
    finally:
        await runtime.aclose()
        runtime.close()


HERE = Path(__file__).resolve()

#: the fake keys (the fake accepts any token not starting with "bad")
KEYS = {
    "NEON_PROVISIONING_KEY": "napi_team_key_0001",
    "RESEND_PROVISIONING_KEY": "re_team_key_0001",
    "GITHUB_PROVISIONING_TOKEN": "ghp_team_token_0001",
    "POSTHOG_PROJECT_KEY": "phc_team_key_0001",
}


def team_env(fake, home: Path, ledger_url: str | None, limits: dict[str, str]) -> dict[str, str]:
    """Every process's environment: the fake's URLs and keys, one data dir, one ledger."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MK0R_") and k not in KEYS}
    env.update(KEYS)
    env.update({
        "MK0R_NEON_API_URL": fake.neon_url, "MK0R_RESEND_API_URL": fake.resend_url,
        "MK0R_GITHUB_API_URL": fake.github_url, "POSTHOG_HOST": fake.posthog_url,
        "MK0R_HOME": str(home), "MK0R_POSTGRES_DIR": str(home / "postgres"), "MK0R_PROFILE": "cloud",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", "PYTHONUNBUFFERED": "1",
    })
    if ledger_url:
        env["MK0R_LEDGER_URL"] = ledger_url
    env.update(limits)
    return env


def run_team(env: dict[str, str], *, processes: int, sessions: int, race: bool = True,
             timeout_s: float = 600) -> dict:
    """`processes` workers provision and tear down `sessions` sessions between them at once;
    with `race`, the first two also both provision one more key (the race key), which the
    caller tears down. Returns every worker's JSON, the keys and the wall time."""
    keys = [f"team-{uuid.uuid4().hex[:8]}-{n:03d}" for n in range(sessions)]
    race_key = f"race-{uuid.uuid4().hex[:8]}" if race else None
    shares = [keys[n::processes] for n in range(processes)]
    started = time.monotonic()
    procs = []
    for n, share in enumerate(shares):
        provision = share + ([race_key] if race_key and n < 2 else [])
        procs.append(subprocess.Popen(
            [sys.executable, str(HERE), "--provision", ",".join(provision), "--teardown", ",".join(share)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL))
    results, errors = [], []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout_s)
        if proc.returncode != 0:
            errors.append(f"exit {proc.returncode}: {err[-2000:]}")
            continue
        results.append(json.loads(out.strip().splitlines()[-1]))
    return {"results": results, "errors": errors, "keys": keys, "race_key": race_key,
            "wall_s": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--provision", default="")
    parser.add_argument("--teardown", default="")
    args = parser.parse_args()
    result = asyncio.run(run([k for k in args.provision.split(",") if k], [k for k in args.teardown.split(",") if k]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
