#!/usr/bin/env bash
# A seeded fault-injecting proxy (tests/lib/faultproxy.py --mix full: 5xx, drops, answers
# lost after the server applied them, delays, truncated bodies, cut and
# stalled event streams) between the worker and shed serve: every call gets
# exactly one result and runs at most once; a success ran exactly once.
# `make soak` adds a stream that stalls for good (the worker's 45 s stall
# timeout must notice it). SAFETY_FAULT_SEED overrides the seed.
# timeout: 240
. "$(dirname "$0")/../lib/common.sh"
python3 "$(dirname "$0")/worker_lib.py" --check-sandbox || exit $?
python3 "$(dirname "$0")/safety_faults.py" "$T" "${SAFETY_FAULT_SEED:-7}" 3 15 0.3
