#!/usr/bin/env bash
# `shed demo` (the README's first command): embedded serve + worker + two
# sessions in their own sandboxes, every check passes, nothing left behind.
# timeout: 120
. "$(dirname "$0")/../lib/worker.sh"
before=$(ls -d /tmp/shed-demo.* 2>/dev/null | sort || true)
out=$("$SHED" demo 2>&1) || { echo "$out"; fail "shed demo exited $?"; }
expect_contains "$out" "hello from a claimed self-hosted work item" "session one's report"
expect_contains "$out" "sandbox argv ok" "session two's python3"
expect_contains "$out" "every check passed" "demo checks"
expect_not_contains "$out" "[FAIL]" "no failed check"
expect_not_contains "$out" "sk-shed-env-" "no key printed"
after=$(ls -d /tmp/shed-demo.* 2>/dev/null | sort || true)
expect_eq "$after" "$before" "the demo's scratch directory is removed"
echo "worker demo ok"
