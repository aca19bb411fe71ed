#!/usr/bin/env bash
# shed serve: poll->ack->heartbeat->stop cycles/s and event post->SSE
# delivery latency (p50/p99) with 1 and 50 concurrent workers/streams, and
# server CPU with 50 idle long-polling workers; anchor: a plain authenticated
# read in the same run. Driver: bench/serve_load.py (python3 stdlib).
# Then a worker's call as serve sees it (bench/serve_append.py): the
# agent.tool_use POST and the user.tool_result POST, p50/p99 per request, with
# the session's two SSE streams open, and serve's CPU per call.
# BENCH_SECONDS (default 3) sets each throughput phase's length.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SHED:=$PWD/build/shed}"
command -v python3 >/dev/null || { echo "serve bench: python3 missing"; exit 1; }
ADMIN=bench-admin-key-0123456789
run() { # SYNC MODE
    local T pid URL
    T=$(mktemp -d /tmp/shed-bench-serve.XXXXXX)
    SHED_ADMIN_KEY=$ADMIN "$SHED" serve --listen 127.0.0.1:0 --state-dir "$T" --log-level warn --sync "$1" \
        >"$T/out" 2>"$T/err" &
    pid=$!
    for _ in $(seq 100); do grep -qs 'listening on' "$T/out" && break; sleep 0.05; done
    URL=$(sed -n 's/^shed serve: listening on //p' "$T/out")
    [ -n "$URL" ] || { cat "$T/err"; kill $pid; rm -rf "$T"; return 1; }
    echo "--- shed serve --sync $1 (SQLite WAL, synchronous=${1^^}) on $URL; $(nproc) cores"
    SHED_URL=$URL SHED_ADMIN_KEY=$ADMIN SHED_PID=$pid BENCH_PHASES=$2 timeout 300 python3 bench/serve_load.py
    local rc=$?
    if [ $rc -eq 0 ]; then
        SHED_URL=$URL SHED_ADMIN_KEY=$ADMIN SHED_PID=$pid timeout 120 python3 bench/serve_append.py || rc=$?
    fi
    kill $pid; wait $pid 2>/dev/null
    rm -rf "$T"
    return $rc
}
run full all
run normal writes
