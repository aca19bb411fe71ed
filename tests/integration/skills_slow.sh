#!/usr/bin/env bash
# A slow skill download does not hold up the worker (issue #9): the lease is
# kept by the heartbeat meanwhile (a 2 s lease, a download held 6 s), other
# sessions are served at once, the session's own first call waits for its
# skill; a session terminated during its download is torn down cleanly.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
python3 "$(dirname "$0")/worker_lib.py" --check-sandbox || exit $?
python3 - "$T" <<'PY'
import os, re, sys, time
sys.path.insert(0, os.path.join(os.environ["SHED_ROOT"], "tests/integration"))
from worker_lib import *
from skills_lib import *
T = sys.argv[1]
srv = Server(T + "/serve", lease_ttl=2)
env = srv.environment(); kid, key = srv.new_key(env)
write_key_file(T + "/key", key)
slow, _ = upload_skill(srv, "slow-skill", {"data.txt": "slow"})
px = ContentProxy(srv.host, srv.port, {}, slow_skills={slow: 6})
ag = agent(srv, [slow])
w = Worker(srv, env, T + "/key", T + "/wstate", "--max-idle", "30", base_url=px.url)

step("session A (slow skill) and session B (none): B is served while A downloads")
a = session(srv, env, ag)["id"]
b = session(srv, env)["id"]
t0 = time.time()
ta = srv.tool(a, "bash", {"command": "cat /workspace/skills/slow-skill/data.txt"})
tb = srv.tool(b, "bash", {"command": "echo b"})
rb = srv.wait_result(b, tb, 30)
tb_done = time.time() - t0
check(text_of(rb).strip() == "b", "B served: %r" % rb)
check(ta not in srv.results(a), "A's call waits for its skill")
ra = srv.wait_result(a, ta, 60)
ta_done = time.time() - t0
print("B answered after %.1f s, A after %.1f s" % (tb_done, ta_done))
check(text_of(ra).strip() == "slow" and not ra["is_error"], "A's skill is there for its first call: %r" % ra)
check(ta_done >= 6, "A's first call came after the download")
check(tb_done < ta_done, "B did not wait for A's download")
log = w.log()
check("lease lost" not in log, "the heartbeat kept A's lease during the download")
check(all(x["state"] != "stopped" for x in srv.work_of(env, a)), "A's item still held")

step("a session terminated while its skill downloads: torn down, nothing left")
c = session(srv, env, ag)["id"]
srv.tool(c, "bash", {"command": "true"})
w.wait_log(r"session=%s.*sandbox ready" % c, 30)
srv.terminate(c)
wait_for(lambda: all(x["state"] == "stopped" for x in srv.work_of(env, c)), "C's item stopped", 40)
wait_for(lambda: not os.path.exists(os.path.join(T, "wstate", "sessions", c)), "C's directory removed", 20)
check(w.stop() == 0, "worker exit status")
px.stop(); srv.stop()
print("skills slow ok")
PY
