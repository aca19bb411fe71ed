#!/usr/bin/env bash
# A bounded load run: 50 concurrent sessions with mixed tools (write, read,
# edit, glob, grep, bash) for 60 s against shed serve and one worker: no
# result lost, none duplicated, none wrong, every bash call ran exactly once
# (tests/soak/load.py; `make soak` runs 200 sessions for 10 minutes).
# timeout: 300
. "$(dirname "$0")/../lib/common.sh"
python3 "$(dirname "$0")/worker_lib.py" --check-sandbox || exit $?
ulimit -n 65536 2>/dev/null || true
python3 "$SHED_ROOT/tests/soak/load.py" "$T" "${SAFETY_LOAD_SESSIONS:-50}" "${SAFETY_LOAD_SECONDS:-60}" 3
