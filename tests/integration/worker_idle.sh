#!/usr/bin/env bash
# Idle exit: after session.status_idle{end_turn} the worker stops serving the
# session after --max-idle and stops its work item; a later call creates a
# new item, served in the same (persisted) workspace.
# timeout: 120
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, sys, time
from worker_lib import *
T = sys.argv[1]
srv, env, key, w = serve_and_worker(T, "--max-idle", "2")
sid = srv.session(env)
srv.wait_result(sid, srv.tool(sid, "write", {"file_path": "keep.txt", "content": "kept"}))
step("requires_action idle does not end the turn")
srv.idle(sid, "requires_action")
time.sleep(3)
check([x["state"] for x in srv.work_of(env, sid)] == ["active"], "still served: %r" % srv.work_of(env, sid))
step("end_turn idle: item stopped after --max-idle 2")
t0 = time.time()
srv.idle(sid, "end_turn")
deadline = time.time() + 20
while time.time() < deadline and any(x["state"] != "stopped" for x in srv.work_of(env, sid)):
    time.sleep(0.1)
el = time.time() - t0
check(all(x["state"] == "stopped" for x in srv.work_of(env, sid)), "item stopped")
check(1.5 <= el <= 15, "stopped after ~2 s idle, took %.1fs" % el)
w.wait_log("session idle after its turn ended")
step("a new call: a new item, the same workspace")
r = srv.wait_result(sid, srv.tool(sid, "read", {"file_path": "keep.txt"}), 30)
check(text_of(r) == "kept", "workspace persisted across items: %r" % r)
check(len(srv.work_of(env, sid)) == 2, "two work items")
check(w.stop() == 0, "worker exit")
srv.stop()
print("worker idle ok")
PY
