#!/usr/bin/env bash
# shed serve: agents, skills (multipart upload, versions, zip content),
# memory stores and memories (view, path_prefix, depth, paging,
# preconditions, limits), sessions with an agent and memory_store resources,
# and the auth scopes of each (tests in serve9_objects.py).
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
command -v python3 >/dev/null || skip "python3 is not installed"
export T SHED
python3 "$(dirname "$0")/serve9_objects.py"
