#!/usr/bin/env bash
# SIGTERM mid-call: stop polling, cancel the call, post its error result,
# stop the item, destroy the sandbox, exit 0 in bounded time. A second
# signal exits at once.
# timeout: 120
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, sys, time, signal, re
from worker_lib import *
T = sys.argv[1]
srv, env, key, w = serve_and_worker(T, "--max-idle", "60")
s1, s2 = srv.session(env), srv.session(env)
srv.wait_result(s1, srv.tool(s1, "bash", {"command": "echo warm"}))
srv.wait_result(s2, srv.tool(s2, "bash", {"command": "echo warm"}))
step("SIGTERM while two sessions each run a call")
t1 = srv.tool(s1, "bash", {"command": "sleep 60; touch finished"})
t2 = srv.tool(s2, "bash", {"command": "sleep 60; touch finished"})
w.wait_log(r"running call %s" % t1)
w.wait_log(r"running call %s" % t2)
pids = [int(p) for p in re.findall(r"init pid (\d+)", w.log())]
t0 = time.time()
w.signal(signal.SIGTERM)
rc = w.wait(30)
el = time.time() - t0
check(rc == 0, "exit status %s" % rc)
check(el < 25, "exited within %.1fs" % el)
for sid, tid in ((s1, t1), (s2, t2)):
    res = srv.results(sid)
    check(tid in res and res[tid][0]["is_error"], "cancelled call has an error result: %r" % res.get(tid))
    check(all(x["state"] == "stopped" for x in srv.work_of(env, sid)), "items stopped")
    check(not os.path.exists(os.path.join(T, "wstate", "sessions", sid, "workspace", "finished")), "call cut")
for p in pids:
    check(not os.path.exists("/proc/%d" % p), "sandbox init %d is gone" % p)
step("a second signal exits at once")
w.start()
s3 = srv.session(env)
t3 = srv.tool(s3, "bash", {"command": "sleep 60"})
w.wait_log(r"running call %s" % t3)
# Freeze the server so the graceful shutdown cannot finish.
srv.proc.send_signal(signal.SIGSTOP)
w.signal(signal.SIGTERM)
time.sleep(1.0)
check(w.proc.poll() is None, "still shutting down gracefully")
t0 = time.time()
w.signal(signal.SIGINT)
rc = w.wait(10)
srv.proc.send_signal(signal.SIGCONT)
check(time.time() - t0 < 3, "second signal: immediate exit")
check(rc != 0, "second signal: non-zero exit (%s)" % rc)
srv.stop()
print("worker signals ok")
PY
