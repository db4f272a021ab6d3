"""mk0r-tui: give every generated app a real backend before its coding agent writes a line."""

import sys as _sys
from typing import TYPE_CHECKING as _TYPE_CHECKING

__version__ = "0.1.0"

# httpx imports its optional command-line module (`httpx._main`: rich's live display, pygments)
# whenever rich is installed, which Textual makes it; that costs every CLI run ~60 ms and loads
# Rich's live modules on a path that must not draw anything. httpx already treats a failed import
# of it as "the CLI extra is absent", so it is marked absent before anything imports httpx.
_sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

if _TYPE_CHECKING:  # type checkers see the real signatures; at run time they load on first use
    from mk0r_tui.engine.library import provision, provision_async, teardown, teardown_async

#: the library entry point (engine/library.py), loaded on first use so `import mk0r_tui` stays cheap
_LIBRARY = ("provision", "teardown", "provision_async", "teardown_async")
__all__ = ["__version__", "provision", "provision_async", "teardown", "teardown_async"]


def __getattr__(name: str) -> object:
    if name in _LIBRARY:
        from mk0r_tui.engine import library

        return getattr(library, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LIBRARY])
