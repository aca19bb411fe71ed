#!/usr/bin/env bash
# --max-session-seconds: a work item running longer than the cap is ended
# like an admin kill: its call in flight gets an error result naming the cap,
# the item is stopped, the kill is counted and audited with reason max_session.
# timeout: 90
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, sys, time, json, subprocess, urllib.request, socket
from worker_lib import *
T = sys.argv[1]
mport = free_port()
audit = T + "/audit.log"
srv, env, key, w = serve_and_worker(T, "--max-idle", "60", "--max-session-seconds", "3",
                                    "--metrics-listen", "127.0.0.1:%d" % mport, "--audit-log", audit)
sid = srv.session(env)
t0 = time.time()
tid = srv.tool(sid, "bash", {"command": "sleep 30; echo finished > finished"})
res = srv.wait_result(sid, tid, 40)
el = time.time() - t0
check(res["is_error"] and "--max-session-seconds 3" in text_of(res), "error result names the cap: %r" % res)
check(2.5 <= el < 25, "ended by the cap, not by the call: %.1f s" % el)
deadline = time.time() + 30
while time.time() < deadline and any(x["state"] != "stopped" for x in srv.work_of(env, sid)):
    time.sleep(0.1)
check(all(x["state"] == "stopped" for x in srv.work_of(env, sid)), "item stopped")
m = metrics_page(mport)
check('shed_kills_total{reason="max_session"} 1' in m, "kills metric: %r" % [l for l in m.splitlines() if "kills" in l])
w.wait_log(r"reached --max-session-seconds")
check(w.stop() == 0, "worker exit")
recs = [json.loads(l) for l in open(audit)]
kills = [x for x in recs if x["event"] == "kill"]
check(len(kills) == 1 and kills[0]["reason"] == "max_session" and kills[0]["session_id"] == sid, "kill audited: %r" % kills)
ends = [(x["event"], x["reason"]) for x in recs
        if x["event"] in ("sandbox.destroyed", "work.stopped") and x.get("session_id") == sid]
check(sorted(ends) == [("sandbox.destroyed", "max_session"), ("work.stopped", "max_session")],
      "the end of the session is audited with the cap as its reason: %r" % ends)
srv.stop()
print("admin max-session ok")
PY
