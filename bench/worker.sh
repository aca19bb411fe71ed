#!/usr/bin/env bash
# shed worker vs the official SDK's EnvironmentWorker (Node 22, no sandbox)
# on the same shed serve and the same 200-call session, both workers up at
# once and their sessions interleaved over BENCH_ROUNDS rounds: per-call
# latency (server processed_at of agent.tool_use -> of its user.tool_result),
# p50/p99, wall time, peak RSS; then shed's idle RSS and per-session
# increment, and 200 concurrent sessions. Prints figures; never fails because
# the machine is slow. BENCH_CALLS, BENCH_ROUNDS, BENCH_RSS_SESSIONS,
# BENCH_MANY override the sizes; BENCH_SERVE_SYNC=normal|strict runs serve
# with that --sync (normal: no fsync per append; strict: the tool use's
# fsync before it reaches the worker, so in both sides' latency);
# BENCH_SHED_BASE=path adds another shed binary's worker to the interleaved
# rounds (before/after); BENCH_SERVE_BASE=path adds a shed worker on a
# second serve run from that binary (serve before/after, same rounds);
# BENCH_AGENT_CONN=new makes the agent open a connection per post;
# BENCH_NO_SDK=1 leaves the SDK worker out.
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
# Anchor: what one hand-over between two processes costs here (a call is a
# chain of them: serve -> worker -> sandbox -> worker -> serve).
cc -O2 -std=gnu11 -D_GNU_SOURCE -o "$T/handover" bench/handover.c && "$T/handover" 3000
out=$(run pair) || { echo "worker latency run failed"; exit 1; }
echo "$out" | grep -v '^RESULT'
if [ -x "$NODE" ]; then
    python3 - "$out" <<'PY'
import sys
r = {l.split()[1]: l.split() for l in sys.argv[1].splitlines() if l.startswith("RESULT")}
a, b = r["shed"], r["sdk"]
print("ratio SDK/shed: p50 %.1fx  p99 %.1fx  wall %.1fx  peak RSS %.1fx" % (
    float(b[2]) / float(a[2]), float(b[3]) / float(a[3]), float(b[4]) / float(a[4]), float(b[5]) / float(a[5])))
if "base" in r:
    c = r["base"]
    print("ratio base/shed: p50 %.2fx  p99 %.2fx" % (float(c[2]) / float(a[2]), float(c[3]) / float(a[3])))
if "sbase" in r:
    c = r["sbase"]
    print("ratio serve-base/serve: p50 %.2fx  p99 %.2fx" % (float(c[2]) / float(a[2]), float(c[3]) / float(a[3])))
PY
else
    echo "SDK anchor skipped: $NODE not installed (make deps)"
fi
run rss | grep -v '^RESULT'
run many
