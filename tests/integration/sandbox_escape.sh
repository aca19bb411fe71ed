#!/usr/bin/env bash
# The probe inside a sandbox, as root and as an unprivileged user: every
# adversarial verb must be blocked (docs/security.md maps each to its layer).
# timeout: 180
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sandbox.sh"

# The probe reaches the sandbox only through an operator mount in the policy.
sb_probe
sb_policies "$SB_PROBE_MOUNT"

# probe_blocked MODE VERB ARGS...: every attempt BLOCKED, exit 0
probe_blocked() {
    local mode=$1 out rc; shift
    set +e; out=$(sbrun_quiet "$mode" -- /opt/probe/probe "$@" 2>&1); rc=$?; set -e
    echo "$out" | sed "s/^/    [$mode] /"
    expect_not_contains "$out" "ESCAPE" "probe $* ($mode)"
    expect_contains "$out" "BLOCKED" "probe $* ($mode) made attempts"
    expect_eq "$rc" 0 "probe $* exit status ($mode)"
}

# a host file that is not mounted, a secret of the host's root
secret_dir=$(mktemp -d /root/shed-secret.XXXXXX 2>/dev/null || mktemp -d "$HOME/shed-secret.XXXXXX")
at_exit "rm -rf '$secret_dir'"
echo "host secret" >"$secret_dir/secret"; chmod 644 "$secret_dir/secret"

# a server on the host's loopback the sandbox must not reach
port=$(free_port)
python3 -c '
import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
while True:
    c,_=s.accept(); c.sendall(b"host-server-reached\n"); c.close()' "$port" &
srv=$!
at_exit "kill $srv"
wait_for 10 python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" || fail "host server did not start"

for mode in "${MODES[@]}"; do
    step "[$mode] identity: uid 1000, no capabilities, NoNewPrivs, seccomp, own session"
    out=$(sbrun_quiet "$mode" -- /opt/probe/probe status)
    expect_contains "$out" $'Uid:\t1000\t1000\t1000\t1000' "uid"
    for c in CapInh CapPrm CapEff CapBnd CapAmb; do expect_contains "$out" "$c:	0000000000000000" "$c"; done
    expect_contains "$out" $'NoNewPrivs:\t1' "no_new_privs"
    expect_contains "$out" $'Seccomp:\t2' "seccomp filter mode"
    expect_contains "$out" "sid=1 " "session of init (setsid), no controlling terminal"

    step "[$mode] host files that are not mounted"
    probe_blocked "$mode" read /etc/shadow "$secret_dir/secret" /root/.bashrc /home /run/shed /var/lib/shed /proc/1/root/etc/shadow

    step "[$mode] writes outside the workspace and /tmp"
    probe_blocked "$mode" write /usr/bin/x /etc/passwd /etc/new /bin/x /lib/x /x /proc/x /dev/x /opt/probe/x
    out=$(sbrun_quiet "$mode" -- /opt/probe/probe write /workspace/ok /tmp/ok /dev/shm/ok || true)
    expect_eq "$(grep -c '^ESCAPE write' <<<"$out")" 3 "workspace, /tmp and /dev/shm are writable"

    step "[$mode] host processes: invisible, cannot be signalled or traced"
    out=$(sbrun_quiet "$mode" -- /opt/probe/probe pids)
    expect_eq "$(tr '\n' ' ' <<<"$out")" "1 2 " "only init and the probe are visible"
    probe_blocked "$mode" signal $$ "$srv" 4194303

    step "[$mode] mount, pivot_root, unshare, setns, new user namespaces"
    probe_blocked "$mode" namespaces

    step "[$mode] netlink, packet, vsock and raw sockets"
    probe_blocked "$mode" sockets

    step "[$mode] io_uring, bpf, keyctl, perf_event_open and other kernel surfaces"
    probe_blocked "$mode" kernel

    step "[$mode] connecting to a server on the host's loopback"
    probe_blocked "$mode" connect 127.0.0.1 "$port"

    step "[$mode] mknod of devices (workspace, /tmp)"
    probe_blocked "$mode" mknod /tmp
    probe_blocked "$mode" mknod /workspace

    step "[$mode] escapes through /proc"
    probe_blocked "$mode" proc

    step "[$mode] setuid-root binaries of the host give nothing"
    out=$(sbrun_quiet "$mode" -- /bin/sh -c 'ls -l /usr/bin/su | cut -c1-10; /usr/bin/su -c "id -u" root </dev/null 2>&1; echo "rc=$?"' 2>/dev/null || true)
    echo "$out" | sed "s/^/    [$mode] /"
    expect_not_contains "$out" $'\n0\n' "su gave uid 0"
    expect_not_contains "$out" "rc=0" "su succeeded"

    step "[$mode] no fd of the creator is visible"
    out=$(sbrun_quiet "$mode" -- /opt/probe/probe fds </dev/null)
    expect_eq "$(cut -d' ' -f1 <<<"$out" | tr '\n' ' ')" "0 1 2 " "only stdio fds"
done

if [ "$(id -u)" = 0 ]; then
    step "[root] privilege gain through a setuid binary"
    ws="$T/ws-suid"; mkdir -p "$ws"
    # a setuid-root copy of the probe in the workspace: nosuid mount, NNP, uid 0 unmapped
    out=$("$SHED" run --policy "$T/root.json" --workspace "$ws" -- /bin/sh -c 'cp /opt/probe/probe /workspace/p; echo ok')
    expect_eq "$out" ok "copy"
    chown 0:0 "$ws/p"; chmod 4755 "$ws/p"
    cp "$T/bin/probe" "$T/bin/probe-suid"; chown 0:0 "$T/bin/probe-suid"; chmod 4755 "$T/bin/probe-suid"
    out=$("$SHED" run --policy "$T/root.json" --workspace "$ws" -- /bin/sh -c '/workspace/p euid; /opt/probe/probe-suid euid; /usr/bin/su -c id 2>&1 </dev/null | head -c 200; echo')
    expect_eq "$(head -n2 <<<"$out" | tr '\n' ' ')" "1000 1000 " "setuid-root binaries run with euid 1000"
    expect_not_contains "$out" "uid=0" "su does not give root"

    step "[root] two sandboxes never share a host uid"
    a=$("$SHED" run --json-status 3 -- /bin/sleep 1 3>&1 >/dev/null | sed -n 's/.*"host-uid":\([0-9]*\).*/\1/p' | head -n1) &
    u1=$("$SHED" run --json-status 3 -- /bin/true 3>&1 >/dev/null | sed -n 's/.*"host-uid":\([0-9]*\).*/\1/p' | head -n1)
    "$SHED" run --json-status 3 -- /bin/sleep 2 3>"$T/u2" >/dev/null &
    p2=$!
    wait_for 10 grep -q host-uid "$T/u2"
    u3=$("$SHED" run --json-status 3 -- /bin/true 3>&1 >/dev/null | sed -n 's/.*"host-uid":\([0-9]*\).*/\1/p' | head -n1)
    u2=$(sed -n 's/.*"host-uid":\([0-9]*\).*/\1/p' "$T/u2" | head -n1)
    wait $p2
    [ "$u2" != "$u3" ] || fail "concurrent sandboxes share host uid $u2"
    [ "$u1" -ge 1800000000 ] || fail "host uid $u1 outside the sandbox range"
fi
echo "sandbox_escape ok (${MODES[*]})"
