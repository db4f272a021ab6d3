"""The engine: plans a provisioning run and runs it (orchestrator), holds one process's working
set (runtime), and checks keys (doctor). Above the providers and targets, below the CLI and
the dashboard; it never imports Textual."""
