#!/usr/bin/env bash
# The shed command: help, version, unknown commands and flags, exit codes.
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"

step "top-level help and version"
out=$("$SHED" --help)
for c in worker run tool serve env session demo audit; do expect_contains "$out" "  $c " "shed --help lists $c"; done
expect_contains "$("$SHED" --version)" "shed " "version"

step "unknown command: one line naming it, usage, exit 2"
set +e
err=$("$SHED" frobnicate 2>&1 >/dev/null); rc=$?
set -e
expect_eq "$rc" 2 "exit status of an unknown command"
expect_eq "$(head -n1 <<<"$err")" "shed: unknown command 'frobnicate'" "first line"
expect_contains "$err" "usage: shed" "usage follows"

step "every subcommand has --help"
for c in worker run tool serve env session demo audit; do
    out=$("$SHED" "$c" --help) || fail "shed $c --help exited $?"
    expect_contains "$out" "usage: shed $c" "shed $c --help"
done

step "no arguments: usage on stderr, exit 2"
set +e; "$SHED" >/dev/null 2>&1; rc=$?; set -e
expect_eq "$rc" 2 "exit status with no command"
echo "cli ok"
