#!/usr/bin/env bash
# Resource limits, as root (cgroup v1 here, v2 elsewhere) and unprivileged
# (the documented rlimit fallback): a fork bomb stopped by the pids limit, a
# memory hog stopped by the memory limit with the caller unharmed, a disk
# filler stopped by the workspace limit (tmpfs and bind-mounted workspace),
# background processes gone after destroy.
# timeout: 240
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sandbox.sh"
sb_probe
sb_policies "$SB_PROBE_MOUNT"',"limits":{"workspaceMax":"64M"}'

for mode in "${MODES[@]}"; do
    step "[$mode] fork bomb vs --pids-max 64"
    set +e; out=$(sbrun "$mode" --pids-max 64 -- /opt/probe/probe forkbomb 5000 2>&1); rc=$?; set -e
    echo "$out"
    expect_contains "$out" "BLOCKED fork bomb" "fork bomb stopped"
    expect_eq "$rc" 0 "probe exit"
    n=$(sed -n 's/.*stopped after \([0-9]*\) processes.*/\1/p' <<<"$out")
    [ "$n" -lt 64 ] || fail "fork bomb made $n processes with pids-max 64"

    step "[$mode] memory hog vs --memory-max 128M; the caller is unharmed"
    set +e; out=$(sbrun "$mode" --memory-max 128M -- /opt/probe/probe memhog 2048 2>&1); rc=$?; set -e
    echo "$out"
    expect_not_contains "$out" "ESCAPE" "memory hog"
    if [ "$mode" = root ]; then
        expect_eq "$rc" 137 "memory hog killed (SIGKILL by the OOM killer)"
        expect_contains "$out" "memory limit" "shed run names the memory limit"
    else
        expect_eq "$rc" 0 "memory hog refused by RLIMIT_AS"
        expect_contains "$out" "BLOCKED memory hog" "memory hog refused"
    fi
    expect_eq "$(sbrun "$mode" -- /bin/echo still-fine 2>/dev/null)" still-fine "next sandbox after the OOM"

    step "[$mode] disk filler vs a tmpfs workspace (workspaceMax 64M)"
    set +e; out=$(sbrun "$mode" -- /opt/probe/probe diskfill /workspace 1024 2>&1); rc=$?; set -e
    echo "$out"
    expect_contains "$out" "BLOCKED disk filler" "tmpfs workspace full"
    n=$(sed -n 's/.*at \([0-9]*\) MB.*/\1/p' <<<"$out")
    [ "$n" -le 64 ] || fail "wrote $n MB into a 64M workspace"

    step "[$mode] disk filler vs a host workspace (workspaceMax 64M, watched by init)"
    ws="$T/ws-$mode"; mkdir -p "$ws"; chmod 777 "$ws"
    set +e; out=$(sbrun "$mode" --workspace "$ws" -- /opt/probe/probe diskfill /workspace 1024 2>&1); rc=$?; set -e
    echo "$out"
    expect_not_contains "$out" "ESCAPE" "disk filler on the host workspace"
    expect_contains "$out" "workspace grew over its limit" "shed run names the workspace limit"
    expect_eq "$rc" 137 "disk filler killed"
    used=$(du -sm "$ws" | cut -f1)
    echo "host workspace holds $used MB"
    [ "$used" -lt 1024 ] || fail "the filler wrote $used MB"

    step "[$mode] /tmp is size-limited"
    set +e; out=$(sbrun "$mode" -- /opt/probe/probe diskfill /tmp 1024 2>&1); set -e
    expect_contains "$out" "BLOCKED disk filler" "/tmp full"

    step "[$mode] background processes are gone after the sandbox"
    ns=$(sbrun "$mode" -- /opt/probe/probe spawn-bg 2>/dev/null)
    expect_contains "$ns" "pid:[" "pid namespace printed"
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/ns/pid" 2>/dev/null || echo gone)" != "$ns" ] || fail "background process ${p#/proc/} survived"
    done
done
echo "sandbox_limits ok (${MODES[*]})"
