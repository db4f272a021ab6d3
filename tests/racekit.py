"""Races between `mk0r-tui` processes on one fake upstream: the trials behind issue 9's findings
1, 2, 4 and the owner/heartbeat rule, each a function of a trial count, so CI runs a few
(tests/test_orphans_safety.py) and `bench/orphans_races.py` runs the full 50 and prints figures.

Every trial drives the real CLI in subprocesses (`crashkit.cli_env`), with latency on the fake
so a provision lasts long enough to race with.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from crashkit import cli_command, cli_env, run_cli, upstream_resources
from ledgerkit import location_for, open_test_ledger
from waiting import wait_until_sync

from fakeupstream import FakeUpstream
from mk0r_tui.core.ledger import Ledger
from mk0r_tui.core.models import ResourceState

#: per provider, so one provision takes a few hundred milliseconds: long enough to race with
LATENCY_MS = {"neon": 120, "resend": 60, "github": 120, "posthog": 30}
RACE_FAKE = {"latency_ms": LATENCY_MS, "neon_operation_ms": 100}
CLOUD_KINDS = 4  # neon project, resend segment and api key, github repo


@dataclass
class Tally:
    trials: int = 0
    failures: list[str] = field(default_factory=list)
    figures: Counter = field(default_factory=Counter)

    def fail(self, trial: int, why: str) -> None:
        self.failures.append(f"trial {trial}: {why}")


def new_key(tag: str) -> str:
    return uuid.uuid4().hex[:12] + f"-{tag}"


def provision_cmd(key: str) -> list[str]:
    return cli_command("provision", "--session", key, "--json", "--target", "local")


def popen(env: dict[str, str], cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def ledger_exists(home: Path) -> bool:
    """The data dir's ledger was made (a file, or a database: made by the test, always there)."""
    where = location_for(home)
    return isinstance(where, str) or where.exists()


def ledger_of(home: Path) -> Ledger:
    return open_test_ledger(home)


def session_state(home: Path, key: str) -> str | None:
    with ledger_of(home) as ledger:
        row = ledger.get_session(key)
        return None if row is None else row.state


def leased(home: Path, key: str) -> bool:
    if not ledger_exists(home):
        return False
    with ledger_of(home) as ledger:
        return any(lease.session_key == key for lease in ledger.leases())


def upstream_of(fake: FakeUpstream, slug: str):
    return [u for u in upstream_resources(fake.state()) if slug in u.name]


def recorded_live(home: Path, key: str) -> set[tuple[str, str, str | None]]:
    with ledger_of(home) as ledger:
        return {(r.provider, r.kind, r.remote_id) for r in ledger.resources(key, live_only=True)
                if r.state == ResourceState.CREATED.value}


def intact(fake: FakeUpstream, home: Path, key: str) -> str | None:
    """None when every resource the ledger records for `key` exists (upstream, or its folder)."""
    up = {(u.provider, u.kind, u.remote_id) for u in upstream_of(fake, key[:12])}
    for provider, kind, remote_id in recorded_live(home, key):
        if provider in ("neon", "resend", "github") and (provider, kind, remote_id) not in up:
            return f"{provider} {kind} {remote_id} recorded but gone upstream"
        if provider == "local-folder" and not (Path(remote_id or "") / ".env").exists():
            return f"app folder {remote_id} or its .env is gone"
    return None


def measure_provision(fake: FakeUpstream, env: dict[str, str]) -> float:
    started = time.monotonic()
    proc = run_cli(env, "provision", "--session", new_key("measure"), "--json", "--target", "local")
    assert proc.returncode == 0, proc.stderr
    return time.monotonic() - started


# -- finding 1: `orphans --delete` racing a provision -------------------------------------------


def orphans_delete_racing_provision(fake: FakeUpstream, home: Path, trials: int) -> Tally:
    """`orphans --delete --yes --older-than 0s` (the age guard lifted: only the lease protects)
    started at points spread over a running provision of the same data dir. Nothing live is
    deleted: the provision ends ready with every recorded resource present."""
    env = cli_env(fake, home)
    tally = Tally(trials)
    duration = measure_provision(fake, env)
    for trial in range(trials):
        key = new_key("race")
        prov = popen(env, provision_cmd(key))
        delay = duration * (trial % 10) / 10
        time.sleep(delay)  # a point in the run, not a wait for a condition
        orphan = run_cli(env, "orphans", "--delete", "--yes", "--json", "--older-than", "0s")
        out, err = prov.communicate(timeout=120)
        if prov.returncode != 0:
            tally.fail(trial, f"provision exit {prov.returncode}: {err[-500:]}")
            continue
        if orphan.returncode not in (0,):
            tally.fail(trial, f"orphans exit {orphan.returncode}: {orphan.stderr[-500:]}")
        deleted = [d for d in json.loads(orphan.stdout or "[]") if d["outcome"] == "deleted" and key[:12] in d["name"]]
        if deleted:
            tally.fail(trial, f"orphans deleted the live session's {deleted}")
        state = session_state(home, key)
        if state != "ready":
            tally.fail(trial, f"state {state}")
        broken = intact(fake, home, key)
        if broken:
            tally.fail(trial, broken)
        tally.figures["skipped lines"] += orphan.stderr.count("skipped:")
    return tally


# -- finding 2: two ledgers on one upstream ---------------------------------------------------


def two_ledgers(fake: FakeUpstream, homes: tuple[Path, Path], trials: int) -> Tally:
    """Two data dirs (two operators) on the same accounts, each provisioning and then running
    `orphans --delete --yes --older-than 0s` at the same time: neither deletes the other's."""
    envs = [cli_env(fake, home) for home in homes]
    tally = Tally(trials)
    keys: list[list[str]] = [[], []]
    for trial in range(trials):
        new = [new_key(f"l{n}") for n in range(2)]
        procs = [popen(envs[n], provision_cmd(new[n])) for n in range(2)]
        for n, proc in enumerate(procs):
            _, err = proc.communicate(timeout=120)
            if proc.returncode != 0:
                tally.fail(trial, f"provision in ledger {n}: exit {proc.returncode}: {err[-300:]}")
            keys[n].append(new[n])
        cleaners = [popen(envs[n], cli_command("orphans", "--delete", "--yes", "--json", "--older-than", "0s")) for n in range(2)]
        for n, proc in enumerate(cleaners):
            out, err = proc.communicate(timeout=120)
            if proc.returncode != 0:
                tally.fail(trial, f"orphans in ledger {n}: exit {proc.returncode}: {err[-300:]}")
            tally.figures["deleted"] += sum(1 for d in json.loads(out or "[]") if d["outcome"] == "deleted")
        for n in range(2):
            for key in keys[n]:
                broken = intact(fake, homes[n], key)
                if broken:
                    tally.fail(trial, f"ledger {n} session {key}: {broken}")
    listed = json.loads(run_cli(envs[1], "orphans", "--json", "--older-than", "0s").stdout)
    tally.figures["listed as foreign in the other ledger"] = sum(1 for o in listed if o["foreign"])
    tally.figures["listed as this ledger's"] = sum(1 for o in listed if not o["foreign"])
    return tally


# -- finding 4: one runner per session ----------------------------------------------------------


def double_provisions(fake: FakeUpstream, home: Path, trials: int) -> Tally:
    """Two `provision`s of one new key at once: both exit 0, one resource of each kind upstream."""
    env = cli_env(fake, home)
    tally = Tally(trials)
    for trial in range(trials):
        key = new_key("dup")
        procs = [popen(env, provision_cmd(key)) for _ in range(2)]
        for proc in procs:
            _, err = proc.communicate(timeout=180)
            if proc.returncode != 0:
                tally.fail(trial, f"exit {proc.returncode}: {err[-400:]}")
            if "Traceback" in err:
                tally.fail(trial, f"traceback: {err[-400:]}")
        kinds = Counter((u.provider, u.kind) for u in upstream_of(fake, key[:12]))
        extra = {k: n for k, n in kinds.items() if n > 1}
        if extra or len(kinds) != CLOUD_KINDS:
            tally.fail(trial, f"upstream per kind: {dict(kinds)}")
        tally.figures["duplicates"] += sum(n - 1 for n in kinds.values())
        if session_state(home, key) != "ready":
            tally.fail(trial, f"state {session_state(home, key)}")
    return tally


def provision_and_teardown(fake: FakeUpstream, home: Path, trials: int) -> Tally:
    """A `teardown` of a session started while its first `provision` is creating (Neon slowed so
    the run outlasts the teardown's start-up): both exit 0 and the end is consistent, `deleted`
    with nothing upstream (the teardown waited for the run), never `ready` after a teardown."""
    env = cli_env(fake, home)
    tally = Tally(trials)
    fake.control(latency_ms={**LATENCY_MS, "neon": 1500})
    try:
        for trial in range(trials):
            key = new_key("pvt")
            prov = popen(env, provision_cmd(key))
            wait_until_sync(lambda: ledger_exists(home) and session_state(home, key) == "provisioning"
                            or prov.poll() is not None, timeout=60, what="the provision to start")
            down = popen(env, cli_command("teardown", key, "--yes", "--json"))
            _, perr = prov.communicate(timeout=180)
            _, derr = down.communicate(timeout=180)
            for name, proc, err in (("provision", prov, perr), ("teardown", down, derr)):
                if proc.returncode != 0:
                    tally.fail(trial, f"{name} exit {proc.returncode}: {err[-300:]}")
            state = session_state(home, key)
            left = upstream_of(fake, key[:12])
            tally.figures[f"ended {state}"] += 1
            if state != "deleted":
                tally.fail(trial, f"state {state} after a teardown that exited {down.returncode}")
            if left:
                tally.fail(trial, f"upstream still has {left}")
    finally:
        fake.control(latency_ms=LATENCY_MS)
    return tally


# -- owner and heartbeat --------------------------------------------------------------------------


def sigkilled_provision_resumes(fake: FakeUpstream, home: Path, trials: int) -> Tally:
    """SIGKILL a provision once it has a create upstream: `sessions --json` says `interrupted`
    within the heartbeat window, and `provision` again completes it with no duplicate."""
    env = cli_env(fake, home)
    tally = Tally(trials)
    seen_s: list[float] = []
    for trial in range(trials):
        key = new_key("kill")
        proc = popen(env, provision_cmd(key))
        wait_until_sync(lambda: upstream_of(fake, key[:12]) or proc.poll() is not None, timeout=60, poll_s=0.002,
                        what="a first create upstream")
        proc.kill()
        proc.communicate()
        killed = time.monotonic()
        words = None

        def interrupted() -> bool:
            nonlocal words
            listed = json.loads(run_cli(env, "sessions", "--json").stdout)
            words = next((s["state"] for s in listed if s["session"] == key), None)
            return words in ("interrupted", "ready")  # ready: it finished before the kill landed

        wait_until_sync(interrupted, timeout=30, poll_s=0.05, what="the session to read interrupted")
        seen_s.append(time.monotonic() - killed)
        tally.figures[f"after the kill: {words}"] += 1
        again = run_cli(env, "provision", "--session", key, "--json", "--target", "local")
        if again.returncode != 0:
            tally.fail(trial, f"provision again: exit {again.returncode}: {again.stderr[-300:]}")
        kinds = Counter((u.provider, u.kind) for u in upstream_of(fake, key[:12]))
        if any(n > 1 for n in kinds.values()) or len(kinds) != CLOUD_KINDS:
            tally.fail(trial, f"upstream per kind after resuming: {dict(kinds)}")
        if session_state(home, key) != "ready":
            tally.fail(trial, f"state after resuming: {session_state(home, key)}")
    tally.figures["max seconds from kill to interrupted"] = round(max(seen_s, default=0.0), 2)
    return tally
