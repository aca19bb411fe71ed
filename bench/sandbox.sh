#!/usr/bin/env bash
# Sandbox start-up: interleaved runs of `shed run -- /bin/true`, Debian's
# bwrap with the same mounts, and bare /bin/true (medians, p99, ratios in one
# run), then sandboxes created+used+destroyed per second from one process:
# init exec'd per sandbox, then forked by the zygote (sandbox_zygote_start),
# sequential and with a few threads.
# BENCH_RUNS (default 200) and BENCH_RATE_SECONDS (default 5) scale it.
# BENCH_SHED_BASE=/path/to/an/older/shed adds that binary to the interleaved
# start-up runs (before/after in one run, same anchors).
# Besides wall time, each start-up line gives the CPU time (user+sys) of the
# command and everything it waited for (rusage): on a shared, loaded machine
# wall time mostly measures the queue, CPU time what the command costs.
# bwrap's CPU is undercounted there (and by `perf stat`): its parent exits
# without waiting for its pid 1, whose time then reaches no rusage; a
# cpuacct cgroup around the runs counts it (docs/security.md, Start-up).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SHED:=$PWD/build/shed}" "${SHED_BUILD:=$PWD/build}"
runs=${BENCH_RUNS:-200}
command -v bwrap >/dev/null || { echo "bwrap missing (scripts/install-deps)"; exit 1; }
pol=$(mktemp /tmp/shed-bench.XXXXXX.json)
trap 'rm -f "$pol"' EXIT
extra=""
[ "$(id -u)" = 0 ] || extra=',"waive":["cgroup"]'
echo "{\"comment\":\"bench\"$extra}" >"$pol"

# bwrap with the mounts shed makes: ro /usr (+ the host's /bin, /lib* links),
# the same /etc entries, fresh /proc, /dev, tmpfs /tmp and /workspace, uid 1000,
# all namespaces, new session.
bw=("$(command -v bwrap)" --unshare-all --die-with-parent --new-session --uid 1000 --gid 1000 --hostname sb
    --ro-bind /usr /usr)
for d in /bin /sbin /lib /lib32 /lib64 /libx32; do
    if [ -L "$d" ]; then bw+=(--symlink "$(readlink "$d")" "$d"); elif [ -d "$d" ]; then bw+=(--ro-bind "$d" "$d"); fi
done
for e in ssl ca-certificates ca-certificates.conf alternatives ld.so.cache ld.so.conf ld.so.conf.d \
         localtime bash.bashrc profile inputrc services protocols mime.types magic passwd group hosts; do
    [ -e "/etc/$e" ] && bw+=(--ro-bind "/etc/$e" "/etc/$e")
done
bw+=(--proc /proc --dev /dev --tmpfs /tmp --tmpfs /workspace --chdir /workspace)

echo "start-up, $runs interleaved runs each ($(nproc) cores, $(uname -r), uid $(id -u), cgroup: $( [ "$(id -u)" = 0 ] && echo v1 || echo waived), load average $(cut -d' ' -f1-3 /proc/loadavg))"
python3 - "$runs" "$SHED" "$pol" "${BENCH_SHED_BASE:-}" "${bw[@]}" <<'PY'
import os, sys, time
runs = int(sys.argv[1]); shed, pol, base = sys.argv[2], sys.argv[3], sys.argv[4]; bw = sys.argv[5:]
cmds = {"shed run": [shed, "run", "--policy", pol, "--", "/bin/true"]}
if base:
    cmds["base shed"] = [base, "run", "--policy", pol, "--", "/bin/true"]
cmds["bwrap"] = bw + ["/bin/true"]
cmds["/bin/true"] = ["/bin/true"]
null = os.open("/dev/null", os.O_RDWR)
res = {k: [] for k in cmds}
cpu = {k: [] for k in cmds}
def run(k):
    argv = cmds[k]
    t = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)])
    _, st, ru = os.wait4(pid, 0)
    dt = time.perf_counter_ns() - t
    if os.waitstatus_to_exitcode(st) != 0:
        sys.exit(f"{argv[0]} failed: {os.waitstatus_to_exitcode(st)}")
    return dt, (ru.ru_utime + ru.ru_stime) * 1e9
for k in cmds: run(k)  # warm up
for i in range(runs):
    for k in cmds:
        dt, c = run(k)
        res[k].append(dt)
        cpu[k].append(c)
def q(v, p): v = sorted(v); return v[min(len(v) - 1, int(len(v) * p))] / 1e6
med = {k: q(v, 0.5) for k, v in res.items()}
for k, v in res.items():
    print(f"  {k:10s} median {q(v,0.5):7.2f} ms   p99 {q(v,0.99):7.2f} ms   cpu median {q(cpu[k],0.5):6.2f} ms")
print(f"  ratio shed/bwrap (median): {med['shed run']/med['bwrap']:.2f}x   (target <= 1.0x; bwrap's cpu is undercounted: its pid 1 is not waited for)")
if base:
    print(f"  ratio base shed/bwrap (median): {med['base shed']/med['bwrap']:.2f}x")
print(f"  cost over bare /bin/true (median): shed {med['shed run']-med['/bin/true']:.2f} ms, bwrap {med['bwrap']-med['/bin/true']:.2f} ms")
PY

echo
drv="$SHED_BUILD/bench/sandbox_rate"
mkdir -p "$(dirname "$drv")"
libs=$(sed -n 's/^PKGS *:= *//p' Makefile)
cc -O2 -std=gnu11 -D_GNU_SOURCE -Isrc $(pkg-config --cflags $libs) bench/sandbox_rate.c \
   "$SHED_BUILD/libshed.a" $(pkg-config --libs $libs) -lm -pthread -o "$drv"
secs=${BENCH_RATE_SECONDS:-5}
"$drv" "$SHED" "$secs" "$pol" 1
"$drv" "$SHED" "$secs" "$pol" 1 zygote
"$drv" "$SHED" "$secs" "$pol" "$(( $(nproc) * 2 ))" zygote
echo "  (target >= 300/s; load average now: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores)"
