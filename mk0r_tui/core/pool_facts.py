"""Facts the warm pool keeps ahead of claims (issue 14): what a provision would otherwise ask
upstream on the path to its `.env` although the answer is the same for every session.

One so far: PostHog accepted this project key on this host (its flags probe, see
providers/posthog.py), and when. Any successful probe records it (a provision's, `doctor`'s, the
keeper's, which refreshes it ahead of need); a refusal forgets it. While a pool is configured, a
provision trusts a fact younger than `MK0R_POOL_MAX_AGE` (the age after which pooled items are
recycled too) and sends nothing before its `.env`.

Kept in `<data dir>/pool-facts.json` (0600, written atomically), beside `pool.key`: a fact is
about this machine's configuration (its key and host), so it is per data dir, not in a shared
ledger. It holds a fingerprint of host and key (sha-256), never the key.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from mk0r_tui.core.config import Settings
from mk0r_tui.core.envfile import atomic_write
from mk0r_tui.core.errors import Mk0rError
from mk0r_tui.core.paths import refuse_link

FACTS_FILE = "pool-facts.json"


def _path(settings: Settings) -> Path:
    return settings.data_dir / FACTS_FILE


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _read(settings: Settings) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(refuse_link(_path(settings), "pool facts file").read_text(encoding="utf-8"))
    except (OSError, ValueError, Mk0rError):  # none yet, unreadable or a link: no fact
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def checked_at(settings: Settings, name: str, *parts: str) -> float | None:
    """When fact `name` was last found true for exactly these parts (key, host...), or None."""
    fact = _read(settings).get(name)
    if not fact or fact.get("fingerprint") != fingerprint(*parts):
        return None
    at = fact.get("checked_at")
    return float(at) if isinstance(at, int | float) else None


def fresh(settings: Settings, name: str, *parts: str) -> float | None:
    """The fact's age in seconds when a claim may trust it (younger than MK0R_POOL_MAX_AGE)."""
    at = checked_at(settings, name, *parts)
    if at is None:
        return None
    age = time.time() - at
    return age if 0 <= age < settings.pool_max_age_s else None


def record(settings: Settings, name: str, *parts: str, at: float | None = None) -> None:
    facts = _read(settings)
    facts[name] = {"fingerprint": fingerprint(*parts), "checked_at": time.time() if at is None else at}
    _write(settings, facts)


def forget(settings: Settings, name: str) -> None:
    facts = _read(settings)
    if facts.pop(name, None) is not None:
        _write(settings, facts)


def _write(settings: Settings, facts: dict[str, dict[str, object]]) -> None:
    path = refuse_link(_path(settings), "pool facts file")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, json.dumps(facts, sort_keys=True) + "\n", mode=0o600, durable=False)
