#!/usr/bin/env bash
# shed worker end to end against shed serve: all six tools in one session's
# sandbox, the workspace under --state-dir, no credential in any log.
# timeout: 120
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, re, sys, time
from worker_lib import *
T = sys.argv[1]
srv, env, key, w = serve_and_worker(T, "--max-idle", "30")
sid = srv.session(env)

step("write, read, edit, glob, grep, bash")
r = srv.wait_result(sid, srv.tool(sid, "write", {"file_path": "src/a.txt", "content": "alpha\nbeta\n"}))
check(not r["is_error"], "write: %r" % r)
srv.wait_result(sid, srv.tool(sid, "write", {"file_path": "src/b.py", "content": "print('beta two')\n"}))
r = srv.wait_result(sid, srv.tool(sid, "read", {"file_path": "src/a.txt"}))
check(text_of(r) == "alpha\nbeta\n", "read: %r" % text_of(r))
r = srv.wait_result(sid, srv.tool(sid, "edit", {"file_path": "src/a.txt", "old_string": "beta", "new_string": "gamma"}))
check(not r["is_error"], "edit: %r" % r)
r = srv.wait_result(sid, srv.tool(sid, "read", {"file_path": "src/a.txt"}))
check(text_of(r) == "alpha\ngamma\n", "read after edit: %r" % text_of(r))
r = srv.wait_result(sid, srv.tool(sid, "glob", {"pattern": "**/*.py"}))
check("b.py" in text_of(r) and "a.txt" not in text_of(r), "glob: %r" % text_of(r))
r = srv.wait_result(sid, srv.tool(sid, "grep", {"pattern": "beta"}))
check("b.py" in text_of(r), "grep: %r" % text_of(r))
r = srv.wait_result(sid, srv.tool(sid, "bash", {"command": "cd src && cat a.txt | wc -l && export X=persist"}))
check(text_of(r).strip() == "2" and not r["is_error"], "bash: %r" % r)
r = srv.wait_result(sid, srv.tool(sid, "bash", {"command": "pwd; echo $X; env | grep -c ANTHROPIC_ || true"}))
out = text_of(r).split()
check(out[0] == "/workspace/src" and out[1] == "persist" and out[2] == "0", "bash is stateful, clean env: %r" % out)
r = srv.wait_result(sid, srv.tool(sid, "bash", {"command": "exit 3"}))
check(r["is_error"], "non-zero exit is an error result: %r" % r)
r = srv.wait_result(sid, srv.tool(sid, "read", {"file_path": "/etc/shadow"}))
check(r["is_error"], "read outside the workdir is refused: %r" % r)

step("the workspace lives under --state-dir/sessions/<id>/workspace")
ws = os.path.join(T, "wstate", "sessions", sid, "workspace")
check(os.path.isfile(os.path.join(ws, "src", "a.txt")), "workspace file on the host at " + ws)

step("each result posted once")
res = srv.results(sid)
check(all(len(v) == 1 for v in res.values()), "one result per call")

step("terminate: workspace removed, item stopped, worker exits 0 on SIGTERM")
srv.terminate(sid)
deadline = time.time() + 20
while time.time() < deadline and os.path.exists(os.path.join(T, "wstate", "sessions", sid)):
    time.sleep(0.1)
check(not os.path.exists(os.path.join(T, "wstate", "sessions", sid)), "session dir removed")
check(all(x["state"] == "stopped" for x in srv.work_of(env, sid)), "work item stopped")
check(w.stop() == 0, "worker exit status")
srv.stop()
assert_no_secrets([w.log_path, srv.log_path], [key, ADMIN])
log = w.log()
check(not re.search(r"sk-shed-(req|env)-(?!\[REDACTED\])", log), "no token in the log")
print("worker tools ok")
PY
