#!/usr/bin/env bash
# 20 sessions x 25 calls at once through one worker, each session in its own
# sandbox: every result present, correct, and posted exactly once.
# timeout: 240
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, sys, time, threading
from worker_lib import *
T = sys.argv[1]
S, C = 20, 25
srv, env, key, w = serve_and_worker(T, "--max-idle", "60", "--max-sessions", str(S))
step("%d sessions, %d calls each, posted as the agent would: one after another" % (S, C))
sids = [srv.session(env) for _ in range(S)]
errors = []

def agent(i, sid):
    try:
        for j in range(C):
            # Alternate the tools; each result names its session and call.
            if j % 3 == 2:
                tid = srv.tool(sid, "write", {"file_path": "f%d.txt" % j, "content": "s%d-c%d" % (i, j)})
                r = srv.wait_result(sid, tid, 120)
                tid = srv.tool(sid, "read", {"file_path": "f%d.txt" % j})
                r = srv.wait_result(sid, tid, 120)
            else:
                tid = srv.tool(sid, "bash", {"command": "echo s%d-c%d" % (i, j)})
                r = srv.wait_result(sid, tid, 120)
            if text_of(r).strip() != "s%d-c%d" % (i, j) or r["is_error"]:
                errors.append("session %d call %d: %r" % (i, j, r))
    except SystemExit:
        errors.append("session %d: timed out" % i)

t0 = time.time()
ths = [threading.Thread(target=agent, args=(i, s)) for i, s in enumerate(sids)]
for t in ths: t.start()
for t in ths: t.join()
print("all calls answered in %.1fs" % (time.time() - t0))
check(not errors, "; ".join(errors[:5]))
step("every call has exactly one result; workspaces are separate")
total = 0
for i, sid in enumerate(sids):
    res = srv.results(sid)
    check(all(len(v) == 1 for v in res.values()), "session %d: a call answered twice" % i)
    total += len(res)
    files = sorted(os.listdir(os.path.join(T, "wstate", "sessions", sid, "workspace")))
    check(len(files) == len([j for j in range(C) if j % 3 == 2]), "session %d workspace: %r" % (i, files))
check(total == sum(C + len([j for j in range(C) if j % 3 == 2]) for _ in sids), "total results %d" % total)
check(w.stop(60) == 0, "worker exit")
srv.stop()
assert_no_secrets([w.log_path], [key])
print("worker concurrency ok")
PY
