#!/usr/bin/env bash
# `shed run`'s init runs in place (the clone child of `shed run`, no exec of
# its own; docs/security.md "Init in place"): prove it holds nothing of the
# caller. `shed run` gets a secret in its environment and one in its argv
# (the policy's path); while the sandbox runs, the test reads pid 1's whole
# writable memory and stack from the host (/proc/PID/mem, as root) and finds
# neither, while the same scan of the `shed run` process finds the
# environment secret (positive control). The sandbox user cannot read
# /proc/1/environ or /proc/1/mem, and /proc/1/cmdline says "shed init". With
# a loader variable in the environment (LD_LIBRARY_PATH, which ld.so copies),
# init is exec'd instead, and is as clean. Root and unprivileged callers.
# Mappings over 64 MB are not read (only sanitizer builds have them).
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sandbox.sh"
unset TZ # TZ means an exec'd init (in_place_ok): the caller's must not decide the path

[ "$(id -u)" = 0 ] || skip "reading another uid's /proc/PID/mem needs root"

sb_policies ''
# an ASan build keeps a copy of the environment in its runtime, so it never
# runs init in place (src/sandbox/sandbox.c, in_place_ok): there the test
# checks that init is exec'd, and as clean
sanitized=""
grep -qa __asan_init "$SHED" && sanitized=1
env_secret="EnvS3cret-$RANDOM$RANDOM-value"
arg_secret="ArgS3cret$RANDOM$RANDOM"
pdir="$T/pol-$arg_secret"
mkdir -p "$pdir"; chmod 755 "$T" "$pdir"
echo '{}' >"$pdir/root.json"
echo '{"waive":["cgroup"]}' >"$pdir/unpriv.json"
chmod 644 "$pdir"/*.json

# run_bg MODE ENV...: `shed run -- sleep 30` in the background with ENV added,
# the policy named by the secret path; sets RUN_PID (shed run) and INIT_PID
run_bg() {
    local mode=$1; shift
    rm -f "$T/status"
    if [ "$mode" = root ]; then
        env "$@" "$SHED" run --json-status 5 --policy "$pdir/root.json" -- sleep 30 5>"$T/status" &
    else
        env "$@" setpriv --reuid=65534 --regid=65534 --clear-groups \
            "$SHED" run --json-status 5 --policy "$pdir/unpriv.json" -- sleep 30 5>"$T/status" 2>/dev/null &
    fi
    RUN_PID=$!
    wait_for 10 grep -q init-pid "$T/status" || fail "[$mode] no status line from shed run"
    INIT_PID=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["init-pid"])' "$T/status")
    # the command is running once init has a child
    wait_for 10 has_child "$INIT_PID" ||
        fail "[$mode] init $INIT_PID started no command"
}
stop_bg() { kill -TERM "$RUN_PID" 2>/dev/null || true; wait "$RUN_PID" 2>/dev/null || true; }
at_exit 'stop_bg'

for mode in "${MODES[@]}"; do
    step "[$mode] init in place: nothing of the caller's argv or environment in pid 1's memory"
    run_bg "$mode" SHED_TEST_SECRET="$env_secret"
    # the path taken: an exec'd init has PATH and GNUTLS_NO_IMPLICIT_INIT in
    # its environment block, an init in place has it zeroed
    environ=$(tr '\0' '\n' </proc/"$INIT_PID"/environ)
    if [ -n "$sanitized" ]; then
        expect_contains "$environ" "GNUTLS_NO_IMPLICIT_INIT" "[$mode] a sanitizer build execs init"
    else
        expect_not_contains "$environ" "GNUTLS_NO_IMPLICIT_INIT" "[$mode] init runs in place (not exec'd)"
    fi
    expect_not_contains "$environ" "$env_secret" "[$mode] init's environ (host view)"
    cmdline=$(tr '\0' ' ' </proc/"$INIT_PID"/cmdline | sed 's/ *$//')
    expect_eq "$cmdline" "shed init" "[$mode] init's cmdline (host view)"
    expect_eq "$(python3 "$SHED_ROOT/tests/lib/memscan.py" "$INIT_PID" "$env_secret" "$arg_secret" SHED_TEST_SECRET)" none \
        "[$mode] secrets in init's memory"
    # positive control: the same scan sees the secret in the caller
    ctl=$(python3 "$SHED_ROOT/tests/lib/memscan.py" "$RUN_PID" "$env_secret")
    expect_contains "$ctl" "$env_secret" "[$mode] control: the scan finds the secret in shed run"
    stop_bg

    step "[$mode] the sandbox user cannot read init's environ or memory; cmdline is \"shed init\""
    out=$(sbrun_quiet "$mode" -- /bin/sh -c '
        cat /proc/1/environ >/dev/null 2>&1 && echo environ-readable
        cat /proc/1/mem >/dev/null 2>&1 && echo mem-readable
        dd if=/proc/1/mem bs=1 count=1 skip=4194304 >/dev/null 2>&1 && echo mem-read
        readlink /proc/1/exe >/dev/null 2>&1 && echo exe-readable
        echo "cmdline=$(tr "\0" " " </proc/1/cmdline | sed "s/ *$//")"' 2>&1)
    expect_not_contains "$out" "readable" "[$mode] /proc/1 files"
    expect_not_contains "$out" "mem-read" "[$mode] /proc/1/mem"
    expect_contains "$out" "cmdline=shed init" "[$mode] /proc/1/cmdline"

    step "[$mode] a loader variable in the environment: init exec'd, as clean"
    run_bg "$mode" SHED_TEST_SECRET="$env_secret" LD_LIBRARY_PATH="/nonexistent/$arg_secret"
    environ=$(tr '\0' '\n' </proc/"$INIT_PID"/environ)
    expect_contains "$environ" "GNUTLS_NO_IMPLICIT_INIT" "[$mode] init exec'd with LD_LIBRARY_PATH set"
    expect_eq "$(python3 "$SHED_ROOT/tests/lib/memscan.py" "$INIT_PID" "$env_secret" "$arg_secret")" none \
        "[$mode] secrets in the exec'd init's memory"
    stop_bg
done
echo "ok"
