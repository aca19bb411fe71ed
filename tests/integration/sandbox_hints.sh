#!/usr/bin/env bash
# A setup failure names the fix: a workspace (or state directory) below a
# directory the sandbox's host uid cannot traverse fails closed with exit 125
# and a message naming that directory and the chmod that fixes it.
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"
[ "$(id -u)" -eq 0 ] || skip "needs root (the sandbox user is another host uid only as root)"

step "workspace under a 0700 directory"
mkdir -p "$T/private/ws"
chmod 700 "$T/private"
set +e
err=$("$SHED" run --workspace "$T/private/ws" -- true 2>&1); rc=$?
set -e
expect_eq "$rc" 125 "exit status"
expect_contains "$err" "$T/private is mode 0700" "names the directory"
expect_contains "$err" "chmod o+x $T/private" "names the fix"

step "the same workspace once the directory is traversable"
chmod 711 "$T/private"
out=$("$SHED" run --workspace "$T/private/ws" -- id -u)
expect_eq "$out" 1000 "runs as the sandbox user"
echo "hints ok"
