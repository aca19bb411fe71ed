#!/usr/bin/env bash
# `shed worker run`: serve one already-claimed item (as `ant beta:worker run`
# does for a poll --on-work script) with only the item's secret, no
# environment key; a world-readable secret file is refused.
# timeout: 120
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, sys, time, subprocess
from worker_lib import *
T = sys.argv[1]
srv = Server(T + "/serve")
env = srv.environment(); kid, key = srv.new_key(env)
sid = srv.session(env)
t1 = srv.tool(sid, "bash", {"command": "echo claimed elsewhere"})
step("claim and ack the item by hand")
st, work = srv.call("GET", "/v1/environments/%s/work/poll?block_ms=999" % env, bearer=key)
check(st == 200 and work and work["data"]["id"] == sid, "poll: %r" % (work,))
srv.call("POST", "/v1/environments/%s/work/%s/ack" % (env, work["id"]), bearer=key)
sf = T + "/secret"
fd = os.open(sf, os.O_WRONLY | os.O_CREAT, 0o644); os.write(fd, work["secret"].encode()); os.close(fd)
os.chmod(sf, 0o644)
args = [os.environ["SHED"], "worker", "run", "--session-id", sid, "--work-id", work["id"],
        "--environment-id", env, "--work-secret-file", sf, "--base-url", srv.url,
        "--state-dir", T + "/wstate", "--max-idle", "1"]
env_vars = dict(os.environ); env_vars.pop("ANTHROPIC_ENVIRONMENT_KEY", None)
r = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env_vars)
check(r.returncode == 125 and "chmod 600" in r.stderr, "world-readable secret refused: %r" % r.stderr)
os.chmod(sf, 0o600)
step("shed worker run serves the session with the secret alone, exits after idle")
log = open(T + "/run.log", "w")
p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env_vars)
r = srv.wait_result(sid, t1, 30)
check(text_of(r).strip() == "claimed elsewhere", "result: %r" % r)
srv.idle(sid)
rc = p.wait(30)
check(rc == 0, "exit status %d" % rc)
check(srv.call("GET", "/v1/environments/%s/work/%s" % (env, work["id"]))[1]["state"] == "stopped", "item stopped")
srv.stop()
assert_no_secrets([T + "/run.log"], [work["secret"], key])
print("worker run ok")
PY
