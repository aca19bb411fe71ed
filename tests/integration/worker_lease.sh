#!/usr/bin/env bash
# Lease loss (the worker frozen past its lease: 412 on the next heartbeat, no
# stop, the item re-queued and served again) and a stop request mid-call
# (stop {force:false} -> "stopping" on the next heartbeat -> the call is
# cancelled, its error result posted, the item stopped).
# timeout: 150
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, sys, time, signal
from worker_lib import *
T = sys.argv[1]
srv, env, key, w = serve_and_worker(T, "--max-idle", "60", lease_ttl=2)
sid = srv.session(env)
srv.wait_result(sid, srv.tool(sid, "bash", {"command": "echo one"}))
items = srv.work_of(env, sid)
check(len(items) == 1 and items[0]["state"] == "active", "one active item: %r" % items)
wid = items[0]["id"]

step("freeze the worker past its lease")
w.signal(signal.SIGSTOP)
time.sleep(5)
w.signal(signal.SIGCONT)
w.wait_log(r"lease lost: heartbeat precondition failed")
w.wait_log(r"lease lost; released without stopping it")
check("work item stopped" not in w.log(), "a lost item is not stopped")
step("the item comes back to the queue and is served again")
r = srv.wait_result(sid, srv.tool(sid, "bash", {"command": "echo two"}), 60)
check(text_of(r).strip() == "two", "served after the lease loss: %r" % r)

step("stop {force:false} while a call runs")
tid = srv.tool(sid, "bash", {"command": "sleep 30; touch finished"})
w.wait_log(r"running call %s" % tid)
active = [x for x in srv.work_of(env, sid) if x["state"] == "active"]
check(len(active) == 1, "one active item: %r" % srv.work_of(env, sid))
t0 = time.time()
srv.call("POST", "/v1/environments/%s/work/%s/stop" % (env, active[0]["id"]), {"force": False})
r = srv.wait_result(sid, tid, 30)
el = time.time() - t0
check(r["is_error"], "cancelled call answered with an error: %r" % r)
check(el < 20, "cancelled within %.1fs" % el)
deadline = time.time() + 20
while time.time() < deadline and srv.call("GET", "/v1/environments/%s/work/%s" % (env, active[0]["id"]))[1]["state"] != "stopped":
    time.sleep(0.1)
check(srv.call("GET", "/v1/environments/%s/work/%s" % (env, active[0]["id"]))[1]["state"] == "stopped", "item stopped")
time.sleep(1)
check(not os.path.exists(os.path.join(T, "wstate", "sessions", sid, "workspace", "finished")), "the call did not finish")
check(w.stop() == 0, "worker exit")
srv.stop()
print("worker lease ok")
PY
