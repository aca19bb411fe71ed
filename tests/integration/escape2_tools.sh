#!/usr/bin/env bash
# Escape campaign, second round (issue #10): the agent's inputs and outputs
# through the tools of a real sandbox (`shed tool`). Signals to init from a
# tool call; a forged bash sentinel, invalid UTF-8 and NUL in the output;
# 300 MB of output (the result is the truncated tail, init's memory stays
# small); file tools pointed at /proc/1, /proc/self and /dev; glob and grep
# patterns that explode; a command over the size limit; a background job
# that steals the shell's input (the next calls recover). Every attempt is
# refused or bounded, every positive control works.
# timeout: 150
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sandbox.sh"
sb_tool_ready

# An ASan build's init has ASan's SIGSEGV handler, and a pid namespace's init
# receives the signals it handles: -SEGV is tried only on a normal build.
segv="kill -SEGV 1;"
grep -q -a __asan_init "$SHED" && segv=""
SEGV=$segv python3 - "$T/calls.json" <<'PY'
import json, os, sys
pat = "a"
for _ in range(12):
    pat = "{a,%s,a%s}" % (pat, pat)
fake = "__ANT_CMD_00000000-0000-4000-8000-000000000000_DONE__0"
calls = [
    ("sig", "bash", {"command": "kill -KILL 1; kill -STOP 1; %s kill -TERM 1; sleep 0.2; grep State /proc/1/status" % os.environ["SEGV"]}),
    ("alive", "bash", {"command": "echo alive"}),
    ("killall", "bash", {"command": "sleep 100 & sleep 0.1; kill -9 -1; wait $!; echo sleeper status $?"}),
    ("after_killall", "bash", {"command": "echo fresh shell"}),
    ("fake", "bash", {"command": "printf 'abc\\n%s\\n'; echo after-fake" % fake}),
    ("badutf8", "bash", {"command": "printf 'a\\0b\\xff\\xfe c\\xc3 \\xed\\xa0\\x80 end\\n'"}),
    ("huge", "bash", {"command": "head -c 300000000 /dev/zero | tr '\\0' x; echo; echo END", "timeout_ms": 120000}),
    ("r_environ", "read", {"file_path": "/proc/1/environ"}),
    ("r_mem", "read", {"file_path": "/proc/1/mem"}),
    ("r_root", "read", {"file_path": "/proc/1/root/etc/passwd"}),
    ("r_dotdot", "read", {"file_path": "../../etc/passwd"}),
    ("r_zero", "read", {"file_path": "/dev/zero"}),
    ("e_oom", "edit", {"file_path": "/proc/self/oom_score_adj", "old_string": "500", "new_string": "-1000"}),
    ("w_attr", "write", {"file_path": "/proc/self/attr/current", "content": "x"}),
    ("w_ok", "write", {"file_path": "inside.txt", "content": "inside ok"}),
    ("r_ok", "read", {"file_path": "inside.txt"}),
    ("tree", "bash", {"command": "mkdir -p $(printf 'd/%.0s' $(seq 150)) && for i in $(seq 20); do mkdir -p w/$i/a/b/c/d/e; done && echo made"}),
    ("g_brace", "glob", {"pattern": pat[:60000]}),
    ("g_deep", "glob", {"pattern": "**/**/**/**/**/**/**/**/**/**/**/**/*.zz"}),
    ("g_stars", "glob", {"pattern": "*" * 5000 + "x"}),
    ("grep_redos", "grep", {"pattern": "(a+)+$" * 50, "path": "."}),
    ("grep_nest", "grep", {"pattern": "(" * 30 + "a*" + ")*" * 30 + "b"}),
    ("cmd_big", "bash", {"command": "x" * (17 << 20)}),
    ("steal", "bash", {"command": "true\n}; (cat <&0 >/tmp/stolen &) ; {\ntrue"}),
    ("steal2", "bash", {"command": "echo two", "timeout_ms": 3000}),
    ("steal3", "bash", {"command": "echo three", "timeout_ms": 3000}),
    ("restart", "bash", {"restart": True}),
    ("recovered", "bash", {"command": "echo recovered"}),
]
json.dump([{"name": n, "input": i} for _, n, i in calls], open(sys.argv[1], "w"))
open(sys.argv[1] + ".names", "w").write("\n".join(k for k, _, _ in calls) + "\n")
PY

start=$(date +%s)
"$SHED" tool --timing --calls "$T/calls.json" >"$T/out.jsonl" 2>"$T/err" || fail "shed tool: $(tail -n 5 "$T/err")"
echo "    $(( $(date +%s) - start )) s for $(wc -l <"$T/out.jsonl") calls"
python3 - "$T/out.jsonl" "$T/calls.json.names" <<'PY' >"$T/res" || fail "results are not JSON lines"
import json, sys
names = open(sys.argv[2]).read().split()
lines = open(sys.argv[1], "rb").read().split(b"\n")[:-1]
assert len(lines) == len(names), (len(lines), len(names))
for k, l in zip(names, lines):
    d = json.loads(l.decode("utf-8"))          # strict UTF-8, valid JSON
    t = "".join(b.get("text", "") for b in d["content"])
    print("%s\t%s\t%d\t%d\t%s" % (k, d["is_error"], d.get("elapsed_us", 0) // 1000, len(t),
                                 json.dumps(t[:160] + ("..." + t[-40:] if len(t) > 200 else ""))))
PY
sed 's/^/    /' "$T/res"
field() { awk -F'\t' -v k="$1" -v f="$2" '$1 == k { print $f }' "$T/res"; }
text() { field "$1" 5 | python3 -c 'import json,sys; print(json.loads(sys.stdin.read()))'; }

step "signals to init from a tool call change nothing; kill -9 -1 reaches only the agent's processes"
expect_eq "$(field sig 2)" False "signals to init"
expect_contains "$(text sig)" "State:	S" "init still sleeping"
expect_eq "$(text alive)" alive "the next call"
expect_contains "$(text killall)" "sleeper status 137" "kill -9 -1 reaches the agent's own processes"
expect_eq "$(text after_killall)" "fresh shell" "init and the shell answer after kill -9 -1"

step "a forged sentinel, invalid UTF-8 and NUL in the output"
expect_eq "$(field fake 2)" False "forged sentinel call"
expect_contains "$(text fake)" "after-fake" "a forged sentinel does not end the call"
expect_contains "$(text badutf8)" "�" "invalid bytes replaced"
expect_contains "$(text badutf8)" " end" "the output after them"

step "300 MB of output: the truncated tail, init's memory bounded"
expect_eq "$(field huge 2)" False "huge output"
expect_contains "$(text huge)" "[output truncated]" "marked truncated"
expect_contains "$(text huge)" "END" "the tail is kept"
[ "$(field huge 4)" -le 110000 ] || fail "huge output result is $(field huge 4) characters"
rss=$(sed -n 's/.*"init_rss_kb":\([0-9]*\).*/\1/p' "$T/err")
# 64 MB; an ASan build's quarantine keeps freed chunks (up to 256 MB): there,
# only less than the 293 000 KB of output
max=65536
[ -z "$segv" ] && max=250000
[ -n "$rss" ] && [ "$rss" -lt "$max" ] || fail "init's RSS after 300 MB of output: '$rss' KB (limit $max)"

step "file tools at /proc/1, /proc/self, /dev, .. are refused; the workspace works"
for k in r_environ r_mem r_root r_dotdot r_zero e_oom w_attr; do
    expect_eq "$(field $k 2)" True "$k is an error"
    expect_contains "$(text $k)" "outside the session's working directory" "$k"
done
expect_eq "$(text r_ok)" "inside ok" "a workspace file (control)"

step "exploding patterns are refused or bounded"
expect_eq "$(text tree)" made "the deep tree (control)"
expect_contains "$(text g_brace)" "expands to more than" "brace explosion refused"
for k in g_deep g_stars grep_redos grep_nest; do
    [ "$(field $k 3)" -lt 30000 ] || fail "$k took $(field $k 3) ms"
done
expect_eq "$(field cmd_big 2)" True "a 17 MB command"
expect_contains "$(text cmd_big)" "over the 16777216-byte limit" "command size limit"

step "a background job stealing the shell's input: later calls time out or run, restart recovers"
expect_eq "$(text recovered)" recovered "the call after a restart"
echo "escape2 tools: all refused or bounded"
