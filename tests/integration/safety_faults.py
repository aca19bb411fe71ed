#!/usr/bin/env python3
"""Sessions through tests/lib/faultproxy.py --mix full (seeded: 5xx, drops, answers lost
after the server applied the request, delays, truncated bodies, cut and
stalled event streams) between `shed worker` and `shed serve`.

    safety_faults.py SCRATCH SEED SESSIONS CALLS RATE [--stall-dead]

Checks: every call has exactly one result; no call ran twice; a success
result is the right output of a call that ran exactly once; an error
result (a call cancelled because the lease was lost while it ran) is one of
the documented ones and its call ran at most once. Figures to SCRATCH/faults.json."""
import atexit
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from worker_lib import Server, Worker, check, step, text_of, write_key_file, assert_no_secrets  # noqa: E402

T, SEED, S, C, RATE = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
dead = "--stall-dead" in sys.argv
srv = Server(T + "/serve", lease_ttl=4)
env = srv.environment("safety-faults")
kid, key = srv.new_key(env)
write_key_file(T + "/key", key)
here = os.path.dirname(os.path.abspath(__file__))
proxy = subprocess.Popen([sys.executable, os.path.join(here, "..", "lib", "faultproxy.py"), "%s:%d" % (srv.host, srv.port),
                          str(SEED), RATE, "--mix", "full"] + (["--stall-dead"] if dead else []),
                         stdout=subprocess.PIPE, stderr=open(T + "/proxy.log", "w"), text=True)
port = int(proxy.stdout.readline().split()[1])


def cleanup():
    """On any exit (a failed check included) leave nothing running."""
    for p in (globals().get("w") and w.proc, proxy, srv.proc):
        if p and p.poll() is None:
            p.kill()
            p.wait()


atexit.register(cleanup)
step("worker -> faultproxy --mix full (seed %d, rate %s%s) -> shed serve" % (SEED, RATE, ", a dead stream" if dead else ""))
w = Worker(srv, env, T + "/key", T + "/wstate", "--max-idle", "600", base_url="http://127.0.0.1:%d" % port)
sids = [srv.session(env) for _ in range(S)]
errors, calls = [], {}
lat = []


def agent(i, sid):
    try:
        for j in range(C):
            tag = "s%d-c%d" % (i, j)
            t0 = time.time()
            tid = srv.tool(sid, "bash", {"command": "echo %s >> runs.txt; echo %s" % (tag, tag)})
            calls[tid] = tag
            srv.wait_result(sid, tid, 150)
            lat.append(time.time() - t0)
            time.sleep(0.2)
    except SystemExit:
        errors.append("session %d: timed out" % i)


ths = [threading.Thread(target=agent, args=(i, s)) for i, s in enumerate(sids)]
t0 = time.time()
for t in ths:
    t.start()
for t in ths:
    t.join()
wall = time.time() - t0
rc = w.stop(60)
proxy.terminate()
proxy.wait(10)
faults = open(T + "/proxy.log").read().strip()
print(faults)
check(not errors, "; ".join(errors[:5]))
check(rc == 0, "worker exit %s" % rc)
ok = err = 0
for i, sid in enumerate(sids):
    res = srv.results(sid)
    runs = open(os.path.join(T, "wstate", "sessions", sid, "workspace", "runs.txt")).read().split()
    for tid, tag in calls.items():
        if not tag.startswith("s%d-" % i):
            continue
        rs = res.get(tid, [])
        check(len(rs) == 1, "call %s (%s): %d results" % (tid, tag, len(rs)))
        n = runs.count(tag)
        check(n <= 1, "call %s (%s) ran %d times" % (tid, tag, n))
        if rs[0]["is_error"]:
            t = text_of(rs[0])
            check("abort" in t or "cancel" in t or "worker restarted" in t,
                  "call %s (%s): unexpected error result %r" % (tid, tag, t[:200]))
            err += 1
        else:
            check(n == 1 and text_of(rs[0]).strip() == tag, "call %s (%s): result %r, ran %d times" % (tid, tag, text_of(rs[0])[:100], n))
            ok += 1
srv.stop()
assert_no_secrets([w.log_path], [key])
lat.sort()
out = {"seed": SEED, "calls": S * C, "ok": ok, "cancelled_by_lease_loss": err, "seconds": round(wall, 1),
       "p50_s": round(lat[len(lat) // 2], 3), "max_s": round(lat[-1], 3), "faults": faults}
json.dump(out, open(os.path.join(T, "faults.json"), "w"))
print("safety faults ok: %s" % json.dumps(out))
