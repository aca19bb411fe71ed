#!/usr/bin/env bash
# A session whose sandbox cannot be made is not left hanging: each of its
# calls gets an is_error result saying it was not run (and nothing runs on
# the host), the failure is logged with the fix, and the item ends after
# --max-idle. Provoked the way an operator would: a state directory under a
# directory the sandbox user cannot traverse.
# timeout: 120
. "$(dirname "$0")/../lib/worker.sh"
[ "$(id -u)" -eq 0 ] || skip "needs root (the sandbox user is another host uid only as root)"
python3 - "$T" <<'PY'
import os, sys, time
from worker_lib import *
T = sys.argv[1]
os.makedirs(T + "/private", mode=0o700)
os.chmod(T + "/private", 0o700)
import socket, subprocess, json, urllib.request
mport = free_port()
audit = T + "/audit.log"
srv, env, key, w = serve_and_worker(T, "--max-idle", "2",
                                    "--metrics-listen", "127.0.0.1:%d" % mport, "--audit-log", audit, state_dir=T + "/private/wstate")
sid = srv.session(env)
step("a call in a session without a sandbox gets an error result")
t1 = srv.tool(sid, "bash", {"command": "touch /tmp/shed-nosandbox-ran"})
r = srv.wait_result(sid, t1, 60)
check(r["is_error"], "is_error: %r" % r)
check("could not be created" in text_of(r) and "not run" in text_of(r), "text: %r" % text_of(r))
check(T not in text_of(r), "no host path in the agent's result: %r" % text_of(r))
check(not os.path.exists("/tmp/shed-nosandbox-ran"), "nothing ran on the host")
w.wait_log("chmod o\\+x")
step("the failure is counted and audited at its layer")
step("the failure is counted and audited at its layer (mount)")
page = metrics_page(mport)
check('shed_sandbox_failures_total{layer="mount"}' in page, "metric by layer: %s" %
      [l for l in page.splitlines() if l.startswith("shed_sandbox_failures_total")])
import urllib.error
try:
    urllib.request.urlopen("http://127.0.0.1:%d/readyz" % mport, timeout=10)
    check(False, "/readyz must be 503 after a failed sandbox creation")
except urllib.error.HTTPError as e:
    body = e.read().decode()
    check(e.code == 503 and "sandbox" in body and "layer mount" in body, "readyz: %d %r" % (e.code, body))
step("a second call too, then the item ends after idle")
r2 = srv.wait_result(sid, srv.tool(sid, "read", {"file_path": "x"}), 30)
check(r2["is_error"], "second call is_error: %r" % r2)
srv.idle(sid, "end_turn")
deadline = time.time() + 30
while time.time() < deadline and any(x["state"] != "stopped" for x in srv.work_of(env, sid)):
    time.sleep(0.1)
check(all(x["state"] == "stopped" for x in srv.work_of(env, sid)), "item stopped")
check(w.stop() == 0, "worker exit")
recs = [json.loads(l) for l in open(audit)]
failed = [r for r in recs if r["event"] == "sandbox.failed"]
check(failed and all(r["layer"] == "mount" for r in failed), "audit sandbox.failed layer: %r" % failed[:1])
check(subprocess.run([os.environ["SHED"], "audit", "verify", audit]).returncode == 0, "audit verifies")
srv.stop()
print("worker without a sandbox ok")
PY
