#!/usr/bin/env bash
# The shed worker's memory (issues #6 and #10): idle RSS (after start-up,
# with its largest mappings), RSS per active session, and a short soak's
# RSS after warm-up vs at the end (tests/soak/load.py: mixed tools, every
# result checked). Prints figures; never fails because the machine is slow.
#   BENCH_RSS_SESSIONS (50)   sessions for the per-session figure
#   BENCH_MEM_TLS (auto)      also measure with an https base URL (a TLS
#                             terminator in front of shed serve); 0 skips it
#   BENCH_SOAK_SESSIONS (50), BENCH_SOAK_SECONDS (120)  the short soak;
#   BENCH_SOAK_SECONDS=0 skips it. The full run: SOAK_STEPS=load make soak.
set -u
cd "$(dirname "$0")/.."
export SHED_ROOT=$PWD
: "${SHED:=$PWD/build/shed}"
export SHED
T=$(mktemp -d /tmp/shed-bench-mem.XXXXXX)
chmod 755 "$T" # sandboxes (an unprivileged uid inside) must reach their state dirs
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/rss" "$T/soak"
python3 bench/worker_mem.py "$T/rss" | grep -v '^RESULT' || { echo "worker memory run failed"; exit 1; }
if [ "${BENCH_MEM_TLS:-1}" != 0 ] && command -v openssl >/dev/null; then
    mkdir -p "$T/rss-tls"
    BENCH_MEM_TLS=1 python3 bench/worker_mem.py "$T/rss-tls" | grep -v '^RESULT' || { echo "worker memory run (https) failed"; exit 1; }
fi
secs=${BENCH_SOAK_SECONDS:-120}
[ "$secs" -gt 0 ] || exit 0
if python3 tests/soak/load.py "$T/soak" "${BENCH_SOAK_SESSIONS:-50}" "$secs" 1 >"$T/soak.log" 2>&1; then
    grep -E '^(load:|worker RSS)' "$T/soak.log"
else
    echo "short soak failed:"; tail -n 20 "$T/soak.log"; exit 1
fi
