#!/usr/bin/env bash
# The same session (a skill, an agent, a memory store on shed serve) served
# by the official SDK's EnvironmentWorker and by shed worker
# (tests/compat/skills_layout.mjs): the skill tree in <workdir>/skills/<name>/
# and the memory folder at the mount_path are the same (names, types, modes,
# sizes, the marker), and a memory written by a tool call reaches the store
# under both.
# timeout: 200
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/serve.sh"
sdk_node
command -v unzip >/dev/null || skip "unzip is not installed (the SDK worker extracts zip skills with it)"
python3 "$(dirname "$0")/worker_lib.py" --check-sandbox || exit $?
sdk_memory_mnt
ADMIN=compat-admin-key-0123456789
S=$T/serve
serve_start "$S" --lease-ttl 10
SHED=$SHED SHED_URL=$URL SHED_ADMIN_KEY=$ADMIN timeout 170 "$NODE" "$SHED_ROOT/tests/compat/skills_layout.mjs" ||
    { tail -20 "$S/err"; fail "skills_layout.mjs failed"; }
serve_stop "the compat run"
echo "skills compat ok"
