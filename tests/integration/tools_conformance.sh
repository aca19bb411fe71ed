#!/usr/bin/env bash
# timeout: 240
# Conformance of shed's toolset with the reference (issue #4): the calls of
# tests/compat/tools_calls.json run through the reference toolset of the
# pinned @anthropic-ai/sdk (node 22, in-process, on the host) and through
# `shed tool` (one fresh sandbox, the tools run by its init), each on a fresh
# copy of the same fixture; the results must be identical except for the
# calls marked "differs", whose reason docs/toolset.md gives. The sandbox's
# work directory is mounted at the reference's own path, so the two outputs
# compare byte for byte. Twice: with the PATH as it is (rg when installed;
# inside the sandbox /usr is the host's), and the grep calls once more with
# no rg on PATH (shed's walker against the reference's walker).
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/sandbox.sh"
NODE=$SHED_ROOT/node_modules/.bin/node
COMPAT=$SHED_ROOT/tests/compat
[ -x "$NODE" ] || fail "$NODE missing: run scripts/install-deps"

sb_tool_ready
expect_contains "$SB_TOOL_OUT" '"text":"ready"' "shed tool smoke call"

run_pass() { # NAME CALLS PATH-FOR-TOOLS
    local name=$1 calls=$2 path=$3
    step "$name"
    local ref=$T/$name-ref shd=$T/$name-shd
    "$COMPAT/tools_fixture.sh" "$ref"
    "$COMPAT/tools_fixture.sh" "$shd"
    PATH=$path "$NODE" "$COMPAT/tools_ref.mjs" --workdir "$ref" --calls "$calls" > "$ref.out"
    "$SHED" tool --workspace "$shd" --workdir "$ref" --env "PATH=$path" --calls "$calls" > "$shd.out" \
        || fail "shed tool failed (see above)"
    "$NODE" "$COMPAT/tools_compare.mjs" --calls "$calls" --doc "$SHED_ROOT/docs/toolset.md" \
        --ref "$ref.out" --ref-workdir "$ref" --shed "$shd.out" --shed-workdir "$ref" \
        || fail "$name: shed differs from the reference"
}

run_pass all "$COMPAT/tools_calls.json" "/usr/local/bin:/usr/bin:/bin"
"$NODE" -e 'const c = JSON.parse(require("fs").readFileSync(process.argv[1]));
    process.stdout.write(JSON.stringify(c.filter((x) => x.name === "grep")))' \
    "$COMPAT/tools_calls.json" > "$T/grep.json"
run_pass grep-walker "$T/grep.json" "/nonexistent"
echo "conformance: ok"
