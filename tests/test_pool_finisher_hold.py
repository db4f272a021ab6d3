"""The CLI's `provision` ends right after its run: the detached `pool finish` it starts for a
claim's renames is held back (a `/bin/sh` reading a pipe whose only writer is the provision
process) until that process has exited, so the finisher's Python start-up never runs beside the
provision's last milliseconds (bench/pool.py part 2). Once the process is gone the renames run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from crashkit import KEYS, PYTHON, cli_env, run_cli
from poolkit import FAKE_CONFIG, POOLED
from waiting import wait_until_sync

from fakeupstream import FakeUpstream
from mk0r_tui.core import pool_store as store
from mk0r_tui.core.ledger import Ledger
from mk0r_tui.engine.pool import HOLD_BACK

pytestmark = pytest.mark.slow

#: a process that provisions as the CLI does (held-back finisher), says the session, then waits
CHILD = (
    "import asyncio, sys\n"
    "from mk0r_tui.core.models import Session\n"
    "from mk0r_tui.engine import pool\n"
    "from mk0r_tui.engine.library import open_runtime, plan_run\n"
    "from mk0r_tui.engine.orchestrator import provision_services\n"
    "pool.finisher_after_exit()\n"
    "runtime = open_runtime()\n"
    "session = Session.new()\n"
    "async def main():\n"
    "    try:\n"
    "        return await provision_services(runtime, session, plan_run(runtime, None, None))\n"
    "    finally:\n"
    "        await runtime.aclose()\n"
    "report = asyncio.run(main())\n"
    "assert report.ok and all(r.from_pool for r in report.results if r.name in " + repr(POOLED) + ")\n"
    "print(session.key, flush=True)\n"
    "sys.stdin.readline()\n"
)


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


@pytest.mark.skipif(not Path("/proc/self/task").exists() or not os.path.exists("/bin/sh"), reason="needs Linux /proc and /bin/sh")
def test_the_finisher_of_a_cli_provision_starts_once_the_process_has_exited(tmp_path):
    keys = {k: v for k, v in KEYS.items() if k != "POSTHOG_PROJECT_KEY"}
    with FakeUpstream(config=FAKE_CONFIG) as fake:
        env = cli_env(fake, tmp_path / "home", keys=keys, MK0R_POOL_SIZE="1", MK0R_TARGET="local")
        filled = run_cli(env, "pool", "fill", "--wait")
        assert filled.returncode == 0, filled.stderr
        child = subprocess.Popen([PYTHON, "-c", CHILD], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdin is not None
        ledger = Ledger(tmp_path / "home" / "ledger.sqlite3")
        try:
            key = child.stdout.readline().strip()
            assert key, child.stderr.read() if child.stderr else ""
            # the provision process lives: its finisher is the shell holding it back, not Python yet
            (held,) = children(child.pid)
            assert cmdline(held)[:3] == ["/bin/sh", "-c", HOLD_BACK]
            assert cmdline(held)[4:11] == [PYTHON, "-m", "mk0r_tui", "pool", "finish", "--session", key]
            assert {i.provider for i in store.unfinished_claims(ledger) if i.claimed_by == key} == set(POOLED)

            child.stdin.close()  # the provision process exits: the finisher starts and renames
            assert child.wait(timeout=30) == 0
            wait_until_sync(lambda: not [i for i in store.unfinished_claims(ledger) if i.claimed_by == key],
                            timeout=60, what="the held-back finisher renamed the claimed items")
            wait_until_sync(lambda: not Path(f"/proc/{held}").exists(), timeout=30, what="the finisher exited")
            names = {r.name for r in ledger.resources(key, live_only=True) if r.provider in POOLED}
            assert names and all(n.startswith(f"mk0r-{key[:12]}") for n in names), names
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            ledger.close()
        drained = run_cli(env, "pool", "drain", "--yes")
        assert drained.returncode == 0, drained.stderr
        torn = run_cli(env, "teardown", key, "--yes")
        assert torn.returncode == 0, torn.stderr
