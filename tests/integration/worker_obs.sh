#!/usr/bin/env bash
# --metrics-listen and --audit-log: the worker's Prometheus metrics and
# readiness, and a hash-chained audit trail of work items, sandboxes and tool
# calls that `shed audit verify` accepts and that holds no credential.
# timeout: 90
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, sys, time, json, subprocess, urllib.request, socket
from worker_lib import *
T = sys.argv[1]
mport = free_port()
audit = T + "/audit.log"
srv, env, key, w = serve_and_worker(T, "--max-idle", "60", "--metrics-listen", "127.0.0.1:%d" % mport,
                                    "--audit-log", audit)
sid = srv.session(env)
for i in range(3):
    srv.wait_result(sid, srv.tool(sid, "bash", {"command": "echo %d" % i}))
srv.wait_result(sid, srv.tool(sid, "bash", {"command": "exit 4"}))
srv.wait_result(sid, srv.tool(sid, "bash", {"command": "curl -s -m 5 http://example.com/ || true"}))
step("metrics and readiness")
def scrape():
    return metrics_page(mport)
m = scrape()
def val(name):
    for line in m.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") and False:
            return float(line.split()[-1])
    for line in m.splitlines():
        if line.startswith(name):
            return float(line.split()[-1])
    return None
check(val('shed_tool_calls_total{tool="bash",outcome="ok"}') >= 4, "ok calls counted:\n" + m[:2000])
check(val('shed_tool_calls_total{tool="bash",outcome="error"}') >= 1, "error calls counted")
check(val("shed_work_claimed_total") == 1, "claimed")
check(val("shed_sessions_active") == 1, "active sessions")
check(sid not in m, "no session id in any label")
check(urllib.request.urlopen("http://127.0.0.1:%d/readyz" % mport, timeout=10).status == 200, "ready")
check(w.stop() == 0, "worker exit")
step("the audit trail verifies and names what happened")
r = subprocess.run([os.environ["SHED"], "audit", "verify", audit], capture_output=True, text=True)
check(r.returncode == 0, "audit verify: %s %s" % (r.stdout, r.stderr))
recs = [json.loads(l) for l in open(audit)]
events = [x["event"] for x in recs]
for e in ("work.claimed", "sandbox.created", "tool.call", "egress.decision", "sandbox.destroyed", "work.stopped"):
    check(e in events, "audit has %s: %r" % (e, events))
calls = [x for x in recs if x["event"] == "tool.call"]
check(len(calls) == 5 and all(x["session_id"] == sid for x in calls), "tool.call records")
check(any(x["is_error"] for x in calls), "an error call recorded")
srv.stop()
assert_no_secrets([audit, w.log_path], [key])
print("worker obs ok")
PY
