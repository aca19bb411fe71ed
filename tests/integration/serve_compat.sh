#!/usr/bin/env bash
# SDK compatibility: the official @anthropic-ai/sdk (pinned in package.json,
# run with its pinned Node 22) against a real `shed serve`:
#   tests/compat/serve_sdk.mjs          its resource methods
#   tests/compat/serve_worker.mjs       its EnvironmentWorker serving a 20-call session
#   tests/compat/serve_two_workers.mjs  two EnvironmentWorkers: every item served once
# timeout: 240
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/serve.sh"
sdk_node
"$NODE" --version | grep -q '^v22\.' || fail "expected Node 22, got $("$NODE" --version)"
ADMIN=compat-admin-key-0123456789
for t in serve_sdk serve_worker serve_two_workers; do
    step "$t"
    S=$T/$t
    serve_start "$S" --lease-ttl 4
    SHED_URL=$URL SHED_ADMIN_KEY=$ADMIN timeout 120 "$NODE" "$SHED_ROOT/tests/compat/$t.mjs" ||
        { tail -20 "$S/err"; fail "$t failed"; }
    serve_stop "$t"
done
echo "serve compat ok"
