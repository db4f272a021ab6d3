"""The provisioning service (issue 13): an HTTP API for a code generator, durable jobs on Postgres
(procrastinate), metrics and structured logs.

    app.py      the FastAPI application: routes, bearer auth, problem details, SSE over the journal
    jobs.py     the job queue: procrastinate tasks (provision, teardown) locked per session, the results
                table, waiting for a job, stalled-job recovery, queue counts
    runner.py   what a job runs: the engine's orchestrator on the process's one runtime
    metrics.py  Prometheus metrics fed by the runs' events (no session ids as labels)
    logjson.py  `--log-format json`: one object per line, secrets scrubbed by core/logs.ScrubFilter
    server.py   `mk0r-tui serve` (uvicorn + in-process workers) and `mk0r-tui worker`

Sits at the top beside the CLI (the import-linter layers contract): it imports the engine and below,
never Textual.
"""
