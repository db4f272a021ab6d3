"""Claims are atomic across processes (issue 14): 8 processes claim from one pool at once, on
the real ledger (the SQLite file: `BEGIN IMMEDIATE`; Postgres on the embedded server: `FOR UPDATE
SKIP LOCKED`); no item is claimed twice and none is lost, and every claimed item's rows moved to
exactly the session that claimed it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from waiting import wait_until_sync

from mk0r_tui.core import pool_store as store
from mk0r_tui.core.ledger import Ledger
from mk0r_tui.core.models import Session
from mk0r_tui.core.states import SessionPhase

pytestmark = pytest.mark.slow

PROCESSES = 8
ITEMS = 120

CLAIMER = r"""
import json, os, sys, time
from pathlib import Path
from mk0r_tui.core import pool_store as store
from mk0r_tui.core.ledger import Ledger
from mk0r_tui.core.models import Session

ledger_path, go, worker = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
ledger = Ledger(ledger_path)
print("ready", flush=True)
while not go.exists():  # every claimer starts at the same moment
    time.sleep(0.001)
got = []
n = 0
while True:
    session = Session.parse(f"w{worker}-{n:04d}-claims")
    ledger.ensure_session(session)
    item = store.claim(ledger, "neon", session.key, fresher_than=0)
    if item is None:
        break
    got.append([item.id, session.key])
    n += 1
    time.sleep(0.002)  # the rest of a provision: the lock is free for the others meanwhile
print(json.dumps(got), flush=True)
"""


def make_items(ledger: Ledger, count: int) -> list[str]:
    ids = []
    for i in range(count):
        key = f"pool-{i:07x}"
        session = Session(key=key, slug=key)
        ledger.ensure_session(session)
        store.begin_fill(ledger, key, "neon")
        row = ledger.intend(key, "neon", "project", session.resource_name)
        ledger.mark_created(row.id, f"proj-{i}")
        store.fill_done(ledger, key, "sealed-elsewhere")
        ledger.set_session_state(key, SessionPhase.READY)
        ids.append(key)
    return ids


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite3")
    return request.getfixturevalue("pg_ledger_url")


def test_eight_processes_never_claim_one_item_twice_nor_lose_one(tmp_path: Path, location: str):
    ledger = Ledger(location)
    ids = make_items(ledger, ITEMS)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", CLAIMER, location, str(go), str(w)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(PROCESSES)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        go.touch()
        started = time.monotonic()
        wait_until_sync(lambda: all(p.poll() is not None for p in procs), timeout=120, what="every claimer to finish")
        elapsed = time.monotonic() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    claims: list[tuple[str, str]] = []
    per_process = []
    for proc in procs:
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        got = [tuple(pair) for pair in json.loads(out.strip().splitlines()[-1])]
        per_process.append(len(got))
        claims += got
    claimed_ids = [item for item, _ in claims]
    assert len(claimed_ids) == len(set(claimed_ids)), "an item was claimed twice"
    assert sorted(claimed_ids) == sorted(ids), "an item was lost"
    assert sum(1 for n in per_process if n) >= 2, f"the claimers did not overlap: {per_process}"
    # the ledger agrees with what each process was told
    for item_id, session_key in claims:
        found = store.item_of(ledger, item_id)
        assert found.state == store.CLAIMED and found.claimed_by == session_key
        (row,) = ledger.resources(session_key, live_only=True)
        assert row.name == f"mk0r-{item_id}"
        assert ledger.resources(item_id, live_only=True) == []
    print(f"{ledger.backend}: {ITEMS} claims by {PROCESSES} processes in {elapsed:.2f}s; per process {per_process}")
    ledger.close()
