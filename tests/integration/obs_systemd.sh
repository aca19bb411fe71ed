#!/usr/bin/env bash
# The systemd units parse and name real directives (`systemd-analyze verify`,
# offline), and keep the hardening docs/operations.md promises: the worker
# keeps what it needs (namespaces, cgroups, network), the server takes all.
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"

command -v systemd-analyze >/dev/null || skip "systemd-analyze not installed (package systemd)"
src=$SHED_ROOT/deploy/systemd
for u in shed-worker shed-serve; do
    sed -e "s#/usr/local/bin/shed#$SHED#" -e "s#/etc/shed/worker.env#$T/worker.env#" \
        "$src/$u.service" >"$T/$u.service"
done
touch "$T/worker.env"

step "systemd-analyze verify"
out=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$T/shed-worker.service" "$T/shed-serve.service" 2>&1) \
    || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify warns: $out"

step "the worker keeps what it needs"
w=$src/shed-worker.service
for d in PrivateUsers RestrictNamespaces PrivateNetwork ProtectControlGroups ProtectKernelTunables \
    ProtectKernelLogs ProtectHostname MemoryDenyWriteExecute; do
    ! grep -q "^$d=" "$w" || fail "shed-worker.service sets $d=, which breaks sandboxes (see the note in the unit)"
done
for d in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes Delegate=yes KillMode=mixed \
    "ExecReload=/bin/kill -HUP"; do
    grep -q "^$d" "$w" || fail "shed-worker.service lacks $d"
done

step "the server takes everything"
s=$src/shed-serve.service
for d in DynamicUser=yes PrivateUsers=yes RestrictNamespaces=yes ProtectKernelTunables=yes \
    ProtectControlGroups=yes MemoryDenyWriteExecute=yes "CapabilityBoundingSet=$"; do
    grep -q "^$d" "$s" || fail "shed-serve.service lacks $d"
done
if systemd-analyze security --help 2>/dev/null | grep -q -- --offline; then
    lvl=$(systemd-analyze security --offline=true "$T/shed-serve.service" 2>/dev/null | sed -n 's/.*exposure level for shed-serve.service: \([0-9.]*\).*/\1/p')
    echo "shed-serve exposure: $lvl"
    awk -v l="$lvl" 'BEGIN { exit !(l != "" && l < 2.0) }' || fail "shed-serve.service exposure $lvl, want < 2.0"
fi
echo "systemd ok"
