# Sourced (after common.sh) by the SDK compatibility tests: the pinned Node
# with the official SDK, and a real `shed serve` started from the shell.
# It never stands in for shed serve or the SDK.

# sdk_node: NODE=the pinned Node 22 that has @anthropic-ai/sdk, or fail
# naming the fix.
sdk_node() {
    NODE=$SHED_ROOT/node_modules/.bin/node
    [ -x "$NODE" ] && [ -d "$SHED_ROOT/node_modules/@anthropic-ai/sdk" ] ||
        fail "node_modules is missing: run scripts/install-deps (npm ci installs the SDK and Node 22)"
}

# sdk_memory_mnt: /mnt/memory exists and is writable (the SDK worker mounts
# memory stores at their mount_path under it, as on Anthropic's sandboxes);
# made here (and removed at exit) if missing, else skip naming why.
sdk_memory_mnt() {
    local made=
    if [ ! -d /mnt/memory ]; then
        mkdir -p /mnt/memory 2>/dev/null || skip "cannot create /mnt/memory (the SDK worker mounts memory stores there); run as root"
        made=1
    fi
    [ -w /mnt/memory ] || skip "/mnt/memory is not writable"
    [ -n "$made" ] && at_exit "rmdir /mnt/memory 2>/dev/null"
    return 0
}

# serve_start DIR SERVE_ARGS...: `shed serve` on a free 127.0.0.1 port, its
# state in DIR, admin key $ADMIN, stdout DIR/out, stderr DIR/err; waits for
# the ready line. Sets SERVE_PID and URL; killed at exit if still running.
serve_start() {
    local dir=$1; shift
    mkdir -p "$dir"
    SHED_ADMIN_KEY=$ADMIN "$SHED" serve --listen 127.0.0.1:0 --state-dir "$dir" "$@" >"$dir/out" 2>"$dir/err" &
    SERVE_PID=$!
    at_exit "kill $SERVE_PID 2>/dev/null"
    wait_for 10 grep -q 'listening on' "$dir/out" || fail "serve did not start: $(cat "$dir/err")"
    URL=$(sed -n 's/^shed serve: listening on //p' "$dir/out")
}

# serve_stop AFTER: SIGTERM to the server serve_start started; it must exit 0.
serve_stop() {
    kill -TERM "$SERVE_PID"
    wait "$SERVE_PID" || fail "serve exited $? after $1"
}
