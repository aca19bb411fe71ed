#!/usr/bin/env bash
# A fault-injecting proxy between the worker and shed serve (seeded: 503s,
# dropped connections, answers lost after the server applied the request,
# delays, event streams cut): no call loses its result, none gets two, none
# runs twice.
# timeout: 240
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" "${WORKER_FAULT_SEED:-2}" <<'PY'
import os, sys, time, subprocess, threading
from worker_lib import *
T, SEED = sys.argv[1], int(sys.argv[2])
srv, env, key = serve_with_key(T, lease_ttl=4)
proxy = subprocess.Popen([sys.executable, os.path.join(os.environ["SHED_ROOT"], "tests/lib/faultproxy.py"),
                          "%s:%d" % (srv.host, srv.port), str(SEED), "0.25", "--mix", "basic"],
                         stdout=subprocess.PIPE, stderr=open(T + "/proxy.log", "w"), text=True)
port = int(proxy.stdout.readline().split()[1])
step("worker -> fault proxy (seed %d) -> shed serve" % SEED)
w = Worker(srv, env, T + "/key", T + "/wstate", "--max-idle", "60", base_url="http://127.0.0.1:%d" % port)
S, C = 3, 20
sids = [srv.session(env) for _ in range(S)]
errors, calls = [], {}

def agent(i, sid):
    try:
        for j in range(C):
            tid = srv.tool(sid, "bash", {"command": "echo s%d-c%d >> runs.txt; echo s%d-c%d" % (i, j, i, j)})
            calls[tid] = (i, j)
            r = srv.wait_result(sid, tid, 150)
            time.sleep(0.25)  # the agent thinks: heartbeats and stream pings happen meanwhile
            if r["is_error"] or text_of(r).strip() != "s%d-c%d" % (i, j):
                errors.append("session %d call %d: %r" % (i, j, r))
    except SystemExit:
        errors.append("session %d: timed out" % i)

ths = [threading.Thread(target=agent, args=(i, s)) for i, s in enumerate(sids)]
t0 = time.time()
for t in ths: t.start()
for t in ths: t.join()
print("%d calls answered in %.1fs" % (S * C, time.time() - t0))
w.stop(60)
proxy.terminate(); proxy.wait(10)
print(open(T + "/proxy.log").read().strip())
log = w.log()
print("worker saw: %d transient heartbeat failures, %d stream reconnects, %d result retries, %d lease losses" % (
    log.count("transient heartbeat failure"), log.count("event stream ended"),
    log.count("posting the result for"), log.count("lease lost:")))
check(not errors, "; ".join(errors[:5]))
for i, sid in enumerate(sids):
    res = srv.results(sid)
    check(all(len(v) == 1 for v in res.values()), "a call has two results")
    check(len(res) == C, "session %d: %d results" % (i, len(res)))
    runs = open(os.path.join(T, "wstate", "sessions", sid, "workspace", "runs.txt")).read().split()
    for j in range(C):
        check(runs.count("s%d-c%d" % (i, j)) == 1, "session %d call %d ran %d times" % (i, j, runs.count("s%d-c%d" % (i, j))))
srv.stop()
assert_no_secrets([w.log_path], [key])
print("worker faults ok")
PY
