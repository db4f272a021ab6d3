"""The service at scale: 3 `serve` processes on one ledger and one job queue, 150 sessions POSTed
concurrently across them, one of the three SIGKILLed mid-run. Every session ends ready, no resource
exists twice, nothing is left after all are torn down, and the providers' limits held (the fake's
own in-flight counters).

The client does what a generator would: a POST whose server vanished is sent again to another
server (the POST is idempotent: it joins the session's job, or the job the dead server was running
comes back through the stalled-job sweep)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter

import httpx
import pytest
from crashkit import CLOUD_PROVIDERS, cli_env, run_cli, upstream_resources
from ledgerkit import POSTGRES_PASS
from servicekit import TOKEN, ServeProcess, async_client

from fakeupstream import FakeUpstream

# it always runs on a Postgres ledger of its own: the suite's Postgres pass would only repeat it
pytestmark = [pytest.mark.slow, pytest.mark.skipif(POSTGRES_PASS, reason="already on a Postgres ledger in the SQLite pass")]

SESSIONS = int(os.environ.get("MK0R_SCALE_SESSIONS", "150"))
SERVERS = 3
#: per process, scaled down so the limits are actually reached
CONCURRENCY = 4
FAKE_CONFIG = {"latency_ms": {"neon": 30, "resend": 10, "github": 20, "posthog": 5}, "neon_operation_ms": 0}


async def post_until_done(urls: list[str], alive: list[bool], session: str, first: int) -> dict:
    """POST the session, moving to the next live server when the one asked is gone."""
    i = first
    for _ in range(50):
        url = urls[i % len(urls)]
        if not alive[i % len(urls)]:
            i += 1
            continue
        try:
            async with async_client(url, timeout=120) as c:
                r = await c.post("/v1/sessions", json={"session": session})
            if r.status_code == 201:
                return r.json()
            if r.status_code in (409, 503):  # busy (the dead server's lease not yet settled) or shutting down
                await asyncio.sleep(0.5)
                continue
            raise AssertionError(f"{session}: {r.status_code} {r.text}")
        except (httpx.TransportError, httpx.RemoteProtocolError):
            i += 1
    raise AssertionError(f"{session}: no server finished it")


def test_three_servers_150_sessions_one_killed(shared_postgres_dir, pg_ledger_url, tmp_path):
    """One team ledger on the embedded Postgres (MK0R_LEDGER_URL); the job queue lives in the
    same database (the default when a team ledger is set)."""
    started = time.monotonic()
    with FakeUpstream(config=FAKE_CONFIG) as fake:
        env = cli_env(fake, tmp_path / "home", MK0R_LEDGER_URL=pg_ledger_url, MK0R_SERVICE_TOKEN=TOKEN, MK0R_TARGET="local",
                      MK0R_POSTGRES_DIR=str(shared_postgres_dir), MK0R_CONCURRENCY=str(CONCURRENCY),
                      MK0R_WORKER_CONCURRENCY="16", MK0R_WORKER_HEARTBEAT_S="0.5", MK0R_WORKER_STALLED_S="2",
                      MK0R_LEASE_STALE_S="3", MK0R_LEASE_WAIT_S="60")
        run_cli(env, "sessions")  # the ledger exists before three processes open it at once
        servers = [ServeProcess(env).start() for _ in range(SERVERS)]
        try:
            urls = [s.url for s in servers]
            alive = [True] * SERVERS
            keys = [f"scale-{i:04d}-{os.getpid()}" for i in range(SESSIONS)]

            async def run_all() -> list[dict]:
                tasks = [asyncio.create_task(post_until_done(urls, alive, k, i)) for i, k in enumerate(keys)]
                # kill the third server once a third of the sessions are done: it has jobs running then
                while sum(t.done() for t in tasks) < SESSIONS // 3:
                    await asyncio.sleep(0.05)
                alive[2] = False
                servers[2].kill()
                return await asyncio.gather(*tasks)

            reports = asyncio.run(run_all())
            provisioned_s = time.monotonic() - started
            assert all(r["ok"] for r in reports), [r for r in reports if not r["ok"]][:3]
            with httpx.Client(base_url=urls[0], headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False, timeout=60) as c:
                states = {s["session"]: s["state"] for s in c.get("/v1/sessions").json()}
            assert [k for k in keys if states.get(k) != "ready"] == []

            state = fake.state()
            names = Counter((r.provider, r.kind, r.name) for r in upstream_resources(state))
            assert [n for n, count in names.items() if count > 1] == []  # 0 duplicates
            assert len(names) == SESSIONS * 4
            in_flight = {p: state["requests"][p]["max_in_flight"] for p in CLOUD_PROVIDERS}
            # the budgets are shared by the three servers (core/budgets.py on the team ledger): the
            # limits hold for them together, not each
            assert all(v <= CONCURRENCY for v in in_flight.values()), in_flight
            assert state["requests"]["github"]["max_mutations_in_flight"] == 1

            async def delete_all() -> list[dict]:
                async def one(i: int, k: str) -> dict:
                    async with async_client(urls[i % 2], timeout=120) as c:
                        r = await c.delete(f"/v1/sessions/{k}")
                    assert r.status_code == 200, r.text
                    return r.json()

                return await asyncio.gather(*(one(i, k) for i, k in enumerate(keys)))

            torn = asyncio.run(delete_all())
            assert all(t["ok"] for t in torn)
            assert upstream_resources(fake.state()) == []
            # the providers these sessions used (the shared embedded Postgres holds other tests' databases)
            scanned = [arg for p in (*CLOUD_PROVIDERS, "local-folder") for arg in ("--provider", p)]
            orphans = json.loads(run_cli(env, "orphans", "--json", *scanned).stdout)
            assert orphans == []
            took = time.monotonic() - started
            print(f"scale: {SESSIONS} sessions on {SERVERS} servers (one SIGKILLed) ready in {provisioned_s:.1f} s, "
                  f"all torn down at {took:.1f} s; max in flight {in_flight}; load {os.getloadavg()[0]:.2f}")
        finally:
            for s in servers:
                s.stop()
