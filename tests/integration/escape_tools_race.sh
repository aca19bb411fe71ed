#!/usr/bin/env bash
# Escape campaign (issue #10): symlink and rename races against the file
# tools, through `shed tool` in a real sandbox. Sources: CVE-2018-15664
# (docker cp symlink-exchange race), CVE-2021-30465 (runc mount-target
# symlink race), CVE-2017-1002101 (kubernetes subPath), firejail's
# --join/--private symlink CVEs (CVE-2017-5180, CVE-2020-17367/17368),
# CVE-2019-5736 (runc /proc/PID/exe, scanned while the tools run).
# Inside the workspace a directory `real` (holding etc/hostname = INSIDE,
# tmp/, tmp/e.txt) and a symlink `link -> /` are swapped with
# renameat2(RENAME_EXCHANGE) in a tight loop while read/write/edit/glob/grep
# run on paths under `real/`. Outside the workspace (but inside the sandbox)
# /etc/hostname says sb-..., /etc has passwd, /tmp/e.txt says OUTSIDE: none
# of that may ever be read, listed, matched or written.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sandbox.sh"
sb_probe
sb_policies "$SB_PROBE_MOUNT"
read -r shed_dev shed_ino < <(stat -L -c '%d %i' "$SHED")
ROUNDS=${ESCAPE_RACE_ROUNDS:-100}

python3 - "$T/calls.json" "$ROUNDS" "$shed_dev" "$shed_ino" <<'PY'
import json, sys
path, rounds, dev, ino = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
calls = [{"name": "bash", "input": {"command":
    "export PATH=/usr/bin:/bin; mkdir -p real/etc real/tmp && printf INSIDE > real/etc/hostname && printf EDITME > real/tmp/e.txt && "
    "printf OUTSIDE > /tmp/e.txt && ln -s / link && "
    "(/opt/probe/probe swap real link 60000 > /tmp/swap.out 2>&1 </dev/null &) && "
    f"(/opt/probe/probe exe {dev} {ino} 60000 > /tmp/exe.out 2>&1 </dev/null &) && "
    "(sleep 0.2; /opt/probe/probe fdscan > /tmp/fd-bg.out 2>&1 </dev/null &) && echo started"}}]
calls.append({"name": "read", "input": {"file_path": "real/etc/hostname"}})  # the read-before-edit
for i in range(rounds):
    calls.append({"name": "read", "input": {"file_path": "real/etc/hostname"}})
    calls.append({"name": "write", "input": {"file_path": f"real/tmp/w{i}", "content": "w"}})
    calls.append({"name": "read", "input": {"file_path": "real/tmp/e.txt"}})
    calls.append({"name": "edit", "input": {"file_path": "real/tmp/e.txt", "old_string": "EDIT",
                                            "new_string": "EDIT"}})
    calls.append({"name": "glob", "input": {"pattern": "real/etc/*"}})
    calls.append({"name": "glob", "input": {"pattern": "*", "path": "real/etc"}})
    calls.append({"name": "grep", "input": {"pattern": "root:|OUTSIDE|sb-", "path": "real",
                                            "output_mode": "content"}})
    calls.append({"name": "grep", "input": {"pattern": ".", "path": "real/etc/hostname",
                                            "output_mode": "content"}})
calls.append({"name": "bash", "input": {"command": "/opt/probe/probe fdscan"}})
calls.append({"name": "bash", "input": {"command":
    "export PATH=/usr/bin:/bin; pkill -f 'probe swap' ; pkill -f 'probe exe' ; sleep 0.3; cat /tmp/swap.out /tmp/exe.out; "
    "echo; echo E=$(cat /tmp/e.txt); ls /tmp | grep -c '^w' || true; cat /tmp/fd-bg.out | grep -v '^FD' ; "
    "grep -c '^FD' /tmp/fd-bg.out"}})
json.dump(calls, open(path, "w"))
PY

# a host file the sandbox does not mount: nothing may ever bring it into a result
host_secret="HOST-SECRET-$$-$RANDOM"
mkdir -p "$T/etc"; echo "$host_secret" >"$T/etc/hostname"; chmod 644 "$T/etc/hostname"
have_rg=no
if [ -x /usr/bin/rg ] || [ -x /usr/local/bin/rg ]; then have_rg=yes; fi
RUNS=()
for mode in "${MODES[@]}"; do
    RUNS+=("$mode:walker")
    [ "$have_rg" = no ] || RUNS+=("$mode:rg")
done
for run in "${RUNS[@]}"; do
    mode=${run%%:*} grepper=${run#*:}
    step "[$mode, grep=$grepper] $ROUNDS rounds of read/write/edit/glob/grep while real <-> link(/) swap"
    ws="$T/ws-$mode-$grepper"; mkdir -p "$ws"
    # the walker: the tools' PATH hides rg (bash sets its own PATH)
    envp=(--env PATH=/nonexistent)
    [ "$grepper" = walker ] || envp=()
    if [ "$mode" = root ]; then
        "$SHED" tool --policy "$T/root.json" --workspace "$ws" "${envp[@]}" --calls "$T/calls.json" \
            >"$T/out-$mode.jsonl" &
    else
        chown 65534:65534 "$ws"
        setpriv --reuid=65534 --regid=65534 --clear-groups \
            "$SHED" tool --policy "$T/unpriv.json" --workspace "$ws" "${envp[@]}" --calls "$T/calls.json" \
            >"$T/out-$mode.jsonl" 2>/dev/null &
    fi
    toolpid=$!
    # init's control channel, read on the host
    init_socks=""
    for _ in $(seq 100); do
        ipid=$(for c in $(pgrep -P "$toolpid" || true); do
                   grep -q $'^NSpid:\t[0-9]*\t1$' /proc/"$c"/status 2>/dev/null && echo "$c"; done | head -n1)
        if [ -n "$ipid" ]; then
            # fd 3 is the control channel (SANDBOX_FD_CTL). Only fd 3: a
            # pooled sandbox's init has no listeners at 4-6, and while it
            # spawns bash it briefly holds bash's end of the stdin socketpair
            # at the lowest free fd, which bash legitimately keeps
            init_socks=$(readlink /proc/"$ipid"/fd/3 2>/dev/null | grep '^socket:' || true)
            [ -n "$init_socks" ] && break
        fi
        sleep 0.05
    done
    wait "$toolpid" || fail "shed tool failed ($mode)"
    [ -n "$init_socks" ] || fail "could not read init's sockets on the host ($mode)"
    python3 - "$T/out-$mode.jsonl" "$grepper" "$host_secret" <<'PY' || fail "a file tool left the workspace ($mode, grep=$grepper)"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
grepper, host_name = sys.argv[2], sys.argv[3]
text = lambda r: "".join(b.get("text", "") for b in r["content"])
bad, ok_reads, ok_writes, ok_globs, ok_greps, swapped_errors = [], 0, 0, 0, 0, 0
for r in lines[2:-2]:
    t, name = text(r), r["name"]
    if host_name in t:
        bad.append((name, "HOST DATA " + t[:200]))
    elif any(s in t for s in ("sb-", "root:", "OUTSIDE", "passwd", "nologin", "/bin/bash", "real/usr", "real/proc",
                                 "real/bin", "real/opt", "real/dev", "real/lib", "real/workspace", "resolv.conf")):
        # the sandbox's own files outside the workspace: for every grep mode
        # too (with rg on PATH, rg only names files; shed opens them beneath)
        bad.append((name, t[:200]))
    if not r["is_error"]:
        if name == "read" and "INSIDE" in t: ok_reads += 1
        if name == "write": ok_writes += 1
        if name == "glob" and "hostname" in t: ok_globs += 1
        if name == "grep" and "INSIDE" in t: ok_greps += 1
    else:
        swapped_errors += 1
print(f"    reads that saw INSIDE: {ok_reads}, writes: {ok_writes}, globs that listed hostname: {ok_globs}, "
      f"greps that matched INSIDE: {ok_greps}, errors (the swap in the way): {swapped_errors}")
for b in bad: print("    ESCAPE", b)
last = text(lines[-1])
print("    " + last.replace("\n", "\n    "))
assert not bad, "outside data reached a tool"
# positive controls: the tools did work on the inside files, and the race was live
assert ok_reads > 0 and ok_writes > 0 and ok_globs > 0, "the tools never succeeded: the race proves nothing"
assert swapped_errors > 0, "no call ever met the swapped link: the race was not live"
assert "OK swapped" in last and "ESCAPE" not in last, "swapper"
assert "E=OUTSIDE" in last, "/tmp/e.txt (outside the workspace) was edited"
cnt = last.split("E=OUTSIDE")[1].split()[0]
assert cnt == "0", f"{cnt} files written to the sandbox's /tmp through the link"
assert "BLOCKED list fds of pid 1" in last, "background fdscan"
assert ok_greps > 0, "grep never matched the inside file: the race proves nothing for grep"
PY
    fdtool=$(tail -n2 "$T/out-$mode.jsonl" | head -n1)
    expect_contains "$fdtool" "BLOCKED list fds of pid 1" "fdscan from the bash tool"
    expect_not_contains "$fdtool" "ESCAPE" "fdscan from the bash tool"
    for s in $init_socks; do
        expect_not_contains "$fdtool" "$s" "init's $s reachable from the bash tool"
        expect_not_contains "$(cat "$T/out-$mode.jsonl")" "$s" "init's $s in any tool output"
    done
    [ ! -e "$T/w0" ] && [ ! -e /w0 ] && [ ! -e /tmp/w0 ] || fail "a write escaped to the host"
    expect_eq "$(cat "$ws/real/tmp/e.txt" 2>/dev/null || cat "$ws/link/tmp/e.txt")" "EDITME" "the inside file"
done
echo "escape_tools_race ok (${RUNS[*]})"
