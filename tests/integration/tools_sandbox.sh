#!/usr/bin/env bash
# timeout: 120
# The toolset inside a real sandbox (`shed tool`): the tools run as the
# sandbox user without capabilities, the agent's processes hold no descriptor
# of init (the control channel), ANTHROPIC_* never reaches bash even when the
# operator passes it, and the file tools cannot be led out through /proc
# magic links or symlinks planted by bash.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/sandbox.sh"

sb_tool_ready

mkdir -p "$T/ws"
cat > "$T/calls.json" <<'J'
[{"name":"bash","input":{"command":"id -u; grep CapEff /proc/self/status"}},
 {"name":"bash","input":{"command":"/bin/ls -l /proc/self/fd | grep -c socket || true"}},
 {"name":"bash","input":{"command":"env | grep -ci anthropic || true"}},
 {"name":"bash","input":{"command":"ln -s /proc/1/root rootlink && ln -s /proc/self/cwd cwdlink && ln -s / slash && echo planted"}},
 {"name":"read","input":{"file_path":"rootlink/etc/hostname"}},
 {"name":"read","input":{"file_path":"/proc/1/root/etc/hostname"}},
 {"name":"read","input":{"file_path":"cwdlink/x"}},
 {"name":"write","input":{"file_path":"slash/tmp/escaped","content":"x"}},
 {"name":"glob","input":{"pattern":"slash/etc/*"}},
 {"name":"grep","input":{"pattern":"root","path":"slash/etc"}},
 {"name":"write","input":{"file_path":"inside/ok.txt","content":"fine"}},
 {"name":"bash","input":{"command":"cat inside/ok.txt; stat -c %u inside/ok.txt"}}]
J
"$SHED" tool --workspace "$T/ws" --env ANTHROPIC_API_KEY=sk-must-not-leak --env anthropic_x=y \
    --calls "$T/calls.json" > "$T/out.jsonl" || fail "shed tool failed"
text() { sed -n "${1}p" "$T/out.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["content"][0]["text"])'; }
err() { sed -n "${1}p" "$T/out.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["is_error"])'; }

step "sandbox user, no capabilities"
expect_eq "$(text 1)" "$(printf '1000\nCapEff:\t0000000000000000')" "id and capabilities"
step "no descriptor of init reaches the agent's processes"
expect_eq "$(text 2)" "0" "sockets open in a command"
step "ANTHROPIC_* scrubbed"
expect_eq "$(text 3)" "0" "ANTHROPIC variables in bash"
step "file tools stay inside"
expect_eq "$(text 4)" "planted" "planting links"
for i in 5 6 8 10; do
    expect_eq "$(err $i)" "True" "call $i is an error"
    expect_contains "$(text $i)" "outside the session's working directory" "call $i"
done
expect_eq "$(text 9)" "no matches" "glob through a link to /"
# /proc/self/cwd is init's cwd, the work directory itself: inside, and x is not there
expect_eq "$(text 7)" "read: cwdlink/x: no such file or directory" "a magic link to the work directory"
[ ! -e /tmp/escaped ] || fail "write escaped to the host's /tmp"
expect_eq "$(text 12)" "fine1000" "a written file is the sandbox user's"

step "a cancel through the control channel aborts the call in flight"
echo '[{"name":"bash","input":{"command":"sleep 30"}},{"name":"bash","input":{"command":"echo not reached"}}]' \
    > "$T/cancel.json"
start=$(date +%s%3N)
"$SHED" tool --calls "$T/cancel.json" > "$T/cancel.out" 2>&1 &
pid=$!
sleep 1
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
expect_eq "$rc" "130" "shed tool's exit status after ^C"
expect_eq "$(cat "$T/cancel.out")" \
    '{"name":"bash","is_error":true,"content":[{"type":"text","text":"bash: This operation was aborted"}]}' \
    "the cancelled call's result"
[ $(( $(date +%s%3N) - start )) -lt 20000 ] || fail "the cancel did not stop the sleep"
echo "ok"
