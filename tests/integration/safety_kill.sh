#!/usr/bin/env bash
# kill -9 of the worker and of shed serve at seeded random points while three
# agents keep sessions busy (10 trials here; `make soak` runs 60): every call
# has exactly one result, none ran twice, a success ran exactly once, the
# calls not yet started run after recovery, and after the final SIGTERM no
# sandbox process, cgroup, mount or directory is left (safety_kill.py).
# SAFETY_KILL_TRIALS / SAFETY_KILL_SEED override the defaults.
# timeout: 240
. "$(dirname "$0")/../lib/common.sh"
python3 "$(dirname "$0")/worker_lib.py" --check-sandbox || exit $?
python3 "$(dirname "$0")/safety_kill.py" "$T" "${SAFETY_KILL_TRIALS:-10}" "${SAFETY_KILL_SEED:-10}" 150
