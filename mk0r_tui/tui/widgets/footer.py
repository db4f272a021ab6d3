"""A Footer that shows its keys in the first frame and rebuilds them only when they change."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Unpack

from textual.app import ComposeResult
from textual.widgets import Footer

from mk0r_tui.tui.widgets.options import WidgetOptions

if TYPE_CHECKING:
    from textual.screen import Screen


class DebouncedFooter(Footer):
    """Textual's Footer composes empty, then recomposes (removes and mounts every key, each
    styled against the whole stylesheet) once per `refresh_bindings`: at start-up that is
    six rebuilds (screen resume, focus, the first selection...), most of them identical.

    This one composes its keys at once (the screen's bindings and `check_action` are ready
    when it mounts), collapses a burst of binding changes into one check after the next
    refresh, and recomposes only when what it would show differs from what it shows.
    """

    def __init__(self, **kwargs: Unpack[WidgetOptions]) -> None:
        super().__init__(**kwargs)
        self.set_reactive(Footer._bindings_ready, True)
        self._shown: tuple[object, ...] | None = None
        self._check_pending = False

    def _keys_shown(self) -> tuple[object, ...]:
        """Everything of the active bindings that the footer's keys are made of."""
        palette = self.app.COMMAND_PALETTE_BINDING
        return tuple(
            (binding.key, binding.action, binding.description, binding.group, enabled, tooltip)
            for key, (_, binding, enabled, tooltip) in self.screen.active_bindings.items()
            if binding.show or key == palette
        ) + (self.compact, self.show_command_palette)

    def compose(self) -> ComposeResult:
        self._shown = self._keys_shown()
        yield from super().compose()

    def bindings_changed(self, screen: Screen[Any]) -> None:  # any screen, whatever its result
        if not screen.app.app_focus or self._check_pending:
            return
        if self.is_attached and screen is self.screen:
            self._check_pending = True
            self.call_after_refresh(self._recompose_if_changed)

    async def _recompose_if_changed(self) -> None:
        self._check_pending = False
        if self.is_attached and self._keys_shown() != self._shown:
            await self.recompose()
