# Sourced by integration tests. Provides: $SHED, $PROBE, fail, skip, a
# per-test scratch directory $T (removed at exit unless KEEP_T is set, for
# debugging), free_port, wait_for.
set -euo pipefail
: "${SHED:?SHED must point at the shed binary (make check sets it)}"
: "${SHED_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
PROBE=${PROBE:-$SHED_ROOT/build/probe}
T=$(mktemp -d /tmp/shed-it.XXXXXX)
chmod 755 "$T"
_cleanups=()
on_exit() { local rc=$?; for c in "${_cleanups[@]}"; do eval "$c" || true; done; [ -n "${KEEP_T:-}" ] || rm -rf "$T"; exit $rc; }
trap on_exit EXIT
at_exit() { _cleanups+=("$1"); }

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "skip: $*"; exit 77; }
step() { echo "--- $*"; }

# expect_eq GOT WANT WHAT
expect_eq() { [ "$1" == "$2" ] || fail "$3: got '$1', expected '$2'"; }
expect_contains() { [[ "$1" == *"$2"* ]] || fail "$3: '$1' does not contain '$2'"; }
expect_not_contains() { [[ "$1" != *"$2"* ]] || fail "$3: '$1' contains '$2'"; }

# A TCP port on 127.0.0.1 nobody listens on right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_for SECONDS CMD...: retry CMD every 50 ms until it succeeds.
wait_for() {
    local deadline=$(( $(date +%s%3N) + $1 * 1000 )); shift
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s%3N)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}
