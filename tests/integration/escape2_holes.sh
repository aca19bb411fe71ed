#!/usr/bin/env bash
# The red team's second-round holes, closed (docs/security.md, "Holes found by
# the second round, fixed"): the workspace watchdog runs during a tool call
# (H1) and counts entries (H2); orphans are reaped during a call (H1); tmpfs
# inodes are bounded (H3). Every call here is bounded by its own timeout.
# timeout: 180
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sandbox.sh"
sb_tool_ready

# text of the first result line of `shed tool` output in file $1
result_text() { python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).readline()); print(r.get("is_error"), " ".join(c.get("text","") for c in r["content"]))' "$1"; }

step "H1: the workspace limit holds during one long tool call (host workspace, workspaceMax 50M)"
mkdir -p "$T/ws" && chmod 777 "$T/ws"
echo '{"limits":{"workspaceMax":"50M","fileSizeMax":"20M"}}' >"$T/p.json"
echo '[{"name":"bash","input":{"command":"for i in $(seq 10); do head -c 20000000 /dev/zero > f$i || break; sleep 0.2; done; echo survived","timeout_ms":120000}}]' >"$T/c.json"
"$SHED" tool --policy "$T/p.json" --workspace "$T/ws" --calls "$T/c.json" >"$T/o" 2>"$T/e" || true
used=$(du -sm "$T/ws" | cut -f1)
[ "$used" -le 80 ] || fail "one tool call wrote ${used} MB into a 50 MB workspace"
r=$(result_text "$T/o")
expect_contains "$r" "grew over its limit" "the tool result says why the call was killed"
case "$r" in True*) ;; *) fail "the killed call is not an error: $r" ;; esac
case "$r" in *survived*) fail "the writer survived the limit: $r" ;; esac
expect_contains "$(cat "$T/e")" "hit its disk limit" "shed tool reports the limit message"

step "H1: a directory made unreadable (chmod 300, and the workspace itself) does not hide what it holds"
for what in "mkdir d; chmod 300 d; cd d" "chmod 300 ."; do
    rm -rf "$T/ws"; mkdir -p "$T/ws" && chmod 777 "$T/ws"
    printf '[{"name":"bash","input":{"command":"%s; for i in $(seq 6); do head -c 20000000 /dev/zero > f$i || break; sleep 0.3; done; echo survived","timeout_ms":60000}}]\n' "$what" >"$T/c.json"
    "$SHED" tool --policy "$T/p.json" --workspace "$T/ws" --calls "$T/c.json" >"$T/o" 2>"$T/e" || true
    chmod -R u+rwx "$T/ws"
    used=$(du -sm "$T/ws" | cut -f1)
    [ "$used" -le 80 ] || fail "after '$what', one tool call wrote ${used} MB into a 50 MB workspace"
    case "$(result_text "$T/o")" in *survived*) fail "after '$what', the writer survived the limit" ;; esac
done

step "H1: orphans are reaped during a long tool call"
echo '[{"name":"bash","input":{"command":"for i in $(seq 20); do (sh -c \"exit 0\" &); done; sleep 2; grep -l \"^State:.*Z\" /proc/[0-9]*/status 2>/dev/null | wc -l","timeout_ms":60000}}]' >"$T/z.json"
"$SHED" tool --calls "$T/z.json" >"$T/zo"
out=$(result_text "$T/zo")
expect_eq "$out" "False 0" "zombies left during the call"

step "H2: the workspace's entry count is limited (workspaceFilesMax 2000), during the call"
mkdir -p "$T/ws2" && chmod 777 "$T/ws2"
echo '{"limits":{"workspaceMax":"50M","workspaceFilesMax":2000}}' >"$T/p2.json"
echo '[{"name":"bash","input":{"command":"mkdir d; for i in $(seq 3000); do : > d/e$i || break; done; sleep 20; echo survived","timeout_ms":40000}}]' >"$T/c2.json"
"$SHED" tool --policy "$T/p2.json" --workspace "$T/ws2" --calls "$T/c2.json" >"$T/o2" 2>"$T/e2" || true
r=$(result_text "$T/o2")
expect_contains "$r" "more than 2000 files and directories" "the tool result names the entry limit"
case "$r" in *survived*) fail "the file creator survived the entry limit: $r" ;; esac
expect_contains "$(cat "$T/e2")" "hit its files limit" "shed tool reports the files limit"

step "H2: shed run names the entry limit too"
mkdir -p "$T/ws3" && chmod 777 "$T/ws3"
rc=0; "$SHED" run --policy "$T/p2.json" --workspace "$T/ws3" -- /bin/sh -c 'i=0; while [ $i -lt 3000 ]; do : > f$i; i=$((i+1)); done; sleep 20' 2>"$T/e3" || rc=$?
[ "$rc" = 137 ] || fail "shed run: expected the command killed (137), got $rc: $(cat "$T/e3")"
expect_contains "$(cat "$T/e3")" "files and directories" "shed run's limit message"

step "H3: unprivileged, cgroup waived: tmpfs inode counts are bounded, creating more fails with ENOSPC"
echo '{"waive":["cgroup"]}' >"$T/un.json"; chmod 644 "$T/un.json"
unpriv_run() {
    if [ "$(id -u)" = 0 ]; then setpriv --reuid=65534 --regid=65534 --clear-groups "$SHED" run --policy "$T/un.json" "$@"
    else "$SHED" run --policy "$T/un.json" "$@"; fi
}
out=$(unpriv_run -- /bin/sh -c 'df -i /dev/shm /tmp /workspace | tail -n 3' 2>/dev/null) || fail "df -i inside: $out"
# here-strings, not pipes: `echo | head` dies of SIGPIPE under pipefail
[ "$(wc -l <<<"$out")" = 3 ] || fail "df -i inside: $out"
awk '{ if ($2 > 300000) { print "FAIL: " $6 " allows " $2 " inodes"; exit 1 } }' <<<"$out" || fail "tmpfs inodes unbounded: $out"
out=$(unpriv_run -- /bin/bash -c 'i=0; while [ $i -lt 20000 ] && { : > /dev/shm/f$i; } 2>/dev/null; do i=$((i+1)); done; echo "$i"; (: > /dev/shm/g) 2>&1; exit 0' 2>/dev/null) || fail "the /dev/shm filler ended badly: $out"
n=${out%%$'\n'*}
[ "$n" -lt 16384 ] || fail "/dev/shm took $n files"
expect_contains "$out" "No space left on device" "creating a file past nr_inodes"
