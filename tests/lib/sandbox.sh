# Sourced (after common.sh) by the sandbox and escape tests: the modes they
# run in, the probe copied where a policy can mount it, the policy pair, and
# `shed run` in a mode. The unprivileged policy differs from the root one
# only by the cgroup waiver an undelegated unprivileged user needs; nothing
# here loosens a policy beyond that.

# MODES: root and unpriv as root, unpriv otherwise; root alone without setpriv.
MODES=(unpriv)
[ "$(id -u)" = 0 ] && MODES=(root unpriv)
command -v setpriv >/dev/null || MODES=(root)

# sb_probe: $PROBE copied to $T/bin (readable by the sandbox user);
# $SB_PROBE_MOUNT is the policy member that mounts it at /opt/probe.
SB_PROBE_MOUNT='"mounts":[{"source":"'$T'/bin","target":"/opt/probe"}]'
sb_probe() {
    [ -x "$PROBE" ] || fail "probe binary $PROBE missing (make builds it)"
    mkdir -p "$T/bin"; cp "$PROBE" "$T/bin/probe"; chmod 755 "$T/bin" "$T/bin/probe"
}

# sb_policies MEMBERS: $T/root.json = {MEMBERS}, $T/unpriv.json = {MEMBERS,
# "waive":["cgroup"]}, both mode 644.
sb_policies() {
    printf '{%s}\n' "$1" >"$T/root.json"
    printf '{%s%s"waive":["cgroup"]}\n' "$1" "${1:+,}" >"$T/unpriv.json"
    chmod 644 "$T/root.json" "$T/unpriv.json"
}

# sbrun MODE ARGS...: `shed run ARGS` with MODE's policy; unpriv runs as uid
# 65534 when the caller is root.
sbrun() {
    local mode=$1; shift
    if [ "$mode" = root ]; then "$SHED" run --policy "$T/root.json" "$@"
    elif [ "$(id -u)" = 0 ]; then setpriv --reuid=65534 --regid=65534 --clear-groups "$SHED" run --policy "$T/unpriv.json" "$@"
    else "$SHED" run --policy "$T/unpriv.json" "$@"; fi
}

# sbrun_quiet MODE ARGS...: sbrun, without the unprivileged run's stderr (its
# logged cgroup waiver); the root run's stderr passes.
sbrun_quiet() {
    if [ "$1" = root ]; then sbrun "$@"; else sbrun "$@" 2>/dev/null; fi
}

# sb_tool_ready: one bash call through `shed tool` (default policy): skip
# when this build's init does not serve tool calls, fail when the call
# cannot run; its output in SB_TOOL_OUT.
sb_tool_ready() {
    echo '[{"name":"bash","input":{"command":"echo ready"}}]' >"$T/probe.json"
    if ! SB_TOOL_OUT=$("$SHED" tool --calls "$T/probe.json" 2>&1); then
        case "$SB_TOOL_OUT" in
        *"not wired into this build"*) skip "shed init does not serve tool calls yet (sandbox branch, issue #3)" ;;
        esac
        fail "shed tool could not run a call: $SB_TOOL_OUT"
    fi
}

# has_child PID: PID has started a child (e.g. init its command)
has_child() { [ -n "$(cat /proc/"$1"/task/"$1"/children 2>/dev/null)" ]; }
