#!/usr/bin/env bash
# Table-driven seccomp test (Firecracker's test_seccomp_validate): every rule
# of the shipped filter, as printed by `shed init --seccomp-table`, is
# exercised by the probe inside a sandbox and its verdict checked: the
# policy's deny errno (an unusual one here, so that a kernel EPERM cannot
# pass for the filter's), ENOSYS for clone3, SIGSYS for x32 and i386 calls.
# Also: with the default policy the deny errno is EPERM.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sandbox.sh"
sb_probe
sb_policies "$SB_PROBE_MOUNT"',"seccomp":{"denyErrno":"ENOTRECOVERABLE"}'

step "the table"
"$SHED" init --seccomp-table --policy "$T/root.json" >"$T/table"
cat "$T/table"
rules=$(wc -l <"$T/table")
[ "$rules" -ge 60 ] || fail "only $rules rules in the table"
for s in ptrace process_vm_readv mount umount2 pivot_root unshare setns clone clone3 bpf perf_event_open \
         keyctl add_key request_key userfaultfd io_uring_setup io_uring_enter io_uring_register kexec_load \
         init_module finit_module delete_module open_by_handle_at syslog reboot swapon swapoff acct socket; do
    grep -q "^$s " "$T/table" || fail "no rule for $s"
done
grep -q '^socket .* 0x10 errno' "$T/table" || fail "AF_NETLINK rule"
grep -q '^socket .* 0x11 errno' "$T/table" || fail "AF_PACKET rule"
grep -q '^socket .* 0x28 errno' "$T/table" || fail "AF_VSOCK rule"
grep -q '^x32:getpid .* kill' "$T/table" || fail "x32 rule"

for mode in "${MODES[@]}"; do
    step "[$mode] every rule's verdict"
    set +e; out=$(sbrun_quiet "$mode" -- /opt/probe/probe syscall-table <"$T/table"); rc=$?; set -e
    echo "$out"
    expect_not_contains "$out" "FAIL" "seccomp verdicts ($mode)"
    expect_contains "$out" "$rules rules checked" "all rules ran ($mode)"
    expect_eq "$rc" 0 "probe exit ($mode)"
done

step "default policy: EPERM"
waive=""; [ "$(id -u)" = 0 ] || waive=',"waive":["cgroup"]'
echo "{\"mounts\":[{\"source\":\"$T/bin\",\"target\":\"/opt/probe\"}]$waive}" >"$T/default.json"
"$SHED" init --seccomp-table --policy "$T/default.json" | grep '^bpf ' >"$T/bpf"
expect_contains "$(cat "$T/bpf")" "errno:1" "default deny errno"
out=$("$SHED" run --policy "$T/default.json" -- /opt/probe/probe syscall-table <"$T/bpf" 2>/dev/null || true)
expect_contains "$out" "ok   bpf" "bpf denied with EPERM"
echo "sandbox_seccomp ok"
