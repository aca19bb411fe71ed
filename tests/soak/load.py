#!/usr/bin/env python3
"""Load: N concurrent sessions with mixed tools against `shed serve` and one
`shed worker`, for a bounded time (python3 stdlib only; self-stopping).

    load.py SCRATCH SESSIONS SECONDS SEED [--rss-check]

Each agent loops write -> read -> edit -> glob -> grep -> bash on files of
its own session, checking every result. At the end (after a clean SIGTERM
of the worker): every call has exactly one result, every bash call ran
exactly once (a line per call in runs.txt), no result was wrong. Reports
throughput, latency percentiles (post -> result seen by the agent, polled:
+-50 ms) and the worker's RSS after warm-up (a fifth of the run) and at
the end; with --rss-check, the end must be within 10 % of the warm-up.
Figures go to SCRATCH/load.json."""
import atexit
import json
import os
import random
import sys
import threading
import time
import http.client

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from worker_lib import Server, Worker, check, step, text_of, write_key_file  # noqa: E402

T, N, SECS, SEED = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
RSS_CHECK = "--rss-check" in sys.argv
srv = Server(T + "/serve", lease_ttl=30)
env = srv.environment("soak")
kid, key = srv.new_key(env)
write_key_file(T + "/key", key)
w = Worker(srv, env, T + "/key", T + "/wstate", "--max-idle", "3600", "--max-sessions", str(N + 10))


def cleanup():
    """On any exit (a failed check included) leave no server or worker running."""
    for p in (w.proc, srv.proc):
        if p and p.poll() is None:
            p.kill()
            p.wait()


atexit.register(cleanup)
stop = threading.Event()
lat, wrong, gave_up = [], [], []
lock = threading.Lock()
ncalls = [0]


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def latest(sid):
    """The newest events of a session (one cheap request)."""
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    c.request("GET", "/v1/sessions/%s/events?limit=5&order=desc" % sid,
              headers={"x-api-key": "sk-shed-admin-worker-tests-0123456789", "anthropic-version": "2023-06-01"})
    r = c.getresponse()
    body = r.read()
    c.close()
    return json.loads(body)["data"] if r.status == 200 else []


def call(sid, name, inp):
    t0 = time.time()
    tid = srv.tool(sid, name, inp)
    delay = 0.02
    deadline = t0 + 180
    while time.time() < deadline:
        try:
            for e in latest(sid):
                if e.get("type") == "user.tool_result" and e.get("tool_use_id") == tid:
                    with lock:
                        lat.append(time.time() - t0)
                        ncalls[0] += 1
                    return e
        except (OSError, ValueError):
            pass
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    raise TimeoutError("no result for %s in 180 s" % tid)


def agent(i, sid):
    rng = random.Random(SEED * 7919 + i)
    n = 0
    try:
        while not stop.is_set():
            tag = "a%d-n%d-%x" % (i, n, rng.getrandbits(20))
            f = "d%d/f%d.txt" % (n % 3, n % 5)
            def expect(cond, what, r):
                if not cond:
                    wrong.append("agent %d %s: %r" % (i, what, text_of(r)[:200]))
            r = call(sid, "write", {"file_path": f, "content": "alpha %s\nbeta\n" % tag})
            expect(not r["is_error"], "write", r)
            r = call(sid, "read", {"file_path": f})
            expect(not r["is_error"] and ("alpha " + tag) in text_of(r), "read", r)
            r = call(sid, "edit", {"file_path": f, "old_string": "beta", "new_string": "gamma " + tag})
            expect(not r["is_error"], "edit", r)
            r = call(sid, "glob", {"pattern": "**/*.txt"})
            expect(not r["is_error"] and f.split("/")[1] in text_of(r), "glob", r)
            r = call(sid, "grep", {"pattern": "gamma " + tag})
            expect(not r["is_error"] and f in text_of(r), "grep", r)
            r = call(sid, "bash", {"command": "echo %s >> runs.txt; echo %s" % (tag, tag)})
            expect(not r["is_error"] and text_of(r).strip() == tag, "bash", r)
            n += 1
    except (SystemExit, TimeoutError) as e:
        gave_up.append("agent %d: %s" % (i, e))


sids = [srv.session(env) for _ in range(N)]
step("%d sessions, %ds, seed %d" % (N, SECS, SEED))
ths = [threading.Thread(target=agent, args=(i, s), daemon=True) for i, s in enumerate(sids)]
t0 = time.time()
for t in ths:
    t.start()
    time.sleep(0.01)
warm = None
samples = []
while time.time() - t0 < SECS:
    time.sleep(min(5, SECS / 10))
    el = time.time() - t0
    rss = rss_kb(w.proc.pid)
    samples.append((round(el), rss))
    if warm is None and el >= SECS / 5:
        warm = (rss, ncalls[0], el)
    if gave_up:
        break
end_rss = rss_kb(w.proc.pid)
calls_at_end, el_end = ncalls[0], time.time() - t0
stop.set()
for t in ths:
    t.join(200)
wall = time.time() - t0
check(not gave_up, "; ".join(gave_up[:5]))
rc = w.stop(120)
check(rc == 0, "worker exit %s" % rc)
step("checking every session's history")
total = dup = missing = 0
for i, sid in enumerate(sids):
    evs = srv.events(sid)
    uses = [e["id"] for e in evs if e.get("type") == "agent.tool_use"]
    res = {}
    for e in evs:
        if e.get("type") == "user.tool_result":
            res[e["tool_use_id"]] = res.get(e["tool_use_id"], 0) + 1
    total += len(uses)
    missing += sum(1 for u in uses if u not in res)
    dup += sum(1 for u in uses if res.get(u, 0) > 1)
    runs = open(os.path.join(T, "wstate", "sessions", sid, "workspace", "runs.txt")).read().split() \
        if os.path.exists(os.path.join(T, "wstate", "sessions", sid, "workspace", "runs.txt")) else []
    for tag in set(runs):
        if runs.count(tag) != 1:
            wrong.append("session %d: bash call %s ran %d times" % (i, tag, runs.count(tag)))
srv.stop()
lat.sort()
pct = lambda p: round(lat[min(len(lat) - 1, int(len(lat) * p))] * 1000, 1) if lat else None
out = {"sessions": N, "seconds": round(wall, 1), "seed": SEED, "calls": total, "missing": missing, "duplicated": dup,
       "wrong": len(wrong), "calls_per_s": round(calls_at_end / el_end, 1),
       "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
       "worker_rss_kb": {"after_warmup": warm[0] if warm else None, "end": end_rss, "samples": samples}}
if warm:
    out["worker_rss_kb"]["end_vs_warmup_pct"] = round(100.0 * (end_rss - warm[0]) / warm[0], 1)
json.dump(out, open(os.path.join(T, "load.json"), "w"), indent=1)
print("load: %s" % json.dumps({k: v for k, v in out.items() if k != "worker_rss_kb"}))
print("worker RSS (kB): warm-up %s, end %s (%s%%)" % (out["worker_rss_kb"]["after_warmup"], end_rss,
                                                    out["worker_rss_kb"].get("end_vs_warmup_pct")))
check(missing == 0, "%d calls have no result" % missing)
check(dup == 0, "%d calls have more than one result" % dup)
check(not wrong, "; ".join(wrong[:5]))
if RSS_CHECK:
    check(warm and end_rss <= warm[0] * 1.10, "worker RSS grew more than 10%% after warm-up: %s -> %s kB" % (
        warm and warm[0], end_rss))
print("load ok")
