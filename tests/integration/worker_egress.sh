#!/usr/bin/env bash
# A session's sandbox reaches the network only through the worker's egress
# proxy, by the policy: an allowed name works, everything else is refused and
# logged with the session id.
# timeout: 90
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, sys, time, json, subprocess, http.server, threading
from worker_lib import *
T = sys.argv[1]
httpd = file_server(T + "/www", {"hello.txt": "hello through the egress proxy\n"})
port = httpd.server_address[1]
pol = T + "/policy.json"
json.dump({"network": {"allowedDomains": ["svc.test:%d" % port], "staticHosts": {"svc.test": "127.0.0.1", "other.test": "127.0.0.1"},
                       "allowCidrs": ["127.0.0.0/8"]}}, open(pol, "w"))
srv, env, key, w = serve_and_worker(T, "--max-idle", "60", "--policy", pol)
sid = srv.session(env)
step("allowed: svc.test:%d through the proxy" % port)
r = srv.wait_result(sid, srv.tool(sid, "bash", {"command": "curl -sS -m 10 http://svc.test:%d/hello.txt" % port}), 30)
check(text_of(r).strip() == "hello through the egress proxy", "allowed fetch: %r" % r)
step("refused: another name, another port, a direct connection")
r = srv.wait_result(sid, srv.tool(sid, "bash", {"command": "curl -sS -m 10 -o /dev/null -w '%%{http_code}' http://other.test:%d/hello.txt; echo" % port}), 30)
check("403" in text_of(r), "other name refused: %r" % r)
r = srv.wait_result(sid, srv.tool(sid, "bash", {"command": "curl -sS -m 5 --noproxy '*' http://127.0.0.1:%d/hello.txt" % port}), 30)
check(r["is_error"], "no direct route out of the sandbox: %r" % r)
w.wait_log(r"egress \w+ other.test:%d denied" % port)
check(w.stop() == 0, "worker exit")
srv.stop()
httpd.shutdown()
print("worker egress ok")
PY
