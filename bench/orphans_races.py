"""Races between mk0r-tui processes on one fake upstream, 50 trials each (CI runs a few of each:
tests/test_orphans_safety.py, same trial code in tests/racekit.py):

- `orphans --delete --yes --older-than 0s` started at points across a running `provision`:
  deletes nothing live (issue 9, finding 1);
- two data dirs (two ledgers) provisioning and deleting orphans side by side: neither deletes
  the other's resources (finding 2);
- two `provision`s of one key at once: 0 duplicates (finding 4), and a provision with a
  teardown of the same session: a consistent end;
- a SIGKILLed provision: `interrupted` within the heartbeat window, and `provision` again
  completes it with no duplicate.

Usage: .venv/bin/python bench/orphans_races.py [--trials 50] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import _common as c  # noqa: F401  (puts the repository root on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import racekit

from fakeupstream import FakeUpstream

RACES = {
    "orphans_vs_provision": lambda fake, tmp, n: racekit.orphans_delete_racing_provision(fake, tmp / "h", n),
    "two_ledgers": lambda fake, tmp, n: racekit.two_ledgers(fake, (tmp / "a", tmp / "b"), n),
    "double_provision": lambda fake, tmp, n: racekit.double_provisions(fake, tmp / "h", n),
    "provision_with_teardown": lambda fake, tmp, n: racekit.provision_and_teardown(fake, tmp / "h", n),
    "sigkill_resume": lambda fake, tmp, n: racekit.sigkilled_provision_resumes(fake, tmp / "h", n),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--only", choices=sorted(RACES), action="append")
    args = parser.parse_args()
    figures: dict[str, dict] = {}
    status = 0
    for name in args.only or list(RACES):
        with tempfile.TemporaryDirectory(prefix=f"mk0r-race-{name}-") as tmp, FakeUpstream(config=racekit.RACE_FAKE) as fake:
            started = time.monotonic()
            tally = RACES[name](fake, Path(tmp), args.trials)
            took = time.monotonic() - started
        figures[name] = {"trials": args.trials, "failed": len(tally.failures), "seconds": round(took, 1), **dict(tally.figures)}
        print(f"{name:26} {args.trials:3d} trials  {len(tally.failures):2d} failed  {took:6.1f}s  {dict(tally.figures)}")
        for failure in tally.failures[:5]:
            print(f"    {failure}")
        status |= bool(tally.failures)
    print(json.dumps({"orphans_races": figures}))
    return status


if __name__ == "__main__":
    sys.exit(main())
