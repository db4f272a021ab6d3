"""The test helpers' own speed: figures that used to be timing assertions in unit tests
(tests/test_apispec.py, tests/test_fakeupstream.py), where they failed under `-n 2` load.

1. Spec validation once a document is loaded: per `validate_request` call, for a Neon and a
   GitHub create (goal: median <= 50 ms; the tests keep only "valid passes, broken fails").
2. The fake upstream's latency is concurrent: 50 GETs at once with 200 ms injected latency
   on GitHub; wall time per burst (goal: median < 1.0 s, i.e. the requests never queue behind
   one another; the test keeps "all 50 were in flight at once").

Each figure is the median/min/max over `--rounds` rounds; the load average is printed, since
other work on the machine skews both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import _common as c

# apispec is a test helper by nature (it validates mocked traffic); loaded from tests/ by path.
sys.path.insert(0, str(c.ROOT / "tests"))
import httpx
from apispec import validate_request

from fakeupstream import FakeUpstream

AUTH = {"Authorization": "Bearer bench-token"}


def spec_validation(rounds: int) -> dict[str, dict[str, float]]:
    requests = {
        "neon POST /projects": httpx.Request(
            "POST", "https://console.neon.tech/api/v2/projects", headers=AUTH,
            json={"project": {"name": "mk0r-abc", "region_id": "aws-us-east-2", "pg_version": 17}}),
        "github POST /user/repos": httpx.Request(
            "POST", "https://api.github.com/user/repos", headers=AUTH, json={"name": "mk0r-x", "private": True}),
    }
    out = {}
    for name, request in requests.items():
        validate_request(request)  # loads and caches the spec
        per_call = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(10):
                validate_request(request)
            per_call.append((time.perf_counter() - start) / 10 * 1000)
        out[name] = c.summary(per_call)
    return out


def latency_burst(rounds: int, n: int = 50, latency_ms: int = 200) -> tuple[dict[str, float], int]:
    with FakeUpstream(config={"latency_ms": {"github": latency_ms}}) as fake:
        async def burst() -> None:
            limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
            async with httpx.AsyncClient(headers=AUTH, trust_env=False, limits=limits, timeout=10) as client:
                responses = await asyncio.gather(*(client.get(fake.github_url + "/user") for _ in range(n)))
            assert [r.status_code for r in responses] == [200] * n

        walls = []
        for _ in range(rounds):
            start = time.perf_counter()
            asyncio.run(burst())
            walls.append(time.perf_counter() - start)
        in_flight = fake.state()["requests"]["github"]["max_in_flight"]
    return c.summary(walls), in_flight


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    info = c.print_header("test helpers: spec validation and the fake's concurrent latency", "helpers_speed.py")

    validation = spec_validation(args.rounds)
    print(c.table(["validate_request (ms per call)", "median", "min", "max"],
                  [[k, v["median"], v["min"], v["max"]] for k, v in validation.items()]))
    print()
    walls, in_flight = latency_burst(max(3, args.rounds // 4))
    print(c.table(["50 GETs, 200 ms latency (s per burst)", "median", "min", "max", "max in flight"],
                  [["github /user", walls["median"], walls["min"], walls["max"], in_flight]]))
    print(f"load average (1 min) at end: {os.getloadavg()[0]:.2f}")

    goals = [c.Goal(f"validate_request median, {k}", v["median"], 50.0, " ms") for k, v in validation.items()]
    goals.append(c.Goal("50 concurrent requests at 200 ms, median wall", walls["median"], 1.0, " s"))
    return c.finish("helpers_speed", info, goals, {"validation_ms": validation, "burst_s": walls,
                                                  "max_in_flight": in_flight,
                                                  "loadavg_1m_at_end": os.getloadavg()[0]})


if __name__ == "__main__":
    sys.exit(main())
