#!/usr/bin/env python3
"""kill -9 of the worker and of the server at seeded random points, while
agents keep sessions busy with tool calls; then checks the exactly-once
guarantee of docs/reliability.md and that nothing is left behind.

    safety_kill.py SCRATCH_DIR TRIALS SEED [SECONDS_BUDGET]

Each agent call is `bash` running
    echo S:<tag> >> runs.txt; sleep <0..0.6>; echo E:<tag> >> runs.txt; echo <tag>
with a tag unique to the post (so a post the agent repeats after a server
crash is a different call). After the last trial the worker is stopped
with SIGTERM (a clean shutdown) and these must hold:
  1. every agent.tool_use in every session has exactly one user.tool_result;
  2. no call ran twice: S:<tag> appears at most once in the workspace;
  3. a success result means the call ran to completion exactly once
     (S and E once, the output is the tag); an error result means it ran
     at most once (the worker died or the lease was lost while it ran:
     "it may have partially run");
  4. a call that had not started when a worker died was run by the next one
     (the last call of each agent got a successful result after recovery);
  5. no sandbox process, cgroup, mount or directory of any worker of this
     run is left over.
Figures go to SCRATCH_DIR/kill.json."""
import atexit
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from worker_lib import Server, Worker, check, fail, free_port, step, text_of, write_key_file  # noqa: E402

T = sys.argv[1]
TRIALS = int(sys.argv[2])
SEED = int(sys.argv[3])
BUDGET = float(sys.argv[4]) if len(sys.argv) > 4 else 600
rng = random.Random(SEED)
AGENTS = 3


class FixedServer(Server):
    """A Server that comes back on the same port after kill -9."""

    def __init__(self, state_dir, port):
        self._port = port
        super().__init__(state_dir, lease_ttl=2, extra=("--listen", "127.0.0.1:%d" % port))


def cleanup():
    """On any exit (a failed check included) leave no server or worker running."""
    for name in ("w", "srv"):
        o = globals().get(name)
        p = getattr(o, "proc", None)
        if p and p.poll() is None:
            p.kill()
            p.wait()


atexit.register(cleanup)
port = free_port()
srv = FixedServer(T + "/serve", port)
env = srv.environment("safety-kill")
kid, key = srv.new_key(env)
write_key_file(T + "/key", key)
wstate = T + "/wstate"
worker_pids = set()
w = Worker(srv, env, T + "/key", wstate, "--max-idle", "600")
worker_pids.add(w.proc.pid)
sids = [srv.session(env) for _ in range(AGENTS)]
stop_agents = threading.Event()
agent_errors = []
posted = {i: 0 for i in range(AGENTS)}
last_ok = {}


def agent(i, sid):
    arng = random.Random(SEED * 1000 + i)
    n = 0
    try:
        while not stop_agents.is_set():
            tag = "a%d-n%d-%06x" % (i, n, arng.getrandbits(24))
            n += 1
            cmd = "echo S:%s >> runs.txt; sleep %.2f; echo E:%s >> runs.txt; echo %s" % (
                tag, arng.uniform(0, 0.6), tag, tag)
            tid = srv.tool(sid, "bash", {"command": cmd})
            posted[i] += 1
            r = srv.wait_result(sid, tid, 120)
            if not r["is_error"]:
                last_ok[i] = tag
    except SystemExit:
        agent_errors.append("agent %d gave up (server unreachable or no result in 120 s)" % i)


ths = [threading.Thread(target=agent, args=(i, s), daemon=True) for i, s in enumerate(sids)]
for t in ths:
    t.start()

t0 = time.time()
kills = {"worker": 0, "server": 0}
done = 0
for trial in range(TRIALS):
    if time.time() - t0 > BUDGET:
        break
    time.sleep(rng.uniform(0.2, 2.0))
    victim = rng.choice(["worker", "worker", "server"])
    if victim == "worker":
        w.kill9()
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0, 1.5))
        w.start()
        worker_pids.add(w.proc.pid)
    else:
        srv.proc.kill()
        srv.proc.wait()
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0, 1.0))
        for attempt in range(50):
            try:
                srv = FixedServer(T + "/serve", port)
                break
            except SystemExit:
                time.sleep(0.2)
        else:
            fail("server did not come back on port %d" % port)
    kills[victim] += 1
    done += 1
    if agent_errors:
        break
step("%d kills (%s) in %.0fs; letting the agents finish" % (done, kills, time.time() - t0))
# After the last kill, every agent must get a call through to a success result:
# the calls that had not started are run by the recovered worker.
marks = {i: last_ok.get(i) for i in range(AGENTS)}
deadline = time.time() + 120
while time.time() < deadline and any(last_ok.get(i) == marks[i] for i in range(AGENTS)) and not agent_errors:
    time.sleep(0.2)
stop_agents.set()
for t in ths:
    t.join(150)
check(not agent_errors, "; ".join(agent_errors))
check(all(last_ok.get(i) != marks[i] for i in range(AGENTS)), "an agent got no successful call after the last kill")
step("clean shutdown of the worker (SIGTERM)")
rc = w.stop(60)
check(rc == 0, "worker exit status %s after SIGTERM" % rc)

# 1-3: exactly one result per call; no call ran twice.
stats = {"calls": 0, "ok": 0, "restarted": 0, "other_error": 0, "partial_runs": 0}
for i, sid in enumerate(sids):
    evs = srv.events(sid)
    uses = {e["id"]: e for e in evs if e.get("type") == "agent.tool_use"}
    res = {}
    for e in evs:
        if e.get("type") == "user.tool_result":
            res.setdefault(e["tool_use_id"], []).append(e)
    path = os.path.join(wstate, "sessions", sid, "workspace", "runs.txt")
    lines = open(path).read().split() if os.path.exists(path) else []
    for tid, u in uses.items():
        stats["calls"] += 1
        m = re.search(r"echo S:(\S+) ", u["input"]["command"])
        tag = m.group(1)
        rs = res.get(tid, [])
        check(len(rs) == 1, "session %d call %s (%s): %d results" % (i, tid, tag, len(rs)))
        r = rs[0]
        starts, ends = lines.count("S:" + tag), lines.count("E:" + tag)
        check(starts <= 1, "call %s (%s) ran %d times" % (tid, tag, starts))
        if not r["is_error"]:
            stats["ok"] += 1
            check(starts == 1 and ends == 1 and text_of(r).strip() == tag,
                  "call %s (%s): success result but S=%d E=%d output %r" % (tid, tag, starts, ends, text_of(r)[:200]))
        else:
            if "worker restarted while this call was running" in text_of(r):
                stats["restarted"] += 1
            else:
                stats["other_error"] += 1
                t = text_of(r)[:80]
                stats.setdefault("other_error_texts", {})
                stats["other_error_texts"][t] = stats["other_error_texts"].get(t, 0) + 1
            if starts == 1 and ends == 0:
                stats["partial_runs"] += 1
    extra = set(res) - set(uses)
    check(not extra, "results for calls that do not exist: %s" % list(extra)[:3])

# 5: nothing left behind.
leftover = []
sbdir = os.path.join(wstate, "sandboxes")
for root, dirs, files in os.walk(sbdir):
    # the worker keeps its sandboxes' state in sandboxes/sandboxes/<label>
    leftover += ["file " + os.path.join(root, f) for f in files]
    leftover += ["directory " + os.path.join(root, d) for d in dirs if d != "sandboxes"]
# The worker labels a session's sandbox with the session id; unlabelled
# sandboxes are sb-<creator pid>-...: both kinds of this run are looked for.
def ours(label):
    m = re.match(r"sb-(\d+)-", label)
    return label in sids or bool(m and int(m.group(1)) in worker_pids)


# sandboxes' cgroups live in <controller>/<the worker's own cgroup>/shed/<label>
for top, dirs, _ in os.walk("/sys/fs/cgroup"):
    if top.count("/") > 7:
        dirs[:] = []
        continue
    if os.path.basename(top) == "shed":
        leftover += ["cgroup " + os.path.join(top, d) for d in dirs if ours(d)]
        dirs[:] = []
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        cg = open("/proc/%s/cgroup" % p).read()
    except OSError:
        continue
    for m in re.finditer(r"/shed/([A-Za-z0-9_-]+)", cg):
        if ours(m.group(1)):
            leftover.append("process %s in cgroup %s" % (p, m.group(0)))
            break
with open("/proc/self/mountinfo") as f:
    for line in f:
        if T in line:
            leftover.append("mount " + line.split()[4])
check(not leftover, "left over after the clean shutdown: %s" % leftover[:10])
srv.stop()
out = {"seed": SEED, "trials": done, "kills": kills, "seconds": round(time.time() - t0, 1), **stats,
       "agent_posts": sum(posted.values())}
json.dump(out, open(os.path.join(T, "kill.json"), "w"))
print("safety kill ok: %s" % json.dumps(out))
