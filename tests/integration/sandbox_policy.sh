#!/usr/bin/env bash
# Policy features end to end: operator mounts (read-only by default,
# writable on request), filesystem.allowWrite/denyRead/denyWrite,
# environment, rootfs, limits.commandTimeoutSeconds, and the waiver log line.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"

[ "$(id -u)" = 0 ] && waive="" || waive=',"waive":["cgroup"]'
mkdir -p "$T/ro" "$T/rw" "$T/aw" "$T/ws/protected" "$T/ro/secret"
echo data >"$T/ro/file"; echo key >"$T/ro/secret/key"; echo keep >"$T/ws/protected/f"
chmod -R a+rwX "$T"
cat >"$T/p.json" <<JSON
{"mounts":[{"source":"$T/ro","target":"/opt/ro"},{"source":"$T/rw","target":"/srv/rw","writable":true}],
 "filesystem":{"allowWrite":["$T/aw"],"denyRead":["/opt/ro/secret","/etc/hosts"],"denyWrite":["/workspace/protected"]},
 "environment":{"SHED_TEST_VAR":"hello","HOME":"/tmp"},
 "rootfs":"/",
 "limits":{"commandTimeoutSeconds":1}$waive}
JSON
chmod 644 "$T/p.json"

step "read-only and writable operator mounts"
out=$("$SHED" run --policy "$T/p.json" --workspace "$T/ws" -- /bin/bash -c '
  cat /opt/ro/file; echo x >/opt/ro/new 2>/dev/null && echo RO-WRITABLE
  echo w >/srv/rw/out && echo rw-ok
  echo a >'"$T"'/aw/out && echo allowwrite-ok
  cat /opt/ro/secret/key 2>/dev/null && echo SECRET-READ; echo "secret-entries=$(ls -A /opt/ro/secret | wc -l)"
  echo "hosts-bytes=$(cat /etc/hosts 2>/dev/null | wc -c)"
  echo y >/workspace/protected/f 2>/dev/null && echo DENYWRITE-BROKEN; cat /workspace/protected/f
  echo z >/workspace/other && echo ws-ok
  echo "var=$SHED_TEST_VAR home=$HOME"' 2>/dev/null)
echo "$out"
expect_contains "$out" data "read-only mount readable"
expect_not_contains "$out" RO-WRITABLE "read-only mount"
expect_contains "$out" rw-ok "writable mount"; expect_eq "$(cat "$T/rw/out")" w "written through the writable mount"
expect_contains "$out" allowwrite-ok "filesystem.allowWrite"; expect_eq "$(cat "$T/aw/out")" a "allowWrite lands on the host path"
expect_not_contains "$out" SECRET-READ "filesystem.denyRead (directory)"
expect_not_contains "$out" DENYWRITE-BROKEN "filesystem.denyWrite"
expect_contains "$out" keep "denyWrite path still readable"
expect_contains "$out" ws-ok "rest of the workspace writable"
expect_contains "$out" "var=hello home=/tmp" "policy environment"
expect_contains "$out" "secret-entries=0" "denied directory looks empty"
expect_contains "$out" "hosts-bytes=0" "denied file reads as empty"

step "commandTimeoutSeconds from the policy"
set +e; "$SHED" run --policy "$T/p.json" -- /bin/sleep 30 2>/dev/null; rc=$?; set -e
expect_eq "$rc" 143 "policy command timeout"

step "a missing mount source is a setup error naming it"
echo "{\"mounts\":[{\"source\":\"$T/nope\"}]$waive}" >"$T/bad.json"
set +e; err=$("$SHED" run --policy "$T/bad.json" -- /bin/true 2>&1); rc=$?; set -e
expect_eq "$rc" 125 "exit"; expect_contains "$err" "$T/nope" "message names the source"

if [ "$(id -u)" = 0 ] && [ -d /sys/fs/cgroup/memory ]; then
    step "cgroup v1 limits as written: memory (no swap), pids, cpu"
    echo '{"limits":{"memoryMax":"200M","pidsMax":77,"cpus":0.5}}' >"$T/cg.json"
    "$SHED" run --policy "$T/cg.json" --json-status 3 -- /bin/sleep 3 3>"$T/cg.st" &
    runner=$!
    wait_for 10 grep -q init-pid "$T/cg.st" || fail "sandbox did not start"
    label=$(sed -n 's/.*"label":"\([^"]*\)".*/\1/p' "$T/cg.st" | head -n1)
    mem=$(find /sys/fs/cgroup/memory -maxdepth 8 -type d -name "$label" | head -n1)
    [ -n "$mem" ] || fail "no memory cgroup for $label"
    expect_eq "$(cat "$mem/memory.limit_in_bytes")" $((200 << 20)) "memory limit"
    [ ! -e "$mem/memory.memsw.limit_in_bytes" ] || expect_eq "$(cat "$mem/memory.memsw.limit_in_bytes")" $((200 << 20)) "memory+swap limit (no swap)"
    expect_eq "$(cat /sys/fs/cgroup/pids/shed/"$label"/pids.max)" 77 "pids.max"
    expect_eq "$(cat /sys/fs/cgroup/cpu/shed/"$label"/cpu.cfs_quota_us)" 50000 "cpu quota"
    initpid=$(sed -n 's/.*"init-pid":\([0-9]*\).*/\1/p' "$T/cg.st" | head -n1)
    grep -q "$initpid" "$mem/cgroup.procs" || fail "init is not in the memory cgroup"
    wait "$runner"
    [ ! -d "$mem" ] || fail "memory cgroup left behind"
fi

if [ "$(id -u)" = 0 ]; then
    step "unprivileged without a waiver fails closed and names the fix"
    echo '{}' >"$T/plain.json"; chmod 644 "$T/plain.json"
    set +e; err=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$SHED" run --policy "$T/plain.json" -- /bin/true 2>&1); rc=$?; set -e
    expect_eq "$rc" 125 "exit"
    expect_contains "$err" 'waive "cgroup"' "the fix is named"
    step "a waived layer is logged at every start"
    echo '{"waive":["cgroup"]}' >"$T/w.json"; chmod 644 "$T/w.json"
    err=$("$SHED" run --policy "$T/w.json" -- /bin/true 2>&1)
    expect_contains "$err" 'layer "cgroup" waived' "waiver logged"
fi
echo "sandbox_policy ok"
