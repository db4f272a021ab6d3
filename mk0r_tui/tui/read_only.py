"""The read-only rule (`mk0r-tui --read-only`, and every tab of `mk0r-tui web` without
`--allow-actions`): a demo screen shows live panels and masked values only.

It is an allowlist, not a list of forbidden actions: each screen names the actions that neither
create, delete, hand off, nor show or copy a secret (`READ_ONLY_SAFE`), and a read-only
dashboard refuses every other action of that screen. An action added later (hand-off `h`, say)
is therefore off in read-only until someone decides it is safe and lists it. A refused action
is hidden from the footer and the command palette (Textual's `check_action` returning False),
and a key bound to it does nothing.

Textual-free, so the rule can be read (and tested) without the app.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ReadOnlyRule:
    """Mixed into a Screen: `check_action` refuses what is not in `READ_ONLY_SAFE` when the
    app is read-only. A screen that overrides `check_action` calls `read_only_refuses` first."""

    #: the actions of this screen that a read-only dashboard keeps (navigation and masked views)
    READ_ONLY_SAFE: ClassVar[frozenset[str]] = frozenset()

    app: Any

    def read_only_refuses(self, action: str) -> bool:
        return bool(getattr(self.app, "read_only", False)) and action not in self.READ_ONLY_SAFE

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not self.read_only_refuses(action)


__all__ = ["ReadOnlyRule"]
