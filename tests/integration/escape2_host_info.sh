#!/usr/bin/env bash
# Escape campaign, second round (issue #10): what a sandbox can learn of, or
# share with, the host — the caller's environment, /dev/shm, SysV and POSIX
# IPC, host paths in the mount table — and the network surfaces besides TCP
# (raw and ICMP sockets, UDP out, garbage to the DNS stub). As root and
# unprivileged; every attempt BLOCKED, every positive control OK.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sandbox.sh"
sb_probe
sb_policies "$SB_PROBE_MOUNT"

mq="shed-escape2-$$-$RANDOM"
key=$(( 0x5ed00000 + ($$ & 0xffff) ))
shm_host="/dev/shm/shed-escape2-host-$$"
at_exit "'$PROBE' ipc clean '$mq' $key; rm -f '$shm_host' /dev/shm/shed-escape2-inside-$$"

step "host side: IPC objects and a /dev/shm file the sandbox must not see"
out=$("$PROBE" ipc host "$mq" "$key")
expect_contains "$out" "OK host ipc objects made" "host IPC objects (control)"
echo host-shm-secret >"$shm_host"
chmod 644 "$shm_host"
ipcs -m | grep -qi "$(printf '0x%08x' "$key")" || fail "the host's SysV segment is not listed on the host (control)"

secrets=(ANTHROPIC_API_KEY=sk-ant-escape2-secret SHED_ADMIN_KEY=sk-shed-admin-escape2
    AWS_SECRET_ACCESS_KEY=escape2-aws GITHUB_TOKEN=escape2-gh SHED_ESCAPE2_MARK=escape2-mark)

for mode in "${MODES[@]}"; do
    step "[$mode] the caller's environment (keys, tokens) is not the command's"
    out=$(export "${secrets[@]}"; sbrun_quiet "$mode" -- /bin/sh -c 'env; echo; cat /proc/1/environ 2>&1; true' </dev/null)
    for s in "${secrets[@]}"; do expect_not_contains "$out" "${s#*=}" "[$mode] ${s%%=*} inside"; done
    expect_contains "$out" "PATH=/usr/local/bin:/usr/bin:/bin" "[$mode] the sandbox's own environment (control)"
    expect_contains "$out" "HOME=/workspace" "[$mode] HOME (control)"
    expect_contains "$out" "Permission denied" "[$mode] init's environment is closed"

    step "[$mode] /dev/shm is the sandbox's own"
    out=$(sbrun_quiet "$mode" -- /bin/sh -c "ls -A /dev/shm; cat '$shm_host' 2>&1; echo inside >/dev/shm/shed-escape2-inside-$$ && cat /dev/shm/shed-escape2-inside-$$" </dev/null)
    expect_not_contains "$out" "host-shm-secret" "[$mode] the host's /dev/shm file"
    expect_contains "$out" "No such file" "[$mode] the host's /dev/shm file is absent"
    expect_contains "$out" "inside" "[$mode] the sandbox writes its own /dev/shm (control)"
    [ ! -e "/dev/shm/shed-escape2-inside-$$" ] || fail "[$mode] the sandbox's /dev/shm file appeared on the host"

    step "[$mode] SysV and POSIX IPC of the host (ipc namespace)"
    out=$(sbrun_quiet "$mode" -- /opt/probe/probe ipc check "$mq" "$key" </dev/null) || fail "[$mode] probe ipc: $out"
    echo "$out" | sed "s/^/    [$mode] /"
    expect_not_contains "$out" "ESCAPE" "[$mode] host IPC"
    expect_contains "$out" "OK own POSIX queue" "[$mode] own POSIX queue (control)"
    expect_contains "$out" "OK own SysV segment" "[$mode] own SysV segment (control)"
    out=$(sbrun_quiet "$mode" -- /bin/sh -c 'ipcs -m; ipcs -q' </dev/null)
    expect_not_contains "$out" "$(printf '0x%08x' "$key")" "[$mode] ipcs inside lists the host's key"

    step "[$mode] no host path in the mount table (tmpfs workspace; the operator's own probe mount aside)"
    out=$(sbrun_quiet "$mode" -- /bin/cat /proc/self/mountinfo </dev/null | grep -v ' /opt/probe ')
    expect_contains "$out" " /workspace " "[$mode] mountinfo read (control)"
    for p in "$T" /root /home /run/shed /var/lib/shed "$(dirname "$SHED")"; do
        expect_not_contains "$out" " $p" "[$mode] host path $p in mountinfo"
    done

    step "[$mode] raw and ICMP sockets, UDP out, garbage to the DNS stub"
    out=$(sbrun_quiet "$mode" -- /opt/probe/probe net2 </dev/null) || fail "[$mode] probe net2: $out"
    echo "$out" | sed "s/^/    [$mode] /"
    expect_not_contains "$out" "ESCAPE" "[$mode] net2"
    expect_eq "$(grep -c '^BLOCKED' <<<"$out")" 7 "[$mode] net2 attempts"
    expect_contains "$out" "OK the DNS stub answers after garbage" "[$mode] DNS stub (control)"
done
echo "escape2 host info: all blocked"
