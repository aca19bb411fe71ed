#!/usr/bin/env bash
# The append's direct send to waiting SSE streams (routes.c sse_push): every
# event exactly once and in order on every stream, a stream whose socket is
# full (the rest goes through libmicrohttpd), a stream whose client is gone,
# pings after direct sends, a terminated session ends its streams
# (tests in serve_push.py).
# timeout: 90
. "$(dirname "$0")/../lib/common.sh"
command -v python3 >/dev/null || skip "python3 is not installed"
export T SHED
python3 "$(dirname "$0")/serve_push.py"
