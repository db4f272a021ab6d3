"""A Footer that shows its keys in the first frame, rebuilds them only when they change, and
fits the terminal: on a narrow one it turns compact and drops the keys that do not fit, never
`q` (quit or back) and `?` (help, which lists every key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Unpack

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from mk0r_tui.tui.widgets.options import WidgetOptions

if TYPE_CHECKING:
    from textual.screen import Screen

#: below this terminal width the footer is compact (no padding around the keys)
COMPACT_BELOW = 120
#: the actions a footer keeps first when the keys do not all fit, in this order
ESSENTIAL_ACTIONS = ("app.quit", "quit", "app.help", "help", "back", "close", "cancel", "clear_filter")
#: kept next, before the rest, when the room runs out
PREFERRED_ACTIONS = ("filter",)


def key_width(binding: Binding, key_display: str, *, compact: bool) -> int:
    """The cells one key takes in Textual's footer (key, description, their padding/margin)."""
    return len(key_display) + len(binding.description) + (2 if compact else 3)


class DebouncedFooter(Footer):
    """Textual's Footer composes empty, then recomposes (removes and mounts every key, each
    styled against the whole stylesheet) once per `refresh_bindings`: at start-up that is
    six rebuilds (screen resume, focus, the first selection...), most of them identical.

    This one composes its keys at once (the screen's bindings and `check_action` are ready
    when it mounts), collapses a burst of binding changes into one check after the next
    refresh, and recomposes only when what it would show differs from what it shows (which
    includes the width it fits into).

    `shown_actions` (the settings file's `footer_keys`) limits which keys it shows at all;
    the essential ones always stay.
    """

    def __init__(self, *, shown_actions: tuple[str, ...] = (), **kwargs: Unpack[WidgetOptions]) -> None:
        super().__init__(**kwargs)
        self.set_reactive(Footer._bindings_ready, True)
        self._shown: tuple[object, ...] | None = None
        self._check_pending = False
        self.shown_actions = shown_actions

    def _width(self) -> int:
        return self.app.size.width

    def _entries(self) -> list[tuple[Binding, bool, str]]:
        """The keys that fit, in the screen's order: essential ones first claim the room."""
        compact = self._width() < COMPACT_BELOW
        candidates: list[tuple[Binding, bool, str]] = []
        seen: set[str] = set()
        for _, binding, enabled, tooltip in self.screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue
            if self.shown_actions and binding.action not in self.shown_actions and binding.action not in ESSENTIAL_ACTIONS:
                continue
            seen.add(binding.action)
            candidates.append((binding, enabled, tooltip))
        budget = self._width() - (0 if compact else 14)  # the command palette key docks right when there is room
        rank = {action: index for index, action in enumerate((*ESSENTIAL_ACTIONS, *PREFERRED_ACTIONS))}
        by_priority = sorted(range(len(candidates)), key=lambda i: (rank.get(candidates[i][0].action, len(rank)), i))
        kept: set[int] = set()
        for index in by_priority:
            binding = candidates[index][0]
            cost = key_width(binding, self.app.get_key_display(binding), compact=compact)
            if cost <= budget:
                kept.add(index)
                budget -= cost
        return [entry for index, entry in enumerate(candidates) if index in kept]

    def _keys_shown(self) -> tuple[object, ...]:
        """Everything the footer's keys are made of."""
        return tuple(
            (binding.key, binding.action, binding.description, enabled, tooltip) for binding, enabled, tooltip in self._entries()
        ) + (self._width() < COMPACT_BELOW, self.show_command_palette)

    def compose(self) -> ComposeResult:
        entries = self._entries()
        compact = self._width() < COMPACT_BELOW
        self._shown = tuple(
            (binding.key, binding.action, binding.description, enabled, tooltip) for binding, enabled, tooltip in entries
        ) + (compact, self.show_command_palette)
        self.set_reactive(Footer.compact, compact)
        self.set_class(compact, "-compact")
        for binding, enabled, tooltip in entries:
            key = FooterKey(
                binding.key, self.app.get_key_display(binding), binding.description, binding.action,
                disabled=not enabled, tooltip=tooltip,
            )
            # FooterKey.compact starts True and the binding sets it only after mount: each key
            # then gains and loses `-compact`, two restylings against the whole stylesheet per
            # key (~25 of them in the first frame). Starting at the footer's value makes both no-ops.
            key.set_reactive(FooterKey.compact, compact)
            key.set_class(compact, "-compact", update=False)
            yield key.data_bind(compact=Footer.compact)
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE and not compact:
            try:
                _node, binding, enabled, tooltip = self.screen.active_bindings[self.app.COMMAND_PALETTE_BINDING]
            except KeyError:
                pass
            else:
                yield FooterKey(
                    binding.key, self.app.get_key_display(binding), binding.description, binding.action,
                    classes="-command-palette", disabled=not enabled, tooltip=binding.tooltip or binding.description,
                )

    def bindings_changed(self, screen: Screen[Any]) -> None:  # any screen, whatever its result
        if not screen.app.app_focus or self._check_pending:
            return
        if self.is_attached and screen is self.screen:
            self._schedule_check()

    def on_resize(self) -> None:
        if self.is_attached:
            self._schedule_check()

    def _schedule_check(self) -> None:
        if not self._check_pending:
            self._check_pending = True
            self.call_after_refresh(self._recompose_if_changed)

    async def _recompose_if_changed(self) -> None:
        self._check_pending = False
        if self.is_attached and self._keys_shown() != self._shown:
            await self.recompose()
