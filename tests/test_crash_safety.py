"""Crash safety: `mk0r-tui provision` killed with SIGKILL at many points never loses track of
what it created (fault 8 of the issue 6 matrix).

The harness runs the real CLI in a subprocess against the stateful fake upstream, with latency
per provider and `latency_mode: split`, so a kill can land after the upstream committed a create
but before its answer arrived. Kill times come from a provisioning run measured first: a few
right at the start, most across the window in which the creates happen (timed from the run's
first upstream request, so the start-up jitter of a loaded machine does not push them out of the
window), the rest over the whole run. After every kill, each resource the fake holds must be in
the ledger as a live, confirmed resource of its session (same remote id) or be reported by
`mk0r-tui orphans --json`. At the end `orphans --delete --yes` and a teardown of every session
must leave the fake empty.

Two workers run side by side, each with its own fake upstream and its own MK0R_HOME, because
`orphans` would otherwise (rightly) report the other worker's resources.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from crashkit import cli_command, cli_env, cli_json, cloud_runtime, run_cli, upstream_resources
from ledgerkit import open_test_ledger

from fakeupstream import FakeUpstream
from mk0r_tui.core.models import ResourceState
from mk0r_tui.engine.teardown import teardown_session

LATENCY_MS = {"neon": 60, "resend": 40, "github": 80, "posthog": 30}
FAKE_CONFIG = {"latency_ms": LATENCY_MS, "latency_mode": "split", "neon_operation_ms": 0}
CLOUD_KINDS = 4  # neon project, resend segment and api key, github repo
KILLS_AT_START = (0.0, 0.005, 0.02, 0.05)
KILLS_IN_CREATE_WINDOW = 36
KILLS_OVER_THE_RUN = 12
WORKERS = 2


@dataclass(frozen=True)
class Timeline:
    """One un-killed provisioning run, in seconds from the process start."""

    first_request: float
    last_create: float
    finished: float


@dataclass(frozen=True)
class KillPoint:
    """SIGKILL `after` seconds past the process start, or past its first upstream request."""

    after: float
    from_first_request: bool = False


@dataclass(frozen=True)
class Kill:
    point: KillPoint
    phase: str
    session: str


def provision_command(key: str) -> list[str]:
    return cli_command("provision", "--session", key, "--json", "--target", "local")


def new_key() -> str:
    return uuid.uuid4().hex[:12] + "-crash"


def resources_of(fake_state: dict, slug: str):
    return [u for u in upstream_resources(fake_state) if slug in u.name]


def measure(fake: FakeUpstream, env: dict[str, str]) -> Timeline:
    """Run one provision to the end, watching the fake to see when requests and creates happen."""
    key = new_key()
    first_request = last_create = None
    served = requests_served(fake)
    started = time.monotonic()
    proc = subprocess.Popen(provision_command(key), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    while proc.poll() is None:
        state = fake.state()
        now = time.monotonic() - started
        if first_request is None and requests_served(fake) > served:
            first_request = now
        if last_create is None and len(resources_of(state, key[:12])) == CLOUD_KINDS:
            last_create = now
        time.sleep(0.003)
    finished = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr.read()
    proc.stderr.close()
    assert first_request is not None and last_create is not None
    return Timeline(first_request, last_create, finished)


def kill_schedule(timeline: Timeline) -> list[KillPoint]:
    """Where to SIGKILL: dense where the creates happen, a few at the start, some anywhere."""
    window = timeline.last_create - timeline.first_request + 0.05
    step = window / (KILLS_IN_CREATE_WINDOW - 1)
    creates = [KillPoint(i * step, from_first_request=True) for i in range(KILLS_IN_CREATE_WINDOW)]
    whole = [KillPoint(timeline.finished * (i + 0.5) / KILLS_OVER_THE_RUN) for i in range(KILLS_OVER_THE_RUN)]
    return [*map(KillPoint, KILLS_AT_START), *creates, *whole]


def requests_served(fake: FakeUpstream) -> int:
    """The fake's request count, read in-process (polling it over HTTP would load the fake)."""
    return fake._server.counters["all"]["total"]


def phase_of(fake: FakeUpstream, home: Path, key: str) -> str:
    """How far the killed run got: resources upstream, and how many of them it had confirmed."""
    upstream = len(resources_of(fake.state(), key[:12]))
    with open_test_ledger(home) as ledger:
        confirmed = sum(1 for r in ledger.resources(key) if r.provider != "local-folder"
                        and r.state == ResourceState.CREATED.value)
    return f"{upstream} upstream, {confirmed} confirmed"


def assert_everything_tracked(fake: FakeUpstream, home: Path, env: dict[str, str]) -> None:
    """Every resource upstream is a confirmed live ledger row (same id) or reported as an orphan."""
    with open_test_ledger(home) as ledger:
        confirmed = {(r.provider, r.kind, r.remote_id) for r in ledger.resources(live_only=True)
                     if r.state == ResourceState.CREATED.value}
    orphans = cli_json(env, "orphans", "--json")
    reported = {(o["provider"], o["kind"], o["name"]): o for o in orphans}
    for item in upstream_resources(fake.state()):
        if (item.provider, item.kind, item.remote_id) in confirmed:
            continue
        orphan = reported.get((item.provider, item.kind, item.name))
        assert orphan is not None, f"untracked upstream resource {item}; ledger: {confirmed}; orphans: {orphans}"
        assert orphan["id"] in (None, item.remote_id), (orphan, item)


def run_worker(fake: FakeUpstream, home: Path, points: list[KillPoint]) -> list[Kill]:
    env = cli_env(fake, home)
    kills = []
    for point in points:
        key = new_key()
        served = requests_served(fake)
        started = time.monotonic()
        proc = subprocess.Popen(provision_command(key), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        if point.from_first_request:
            while requests_served(fake) == served and proc.poll() is None:
                time.sleep(0.001)
            started = time.monotonic()
        time.sleep(max(0.0, started + point.after - time.monotonic()))
        finished_first = proc.poll() is not None
        proc.kill()
        proc.wait()
        phase = "finished before the kill" if finished_first else phase_of(fake, home, key)
        kills.append(Kill(point, phase, key))
        fake.control(latency_ms=0)  # the checks need no latency: it only slows the harness
        assert_everything_tracked(fake, home, env)
        fake.control(latency_ms=LATENCY_MS)
    return kills


async def teardown_every_session(fake: FakeUpstream, home: Path) -> None:
    """`teardown_session` (what `mk0r-tui teardown` runs) for every session in the ledger, in
    one process: a CLI process per session would double the harness's time."""
    runtime = cloud_runtime(fake, home=home)
    try:
        keys = [s.key for s in runtime.ledger.list_sessions()]
        reports = await asyncio.gather(*(teardown_session(runtime, key) for key in keys))
    finally:
        await runtime.aclose()
        runtime.close()
    failed = [o for r in reports for o in r.outcomes if o.outcome not in ("deleted", "already_gone")]
    assert not failed, failed


def clean_up(fake: FakeUpstream, home: Path) -> None:
    fake.control(latency_ms=0)
    env = cli_env(fake, home)
    deleted = run_cli(env, "orphans", "--delete", "--yes", "--json")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    asyncio.run(teardown_every_session(fake, home))
    state = fake.state()
    assert (state["neon"], state["resend"]["segments"], state["resend"]["api_keys"], state["github"]) == ([], [], [], [])
    assert cli_json(env, "orphans", "--json") == []


@pytest.mark.slow
def test_sigkill_at_many_points_never_loses_a_resource_and_cleanup_empties_the_upstream(tmp_path, record_property):
    started = time.monotonic()
    fakes = [FakeUpstream(config=FAKE_CONFIG).start() for _ in range(WORKERS)]
    homes = [tmp_path / f"home-{n}" for n in range(WORKERS)]
    try:
        timeline = measure(fakes[0], cli_env(fakes[0], homes[0]))
        schedule = kill_schedule(timeline)
        shares = [schedule[n::WORKERS] for n in range(WORKERS)]
        with ThreadPoolExecutor(WORKERS) as pool:
            kills = [k for done in pool.map(run_worker, fakes, homes, shares) for k in done]
        killed_at = time.monotonic()
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(clean_up, fakes, homes))
    finally:
        for fake in fakes:
            fake.stop()

    phases = Counter(k.phase for k in kills)
    lost_answers = sum(n for phase, n in phases.items() if phase[0].isdigit() and phase.split()[0] != phase.split()[2])
    lines = [
        f"crash harness: {len(kills)} SIGKILLs; un-killed provision {timeline.finished:.2f}s "
        f"(first request {timeline.first_request:.2f}s, last create {timeline.last_create:.2f}s); "
        f"kills+checks {killed_at - started:.1f}s, clean-up {time.monotonic() - killed_at:.1f}s",
        *(f"  {count:3d}  {phase}" for phase, count in sorted(phases.items())),
        f"  kills after an upstream commit but before its answer was recorded: {lost_answers}",
    ]
    record_property("summary", "\n".join(lines))  # printed at the end of the run (conftest)
    assert len(kills) >= 50
    assert phases["0 upstream, 0 confirmed"] >= len(KILLS_AT_START)
    assert sum(n for phase, n in phases.items() if phase[0] in "123") > 0, phases
