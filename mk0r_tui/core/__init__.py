"""The UI-agnostic core: models, events, orchestrator, ledger, envfile, config, credentials.

Nothing under this package may import Textual (checked by import-linter and by a test).
"""
