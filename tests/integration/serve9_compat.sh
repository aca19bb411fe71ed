#!/usr/bin/env bash
# SDK compatibility for skills, agents and memory stores (issue #9, server
# side): tests/compat/serve9_sdk.mjs drives the official SDK's resource
# methods and then its own EnvironmentWorker against a real `shed serve`:
# the worker downloads the skill, mounts the memory store at the server's
# mount_path (/mnt/memory/<slug>, as Anthropic's API sets it) and syncs a
# memory written by a tool call back to the store.
# timeout: 200
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/serve.sh"
sdk_node
command -v unzip >/dev/null || skip "unzip is not installed (the SDK worker extracts zip skills with it)"
sdk_memory_mnt
ADMIN=compat-admin-key-0123456789
S=$T/serve
serve_start "$S" --lease-ttl 10
SHED_URL=$URL SHED_ADMIN_KEY=$ADMIN timeout 170 "$NODE" "$SHED_ROOT/tests/compat/serve9_sdk.mjs" ||
    { tail -20 "$S/err"; fail "serve9_sdk.mjs failed"; }
serve_stop "the compat run"
echo "serve9 compat ok"
