#!/usr/bin/env bash
# kill -9 of shed serve under load (event posts, polls, acks, heartbeats),
# then restart: no acknowledged event lost, no item held by two live workers,
# the database intact (tests in serve_crash.py).
# timeout: 90
. "$(dirname "$0")/../lib/common.sh"
command -v python3 >/dev/null || skip "python3 is not installed"
export T SHED
# Both durability modes keep what was acknowledged when the process is killed
# (NORMAL gives up only the power-loss guarantee, which no test here can cut).
SYNC=full python3 "$(dirname "$0")/serve_crash.py"
SYNC=normal python3 "$(dirname "$0")/serve_crash.py"
SYNC=strict python3 "$(dirname "$0")/serve_crash.py"
