#!/usr/bin/env sh
# Run every benchmark in turn; each prints a table and one JSON line (its figures) at the end.
# The process benches (startup, single_session, local_profile, dashboard) compare against a
# baseline measured in the same run; each prints the load average: run them on a quiet machine.
# Usage: bench/run_all.sh [> figures.txt]     (from anywhere; uses the repo's .venv)
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
status=0
for bench in helpers_speed startup single_session many_sessions team_pacing local_profile orphan_teardown orphans_races dashboard modal_open memory journal_overhead journal_follow journal_100k; do
    echo
    echo "# $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$PY" "bench/$bench.py" || { echo "bench/$bench.py failed (exit $?)"; status=1; }
done
exit $status
