#!/usr/bin/env sh
# Run every benchmark in turn; each prints a table and one JSON line (its figures) at the end.
# Usage: bench/run_all.sh [> figures.txt]     (from anywhere; uses the repo's .venv)
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
status=0
for bench in helpers_speed single_session many_sessions local_profile orphan_teardown orphans_races dashboard modal_open memory journal_overhead journal_follow journal_100k; do
    echo
    "$PY" "bench/$bench.py" || { echo "bench/$bench.py failed (exit $?)"; status=1; }
done
exit $status
