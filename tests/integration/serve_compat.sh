#!/usr/bin/env bash
# SDK compatibility: the official @anthropic-ai/sdk (pinned in package.json,
# run with its pinned Node 22) against a real `shed serve`:
#   tests/compat/serve_sdk.mjs          its resource methods
#   tests/compat/serve_worker.mjs       its EnvironmentWorker serving a 20-call session
#   tests/compat/serve_two_workers.mjs  two EnvironmentWorkers: every item served once
# timeout: 240
. "$(dirname "$0")/../lib/common.sh"
NODE=$SHED_ROOT/node_modules/.bin/node
[ -x "$NODE" ] && [ -d "$SHED_ROOT/node_modules/@anthropic-ai/sdk" ] ||
    fail "node_modules is missing: run scripts/install-deps (npm ci installs the SDK and Node 22)"
"$NODE" --version | grep -q '^v22\.' || fail "expected Node 22, got $("$NODE" --version)"
ADMIN=compat-admin-key-0123456789
for t in serve_sdk serve_worker serve_two_workers; do
    step "$t"
    S=$T/$t
    mkdir -p "$S"
    SHED_ADMIN_KEY=$ADMIN "$SHED" serve --listen 127.0.0.1:0 --state-dir "$S" --lease-ttl 4 >"$S/out" 2>"$S/err" &
    pid=$!
    at_exit "kill $pid 2>/dev/null"
    wait_for 10 grep -q 'listening on' "$S/out" || fail "serve did not start: $(cat "$S/err")"
    URL=$(sed -n 's/^shed serve: listening on //p' "$S/out")
    SHED_URL=$URL SHED_ADMIN_KEY=$ADMIN timeout 120 "$NODE" "$SHED_ROOT/tests/compat/$t.mjs" ||
        { tail -20 "$S/err"; fail "$t failed"; }
    kill -TERM $pid
    wait $pid || fail "serve exited $? after $t"
done
echo "serve compat ok"
