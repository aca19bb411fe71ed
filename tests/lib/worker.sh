# Sourced by the `shed worker` integration tests (worker_*, admin_*, obs_e2e):
# common.sh, then skip (77) unless this build and host can make sandboxes,
# and tests/integration on PYTHONPATH so a test's python can
# `from worker_lib import *` (serve_and_worker, Server, Worker, check, ...).
# It starts nothing itself.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
python3 "$SHED_ROOT/tests/integration/worker_lib.py" --check-sandbox || exit $?
export PYTHONPATH="$SHED_ROOT/tests/integration${PYTHONPATH:+:$PYTHONPATH}"
