#!/usr/bin/env bash
# When an appended event leaves serve, relative to its fsync, in each --sync
# mode, read from the system calls themselves (strace): full (default) sends
# it to the waiting stream before the fsync and answers the POST after it;
# strict sends it only after the fsync; normal never fsyncs. Tests in
# serve_sync.py.
# timeout: 90
. "$(dirname "$0")/../lib/common.sh"
command -v python3 >/dev/null || skip "python3 is not installed"
command -v strace >/dev/null || fail "strace is not installed (scripts/install-deps installs it)"
export T SHED
python3 "$(dirname "$0")/serve_sync.py"
