#!/usr/bin/env bash
# The command-line client of the local control plane: shed env create,
# shed session create | tool | send | events, against a real `shed serve`
# whose admin key is generated into its state directory.
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"
command -v curl >/dev/null || skip "curl is not installed"
unset SHED_ADMIN_KEY
S=$T/state
"$SHED" serve --listen 127.0.0.1:0 --state-dir "$S" >"$T/out" 2>"$T/err" &
pid=$!
at_exit "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
wait_for 10 grep -q 'listening on' "$T/out" || fail "no ready line: $(cat "$T/err")"
expect_eq "$(wc -l <"$T/out")" 1 "one ready line"
URL=$(sed -n 's/^shed serve: listening on //p' "$T/out")
export SHED_BASE_URL=$URL

step "generated admin key: 0600 in the state dir, never printed"
expect_eq "$(stat -c %a "$S/admin.key")" 600 "admin.key mode"
KEY=$(cat "$S/admin.key")
expect_not_contains "$(cat "$T/out" "$T/err")" "$KEY" "serve output"
expect_contains "$(cat "$T/err")" "$S/admin.key" "the key's path is named"
expect_eq "$(stat -c %a "$S/shed.db")" 600 "the database is the owner's only"
expect_eq "$(stat -c %a "$S")" 700 "state dir mode"

step "shed env create"
out=$("$SHED" env create --name cli-env --state-dir "$S")
ENV_ID=$(sed -n 's/^ANTHROPIC_ENVIRONMENT_ID=//p' <<<"$out")
ENV_KEY=$(sed -n 's/^ANTHROPIC_ENVIRONMENT_KEY=//p' <<<"$out")
[[ $ENV_ID == env_* ]] || fail "env id: $out"
[[ $ENV_KEY == sk-shed-env-* ]] || fail "env key: $out"
expect_contains "$("$SHED" env list --state-dir "$S")" "$ENV_ID" "env list"
"$SHED" env key create "$ENV_ID" --key-file "$T/k2" --state-dir "$S" >/dev/null
expect_eq "$(stat -c %a "$T/k2")" 600 "key file mode"
expect_contains "$("$SHED" env key list "$ENV_ID" --state-dir "$S")" "active" "key list"

step "shed session create"
SID=$(SHED_ADMIN_KEY=$KEY "$SHED" session create --environment-id "$ENV_ID" --metadata a=b --title t)
[[ $SID == sesn_* ]] || fail "session id: $SID"
expect_contains "$("$SHED" session get "$SID" --state-dir "$S")" '"metadata":{"a":"b"}' "metadata"

step "shed session tool waits for the result a worker posts"
"$SHED" session tool "$SID" bash '{"command":"echo hi"}' --wait 20 --state-dir "$S" >"$T/tool.out" 2>"$T/tool.err" &
tpid=$!
use_id=
for _ in $(seq 100); do
    use_id=$("$SHED" session events "$SID" --state-dir "$S" | python3 -c '
import json,sys
for l in sys.stdin:
    e=json.loads(l)
    if e["type"]=="agent.tool_use": print(e["id"])')
    [ -n "$use_id" ] && break
    sleep 0.1
done
[ -n "$use_id" ] || fail "the tool call was not posted"
code=$(curl -s -o "$T/res" -w '%{http_code}' -H "Authorization: Bearer $ENV_KEY" -H 'content-type: application/json' \
    -d "{\"events\":[{\"type\":\"user.tool_result\",\"tool_use_id\":\"$use_id\",\"content\":[{\"type\":\"text\",\"text\":\"hello from the worker\"}]}]}" \
    "$URL/v1/sessions/$SID/events")
expect_eq "$code" 200 "posting the result"
wait $tpid || fail "shed session tool exited $?: $(cat "$T/tool.err")"
expect_eq "$(cat "$T/tool.out")" "hello from the worker" "printed result"

step "an error result exits 1; no result in time exits 3"
"$SHED" session tool "$SID" read '{"file_path":"/nope"}' --wait 20 --json --state-dir "$S" >"$T/t2.out" &
tpid=$!
sleep 0.5
use_id=$("$SHED" session events "$SID" --state-dir "$S" | python3 -c '
import json,sys
ids=[json.loads(l)["id"] for l in sys.stdin if json.loads(l)["type"]=="agent.tool_use"]
print(ids[-1])')
curl -s -o /dev/null -H "Authorization: Bearer $ENV_KEY" -H 'content-type: application/json' \
    -d "{\"events\":[{\"type\":\"user.tool_result\",\"tool_use_id\":\"$use_id\",\"is_error\":true,\"content\":[{\"type\":\"text\",\"text\":\"no such file\"}]}]}" \
    "$URL/v1/sessions/$SID/events"
set +e; wait $tpid; rc=$?; set -e
expect_eq "$rc" 1 "exit status of an error result"
expect_contains "$(cat "$T/t2.out")" '"is_error":true' "--json prints the event"
set +e; "$SHED" session tool "$SID" bash '{"command":"x"}' --wait 0.3 --state-dir "$S" 2>/dev/null; rc=$?; set -e
expect_eq "$rc" 3 "exit status when no result comes"

step "shed session events --follow streams until the session terminates"
"$SHED" session events "$SID" --follow --state-dir "$S" >"$T/follow.out" &
fpid=$!
sleep 0.5
"$SHED" session send "$SID" '{"type":"agent.message","content":[{"type":"text","text":"bye"}]}' \
    '{"type":"session.status_terminated"}' --state-dir "$S" >/dev/null
for _ in $(seq 100); do kill -0 $fpid 2>/dev/null || break; sleep 0.1; done
kill -0 $fpid 2>/dev/null && fail "--follow did not end with the session"
wait $fpid || fail "--follow exited $?"
expect_contains "$(cat "$T/follow.out")" '"type":"agent.message"' "followed event"
expect_eq "$(tail -n1 "$T/follow.out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["type"])')" \
    "session.status_terminated" "last followed event"
n=$(grep -c . "$T/follow.out"); u=$(python3 -c 'import json,sys; print(len({json.loads(l)["id"] for l in open(sys.argv[1])}))' "$T/follow.out")
expect_eq "$u" "$n" "no event printed twice"

step "errors: unknown flag, missing key, unreachable server"
set +e
"$SHED" env create --frob 2>"$T/e1"; rc=$?
expect_eq "$rc" 2 "unknown flag exit"
expect_contains "$(head -n1 "$T/e1")" "--frob" "names the flag"
"$SHED" env list --state-dir "$T/empty" 2>"$T/e2"; rc=$?
expect_eq "$rc" 125 "no admin key"
expect_contains "$(cat "$T/e2")" "admin key" "says what is missing"
SHED_BASE_URL=http://127.0.0.1:1 "$SHED" env list --state-dir "$S" 2>"$T/e3"; rc=$?
expect_eq "$rc" 1 "unreachable server"
set -e
kill -TERM $pid; wait $pid || fail "serve exited $? on SIGTERM"

step "SIGINT exits 0 too; --listen localhost and [::1]; bad --listen and a busy port fail clearly"
SHED_ADMIN_KEY=cli-admin-key-0123456789 "$SHED" serve --listen localhost:0 --state-dir "$S" >"$T/out2" 2>"$T/err2" &
pid=$!
wait_for 10 grep -q 'listening on http://127.0.0.1:' "$T/out2" || fail "localhost: $(cat "$T/out2" "$T/err2")"
PORT=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$T/out2")
set +e
SHED_ADMIN_KEY=cli-admin-key-0123456789 "$SHED" serve --listen 127.0.0.1:$PORT --state-dir "$T/s3" 2>"$T/err3"; rc=$?
expect_eq "$rc" 125 "a busy port"
expect_contains "$(cat "$T/err3")" "127.0.0.1:$PORT" "names the address"
SHED_ADMIN_KEY=cli-admin-key-0123456789 "$SHED" serve --listen nowhere --state-dir "$T/s3" 2>"$T/err4"; rc=$?
expect_eq "$rc" 125 "bad --listen"
expect_contains "$(cat "$T/err4")" "--listen" "names the flag"
SHED_ADMIN_KEY=short "$SHED" serve --listen 127.0.0.1:0 --state-dir "$T/s3" 2>"$T/err5"; rc=$?
expect_eq "$rc" 125 "short admin key"
set -e
kill -INT $pid; wait $pid || fail "serve exited $? on SIGINT"
if [ -e /proc/net/if_inet6 ]; then
    SHED_ADMIN_KEY=cli-admin-key-0123456789 "$SHED" serve --listen '[::1]:0' --state-dir "$S" >"$T/out6" 2>"$T/err6" &
    pid=$!
    if wait_for 10 grep -q 'listening on http://\[::1\]:' "$T/out6"; then
        URL6=$(sed -n 's/^shed serve: listening on //p' "$T/out6")
        expect_eq "$(curl -s -o /dev/null -w '%{http_code}' -H 'x-api-key: cli-admin-key-0123456789' "$URL6/v1/environments")" 200 "IPv6"
    fi
    kill $pid; wait $pid || true
fi
echo "serve cli ok"
