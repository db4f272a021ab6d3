"""The Textual dashboard. Only `mk0r-tui` with no command imports this package (the core and
the headless CLI never load Textual)."""
