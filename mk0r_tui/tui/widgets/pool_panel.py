"""The warm pool's panel (issue 14): each pooled provider's level against its target, what the
refill is doing, the claims' latency p50/p95 and the renames still to finish.

Mounted under the session list only when a pool is configured (MK0R_POOL_SIZE or a per-provider
size), so a dashboard without one looks exactly as before. It reads `engine.pool_upkeep.status` (a few
ledger reads) every `REFRESH_S`; the keeper that refills runs in the app (tui/app.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from textual.content import Content
from textual.widgets import Static

REFRESH_S = 2.0


def level_bar(ready: int, target: int, width: int = 8) -> str:
    """`●●●○○` for 3 of 5; scaled to `width` cells for a large target."""
    if target <= 0:
        return ""
    cells = min(target, width)
    full = round(cells * min(ready, target) / target)
    return "●" * full + "○" * (cells - full)


def pool_lines(status: Mapping[str, Any], activity: Mapping[str, str]) -> Content:
    lines: list[Content] = []
    providers: Mapping[str, Any] = status.get("providers", {})
    if not providers:
        lines.append(Content.styled("no pooled provider runs in this plan", "$text-muted"))
    for name, p in providers.items():
        ready, target = int(p["ready"]), int(p["target"])
        doing = activity.get(name) or (f"filling {p['filling']}" if p["filling"] else "")
        style = "$text-success" if ready >= target > 0 else "$text-warning"
        lines.append(Content.assemble(
            (f"{name:<15}", ""), (level_bar(ready, target), style), (f" {ready}/{target}", style),
            (f"  {doing}" if doing else "", "$text-muted"),
            (f"  {p['claimed_total']} claimed", "$text-muted"),
        ))
    claim = status.get("claim_ms", {})
    if claim.get("n"):
        lines.append(Content.styled(
            f"claim p50 {claim['p50']:.0f} ms · p95 {claim['p95']:.0f} ms ({claim['n']})", "$text-muted"))
    for c in status.get("unfinished_claims", ()):
        if c.get("error"):
            lines.append(Content.styled(f"rename of {c['provider']} for {c['session']} failed: {c['error']}", "$text-warning"))
        else:
            lines.append(Content.styled(f"renaming {c['provider']} for {c['session']}", "$text-muted"))
    return Content("\n").join(lines)


class PoolPanel(Static):
    """`read_status()` gives `engine.pool_upkeep.status(runtime)`; `read_activity()` the keeper's words."""

    def __init__(self, read_status: Callable[[], Mapping[str, Any]], read_activity: Callable[[], Mapping[str, str]],
                 *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._read_status = read_status
        self._read_activity = read_activity
        self.border_title = "warm pool"

    def on_mount(self) -> None:
        self.refresh_status()
        self.set_interval(REFRESH_S, self.refresh_status, name="pool")

    def refresh_status(self) -> None:
        try:
            self.update(pool_lines(self._read_status(), self._read_activity()))
        except Exception as exc:  # the ledger busy or gone: say so, try again next time
            self.update(Content.styled(f"pool status unavailable: {type(exc).__name__}", "$text-error"))
