#!/usr/bin/env bash
# shed worker vs the official SDK's EnvironmentWorker (Node 22, no sandbox)
# on the same shed serve and the same 200-call session: per-call latency
# (server processed_at of agent.tool_use -> of its user.tool_result), p50/p99,
# wall time, peak RSS; then shed's idle RSS and per-session increment, and
# 200 concurrent sessions. Prints figures; never fails because the machine
# is slow. BENCH_CALLS, BENCH_RSS_SESSIONS, BENCH_MANY override the sizes.
set -u
cd "$(dirname "$0")/.."
export SHED_ROOT=$PWD
: "${SHED:=$PWD/build/shed}"
export SHED
T=$(mktemp -d /tmp/shed-bench-worker.XXXXXX)
chmod 755 "$T"
trap 'rm -rf "$T"' EXIT
NODE=$PWD/node_modules/.bin/node
run() { mkdir -p "$T/$1"; python3 bench/worker_bench.py "$1" "$T/$1"; }
out_shed=$(run shed) || { echo "shed worker run failed"; exit 1; }
echo "$out_shed" | grep -v '^RESULT'
if [ -x "$NODE" ]; then
    out_sdk=$(run sdk) || { echo "SDK worker run failed"; exit 1; }
    echo "$out_sdk" | grep -v '^RESULT'
    python3 - "$out_shed" "$out_sdk" <<'PY'
import sys
a = [l.split() for l in sys.argv[1].splitlines() if l.startswith("RESULT")][0]
b = [l.split() for l in sys.argv[2].splitlines() if l.startswith("RESULT")][0]
print("ratio SDK/shed: p50 %.1fx  p99 %.1fx  wall %.1fx  peak RSS %.1fx" % (
    float(b[2]) / float(a[2]), float(b[3]) / float(a[3]), float(b[4]) / float(a[4]), float(b[5]) / float(a[5])))
PY
else
    echo "SDK anchor skipped: $NODE not installed (make deps)"
fi
run rss | grep -v '^RESULT'
run many
