#!/usr/bin/env bash
# Escape campaign (issue #10): mount propagation. Sources: bubblewrap and
# runc make / MS_SLAVE (rslave) so nothing mounted inside leaks out; the
# reverse direction (a host mount appearing inside a running sandbox, with
# the host's flags rather than the sandbox's ro/nosuid/nodev) is the class of
# runc CVE-2021-30465 / CVE-2023-27561 discussions and Docker's
# "mount propagation" hardening (rprivate by default). On a systemd host `/`
# is a shared mount; the test makes a shared mount of its own, binds it into
# the sandbox, and mounts on the host under it while the sandbox runs.
# Inside-out: the sandbox's own mounts (tmpfs root, /proc, /dev, /tmp) must
# not appear in the host's mount table. Root only (the host side mounts).
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"
[ "$(id -u)" = 0 ] || skip "mount propagation needs root on the host side (mount --make-shared)"
[ -x "$PROBE" ] || fail "probe binary $PROBE missing (make builds it)"
MODES=(root)
command -v setpriv >/dev/null && MODES=(root unpriv)

mkdir -p "$T/shared"
mount -t tmpfs -o size=1m shedshared "$T/shared" || skip "cannot mount a tmpfs here"
at_exit "umount -R '$T/shared' 2>/dev/null || umount -l '$T/shared'"
mount --make-shared "$T/shared"
mkdir -p "$T/shared/sub"; chmod 755 "$T/shared" "$T/shared/sub"
echo "{\"mounts\":[{\"source\":\"$T/shared\",\"target\":\"/mnt/shared\"}]}" >"$T/root.json"
echo "{\"mounts\":[{\"source\":\"$T/shared\",\"target\":\"/mnt/shared\"}],\"waive\":[\"cgroup\"]}" >"$T/unpriv.json"
chmod 644 "$T"/*.json

for mode in "${MODES[@]}"; do
    step "[$mode] a host mount made under a bound shared mount while the sandbox runs"
    rm -f "$T/go" "$T/out" "$T/status"
    cmd='while [ ! -e /workspace/go ]; do sleep 0.05; done
         ls /mnt/shared/sub; grep -c " /mnt/shared/sub " /proc/self/mountinfo || true
         touch /mnt/shared/sub/written 2>&1 | sed "s/.*/touch: refused/"; echo end'
    ws="$T/ws-$mode"; mkdir -p "$ws"
    if [ "$mode" = root ]; then
        "$SHED" run --policy "$T/root.json" --workspace "$ws" --json-status 3 -- /bin/sh -c "$cmd" \
            3>"$T/status" >"$T/out" 2>&1 &
    else
        chown 65534:65534 "$ws"
        setpriv --reuid=65534 --regid=65534 --clear-groups \
            "$SHED" run --policy "$T/unpriv.json" --workspace "$ws" --json-status 3 -- /bin/sh -c "$cmd" \
            3>"$T/status" >"$T/out" 2>/dev/null &
    fi
    runpid=$!
    wait_for 20 grep -q init-pid "$T/status" || fail "the sandbox did not start: $(cat "$T/out")"
    ipid=$(sed -n 's/.*"init-pid":\([0-9]*\).*/\1/p' "$T/status" | head -n1)

    step "[$mode] inside-out: the sandbox's mounts are not in the host's mount table"
    host_mounts=$(cat /proc/self/mountinfo)
    expect_not_contains "$host_mounts" "shedshared /mnt/shared" "the sandbox's bind on the host"
    sb_mounts=$(wc -l </proc/"$ipid"/mountinfo)
    [ "$sb_mounts" -ge 5 ] || fail "could not read the sandbox's mount table ($sb_mounts lines)"
    # the sandbox builds its root under shed's state dir before pivot_root:
    # none of those mounts (nor any mount point under the shared dir besides
    # the test's own) may show on the host
    leaked=$(awk '$5 ~ /\/run\/shed|\/var\/lib\/shed|shed-state/' /proc/self/mountinfo)
    expect_eq "$leaked" "" "sandbox mounts visible on the host"
    expect_eq "$(awk -v d="$T/shared/" 'index($5, d) == 1' /proc/self/mountinfo)" "" "mounts under the shared dir on the host"

    # the host mounts a rw, exec, dev-allowing tmpfs under the shared mount
    mount -t tmpfs -o size=1m,mode=0777 shedhostmount "$T/shared/sub"
    echo "host-secret" >"$T/shared/sub/host-file"; chmod 666 "$T/shared/sub/host-file"
    touch "$ws/go"
    wait "$runpid" || true
    out=$(cat "$T/out")
    echo "$out" | sed "s/^/    [$mode] /"
    expect_contains "$out" "end" "the command ran"
    expect_not_contains "$out" "host-file" "a host mount made later appeared inside (propagation in)"
    [ ! -e "$T/shared/sub/written" ] || fail "the sandbox wrote into a host mount made after it started"
    umount "$T/shared/sub"
done
echo "escape_mounts ok (${MODES[*]})"
