#!/usr/bin/env bash
# A slow skill download does not hold up the worker (issue #9): the lease is
# kept by the heartbeat meanwhile (a 2 s lease, a download held by the proxy
# until the test lets it go, at least 4 s), other sessions are served
# meanwhile, the session's own first call waits for its skill; a session
# terminated during its download is stopped once the download ends (the
# session is retrieved again after the set-up) and torn down cleanly.
# timeout: 120
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, re, sys, time
from worker_lib import *
from skills_lib import *
T = sys.argv[1]
srv, env, key = serve_with_key(T, lease_ttl=2)
slow, _ = upload_skill(srv, "slow-skill", {"data.txt": "slow"})
import threading
gate = threading.Event()
px = ContentProxy(srv.host, srv.port, {}, slow_skills={slow: gate})
ag = agent(srv, [slow])
w = Worker(srv, env, T + "/key", T + "/wstate", "--max-idle", "30", base_url=px.url)

step("session A (slow skill) and session B (none): B is served while A downloads")
a = session(srv, env, ag)["id"]
b = session(srv, env)["id"]
t0 = time.time()
ta = srv.tool(a, "bash", {"command": "cat /workspace/skills/slow-skill/data.txt"})
tb = srv.tool(b, "bash", {"command": "echo b"})
rb = srv.wait_result(b, tb, 60)
check(text_of(rb).strip() == "b", "B served while A's download is held: %r" % rb)
time.sleep(4)  # two lease lifetimes with the download still held
check(ta not in srv.results(a), "A's call waits for its skill")
gate.set()
ra = srv.wait_result(a, ta, 60)
print("A answered %.1f s after its call" % (time.time() - t0))
check(text_of(ra).strip() == "slow" and not ra["is_error"], "A's skill is there for its first call: %r" % ra)
log = w.log()
check("lease lost" not in log, "the heartbeat kept A's lease during the download")
check(all(x["state"] != "stopped" for x in srv.work_of(env, a)), "A's item still held")

step("a session terminated while its skill downloads: torn down, nothing left")
gate.clear()
c = session(srv, env, ag)["id"]
srv.tool(c, "bash", {"command": "true"})
w.wait_log(r"session=%s.*sandbox ready" % c, 30)
srv.terminate(c)
time.sleep(1)
gate.set()  # the download ends after the session did: the item is stopped, not left reconnecting
wait_for(lambda: all(x["state"] == "stopped" for x in srv.work_of(env, c)), "C's item stopped", 40)
wait_for(lambda: not os.path.exists(os.path.join(T, "wstate", "sessions", c)), "C's directory removed", 20)
check(not re.search(r"session=%s.*event stream ended" % c, w.log()), "C never reconnected to a closed stream")
check(w.stop() == 0, "worker exit status")
px.stop(); srv.stop()
print("skills slow ok")
PY
