"""Fixtures shared by the warm pool's cloud tests (imported by each module that uses them): a
fast fake upstream and a runtime with a pool of one item per provider."""

from __future__ import annotations

import pytest
from crashkit import cloud_runtime

from fakeupstream import FakeUpstream

FAKE_CONFIG = {"latency_ms": {"neon": 5, "resend": 5, "github": 5, "posthog": 5}, "neon_operation_ms": 0}
POOLED = ("neon", "resend", "github")


@pytest.fixture
def fake():
    with FakeUpstream(config=FAKE_CONFIG) as upstream:
        yield upstream


@pytest.fixture
async def runtime(fake, mk0r_home):
    rt = cloud_runtime(fake, pool_size=1)
    yield rt
    await rt.aclose()
    rt.close()
