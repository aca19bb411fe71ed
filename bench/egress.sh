#!/usr/bin/env bash
# Egress proxy throughput and connection set-up latency on loopback: direct
# (no proxy), through a bare two-hop splice forwarder ("hop": no protocol, no
# policy; what the second TCP hop alone costs, the floor under any relaying
# proxy), through the same bare forwarder with the kernel moving the bytes
# ("sockmap": a BPF sockhash and an SK_SKB verdict program redirecting each
# socket's bytes to its peer; needs CAP_BPF + CAP_NET_ADMIN, skipped
# without), through shed's egress (HTTP CONNECT, the real proxy code on its
# own loop thread), and through Anthropic's sandbox-runtime proxy (npm
# @anthropic-ai/sandbox-runtime, same allow-list, same transfers) when it is
# installed (node_modules, or SRT_DIR=<dir containing the package>).
# Every mode is the same driver, one process, the same 256 KiB reads and
# writes, kernel-autotuned socket buffers. Rounds are interleaved (direct,
# hop, shed, srt, direct, ...) so that noise from other processes hits all of
# them alike; figures are medians over rounds; only same-run ratios mean
# anything. MiB/s depends on how much CPU the machine's other load leaves;
# CPU s per GiB much less so.
#   EGRESS_BENCH_MIB=256 EGRESS_BENCH_ROUNDS=5 EGRESS_BENCH_CONNS=300
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SHED_BUILD:-$root/build}
mib=${EGRESS_BENCH_MIB:-256}
rounds=${EGRESS_BENCH_ROUNDS:-5}
conns=${EGRESS_BENCH_CONNS:-300}
tmp=$(mktemp -d /tmp/shed-bench-egress.XXXXXX)
srt_pid=
trap '[ -n "$srt_pid" ] && kill $srt_pid 2>/dev/null; rm -rf "$tmp"' EXIT

[ -f "$build/libshed.a" ] || { echo "egress bench: $build/libshed.a missing (run make)"; exit 1; }
pkgs=$(sed -n 's/^PKGS *:= *//p' "$root/Makefile")
cc -O2 -std=gnu11 -D_GNU_SOURCE -I"$root/src" $(pkg-config --cflags $pkgs) -o "$tmp/egress_bench" \
    "$root/bench/egress_bench.c" "$build/libshed.a" $(pkg-config --libs $pkgs) -lm -pthread

modes="direct hop shed"
if out=$("$tmp/egress_bench" sockmap 1 1 1 2>&1 >/dev/null); then
    modes="direct hop sockmap shed"
else
    echo "sockmap: not measured ($(echo "$out" | head -1))"
fi
srt_dir=
for d in "${SRT_DIR:-}" "$root/node_modules"; do
    [ -n "$d" ] && [ -f "$d/@anthropic-ai/sandbox-runtime/dist/sandbox/http-proxy.js" ] &&
        { srt_dir=$d/@anthropic-ai/sandbox-runtime; break; }
done
node=$root/node_modules/.bin/node
[ -x "$node" ] || node=$(command -v node || true)
if [ -n "$srt_dir" ] && [ -n "$node" ]; then
    "$node" "$root/bench/egress_srt_proxy.mjs" "$srt_dir" >"$tmp/srt.port" 2>"$tmp/srt.log" &
    srt_pid=$!
    for _ in $(seq 100); do [ -s "$tmp/srt.port" ] && break; sleep 0.1; done
    if [ -s "$tmp/srt.port" ]; then
        modes="$modes proxy:$(cat "$tmp/srt.port")"
        echo "srt: $(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$srt_dir/package.json") ($srt_dir)"
    else
        echo "srt: did not start: $(head -c 300 "$tmp/srt.log")"
    fi
else
    echo "srt: not measured (npm @anthropic-ai/sandbox-runtime not installed; SRT_DIR=... to point at it)"
fi

echo "transfers: $mib MiB each way per round, $rounds rounds; set-up: $conns sequential connections"
# CPU time of a process in seconds (utime + stime from /proc/PID/stat).
proc_cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
gib=$(awk -v m="$mib" 'BEGIN { print 2 * m / 1024 }')
for r in $(seq "$rounds"); do
    for m in $modes; do
        name=${m%%:*}; [ "$name" = proxy ] && name=srt
        [ "$name" = srt ] && c0=$(proc_cpu "$srt_pid")
        "$tmp/egress_bench" "$m" "$mib" 1 $((conns / rounds + 1)) | sed "s/^/$name /" >"$tmp/one"
        if [ "$name" = srt ]; then
            # add the proxy process's CPU (its share of the set-up loop included)
            c1=$(proc_cpu "$srt_pid")
            awk -v d="$(awk -v a="$c0" -v b="$c1" 'BEGIN{print b - a}')" -v g="$gib" \
                '$2 == "cpu_s_per_gib" { $3 = sprintf("%.3f", $3 + d / g) } { print }' "$tmp/one" >"$tmp/one2"
            mv "$tmp/one2" "$tmp/one"
        fi
        cat "$tmp/one" >>"$tmp/results"
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
val() { grep "^$1 $2 " "$tmp/results" | awk '{print $3}' | median; }
printf '%-8s %14s %14s %13s %13s %14s %14s\n' "" "download MiB/s" "upload MiB/s" "setup p50 µs" \
    "setup p99 µs" "CPU s per GiB" "machine s/GiB"
for name in direct hop sockmap shed srt; do
    grep -q "^$name " "$tmp/results" || continue
    printf '%-8s %14s %14s %13s %13s %14s %14s\n' "$name" "$(val $name download_mibps)" \
        "$(val $name upload_mibps)" "$(val $name setup_us_p50)" "$(val $name setup_us_p99)" \
        "$(val $name cpu_s_per_gib)" "$(val $name sys_cpu_s_per_gib)"
done
echo "(CPU s per GiB: client + server + proxy processes during the transfers; less sensitive to"
echo " other load than MiB/s, but blind to kernel threads: sockmap's sending is done by kworkers."
echo " machine s/GiB: busy time of all CPUs (/proc/stat), kworkers and softirqs included, and"
echo " everyone else's load too: meaningful only on a quiet machine."
echo " load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
dd=$(val direct download_mibps); du=$(val direct upload_mibps)
echo "shed/direct throughput: download $(ratio "$(val shed download_mibps)" "$dd"), upload $(ratio "$(val shed upload_mibps)" "$du") (target >= 0.80)"
echo "hop/direct throughput:  download $(ratio "$(val hop download_mibps)" "$dd"), upload $(ratio "$(val hop upload_mibps)" "$du") (the two-hop floor)"
echo "shed/hop throughput:    download $(ratio "$(val shed download_mibps)" "$(val hop download_mibps)"), upload $(ratio "$(val shed upload_mibps)" "$(val hop upload_mibps)")"
echo "CPU per GiB vs direct:  hop $(ratio "$(val hop cpu_s_per_gib)" "$(val direct cpu_s_per_gib)")x, shed $(ratio "$(val shed cpu_s_per_gib)" "$(val direct cpu_s_per_gib)")x"
if grep -q '^sockmap ' "$tmp/results"; then
    echo "sockmap/direct throughput: download $(ratio "$(val sockmap download_mibps)" "$dd"), upload $(ratio "$(val sockmap upload_mibps)" "$du")"
    echo "sockmap/hop throughput:    download $(ratio "$(val sockmap download_mibps)" "$(val hop download_mibps)"), upload $(ratio "$(val sockmap upload_mibps)" "$(val hop upload_mibps)")"
    echo "machine CPU per GiB vs direct: hop $(ratio "$(val hop sys_cpu_s_per_gib)" "$(val direct sys_cpu_s_per_gib)")x, sockmap $(ratio "$(val sockmap sys_cpu_s_per_gib)" "$(val direct sys_cpu_s_per_gib)")x, shed $(ratio "$(val shed sys_cpu_s_per_gib)" "$(val direct sys_cpu_s_per_gib)")x"
fi
if grep -q '^srt ' "$tmp/results"; then
    echo "shed/srt throughput: download $(ratio "$(val shed download_mibps)" "$(val srt download_mibps)"), upload $(ratio "$(val shed upload_mibps)" "$(val srt upload_mibps)")"
    echo "srt/shed set-up latency p50: $(ratio "$(val srt setup_us_p50)" "$(val shed setup_us_p50)")x"
fi
