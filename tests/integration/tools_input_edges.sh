#!/usr/bin/env bash
# Tool inputs that are valid JSON but unusual, through `shed tool` in a real
# sandbox: strings holding U+0000 reach the file tools byte-exact (as the
# reference writes them); a NUL in a path is an error result; an input nested
# deeper than the control channel takes is answered with an error result and
# the sandbox serves the next call (it used to end init).
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"
python3 - "$T/calls.json" <<'PY'
import json, sys
deep = {"x": 1}
for i in range(100): deep = {"a": deep}
calls = [{"name": "write", "input": {"file_path": "a.txt", "content": "x\u0000y"}},
         {"name": "bash", "input": {"command": "od -An -c a.txt"}},
         {"name": "read", "input": {"file_path": "a.txt"}},
         {"name": "edit", "input": {"file_path": "a.txt", "old_string": "x\u0000", "new_string": "Z"}},
         {"name": "bash", "input": {"command": "cat a.txt"}},
         {"name": "write", "input": {"file_path": "b\u0000.txt", "content": "q"}},
         {"name": "bash", "input": {"command": "echo deep", "extra": deep}},
         {"name": "bash", "input": {"command": "echo after; ls"}}]
json.dump(calls, open(sys.argv[1], "w"))
PY
mkdir -p "$T/ws"
"$SHED" tool --workspace "$T/ws" --calls "$T/calls.json" >"$T/out.jsonl" || fail "shed tool exited $?"
python3 - "$T/out.jsonl" <<'PY' || fail "results"
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
t = lambda x: "".join(b.get("text", "") for b in x["content"])
assert len(r) == 8, len(r)
assert not r[0]["is_error"] and "3 bytes" in t(r[0]), r[0]
assert "x  \\0   y" in t(r[1]), r[1]
assert not r[2]["is_error"] and t(r[2]) == "x\u0000y", r[2]
assert not r[3]["is_error"], r[3]
assert t(r[4]) == "Zy", r[4]
assert r[5]["is_error"], r[5]
assert r[6]["is_error"] and "nested deeper than 64" in t(r[6]), r[6]
assert not r[7]["is_error"] and t(r[7]).startswith("after") and "b" not in t(r[7]).split("after")[1].replace("a.txt", ""), r[7]
print("ok")
PY
echo "tools_input_edges ok"
