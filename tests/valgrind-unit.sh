#!/usr/bin/env bash
# Runs every unit test (each test of each build/tests/unit/test_* binary, in
# its own process) under valgrind: memcheck errors and definite/indirect
# leaks fail it. A test that cannot run under valgrind at all (it fails the
# same way for reasons valgrind causes, e.g. seccomp or namespaces valgrind
# does not emulate) is listed apart, not counted as a leak.
#   tests/valgrind-unit.sh [BUILD_DIR] [NAME_REGEX]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
filter=${2:-.}
command -v valgrind >/dev/null || { echo "skip: valgrind is not installed"; exit 77; }
out=$(mktemp -d /tmp/shed-valgrind.XXXXXX)
clean=0 dirty=0 unrunnable=0 skipped=0
for bin in "$build"/tests/unit/test_*; do
    [ -x "$bin" ] || continue
    for t in $("$bin" --list); do
        echo "$(basename "$bin") $t" | grep -Eq -- "$filter" || continue
        log="$out/$(basename "$bin").$t.log"
        timeout 300 valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
            --child-silent-after-fork=yes --log-file="$log" "$bin" "$t" >"$log.out" 2>&1
        rc=$?
        case $rc in
        0) clean=$((clean + 1)) ;;
        77) skipped=$((skipped + 1)) ;;
        99) dirty=$((dirty + 1)); echo "LEAK/ERROR  $(basename "$bin") $t"; sed 's/^/      | /' "$log" | head -60 ;;
        *) unrunnable=$((unrunnable + 1)); echo "not runnable under valgrind (exit $rc): $(basename "$bin") $t" ;;
        esac
    done
done
echo "valgrind: $clean clean, $dirty with errors or leaks, $skipped skipped, $unrunnable not runnable under valgrind (logs: $out)"
[ "$dirty" -eq 0 ]
