#!/usr/bin/env bash
# kill -9 of the worker mid-session, then a restart on the same state dir:
# no tool result missing, none run twice. The call in flight at the kill is
# answered "worker restarted while this call was running" and not re-run; a
# result recorded but not yet posted is posted, not re-run.
# timeout: 150
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, sys, time, json
from worker_lib import *
T = sys.argv[1]
srv, env, key, w = serve_and_worker(T, "--max-idle", "60", lease_ttl=2)
sid = srv.session(env)
ws = os.path.join(T, "wstate", "sessions", sid, "workspace")
ids = []
for i in range(5):
    ids.append(srv.tool(sid, "bash", {"command": "echo c%d >> runs.txt" % i}))
    srv.wait_result(sid, ids[-1])
step("kill -9 while a call runs")
long = srv.tool(sid, "bash", {"command": "echo long >> runs.txt; sleep 20; echo long-done >> runs.txt"})
w.wait_log(r"running call %s" % long)
deadline = time.time() + 10
while time.time() < deadline and "long" not in open(os.path.join(ws, "runs.txt")).read():
    time.sleep(0.05)
w.kill9()
check(os.path.exists(os.path.join(T, "wstate", "sessions", sid, "calls", long)), "call recorded as started")
step("while the worker is down: a call whose result was recorded but not posted")
rec = srv.tool(sid, "bash", {"command": "echo must-not-run >> runs.txt"})
with open(os.path.join(T, "wstate", "sessions", sid, "calls", rec), "w") as f:
    json.dump({"is_error": False, "content": [{"type": "text", "text": "recorded before the crash"}]}, f)
step("restart on the same state dir")
w.start()
r = srv.wait_result(sid, long, 60)
check(r["is_error"] and "worker restarted while this call was running" in text_of(r), "in-flight call: %r" % r)
r = srv.wait_result(sid, rec, 30)
check(text_of(r) == "recorded before the crash" and not r["is_error"], "recorded result posted: %r" % r)
after = srv.tool(sid, "bash", {"command": "echo after >> runs.txt; cat runs.txt"})
r = srv.wait_result(sid, after, 30)
time.sleep(0.5)
runs = open(os.path.join(ws, "runs.txt")).read().split()
print("runs.txt:", runs)
check(runs.count("long") == 1, "the in-flight call ran at most once")
check("must-not-run" not in runs, "a recorded call is not run again")
for i in range(5):
    check(runs.count("c%d" % i) == 1, "call c%d ran exactly once" % i)
res = srv.results(sid)
for tid in ids + [long, rec, after]:
    check(tid in res and len(res[tid]) == 1, "call %s: exactly one result" % tid)
check(not os.listdir(os.path.join(T, "wstate", "sessions", sid, "calls")), "no call records left")
check(w.stop() == 0, "worker exit")
srv.stop()
print("worker crash ok")
PY
