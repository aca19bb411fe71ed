#!/usr/bin/env bash
# The worker unit's hardening leaves sandboxes working, what it leaves out
# would break them, and shed serve runs under its own much stricter unit. Without systemd as pid 1 we rebuild the unit's
# restrictions by hand in a private mount namespace: ProtectSystem=strict
# (everything read-only but the unit's state/runtime dirs), ProtectHome=,
# PrivateDevices=, NoNewPrivileges=, the unit's CapabilityBoundingSet=,
# SystemCallFilter= and RestrictAddressFamilies=, then create a real sandbox
# with `shed run`. Then ProtectKernelTunables= and
# ProtectKernelLogs= (their /proc over-mounts) must make sandbox creation
# fail, as docs/operations.md says; MemoryDenyWriteExecute= must break a JIT
# (node); and `shed serve` must answer under its unit's filters (no uid 0,
# no capabilities, the @system-service allow-list, MemoryDenyWriteExecute=).
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"

[ "$(id -u)" -eq 0 ] || skip "needs root (the worker unit runs as root)"
for c in unshare setpriv findmnt; do command -v $c >/dev/null || fail "$c missing (util-linux)"; done
unit=$SHED_ROOT/deploy/systemd/shed-worker.service
timeout 60 "$SHED" run -- /bin/true >/dev/null 2>&1 || skip "shed run does not work on this host even unhardened"

step "the unit has what the emulation assumes"
grep -q '^RuntimeDirectory=shed$' "$unit" || fail "RuntimeDirectory=shed missing: sandboxes keep their bookkeeping in /run/shed"
grep -q '^StateDirectory=shed$' "$unit" || fail "StateDirectory=shed missing"
caps=$(sed -n '/^CapabilityBoundingSet=/,/[^\\]$/p' "$unit" | tr -d '\\\n' | sed 's/^CapabilityBoundingSet=//')
[ -n "$caps" ] || fail "no CapabilityBoundingSet= in the unit"
bset=-all
for c in $caps; do bset="$bset,+$(tr 'A-Z' 'a-z' <<<"${c#CAP_}")"; done
echo "bounding set: $bset"

cat >"$T/harden.sh" <<'SH'
#!/bin/bash
# harden.sh MODE WRITABLE_DIR CMD...: MODE unit | tunables | kmsg
set -e
mode=$1 writable=$2; shift 2
mount --make-rprivate /
case "$mode" in
unit)
    # PrivateDevices=: a /dev with pseudo devices only, read-only
    d=$(mktemp -d "$writable/dev.XXXXXX")
    mount -t tmpfs -o mode=755,nosuid tmpfs "$d"
    for n in null zero full random urandom tty; do touch "$d/$n"; mount --bind "/dev/$n" "$d/$n"; done
    mkdir "$d/pts" "$d/shm"
    mount -t devpts -o newinstance,ptmxmode=0666 devpts "$d/pts"
    ln -s pts/ptmx "$d/ptmx"
    mount -t tmpfs tmpfs "$d/shm"
    mount -o remount,ro,bind "$d"
    mount --move "$d" /dev
    # ProtectHome=: empty, read-only
    for h in /home /root /run/user; do [ -d "$h" ] && mount -t tmpfs -o mode=755,ro tmpfs "$h"; done
    # ProtectSystem=strict: every mount read-only except /dev /proc /sys...
    findmnt -rn -o TARGET | sort -r | while read -r m; do
        case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
        mount -o remount,bind,ro "$m" 2>/dev/null || true
    done
    # ...but RuntimeDirectory= and StateDirectory=
    mkdir -p /run/shed 2>/dev/null || true
    for w in /run/shed "$writable"; do mount --bind "$w" "$w"; mount -o remount,bind,rw "$w"; done
    ;;
tunables) mount --bind /proc/sys /proc/sys; mount -o remount,bind,ro /proc/sys ;;
kmsg) mount --bind /dev/null /proc/kmsg ;;
esac
exec "$@"
SH
chmod +x "$T/harden.sh"
mkdir -p "$T/state/ws"

step "a sandbox under the unit's hardening (mounts, devices, capabilities, no_new_privs)"
out=$(timeout 60 unshare -m "$T/harden.sh" unit "$T/state" \
    setpriv --no-new-privs --bounding-set "$bset" --inh-caps=-all \
    "$SHED" run --workspace "$T/state/ws" -- /bin/sh -c 'echo hi >f; ls /dev | tr "\n" " "; echo; id -u' 2>&1) \
    || fail "sandbox creation failed under the unit's hardening: $out"
echo "$out"
expect_contains "$out" "null" "/dev inside the sandbox"
expect_eq "$(tail -n1 <<<"$out")" "1000" "sandbox user"
[ "$(cat "$T/state/ws/f")" = hi ] || fail "workspace write"

step "the same under the unit's SystemCallFilter= and RestrictAddressFamilies= (seccomp, stacked)"
if command -v systemd-analyze >/dev/null && command -v cc >/dev/null; then
    groups=$(sed -n 's/^SystemCallFilter=~//p' "$unit")
    fams=$(sed -n 's/^RestrictAddressFamilies=//p' "$unit")
    deny=$(systemd-analyze syscall-filter $groups | grep -v -e '^@' -e '^ *#' -e '^$' | tr -d ' ' | sort -u)
    [ -n "$deny" ] || fail "no system calls listed for $groups"
    echo "denied: $(wc -w <<<"$deny") system calls ($groups); families: $fams"
    cat >"$T/seccomp-exec.c" <<'C'
/* seccomp-exec [-d DENY] [-a ALLOW] [-f FAMILIES] [-m] -- CMD...: what
 * systemd installs for SystemCallFilter=~DENY (EPERM for those), or
 * SystemCallFilter=ALLOW (EPERM for all others), RestrictAddressFamilies=
 * (EAFNOSUPPORT for other socket() families) and MemoryDenyWriteExecute= (-m). */
#include <errno.h>
#include <getopt.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
static void each(scmp_filter_ctx ctx, char *list, uint32_t action)
{
    for (char *s = strtok(list, " \n"); s; s = strtok(NULL, " \n")) {
        int nr = seccomp_syscall_resolve_name(s);
        if (nr != __NR_SCMP_ERROR) seccomp_rule_add(ctx, action, nr, 0);
    }
}
int main(int argc, char **argv)
{
    char *deny = NULL, *allow = NULL, *fams = NULL;
    int mdwe = 0, c;
    while ((c = getopt(argc, argv, "+d:a:f:m")) != -1) {
        if (c == 'd') deny = optarg;
        else if (c == 'a') allow = optarg;
        else if (c == 'f') fams = optarg;
        else if (c == 'm') mdwe = 1;
        else return 2;
    }
    if (optind >= argc) return 2;
    scmp_filter_ctx ctx = seccomp_init(allow ? SCMP_ACT_ERRNO(EPERM) : SCMP_ACT_ALLOW);
    if (allow) each(ctx, allow, SCMP_ACT_ALLOW);
    if (deny) each(ctx, deny, SCMP_ACT_ERRNO(EPERM));
    if (fams) {
        static const struct { const char *n; int f; } F[] = {
            {"AF_UNIX", AF_UNIX}, {"AF_INET", AF_INET}, {"AF_INET6", AF_INET6},
            {"AF_NETLINK", AF_NETLINK}};
        for (int fam = 0; fam < AF_MAX; fam++) {
            int ok = 0;
            for (size_t i = 0; i < sizeof(F) / sizeof(F[0]); i++)
                if (F[i].f == fam && strstr(fams, F[i].n)) ok = 1;
            if (!ok)
                seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                                 SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)fam));
        }
    }
    if (mdwe) {
        seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mmap), 1,
                         SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC | PROT_WRITE, PROT_EXEC | PROT_WRITE));
        seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mprotect), 1,
                         SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
    }
    if (seccomp_load(ctx) < 0) { perror("seccomp_load"); return 2; }
    execvp(argv[optind], argv + optind);
    perror("exec");
    return 127;
}
C
    cc -O1 -o "$T/seccomp-exec" "$T/seccomp-exec.c" -lseccomp || fail "build the seccomp helper"
    mkdir -p "$T/state/ws2"
    # (LeakSanitizer needs ptrace, which @debug denies: no leak check in an ASan build here)
    out=$(ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
        timeout 60 unshare -m "$T/harden.sh" unit "$T/state" \
        setpriv --no-new-privs --bounding-set "$bset" --inh-caps=-all \
        "$T/seccomp-exec" -d "$deny" -f "$fams" -- \
        "$SHED" run --workspace "$T/state/ws2" -- /bin/sh -c 'echo ok; python3 -c "import socket; socket.socket(socket.AF_PACKET)" 2>&1 | tail -n1' 2>&1) \
        || fail "sandbox creation failed under the unit's seccomp filters: $out"
    echo "$out"
    expect_eq "$(head -n1 <<<"$out")" "ok" "sandbox under the unit's seccomp filters"

    step "MemoryDenyWriteExecute= would break a JIT in the sandbox (why the worker cannot take it)"
    node=$(command -v node || true)
    [ -n "$node" ] || node=$SHED_ROOT/node_modules/.bin/node
    if [ -x "$node" ]; then
        "$T/seccomp-exec" -d "" -- "$node" -e 'process.exit(0)' || fail "node without MDWE"
        if sh -c '"$1" -m -- "$2" -e "process.exit(0)"' sh "$T/seccomp-exec" "$node" 2>/dev/null; then
            fail "node ran under MemoryDenyWriteExecute: the unit note is wrong"
        fi
        echo "node: runs normally, fails under MemoryDenyWriteExecute"
    else
        echo "note: no node on this host: MDWE claim not checked"
    fi

    step "shed serve under its unit's filters: unprivileged, no capabilities, @system-service, MDWE"
    expand() { # a systemd syscall group, nested groups expanded
        systemd-analyze syscall-filter "$1" | sed 1d | grep -v -e '^ *#' -e '^$' | tr -d ' ' |
            while read -r x; do if [[ $x == @* ]]; then expand "$x"; else echo "$x"; fi; done
    }
    sunit=$SHED_ROOT/deploy/systemd/shed-serve.service
    allow_groups=$(sed -n 's/^SystemCallFilter=\([^~].*\)/\1/p' "$sunit")
    deny_groups=$(sed -n 's/^SystemCallFilter=~//p' "$sunit")
    sfams=$(sed -n 's/^RestrictAddressFamilies=//p' "$sunit")
    allow=$(for g in $allow_groups; do expand "$g"; done | sort -u)
    sdeny=$(for g in $deny_groups; do expand "$g"; done | sort -u)
    allow=$(comm -23 <(echo "$allow") <(echo "$sdeny"))
    echo "serve: $(wc -w <<<"$allow") system calls allowed ($allow_groups minus $deny_groups)"
    mkdir -p "$T/serve"; chmod 711 "$T"
    printf 'sk-shed-admin-obs-emulated-0123456789\n' >"$T/serve/admin.key"
    chmod 600 "$T/serve/admin.key"; chown -R 65534:65534 "$T/serve"; chmod 700 "$T/serve"
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
        setpriv --reuid 65534 --regid 65534 --clear-groups --no-new-privs --bounding-set -all \
        --inh-caps=-all "$T/seccomp-exec" -a "$allow" -f "$sfams" -m -- \
        "$SHED" serve --listen 127.0.0.1:0 --state-dir "$T/serve" \
        --admin-key-file "$T/serve/admin.key" >"$T/serve.out" 2>"$T/serve.err" &
    spid=$!
    at_exit "kill $spid 2>/dev/null"
    wait_for 20 grep -q 'listening on' "$T/serve.out" || fail "serve did not start under its filters: $(cat "$T/serve.err")"
    url=$(sed -n 's/.*listening on //p' "$T/serve.out")
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'x-api-key: sk-shed-admin-obs-emulated-0123456789' \
        -H 'anthropic-version: 2023-06-01' "$url/v1/environments")
    expect_eq "$code" 200 "GET /v1/environments from serve under its unit's filters"
    kill $spid; wait $spid 2>/dev/null || true
else
    echo "note: systemd-analyze or cc missing: seccomp part not emulated"
fi

step "without CAP_SETUID the uid map cannot be written (the bounding set is not decoration)"
set +e
out=$(timeout 60 setpriv --no-new-privs --bounding-set "${bset/,+setuid/}" "$SHED" run -- /bin/true 2>&1); rc=$?
set -e
[ "$rc" -ne 0 ] || fail "sandbox creation succeeded without CAP_SETUID"
expect_contains "$out" "uid_map" "failure names the uid map"

for m in tunables kmsg; do
    name=ProtectKernelTunables; [ "$m" = kmsg ] && name=ProtectKernelLogs
    step "a $name-like /proc over-mount breaks sandboxes"
    set +e
    out=$(timeout 60 unshare -m "$T/harden.sh" "$m" "$T/state" "$SHED" run -- /bin/true 2>&1); rc=$?
    set -e
    [ "$rc" -ne 0 ] || fail "sandbox creation worked with the $m over-mount: docs/operations.md and the unit's note are wrong"
    expect_contains "$out" "mount proc" "the failure names the /proc mount"
done
echo "systemd emulated ok"
