#!/usr/bin/env bash
# shed run: exit statuses, ordinary work (bash, coreutils, python3), stdio,
# workspace, timeout, --json-status, teardown on SIGTERM and reconcile of a
# killed `shed run`. As root and as an unprivileged user (setpriv).
# timeout: 180
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sandbox.sh"

# policies: unprivileged without cgroup delegation must waive cgroup (logged fallback)
sb_policies ''

# the same, replacing the calling (sub)shell: for `sbrun_exec ... &`, $! is shed's pid
sbrun_exec() {
    local mode=$1; shift
    if [ "$mode" = root ]; then exec "$SHED" run --policy "$T/root.json" "$@"
    elif [ "$(id -u)" = 0 ]; then exec setpriv --reuid=65534 --regid=65534 --clear-groups "$SHED" run --policy "$T/unpriv.json" "$@"
    else exec "$SHED" run --policy "$T/unpriv.json" "$@"; fi
}
statedir() { if [ "$1" = root ]; then echo /run/shed; else echo "/tmp/shed-$( [ "$(id -u)" = 0 ] && echo 65534 || id -u)"; fi; }

step "usage"
out=$("$SHED" run --help); expect_contains "$out" "usage: shed run" "help"
set +e; err=$("$SHED" run --bogus -- true 2>&1); rc=$?; set -e
expect_eq "$rc" 2 "unknown flag exit"; expect_contains "$err" "--bogus" "unknown flag named"

step "invalid policies: 125 and the key named"
echo '{"limits":{"memoryMax":"lots"}}' >"$T/bad1.json"
echo '{"network":{"allowedDomains":"x"}}' >"$T/bad2.json"
echo '{"frobnicate":1}' >"$T/bad3.json"
echo '{"filesystem":{"allowWrite":["/home/*"]}}' >"$T/bad4.json"
for f in bad1:limits.memoryMax bad2:network.allowedDomains bad3:frobnicate bad4:globs; do
    set +e; err=$("$SHED" run --policy "$T/${f%%:*}.json" -- true 2>&1); rc=$?; set -e
    expect_eq "$rc" 125 "exit for ${f%%:*}"; expect_contains "$err" "${f#*:}" "message for ${f%%:*}"
done

for mode in "${MODES[@]}"; do
    step "[$mode] exit statuses"
    set +e
    sbrun "$mode" -- /bin/true; expect_eq "$?" 0 "true"
    sbrun "$mode" -- /bin/sh -c 'exit 3'; expect_eq "$?" 3 "exit 3"
    sbrun "$mode" -- /bin/sh -c 'kill -9 $$'; expect_eq "$?" 137 "killed by SIGKILL"
    sbrun "$mode" -- /nonexistent/cmd 2>/dev/null; expect_eq "$?" 127 "missing command"
    set -e

    step "[$mode] ordinary work: bash, coreutils, python3, files in the workspace"
    ws="$T/ws-$mode"; mkdir -p "$ws"; chmod 777 "$ws"
    echo "from host" >"$ws/in.txt"; chmod 666 "$ws/in.txt"
    out=$(sbrun "$mode" --workspace "$ws" -- /bin/bash -c '
        set -e; cd /workspace; cat in.txt; echo made >out.txt; mkdir -p d/e; seq 1 500 | sort -rn | head -1
        printf "%s\n" b a | sort | tr a-z A-Z | paste -sd,; id -un; pwd; echo "home=$HOME"; hostname | wc -c
        python3 -c "import json,hashlib; print(json.dumps({\"n\": sum(range(10))}), hashlib.sha256(b\"x\").hexdigest()[:8])"
        echo "proxy=$HTTPS_PROXY"')
    expect_contains "$out" "from host" "host file readable in workspace"
    expect_contains "$out" "500" "coreutils"
    expect_contains "$out" "A,B" "pipes"
    expect_contains "$out" "sandbox" "user name"
    expect_contains "$out" "/workspace" "working directory"
    expect_contains "$out" '{"n": 45} 2d711642' "python3"
    expect_contains "$out" "proxy=http://127.0.0.1:3128" "proxy environment"
    expect_eq "$(cat "$ws/out.txt")" made "file written in the workspace is on the host"
    [ -d "$ws/d/e" ] || fail "directories made in the workspace"

    step "[$mode] stdio relayed"
    out=$(printf 'line1\nline2\n' | sbrun "$mode" -- /bin/sh -c 'cat; echo err >&2' 2>"$T/err")
    expect_eq "$out" $'line1\nline2' "stdin to stdout"; expect_eq "$(grep -v "layer \"cgroup\" waived" "$T/err")" err "stderr"

    step "[$mode] --timeout: SIGTERM then exit 128+15"
    start=$(date +%s)
    set +e; sbrun "$mode" --timeout 1 -- /bin/sleep 60; rc=$?; set -e
    expect_eq "$rc" 143 "exit status after --timeout"
    [ $(( $(date +%s) - start )) -lt 30 ] || fail "--timeout took too long"

    step "[$mode] --json-status"
    sbrun "$mode" --json-status 3 -- /bin/true 3>"$T/status.json"
    expect_contains "$(head -n1 "$T/status.json")" '"init-pid"' "first status line"
    expect_contains "$(tail -n1 "$T/status.json")" '"exit-code":0' "last status line"

    step "[$mode] SIGTERM tears down the whole sandbox (background processes too)"
    sd=$(statedir "$mode")
    sbrun_exec "$mode" --json-status 3 -- /bin/sh -c 'sleep 300 & sleep 300 & wait' 3>"$T/st2.json" &
    runner=$!
    wait_for 20 grep -q init-pid "$T/st2.json" || fail "sandbox did not start"
    label=$(sed -n 's/.*"label":"\([^"]*\)".*/\1/p' "$T/st2.json" | head -n1)
    initpid=$(sed -n 's/.*"init-pid":\([0-9]*\).*/\1/p' "$T/st2.json" | head -n1)
    nsid=$(readlink "/proc/$initpid/ns/pid") || fail "no pid namespace for init $initpid"
    sleep 0.3
    kill -TERM "$runner"
    set +e; wait "$runner"; rc=$?; set -e
    expect_eq "$rc" 143 "shed run's status after SIGTERM"
    for p in /proc/[0-9]*; do
        if [ "$(readlink "$p/ns/pid" 2>/dev/null || echo gone)" = "$nsid" ]; then grep -E "Name|State|PPid|NSpid" "$p/status" || true; fail "process ${p#/proc/} of the sandbox survived (ns $nsid, init $initpid)"; fi
    done
    [ ! -e "$sd/sandboxes/$label" ] || fail "state dir $sd/sandboxes/$label left behind"
    if [ "$mode" = root ]; then
        ! find /sys/fs/cgroup -maxdepth 6 -name "$label" 2>/dev/null | grep -q . || fail "cgroup $label left behind"
    fi

    step "[$mode] a killed shed run is swept by the next one (reconcile)"
    sbrun_exec "$mode" --json-status 3 -- /bin/sleep 300 3>"$T/st3.json" &
    runner=$!
    wait_for 20 grep -q init-pid "$T/st3.json" || fail "sandbox did not start"
    label=$(sed -n 's/.*"label":"\([^"]*\)".*/\1/p' "$T/st3.json" | head -n1)
    kill -KILL "$runner"; wait "$runner" 2>/dev/null || true
    [ -e "$sd/sandboxes/$label" ] || fail "expected leftovers of a killed shed run"
    sbrun "$mode" -- /bin/true 2>/dev/null
    [ ! -e "$sd/sandboxes/$label" ] || fail "reconcile left $sd/sandboxes/$label"
    if [ "$mode" = root ]; then
        ! find /sys/fs/cgroup -maxdepth 6 -name "$label" 2>/dev/null | grep -q . || fail "reconcile left cgroup $label"
    fi
done
echo "sandbox_run ok (${MODES[*]})"
