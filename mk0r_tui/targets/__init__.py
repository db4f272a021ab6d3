"""Targets: where a session's `.env` and instructions land (a local folder, an E2B sandbox).

A target is a provider of slot TARGET: the orchestrator runs it after the others, with their
results, and it tears down and discovers what it made the same way.
"""
