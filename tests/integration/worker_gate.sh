#!/usr/bin/env bash
# The permission gate (allow / ask + user.tool_confirmation / deny) and
# partial fulfilment: calls of tools shed does not run are left pending.
# timeout: 120
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, sys, time
from worker_lib import *
T = sys.argv[1]
srv, env, key, w = serve_and_worker(T, "--max-idle", "60")
sid = srv.session(env)
ws = lambda: os.path.join(T, "wstate", "sessions", sid, "workspace")

step("deny: never executed, nothing posted")
deny = srv.tool(sid, "bash", {"command": "touch denied"}, perm="deny")
step("ask: held until user.tool_confirmation")
ask_ok = srv.tool(sid, "bash", {"command": "touch asked-ok"}, perm="ask")
ask_no = srv.tool(sid, "bash", {"command": "touch asked-no"}, perm="ask")
step("unknown tools: web_search, a custom tool (even one named bash)")
web = srv.tool(sid, "web_search", {"query": "x"})
cust = srv.custom_tool(sid, "bash", {"command": "touch custom"})
allow = srv.tool(sid, "bash", {"command": "touch allowed"}, perm="allow")
srv.wait_result(sid, allow, 30)
time.sleep(1.0)
res = srv.results(sid)
for name, tid in [("deny", deny), ("ask", ask_ok), ("ask", ask_no),
                  ("web_search", web), ("custom", cust)]:
    check(tid not in res, "%s call %s must have no result yet" % (name, tid))
check(not os.path.exists(os.path.join(ws(), "asked-ok")), "held call did not run before confirmation")
srv.post(sid, [{"type": "user.tool_confirmation", "tool_use_id": ask_ok, "result": "allow"},
               {"type": "user.tool_confirmation", "tool_use_id": ask_no, "result": "deny"}])
r = srv.wait_result(sid, ask_ok, 30)
check(not r["is_error"], "confirmed call ran: %r" % r)
time.sleep(1.0)
res = srv.results(sid)
for tid in (deny, ask_no, web, cust):
    check(tid not in res, "call %s must stay without a result from the worker" % tid)
files = sorted(os.listdir(ws()))
check(files == ["allowed", "asked-ok"], "only allowed and confirmed calls ran: %r" % files)
check("leaving it pending for its owner" in w.log(), "unowned calls logged")
check(w.stop() == 0, "worker exit")
srv.stop()
print("worker gate ok")
PY
