#!/usr/bin/env bash
# Escape campaign (issue #10): the probe's CVE-derived verbs inside a sandbox,
# as root and as an unprivileged user. Every attempt must print BLOCKED, every
# positive control OK (docs/security.md, "Escape campaign", maps each step to
# its CVE or source).
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sandbox.sh"
sb_probe
sb_policies "$SB_PROBE_MOUNT"',"limits":{"tmpSize":"32M"}'

# probe_blocked MODE VERB ARGS...: every attempt BLOCKED, every control OK, exit 0
probe_blocked() {
    local mode=$1 out rc; shift
    set +e; out=$(sbrun "$mode" -- /opt/probe/probe "$@" 2>&1 </dev/null); rc=$?; set -e
    echo "$out" | sed "s/^/    [$mode] /"
    expect_not_contains "$out" "ESCAPE" "probe $* ($mode)"
    expect_not_contains "$out" "FAILED" "probe $* ($mode): a positive control failed"
    expect_contains "$out" "BLOCKED" "probe $* ($mode) made attempts"
    expect_eq "$rc" 0 "probe $* exit status ($mode)"
    PROBE_OUT=$out
}

# Services on the host's loopback and an abstract unix socket on the host:
# the sandbox must reach neither.
port1=$(free_port); port2=$(free_port)
abs="shed-escape-$$-$RANDOM"
python3 -c '
import socket, sys, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(16)
    while True:
        c, _ = s.accept()
        try: c.sendall(b"host-service-reached\n")
        except OSError: pass
        c.close()
def unix(name):
    s = socket.socket(socket.AF_UNIX); s.bind("\0" + name); s.listen(16)
    while True:
        c, _ = s.accept()
        try: c.sendall(b"host-abstract-reached\n")
        except OSError: pass
        c.close()
for p in sys.argv[1:3]: threading.Thread(target=tcp, args=(int(p),), daemon=True).start()
threading.Thread(target=unix, args=(sys.argv[3],), daemon=True).start()
threading.Event().wait()' "$port1" "$port2" "$abs" &
srv=$!
at_exit "kill $srv"
wait_for 10 python3 -c "import socket; socket.create_connection(('127.0.0.1', $port2)).close()" || fail "host services did not start"
wait_for 10 python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.connect('\0$abs')" || fail "host abstract socket did not start"
# positive control on the host side: the abstract listener answers the host
expect_contains "$(python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.connect('\0$abs'); print(s.recv(64).decode())")" \
    "host-abstract-reached" "the host's abstract listener answers on the host"

read -r shed_dev shed_ino < <(stat -L -c '%d %i' "$SHED")

for mode in "${MODES[@]}"; do
    step "[$mode] CVE-2019-5736 (runc): /proc/self/exe, /proc/1/{exe,mem,environ,root,fd,...} of init (the shed binary)"
    probe_blocked "$mode" exe "$shed_dev" "$shed_ino" 200

    step "[$mode] kernel surfaces: keyrings, userfaultfd, io_uring, kexec, modules, chroot/pivot_root, clone3 namespaces, setns, i386/x32"
    probe_blocked "$mode" kernel2
    probe_blocked "$mode" kernel
    probe_blocked "$mode" namespaces

    step "[$mode] CVE-2022-0492: cgroup release_agent / notify_on_release, cgroup mounts, core_pattern, modprobe, binfmt_misc"
    probe_blocked "$mode" cgroup
    expect_contains "$PROBE_OUT" "OK /proc/self/cgroup: 0::/" "cgroup namespace hides the host's cgroup path"

    step "[$mode] /dev contents, /sys writes, sysfs/proc/devpts mounts, hostname (uts)"
    probe_blocked "$mode" sysdev
    expect_contains "$PROBE_OUT" "OK hostname inside: sb-" "the sandbox's own hostname"
    expect_not_contains "$PROBE_OUT" "OK hostname inside: $(hostname)"$'\n' "the host's hostname"

    step "[$mode] host loopback services unreachable; the sandbox's own ports are its own; egress ports taken"
    probe_blocked "$mode" ports "$port1" "$port2"

    step "[$mode] abstract unix socket of the host (net namespace scopes them)"
    probe_blocked "$mode" abstract "$abs"

    step "[$mode] signals to host processes (kill -0, ptrace, pidfd_open of the creator, the test, a service)"
    probe_blocked "$mode" signal $$ "$srv" "$PPID"

    step "[$mode] ptrace, process_vm_readv/writev, pidfd_getfd, kcmp of a sibling command and of init; /proc/1/mem"
    set +e; out=$(sbrun "$mode" -- /bin/sh -c '/bin/sleep 5 & /opt/probe/probe ptrace $! 1; rc=$?; kill $!; exit $rc' 2>&1 </dev/null); rc=$?; set -e
    echo "$out" | grep -v "cgroup\" waived" | sed "s/^/    [$mode] /"
    expect_not_contains "$out" "ESCAPE" "ptrace ($mode)"
    expect_contains "$out" "BLOCKED ptrace(ATTACH) 1:" "ptrace of init ($mode)"
    expect_contains "$out" "BLOCKED open /proc/1/mem O_RDWR" "init's memory ($mode)"
    expect_eq "$(grep -c '^BLOCKED ptrace(SEIZE)' <<<"$out")" 2 "ptrace of a sibling and of init ($mode)"
    expect_eq "$rc" 0 "probe ptrace exit status ($mode)"

    step "[$mode] /proc/sysrq-trigger, core_pattern and other /proc writes"
    probe_blocked "$mode" proc

    step "[$mode] /tmp and /dev/shm cannot be filled beyond their size"
    probe_blocked "$mode" diskfill /tmp 200
    expect_contains "$PROBE_OUT" "disk filler (at 3" "/tmp (32M) stops near its size"
    probe_blocked "$mode" diskfill /dev/shm 200
    expect_contains "$PROBE_OUT" "disk filler (at 6" "/dev/shm (64M) stops near its size"

    step "[$mode] huge argv and environment"
    out=$(sbrun "$mode" -- /opt/probe/probe bigargs 4096 2>&1 </dev/null)
    expect_contains "$out" "BLOCKED execve with 4096 KB argv and env: E2BIG" "4 MB of argv"
    out=$(sbrun "$mode" -- /opt/probe/probe bigargs 64 2>&1 </dev/null)
    expect_contains "$out" "OK execve with 64 KB argv and env" "64 KB of argv (control)"
    big=$(head -c 100000 /dev/zero | tr '\0' a)
    out=$(sbrun "$mode" -- /bin/sh -c 'echo ${#1}' sh "$big" 2>/dev/null </dev/null)
    expect_eq "$out" 100000 "a 100 KB argument through shed run"

    step "[$mode] fds: every fd of every process inside, compared with init's sockets read on the host"
    rm -f "$T/status" "$T/scan"
    sbrun "$mode" --json-status 3 -- /bin/sh -c \
        '(sleep 30 </dev/null >/dev/null 2>&1 &); sleep 30 & sleep 0.3; /opt/probe/probe fdscan; echo SCAN-DONE; exec sleep 30' \
        3>"$T/status" >"$T/scan" 2>&1 </dev/null &
    runpid=$!
    wait_for 20 grep -q SCAN-DONE "$T/scan" || fail "fdscan did not finish: $(cat "$T/scan")"
    ipid=$(sed -n 's/.*"init-pid":\([0-9]*\).*/\1/p' "$T/status" | head -n1)
    [ -n "$ipid" ] && [ -d "/proc/$ipid/fd" ] || fail "no init pid in the json status"
    init_socks=$(for f in /proc/"$ipid"/fd/*; do readlink "$f"; done | grep '^socket:' | sort -u || true)
    kill -TERM "$runpid"; wait "$runpid" || true
    sed "s/^/    [$mode] /" "$T/scan"
    [ -n "$init_socks" ] || fail "init has no sockets? (control channel expected)"
    expect_contains "$(cat "$T/scan")" "BLOCKED list fds of pid 1" "init's fd table is closed"
    expect_not_contains "$(cat "$T/scan")" "ESCAPE" "fdscan"
    nprocs=$(grep '^FD ' "$T/scan" | cut -d' ' -f2 | sort -u | wc -l)
    [ "$nprocs" -ge 4 ] || fail "fdscan saw only $nprocs processes (sh, sleeps, probe expected)"
    for s in $init_socks; do
        expect_not_contains "$(cat "$T/scan")" "$s" "init's $s reachable from a command"
    done
    expect_not_contains "$(grep '^FD ' "$T/scan")" "socket:" "a socket in a command's fd table"
    # (a process starting up may hold its own locale files for a moment)
    bad=$(grep '^FD ' "$T/scan" | awk '$3 > 2 && $4 != "/proc" && $4 !~ /^\/proc\/[0-9]+\/fd$/ && $4 !~ /^\/usr\/lib\/locale\//' || true)
    expect_eq "$bad" "" "fds beyond stdio in a command (besides the probe's own directory handles)"
done
echo "escape_probe ok (${MODES[*]})"
