"""How a status looks: one glyph and one theme colour per status, shared by every widget."""

from __future__ import annotations

from mk0r_tui.core.models import Status

SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

STATUS_GLYPH: dict[Status, str] = {
    Status.WAITING: "·",
    Status.RUNNING: "◐",
    Status.RETRYING: "↻",
    Status.OK: "✓",
    Status.FAILED: "✗",
    Status.SKIPPED: "–",
    Status.TEARING_DOWN: "⌫",
    Status.GONE: "○",
}

#: Textual theme variables (usable in Content markup) per status
STATUS_COLOUR: dict[Status, str] = {
    Status.WAITING: "$text-muted",
    Status.RUNNING: "$warning",
    Status.RETRYING: "$warning",
    Status.OK: "$success",
    Status.FAILED: "$error",
    Status.SKIPPED: "$text-muted",
    Status.TEARING_DOWN: "$accent",
    Status.GONE: "$text-disabled",
}


def spinner_frame(now: float) -> str:
    """The spinner frame for wall-clock `now`: deterministic under a frozen clock."""
    return SPINNER_FRAMES[int(now * 10) % len(SPINNER_FRAMES)]


def glyph(status: Status, now: float) -> str:
    if status in (Status.RUNNING, Status.TEARING_DOWN):
        return spinner_frame(now)
    return STATUS_GLYPH[status]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def format_age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h"
    return f"{seconds // 86400:.0f}d"
