"""The keyword arguments every Textual widget takes, for widgets here that pass them through."""

from __future__ import annotations

from typing import TypedDict


class WidgetOptions(TypedDict, total=False):
    """`Widget.__init__`'s keyword arguments (textual.widget.Widget), as `**kwargs: Unpack[...]`."""

    name: str | None
    id: str | None
    classes: str | None
    disabled: bool
