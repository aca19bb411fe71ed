#!/usr/bin/env bash
# `shed audit verify` on real files written by `shed audit append`: an intact
# rotated chain passes; an edit, a deletion, an insertion, a reordering, a
# missing middle file and a cut last line each fail, naming file and line.
# No secret reaches the file.
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"

log=$T/audit/audit.log
mkdir -m 700 "$T/audit"

step "write a rotated chain"
for i in $(seq 1 30); do
    "$SHED" audit append --rotate-bytes 2K "$log" tool.call \
        "{\"tool\":\"bash\",\"exit_status\":$i,\"input\":{\"command\":\"curl -H 'Authorization: Bearer sk-ant-api03-SECRET$i' x\"},\"sessions_token\":\"sk-shed-req-TOKEN$i\"}" 2>/dev/null \
        || fail "append $i"
done
files=("$log".0* "$log")
[ "${#files[@]}" -ge 4 ] || fail "expected several rotated files, got ${#files[@]}"
out=$("$SHED" audit verify "${files[@]}") || fail "intact chain did not verify: $out"
expect_contains "$out" "ok: " "verify output"
expect_contains "$out" "records in ${#files[@]} files" "file count"
! grep -q -e SECRET -e TOKEN "${files[@]}" || fail "a secret reached the audit log"
grep -q 'Bearer \[REDACTED\]' "${files[@]}" || fail "redaction marker missing"

# verify_fails WHAT EXPECTED_SUBSTRING FILES...
verify_fails() {
    local what=$1 want=$2; shift 2
    set +e; err=$("$SHED" audit verify "$@" 2>&1 >/dev/null); rc=$?; set -e
    expect_eq "$rc" 1 "exit status after $what"
    expect_contains "$err" "$want" "message after $what"
    echo "  $what -> $err"
}

cp -a "$T/audit" "$T/orig"
restore() { rm -rf "$T/audit"; cp -a "$T/orig" "$T/audit"; }
mid=${files[1]}; midname=$(basename "$mid")

step "--with-rotated finds the rotated files in order"
out=$("$SHED" audit verify --with-rotated "$log") || fail "--with-rotated: $out"
expect_contains "$out" "records in ${#files[@]} files" "file count with --with-rotated"
out=$("$SHED" audit verify "$log") || fail "live file alone: $out"
expect_contains "$out" "note: the chain continues from" "live file alone is a continuation"

step "an edited record"
k=$(grep -n '"exit_status"' "$mid" | sed -n '2s/:.*//p')   # a tool.call record past line 1
sed -i "${k}s/\"exit_status\":\([0-9]*\)/\"exit_status\":9\1/" "$mid"
cmp -s "$mid" "$T/orig/$midname" && fail "the edit changed nothing"
verify_fails "edit" "$midname:$((k + 1)): prev is not the hash of line $k: record $k" "${files[@]}"
restore

step "a deleted record"
sed -i '2d' "$mid"
verify_fails "deletion" "$midname:2:" "${files[@]}"
restore

step "an inserted record (a copy of another)"
sed -i '2p' "$mid"
verify_fails "insertion" "$midname:3:" "${files[@]}"
restore

step "two records swapped"
python3 - "$mid" <<'PY'
import sys
p = sys.argv[1]; l = open(p).read().splitlines(True); l[1], l[2] = l[2], l[1]; open(p, "w").writelines(l)
PY
verify_fails "reordering" "$midname:2:" "${files[@]}"
restore

step "a missing middle file"
verify_fails "missing file" "is missing" "${files[0]}" "${files[@]:2}"

step "a cut last line"
truncate -s -5 "$log"
n=$(wc -l <"$log")
verify_fails "cut" "audit.log:$((n + 1)): incomplete record" "${files[@]}"
restore

step "--head detects a cut-off tail"
head=$("$SHED" audit verify "${files[@]}" | sed -n 's/.*chain head \([0-9a-f]*\).*/\1/p')
[ ${#head} -eq 64 ] || fail "no chain head in verify output"
"$SHED" audit verify --quiet --head "$head" "${files[@]}" || fail "--head with the right hash"
sed -i '$d' "$log"
verify_fails "tail cut" "were cut off" --head "$head" "${files[@]}"
restore

step "usage errors"
set +e; "$SHED" audit verify >/dev/null 2>&1; rc=$?; set -e
expect_eq "$rc" 2 "verify without files"
set +e; err=$("$SHED" audit verify --frob x 2>&1); rc=$?; set -e
expect_eq "$rc" 2 "unknown flag"
expect_contains "$err" "'--frob'" "unknown flag named"
set +e; "$SHED" audit verify "$T/nope" >/dev/null 2>&1; rc=$?; set -e
expect_eq "$rc" 1 "missing file"
echo "audit verify ok"
