"""Shared setup for the benchmarks: the machine, the fake upstream, a runtime pointed at it,
and the way figures are printed (a plain table, goals with PASS/MISS, one JSON line last).

Every figure is measured in the run that prints it; nothing here is a constant result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the repository root holds mk0r_tui and the fakeupstream package
    sys.path.insert(0, str(ROOT))

from fakeupstream import FakeUpstream
from mk0r_tui.core.config import Settings
from mk0r_tui.core.credentials import Credentials
from mk0r_tui.core.ledger import Ledger
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.providers import DEFAULT_REGISTRY

#: injected latency per request, ms (the issue's figures: Resend's two calls are 150 ms each)
LATENCY_MS = {"neon": 800, "resend": 150, "github": 400, "posthog": 50}
CLOUD_PROVIDERS = ("posthog", "neon", "resend", "github")
BENCH_KEYS = {
    "NEON_PROVISIONING_KEY": "bench-neon-key",
    "RESEND_PROVISIONING_KEY": "bench-resend-key",
    "GITHUB_PROVISIONING_TOKEN": "bench-github-token",
    "POSTHOG_PROJECT_KEY": "phc_bench",
}


# -- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    return {
        "loadavg_1m_at_start": os.getloadavg()[0],
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "mem_total_gib": mem_gib,
        "platform": platform.platform(terse=True),
    }


def compile_product() -> int:
    """Byte-compile mk0r_tui as `pip install` of the wheel does, so a process run from this
    editable checkout loads cached bytecode as an installed user's does (the baselines' own
    libraries are compiled by pip). Needed where PYTHONDONTWRITEBYTECODE is set (this machine):
    there every process would otherwise compile ~50 of our modules from source (~100 ms)."""
    import compileall

    compileall.compile_dir(str(ROOT / "mk0r_tui"), quiet=1)
    return sum(1 for _ in (ROOT / "mk0r_tui").rglob("__pycache__/*.pyc"))


def print_header(title: str, script: str) -> dict[str, Any]:
    info = machine()
    info["product_bytecode_files"] = compile_product()
    print(f"== {title}")
    print(f"machine: {info['nproc']} CPU ({info['cpu']}), {info['mem_total_gib']} GiB RAM, "
          f"Python {info['python']}, {info['platform']}")
    print(f"load average (1 min) at start: {info['loadavg_1m_at_start']:.2f} (other work on the machine skews figures)")
    print(f"reproduce: .venv/bin/python bench/{script}")
    print(f"mk0r_tui byte-compiled as an installed wheel is ({info['product_bytecode_files']} .pyc files; "
          f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r} here)")
    print()
    return info


# -- figures -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100), the plain definition: no interpolation."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": percentile(values, 95),
        "min": min(values),
        "max": max(values),
    }


@dataclass(frozen=True)
class Goal:
    name: str
    measured: float
    limit: float
    unit: str = ""

    @property
    def ok(self) -> bool:
        return self.measured <= self.limit

    def line(self) -> str:
        verdict = "PASS" if self.ok else "MISS"
        return f"{verdict}  {self.name}: {self.measured:.3f}{self.unit} (goal <= {self.limit:g}{self.unit})"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "measured": round(self.measured, 4), "goal_max": self.limit, "ok": self.ok}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    out = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def finish(bench: str, info: dict[str, Any], goals: Sequence[Goal], figures: dict[str, Any]) -> int:
    """Print the goals and the one JSON line; the exit status is 0 either way (a miss is a
    figure, not a crash), so run_all.sh runs every bench."""
    if goals:
        print()
        for goal in goals:
            print(goal.line())
    load_end = os.getloadavg()[0]
    if max(info.get("loadavg_1m_at_start", 0.0), load_end) > (os.cpu_count() or 1):
        print(f"WARNING: the load average ({info.get('loadavg_1m_at_start', 0.0):.1f} at start, {load_end:.1f} at the end) "
              f"was above the {os.cpu_count()} CPUs: wall-time figures and ratios are inflated; re-run on a quiet machine")
    print()
    print(json.dumps({
        "bench": bench,
        "machine": info,
        "goals": [g.to_json() for g in goals],
        "figures": figures,
        "command": f".venv/bin/python bench/{bench}.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }, default=_json_default, separators=(",", ":")))
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    return str(value)


# -- the fake upstream and a runtime pointed at it -----------------------------------------


@contextlib.contextmanager
def fake_upstream(latency_ms: dict[str, float] | None = None, **config: Any) -> Iterator[FakeUpstream]:
    """The fake in its own process, so its event loop never competes with ours for the GIL."""
    config = {"latency_ms": dict(latency_ms if latency_ms is not None else LATENCY_MS), **config}
    with FakeUpstream(config=config, use_subprocess=True) as fake:
        yield fake


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as path:
        yield Path(path)


def cloud_settings(fake: FakeUpstream, home: Path, **overrides: Any) -> Settings:
    """The test kit's cloud settings against the fake (one place knows its URLs), with this
    bench's data dir and the product's own Resend rate unless an override says otherwise."""
    from crashkit import fake_settings

    overrides.setdefault("resend_requests_per_second", Settings().resend_requests_per_second)
    return fake_settings(fake, home=home, no_keyring=True, **overrides)


def bench_credentials(keys: dict[str, str] | None = None) -> Credentials:
    return Credentials(environ=dict(BENCH_KEYS if keys is None else keys), use_keyring=False)


def make_runtime(settings: Settings, credentials: Credentials | None = None) -> Runtime:
    settings.ensure_data_dir()
    return Runtime(settings, credentials or bench_credentials(), Ledger(settings.ledger_path), registry=DEFAULT_REGISTRY)


async def close_runtime(runtime: Runtime) -> None:
    await runtime.aclose()
    runtime.close()


def max_in_flight(state: dict[str, Any]) -> dict[str, int]:
    return {p: int(state["requests"][p]["max_in_flight"]) for p in CLOUD_PROVIDERS}


def requests_by_route(state: dict[str, Any], provider: str) -> dict[str, int]:
    return dict(state["requests"][provider]["by_route"])


def run(coro) -> Any:
    return asyncio.run(coro)


# -- a ledger full of sessions (the dashboard and memory benches) ---------------------------

#: per session: (provider, slot, resources as (kind, name suffix)); five runs, five resources
LEDGER_SHAPE = (
    ("posthog", "analytics", ()),
    ("neon", "database", (("project", ""),)),
    ("resend", "email", (("segment", " Users"), ("api-key", ""))),
    ("github", "repo", (("repo", ""),)),
    ("local-folder", "target", (("app-folder", ""),)),
)


def fill_ledger(ledger: Ledger, sessions: int) -> None:
    """`sessions` ready sessions, each with five providers' runs and five resources, written
    through the Ledger's own methods. One transaction around it all: the ledger commits every
    write durably (synchronous=FULL), which would make 17,000 writes take a minute here."""
    import uuid

    from mk0r_tui.core.models import ProviderResult, Session, Slot, Status

    db = ledger._db  # the one connection; a bench may batch its writes
    db.execute("BEGIN")
    try:
        for i in range(sessions):
            session = Session.parse(f"{i:06d}{uuid.uuid4().hex[:6]}-bench")
            ledger.ensure_session(session, target="local-folder")
            for provider, slot, resources in LEDGER_SHAPE:
                refs = []
                for kind, suffix in resources:
                    row = ledger.intend(session.key, provider, kind, session.resource_name + suffix)
                    ledger.mark_created(row.id, f"{provider}-{i}-{kind}", url=f"https://example.invalid/{provider}/{i}")
                    refs.append(row.ref)
                ledger.record_run(session.key, ProviderResult(
                    provider, Slot(slot), Status.OK, 100.0 + (i % 50) * 10, 1, resources=tuple(refs),
                    note="bench"))
            ledger.set_session_state(session.key, "ready")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


# -- A against B, in the same run ---------------------------------------------------------------


def load_now() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} CPUs"


def alternate(a, b, runs: int, *, warmup: int = 1) -> tuple[list[float], list[float]]:
    """`a(i)` and `b(i)` (each returns seconds or ms) alternated A B A B, `warmup` pairs first
    that are not counted (page cache, the fake's first connections), so neither side always
    runs on a machine the other just warmed or loaded."""
    for i in range(warmup):
        a(-1 - i)
        b(-1 - i)
    got_a, got_b = [], []
    for i in range(runs):
        got_a.append(a(i))
        got_b.append(b(i))
    return got_a, got_b


def versus(name: str, a: Sequence[float], b: Sequence[float], unit: str = "ms") -> list[list[Any]]:
    """Table rows for A beside its baseline B: median, min, max of each, and the ratio of medians."""
    sa, sb = summary(a), summary(b)
    return [[name, "product", sa["median"], sa["min"], sa["max"], sa["median"] / sb["median"]],
            ["", "baseline", sb["median"], sb["min"], sb["max"], ""]]


VERSUS_HEADERS = ["figure", "who", "median ms", "min ms", "max ms", "median / baseline median"]


LAST_CPU_MS = [0.0]


def timed_process(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                  timeout: float = 120) -> tuple[float, str, str]:
    """Wall ms of a whole process (fork to exit), its stdout and stderr; a failure stops the bench."""
    import resource
    import subprocess
    import time

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    wall_ms = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    #: CPU the process (and its children) used, ms: the part of its wall time the load multiplies
    LAST_CPU_MS[0] = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(Path(a).name for a in argv[:2])}... failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return wall_ms, done.stdout, done.stderr


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any mk0r or provider variable of the caller's shell, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MK0R_", "NEON_", "RESEND_", "GITHUB_", "POSTHOG_", "E2B_"))}
    env.update(extra)
    return env
