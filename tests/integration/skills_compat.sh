#!/usr/bin/env bash
# The same session (a skill, an agent, a memory store on shed serve) served
# by the official SDK's EnvironmentWorker and by shed worker
# (tests/compat/skills_layout.mjs): the skill tree in <workdir>/skills/<name>/
# and the memory folder at the mount_path are the same (names, types, modes,
# sizes, the marker), and a memory written by a tool call reaches the store
# under both.
# timeout: 200
. "$(dirname "$0")/../lib/common.sh"
NODE=$SHED_ROOT/node_modules/.bin/node
[ -x "$NODE" ] && [ -d "$SHED_ROOT/node_modules/@anthropic-ai/sdk" ] ||
    fail "node_modules is missing: run scripts/install-deps (npm ci installs the SDK and Node 22)"
command -v unzip >/dev/null || skip "unzip is not installed (the SDK worker extracts zip skills with it)"
python3 "$(dirname "$0")/worker_lib.py" --check-sandbox || exit $?
made_mnt=
if [ ! -d /mnt/memory ]; then
    mkdir -p /mnt/memory 2>/dev/null || skip "cannot create /mnt/memory (the SDK worker mounts memory stores there); run as root"
    made_mnt=1
fi
[ -w /mnt/memory ] || skip "/mnt/memory is not writable"
[ -n "$made_mnt" ] && at_exit "rmdir /mnt/memory 2>/dev/null"
ADMIN=compat-admin-key-0123456789
S=$T/serve
mkdir -p "$S"
SHED_ADMIN_KEY=$ADMIN "$SHED" serve --listen 127.0.0.1:0 --state-dir "$S" --lease-ttl 10 >"$S/out" 2>"$S/err" &
pid=$!
at_exit "kill $pid 2>/dev/null"
wait_for 10 grep -q 'listening on' "$S/out" || fail "serve did not start: $(cat "$S/err")"
URL=$(sed -n 's/^shed serve: listening on //p' "$S/out")
SHED=$SHED SHED_URL=$URL SHED_ADMIN_KEY=$ADMIN timeout 170 "$NODE" "$SHED_ROOT/tests/compat/skills_layout.mjs" ||
    { tail -20 "$S/err"; fail "skills_layout.mjs failed"; }
kill -TERM $pid
wait $pid || fail "serve exited $? after the compat run"
echo "skills compat ok"
