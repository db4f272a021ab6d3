"""mk0r-tui: give every generated app a real backend before its coding agent writes a line."""

__version__ = "0.1.0"
