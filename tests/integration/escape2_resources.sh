#!/usr/bin/env bash
# Escape campaign, second round (issue #10): resources and process lifetime.
# Processes that try to outlive the sandbox (setsid + double fork + SIGTERM
# ignored, a process stopped with SIGSTOP, a new process group), signals to
# init from inside, threads against the pids limit, the fd limit, and an
# inode flood of /tmp against the memory limit (kernel memory is charged).
# As root and unprivileged where the layer applies.
# timeout: 150
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sandbox.sh"
sb_probe
sb_policies "$SB_PROBE_MOUNT"

# An ASan build's init has ASan's SIGSEGV handler, and a pid namespace's init
# receives the signals it handles: -SEGV is tried only on a normal build.
SEGV="kill -SEGV 1;"
grep -q -a __asan_init "$SHED" && SEGV=""

# host pids whose command line holds MARK (the pattern [s]hed-... does not match grep itself)
marked() { grep -l -a -- "[${1:0:1}]${1:1}" /proc/[0-9]*/cmdline 2>/dev/null || true; }

for mode in "${MODES[@]}"; do
    mark="shed-escape2-survivor-$mode-$$-$RANDOM"
    step "[$mode] processes trying to outlive the sandbox: setsid + double fork + SIGTERM/SIGHUP ignored, SIGSTOPped, new process group"
    rm -f "$T/status"
    set +e
    out=$(sbrun_quiet "$mode" --json-status 3 -- /bin/bash -c '
        m=$1
        setsid bash -c "trap \"\" TERM HUP INT; (exec -a $m-daemon sleep 300 &) ; exec -a $m-leader sleep 300" </dev/null >/dev/null 2>&1 &
        (trap "" TERM; exec -a $m-stopped sleep 300) </dev/null >/dev/null 2>&1 &
        kill -STOP $!
        bash -c "set -m; (exec -a $m-pgrp sleep 300) & disown" </dev/null >/dev/null 2>&1
        sleep 0.5
        n=$(grep -l -a -- "$m" /proc/[0-9]*/cmdline 2>/dev/null | wc -l)
        grep -l "^State:.*T" /proc/[0-9]*/status >/dev/null && echo stopped-one-there
        echo "inside: $n"' sh "$mark" 3>"$T/status" </dev/null)
    rc=$?
    set -e
    expect_eq "$rc" 0 "[$mode] the command's status"
    n=$(sed -n 's/^inside: //p' <<<"$out")
    [ -n "$n" ] && [ "$n" -ge 4 ] || fail "[$mode] the marked processes did not all run inside (control): $out"
    expect_contains "$out" "stopped-one-there" "[$mode] one of them is stopped (control)"
    ipid=$(sed -n 's/.*"init-pid":\([0-9]*\).*/\1/p' "$T/status" | head -n1)
    [ -n "$ipid" ] || fail "[$mode] no init pid in the json status"
    left=$(marked "$mark")
    [ -z "$left" ] || fail "[$mode] processes outlived the sandbox: $left"
    [ ! -d "/proc/$ipid" ] || [ "$(cat "/proc/$ipid/comm" 2>/dev/null)" != shed ] || fail "[$mode] init $ipid still runs"

    step "[$mode] kill -KILL/-STOP/-SEGV/-TERM 1 from inside: init ignores them, the command runs on"
    set +e
    out=$(sbrun_quiet "$mode" -- /bin/bash -c 'kill -KILL 1; kill -STOP 1; '"$SEGV"' kill -TERM 1; sleep 0.2
        grep State /proc/1/status; echo alive' </dev/null 2>&1)
    rc=$?
    set -e
    expect_eq "$rc" 0 "[$mode] status after signalling init"
    expect_contains "$out" "alive" "[$mode] the command survived"
    expect_contains "$out" "State:	S" "[$mode] init is sleeping, not stopped"

    step "[$mode] the fd limit: the hard limit cannot be raised, EMFILE at the soft limit, the next sandbox is fine"
    out=$(sbrun_quiet "$mode" -- /bin/bash -c 'h=$(ulimit -Hn); echo hard=$h; ulimit -n $((h + 1)) 2>/dev/null && echo raised; python3 -c "
import os
n = 0
try:
    while True: os.open(\"/dev/null\", os.O_RDONLY); n += 1
except OSError as e: print(\"stopped\", e.errno == 24, n)"' </dev/null)
    expect_not_contains "$out" "raised" "[$mode] RLIMIT_NOFILE raised above its hard limit"
    expect_contains "$out" "stopped True" "[$mode] EMFILE"
    hard=$(sed -n 's/^hard=//p' <<<"$out")
    [ "$hard" -le 1048576 ] || fail "[$mode] RLIMIT_NOFILE hard limit $hard"
    expect_eq "$(sbrun_quiet "$mode" -- /bin/echo next </dev/null)" next "[$mode] the next sandbox runs (control)"
done

if [[ " ${MODES[*]} " == *" root "* ]]; then
    step "[root] threads count against the pids limit"
    out=$("$SHED" run --policy "$T/root.json" --pids-max 64 -- /opt/probe/probe threads 1000 2>&1 </dev/null) || true
    echo "$out" | sed 's/^/    [root] /'
    expect_contains "$out" "BLOCKED threads (stopped after" "threads stopped by the pids limit"
    n=$(sed -n 's/^OK \([0-9]*\) threads ran/\1/p' <<<"$out")
    [ -n "$n" ] && [ "$n" -ge 8 ] && [ "$n" -le 64 ] || fail "threads that ran under --pids-max 64: '$n'"

    step "[root] an inode flood of /tmp (empty files: no blocks) is charged to the memory limit"
    set +e
    out=$("$SHED" run --policy "$T/root.json" --memory-max 64M -- /usr/bin/python3 -c '
import os, time
t = time.time(); n = 0
try:
    for d in range(3000):
        os.mkdir("/tmp/d%d" % d)
        for i in range(1000):
            os.close(os.open("/tmp/d%d/%d" % (d, i), os.O_CREAT | os.O_WRONLY, 0o600)); n += 1
        if time.time() - t > 60: break
except OSError as e: print("refused", e.errno, n)
print("made", n)' 2>&1 </dev/null)
    rc=$?
    set -e
    echo "$out" | tail -n 2 | sed 's/^/    [root] /'
    # killed by the memory limit (137, shed run says so) or refused (ENOSPC/ENOMEM): never 3 M inodes
    [[ "$out" == *"killed by the memory limit"* || "$out" == *refused* ]] || fail "inode flood not stopped: rc $rc: $out"
    expect_not_contains "$out" "made 3000000" "inode flood"
    expect_eq "$("$SHED" run --policy "$T/root.json" -- /bin/echo next 2>&1 </dev/null)" next "the next sandbox runs (control)"
fi
echo "escape2 resources: all blocked"
