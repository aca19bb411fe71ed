#!/usr/bin/env bash
# shed serve: every endpoint, auth rules, queue semantics, lease expiry,
# stale heartbeats, SSE, malformed input, restart (tests in serve_api.py).
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
command -v python3 >/dev/null || skip "python3 is not installed"
export T SHED
python3 "$(dirname "$0")/serve_api.py"
