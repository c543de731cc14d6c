#!/usr/bin/env bash
# Install the test dependencies and run the default (CPU, CI) test tier.
# Extra arguments go to pytest, e.g. `bash infra/local/test.sh -m slow`.
set -uo pipefail
cd "$(dirname "$0")/../.."
bash infra/local/setup.sh --test || exit $?
export ORT_DISABLE_TELEMETRY=1 RAY_USAGE_STATS_ENABLED=0
if [ "$#" -eq 0 ]; then set -- -m "not slow and not chaos and not gpu and not soak and (not cluster or cluster_ci)"; fi
.venv/bin/python -m pytest "$@"
rc=$?
# pytest exits 5 when no test was collected (e.g. a -m selection that matches nothing).
if [ "$rc" -eq 5 ]; then echo "test.sh: no tests collected"; rc=0; fi
exit "$rc"
