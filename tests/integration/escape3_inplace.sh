#!/usr/bin/env bash
# Red team, third round: `shed run`'s init in place (docs/security.md, "Init
# in place"), attacked from the sandbox user's side and from the caller's.
# Each step compares an init in place with an exec'd one (LD_LIBRARY_PATH set
# to a directory that does not exist forces the exec path, in_place_ok):
# - inside: pid 1's /proc files read the same (cmdline byte for byte: it
#   showed the caller's argv length as trailing zeroes until trim_args),
#   the same ones are closed, and no signal sent from inside stops or kills it;
# - the caller: secrets in the variables glibc and shed read (LANG,
#   LOCALDOMAIN, HOME, XDG_RUNTIME_DIR, ...), in a long environment spanning
#   many pages, in `env -i`'s bare layout, in argv[0], in the current
#   directory's name, with `shed run` exec'd from an fd (fexecve) and under
#   `ulimit -s unlimited` or 64: none of them in init's writable memory (read from
#   the host through /proc/PID/mem, root only);
# - the conditions: GLIBC_TUNABLES, MALLOC_*, LD_*, TZ each send init down
#   the exec path. TZ is this round's hole: glibc's tzset strdup()s it on the
#   first gmtime_r (every log line's time), and an unprivileged caller's
#   waived-layer warning is logged before the clone: TZ's value was on init's
#   heap. Now TZ means an exec'd init; the last step proves it clean.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sandbox.sh"
unset TZ # TZ means an exec'd init (in_place_ok): the caller's must not decide the path

sb_policies ''
sanitized=""
grep -qa __asan_init "$SHED" && sanitized=1
chmod 755 "$T"

# ---- from inside: what the sandbox user sees of pid 1 ----
cat >"$T/view.sh" <<'SH'
printf 'cmdline=%s\n' "$(od -An -c /proc/1/cmdline | tr -s ' \n' ' ')"
echo "comm=$(cat /proc/1/comm)"
for f in environ mem auxv syscall stack personality pagemap maps smaps timers exe cwd root fd/0 wchan; do
    if [ -L /proc/1/$f ]; then readlink /proc/1/$f >/dev/null 2>&1 && echo "readable $f"
    else cat /proc/1/$f >/dev/null 2>&1 && [ -n "$(cat /proc/1/$f 2>/dev/null | tr -d '0\n')" ] && echo "readable $f"; fi
done
echo "stat=$(cut -d' ' -f 25-30,45-52 /proc/1/stat)"
grep -E '^(Name|NoNewPrivs|Seccomp|CapInh|CapPrm|CapEff|CapBnd|CapAmb|SigCgt|SigPnd|ShdPnd):' /proc/1/status | tr -s '\t' ' '
SH
cat >"$T/signals.sh" <<'SH'
for s in $(seq 1 31) 32 33 34 40 64; do
    # a sanitizer build's init has handlers for SEGV, BUS, FPE (its runtime's):
    # those are delivered, and it aborts; shed's own init has none
    case " $SKIP " in *" $s "*) continue ;; esac
    kill -s "$s" 1 2>/dev/null
done
sleep 0.3
state=$(sed 's/.*) //' /proc/1/stat | cut -d' ' -f1)
kill -0 1 && echo "init-alive state=$state"
SH
chmod 644 "$T/view.sh" "$T/signals.sh"
# the scripts reach the sandbox through the workspace

for mode in "${MODES[@]}"; do
    # a workspace per mode (a root run gives its workspace to the slot's uid)
    ws="$T/ws-$mode"; mkdir -p "$ws"; cp "$T/view.sh" "$T/signals.sh" "$ws/"; chmod 777 "$ws"; chmod 644 "$ws"/*.sh
    step "[$mode] inside: pid 1 in place reads as an exec'd one does"
    inplace=$(sbrun_quiet "$mode" --workspace "$ws" -- /bin/sh view.sh) || fail "[$mode] view (in place) failed: $inplace"
    execd=$(LD_LIBRARY_PATH=/nonexistent sbrun_quiet "$mode" --workspace "$ws" -- /bin/sh view.sh) ||
        fail "[$mode] view (exec'd) failed"
    expect_eq "$inplace" "$execd" "[$mode] pid 1's /proc view, in place vs exec'd"
    expect_contains "$inplace" "cmdline= s h e d \\0 i n i t \\0 " "[$mode] /proc/1/cmdline is exactly shed init"
    expect_not_contains "$inplace" "readable" "[$mode] /proc/1 files closed to the sandbox user"
    expect_contains "$inplace" "NoNewPrivs: 1" "[$mode] init has no_new_privs"
    expect_contains "$inplace" "Seccomp: 2" "[$mode] init is under the filter"
    expect_contains "$inplace" "CapEff: 0000000000000000" "[$mode] init has no capability"

    step "[$mode] inside: every signal sent to pid 1 from the sandbox is dropped (in place and exec'd)"
    for how in inplace exec; do
        skip=""; [ -n "$sanitized" ] && skip="7 8 11"
        rc=0
        if [ $how = exec ]; then out=$(LD_LIBRARY_PATH=/nonexistent sbrun_quiet "$mode" --workspace "$ws" -- /usr/bin/env SKIP="$skip" /bin/sh signals.sh) || rc=$?
        else out=$(sbrun_quiet "$mode" --workspace "$ws" -- /usr/bin/env SKIP="$skip" /bin/sh signals.sh) || rc=$?; fi
        expect_eq "$rc" 0 "[$mode/$how] the command's exit after signalling init"
        expect_contains "$out" "init-alive state=S" "[$mode/$how] init alive and not stopped"
    done
done

# ---- from the caller: secrets in every other place ----
[ "$(id -u)" = 0 ] || { echo "ok (caller-side scans need root to read /proc/PID/mem)"; exit 0; }
[ -n "$sanitized" ] && { echo "ok (a sanitizer build never runs init in place)"; exit 0; }

# inplace_scan WHAT MODE SECRET CMD...: CMD (which runs `shed run --json-status
# 5 ... -- sleep 30`) in the background; asserts init runs in place and that
# SECRET is nowhere in its writable memory
inplace_scan() {
    local what=$1 mode=$2 secret=$3; shift 3
    rm -f "$T/status"
    "$@" 5>"$T/status" 2>"$T/err" &
    local rp=$!
    wait_for 10 grep -q init-pid "$T/status" || { kill $rp; fail "[$what] no status line: $(cat "$T/err")"; }
    local ip
    ip=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["init-pid"])' "$T/status")
    wait_for 10 has_child "$ip" || { kill $rp; fail "[$what] init started no command"; }
    local env hits
    env=$(tr '\0' '\n' </proc/"$ip"/environ)
    hits=$(python3 "$SHED_ROOT/tests/lib/memscan.py" "$ip" "$secret")
    kill -TERM $rp; wait $rp 2>/dev/null || true
    expect_not_contains "$env" GNUTLS_NO_IMPLICIT_INIT "[$what] init runs in place"
    expect_eq "$hits" none "[$what] the secret in init's memory"
}
# a python3 the unprivileged caller can run (a pyenv shim under /root is not)
syspy=$(command -v python3); [ -x /usr/bin/python3 ] && syspy=/usr/bin/python3
pol() { [ "$1" = root ] && echo "$T/root.json" || echo "$T/unpriv.json"; }
# runas MODE: the command prefix that runs as MODE's caller
runas() { [ "$1" = root ] && echo env || echo setpriv --reuid=65534 --regid=65534 --clear-groups; }

for mode in "${MODES[@]}"; do
    s="S3c$RANDOM$RANDOM"
    step "[$mode] secrets in variables glibc or shed read (LANG, LC_ALL, LOCALDOMAIN, RES_OPTIONS, HOSTALIASES, HOME, TMPDIR, POSIXLY_CORRECT, SHED_INIT_EXE)"
    inplace_scan "$mode vars" "$mode" "$s" env LANG="C.$s" LC_ALL="C.$s" LOCALDOMAIN="$s.example" \
        RES_OPTIONS="ndots:1 $s" HOSTALIASES="/$s" HOME="/home/$s" TMPDIR="/tmp/$s" POSIXLY_CORRECT="$s" \
        SHED_INIT_EXE="/$s" $(runas "$mode") "$SHED" run --json-status 5 --policy "$(pol "$mode")" -- sleep 30

    step "[$mode] XDG_RUNTIME_DIR: only the state directory's path (part of the mount plan) may stay"
    mkdir -p "$T/xdg-$s"; chmod 777 "$T/xdg-$s"
    inplace_scan "$mode xdg" "$mode" "Other$s" env XDG_RUNTIME_DIR="$T/xdg-$s" OTHER="Other$s" \
        $(runas "$mode") "$SHED" run --json-status 5 --policy "$(pol "$mode")" -- sleep 30

    step "[$mode] a long environment (48 variables of 4 KiB, ~48 pages), the secret in each"
    big=(); for i in $(seq 48); do big+=("BIG$i=$(head -c 4000 /dev/zero | tr '\0' x)$s$i"); done
    inplace_scan "$mode long env" "$mode" "$s" env "${big[@]}" \
        $(runas "$mode") "$SHED" run --json-status 5 --policy "$(pol "$mode")" -- sleep 30

    step "[$mode] env -i: a bare environment holding only the secret, in odd entries"
    read -ra ra <<<"$(runas "$mode")"; ra[0]=$(command -v "${ra[0]}")
    inplace_scan "$mode env -i" "$mode" "$s" python3 -c '
import os, sys
env = {"A": sys.argv[1], "B": "=" + sys.argv[1] + "=", "C": ""}
os.execve(sys.argv[2], sys.argv[2:], env)' "$s" "${ra[@]}" \
        "$SHED" run --json-status 5 --policy "$(pol "$mode")" -- sleep 30

    step "[$mode] the secret in argv[0], exec'd from an fd (fexecve), in the current directory's name"
    mkdir -p "$T/cwd-$s"; chmod 755 "$T/cwd-$s"
    (cd "$T/cwd-$s" && inplace_scan "$mode argv0/fexecve/cwd" "$mode" "$s" $(runas "$mode") "$syspy" -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.set_inheritable(fd, True)
os.execve(fd, ["shed-" + sys.argv[2]] + sys.argv[3:], dict(os.environ, SECRET=sys.argv[2]))' \
        "$SHED" "$s" run --json-status 5 --policy "$(pol "$mode")" -- sleep 30) || exit 1

    for lim in unlimited 64; do
        step "[$mode] ulimit -s $lim (unlimited: the legacy mmap layout; 64 KiB: MADV_DONTNEED's range is small)"
        inplace_scan "$mode stack $lim" "$mode" "$s" bash -c 'ulimit -s "$1"; exec env SECRET="$0" "${@:2}"' "$s" "$lim" \
            $(runas "$mode") "$SHED" run --json-status 5 --policy "$(pol "$mode")" -- sleep 30
    done
done

step "the conditions: GLIBC_TUNABLES, MALLOC_*, LD_*, TZ (tzset keeps a copy) each mean an exec'd init"
for v in GLIBC_TUNABLES=glibc.malloc.tcache_count=1 MALLOC_ARENA_MAX=2 LD_BIND_NOW=1 LD_PRELOAD= TZ=UTC; do
    env "$v" "$SHED" run --json-status 5 --policy "$T/root.json" -- sleep 30 5>"$T/status" 2>"$T/err" &
    rp=$!
    wait_for 10 grep -q init-pid "$T/status" || { kill $rp; fail "[$v] no status line: $(cat "$T/err")"; }
    ip=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["init-pid"])' "$T/status")
    wait_for 10 has_child "$ip" || { kill $rp; fail "[$v] init started no command"; }
    env=$(tr '\0' '\n' </proc/"$ip"/environ)
    kill -TERM $rp; wait $rp 2>/dev/null || true
    expect_contains "$env" GNUTLS_NO_IMPLICIT_INIT "[$v] init exec'd"
done

step "TZ holding a secret, unprivileged caller (a warning logged before the clone): init exec'd, clean"
s="Tz$RANDOM$RANDOM"
env TZ=":/nonexistent/$s" setpriv --reuid=65534 --regid=65534 --clear-groups \
    "$SHED" run --json-status 5 --policy "$T/unpriv.json" -- sleep 30 5>"$T/status" 2>"$T/err" &
rp=$!
wait_for 10 grep -q init-pid "$T/status" || { kill $rp; fail "[TZ] no status line: $(cat "$T/err")"; }
ip=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["init-pid"])' "$T/status")
wait_for 10 has_child "$ip" || { kill $rp; fail "[TZ] init started no command"; }
env=$(tr '\0' '\n' </proc/"$ip"/environ)
hits=$(python3 "$SHED_ROOT/tests/lib/memscan.py" "$ip" "$s")
ctl=$(python3 "$SHED_ROOT/tests/lib/memscan.py" "$rp" "$s")
kill -TERM $rp; wait $rp 2>/dev/null || true
expect_contains "$env" GNUTLS_NO_IMPLICIT_INIT "[TZ] init exec'd"
expect_eq "$hits" none "[TZ] the secret in the exec'd init's memory"
expect_contains "$ctl" "$s [heap]" "[TZ] control: shed run itself holds TZ's copy on its heap"
echo "ok"
