"""mk0r-tui: give every generated app a real backend before its coding agent writes a line."""

import sys as _sys

__version__ = "0.1.0"

# httpx imports its optional command-line module (`httpx._main`: rich's live display, pygments)
# whenever rich is installed, which Textual makes it; that costs every CLI run ~60 ms and loads
# Rich's live modules on a path that must not draw anything. httpx already treats a failed import
# of it as "the CLI extra is absent", so it is marked absent before anything imports httpx.
_sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
