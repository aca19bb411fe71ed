#!/usr/bin/env bash
# shed serve serves /metrics, /healthz and /readyz from its own listener:
# queue gauges current at every scrape, request counters by route pattern
# (never an id), promtool accepts the page (tests in serve9_metrics.py).
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"
command -v python3 >/dev/null || skip "python3 is not installed"
command -v promtool >/dev/null || fail "promtool missing: run scripts/install-deps (Debian package prometheus)"
export T SHED
python3 "$(dirname "$0")/serve9_metrics.py"
