#!/usr/bin/env bash
# Hundreds of concurrent long-polls and SSE streams: all answered, no thread
# per connection (tests in serve_scale.py).
# timeout: 90
. "$(dirname "$0")/../lib/common.sh"
command -v python3 >/dev/null || skip "python3 is not installed"
export T SHED
python3 "$(dirname "$0")/serve_scale.py"
