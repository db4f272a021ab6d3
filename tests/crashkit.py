"""Helpers for the fault matrix and the crash-safety harness: the real providers, the real
CLI and the real ledger, talking HTTP to the stateful fake upstream (`fakeupstream.py`) on
loopback.

`cloud_runtime` builds an in-process Runtime (optionally on a fake clock, so waits are
asserted and never spent); `cli_env` and `run_cli` drive `python -m mk0r_tui` in a
subprocess against the same fake; `upstream_resources` flattens the fake's `state()`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudmock import FakeClock, keyed
from fakes import registry_of
from ledgerkit import ledger_env

from fakeupstream import FakeUpstream
from mk0r_tui.core.config import load_settings
from mk0r_tui.engine.runtime import Runtime

PYTHON = sys.executable
#: fake tokens: any token not starting with "bad" is accepted by the fake
KEYS = {
    "NEON_PROVISIONING_KEY": "napi_fault_matrix_key_0001",
    "RESEND_PROVISIONING_KEY": "re_fault_matrix_key_0001",
    "GITHUB_PROVISIONING_TOKEN": "ghp_fault_matrix_token_0001",
    "POSTHOG_PROJECT_KEY": "phc_fault_matrix_key_0001",
}
CLOUD_PROVIDERS = ("neon", "resend", "github", "posthog")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fake_settings(fake: FakeUpstream, **overrides: Any):
    """Settings that send every cloud provider to the fake, with no artificial gaps."""
    values: dict[str, Any] = {
        "profile": "cloud",
        "target": "local",
        "neon_api_url": fake.neon_url,
        "resend_api_url": fake.resend_url,
        "github_api_url": fake.github_url,
        "posthog_host": fake.posthog_url,
        "github_mutation_gap_s": 0.0,
        "resend_requests_per_second": 1000.0,
    }
    values.update(overrides)
    if "home" in values and "ledger_url" not in values:  # the Postgres pass: that data dir's own database
        values.update({name.removeprefix("MK0R_").lower(): url for name, url in ledger_env(values["home"]).items()})
    return load_settings(**values)


def cloud_runtime(fake: FakeUpstream, clock: FakeClock | None = None, *, keys: dict[str, str] | None = None,
                  **overrides: Any) -> Runtime:
    """A real Runtime whose four cloud providers talk to `fake`; with `clock`, every retry wait
    and poll interval is spent on the fake clock instead of the wall."""
    from mk0r_tui.providers.github import GitHubProvider
    from mk0r_tui.providers.neon import NeonProvider
    from mk0r_tui.providers.posthog import PostHogProvider
    from mk0r_tui.providers.resend import ResendProvider

    settings = fake_settings(fake, **overrides)
    credentials = keyed(**(KEYS if keys is None else keys))
    providers = {}
    for cls in (NeonProvider, ResendProvider, GitHubProvider, PostHogProvider):
        key_name = getattr(cls, "key_name", None)
        if key_name and not credentials.get(key_name).present:
            continue
        providers[cls.name] = cls(settings=settings, credentials=credentials,
                                  clock=clock.clock if clock is not None else None)
    return Runtime(settings, credentials, registry=registry_of(*providers.values()))


@dataclass(frozen=True)
class Stamp:
    """One request as the client sent it, at the fake clock's time."""

    at: float
    method: str
    path: str


def stamp_requests(runtime: Runtime, provider: str, clock: FakeClock) -> list[Stamp]:
    """Record the fake-clock time of every request `provider` sends from now on (an httpx
    request hook on its pooled client). Call it inside the event loop that will provision."""
    api = runtime.provider(provider).api  # type: ignore[attr-defined]
    stamps: list[Stamp] = []

    async def hook(request) -> None:
        stamps.append(Stamp(clock.now(), request.method, request.url.path))

    api._http().event_hooks["request"].append(hook)
    return stamps


def cli_env(fake: FakeUpstream, home: Path, *, keys: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment for `python -m mk0r_tui` against `fake`: fake keys, fake URLs, no
    keyring, its own data dir."""
    env = {k: v for k, v in os.environ.items() if k not in KEYS and not k.startswith("MK0R_")}
    env.update(KEYS if keys is None else keys)
    env.update({
        "MK0R_NEON_API_URL": fake.neon_url,
        "MK0R_RESEND_API_URL": fake.resend_url,
        "MK0R_GITHUB_API_URL": fake.github_url,
        "POSTHOG_HOST": fake.posthog_url,
        "MK0R_GITHUB_MUTATION_GAP_S": "0",
        "MK0R_RESEND_RPS": "1000",
        "MK0R_HOME": str(home),
        "MK0R_POSTGRES_DIR": str(home / "postgres"),
        **ledger_env(home),  # the Postgres pass: this data dir's ledger database
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [PYTHON, "-m", "mk0r_tui", *args]


def run_cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args), env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def cli_json(env: dict[str, str], *args: str) -> Any:
    proc = run_cli(env, *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"not JSON from {args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}") from None


@dataclass(frozen=True)
class Upstream:
    """One resource the fake holds."""

    provider: str
    kind: str
    name: str
    remote_id: str


def upstream_resources(state: dict) -> list[Upstream]:
    """Every resource in the fake's `state()`, with the kind and remote id our ledger uses."""
    found = [Upstream("neon", "project", p["name"], p["id"]) for p in state["neon"]]
    found += [Upstream("resend", "segment", s["name"], s["id"]) for s in state["resend"]["segments"]]
    found += [Upstream("resend", "api-key", k["name"], k["id"]) for k in state["resend"]["api_keys"]]
    found += [Upstream("github", "repo", r["full_name"].split("/", 1)[1], r["full_name"]) for r in state["github"]]
    return found


def route_count(state: dict, provider: str, route: str) -> int:
    return state["requests"][provider]["by_route"].get(route, 0)
