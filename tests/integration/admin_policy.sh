#!/usr/bin/env bash
# Changing a running session's egress policy through the admin socket: a host
# the worker's policy lacks is refused (403), `policy` opens it, `--reset`
# closes it again; each change is audited with the old and new digests.
# timeout: 120
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, sys, time, json, subprocess, http.server, threading
from worker_lib import *
T = sys.argv[1]
SHED = os.environ["SHED"]
httpd = file_server(T + "/www", {"hello.txt": "hello after the policy change\n"})
port = httpd.server_address[1]
hosts = {"svc.test": "127.0.0.1", "other.test": "127.0.0.1"}
pol = T + "/policy.json"
json.dump({"network": {"allowedDomains": ["other.test:%d" % port], "staticHosts": hosts,
                       "allowCidrs": ["127.0.0.0/8"]}}, open(pol, "w"))
opened = T + "/open.json"
json.dump({"network": {"allowedDomains": ["other.test:%d" % port, "svc.test:%d" % port], "staticHosts": hosts,
                       "allowCidrs": ["127.0.0.0/8"]}}, open(opened, "w"))
bad = T + "/bad.json"
json.dump({"allowedDomains": ["svc.test"], "allowCidrs": ["not-a-cidr"]}, open(bad, "w"))
audit = T + "/audit.log"
sock = T + "/admin.sock"
srv, env, key, w = serve_and_worker(T, "--max-idle", "60", "--policy", pol, "--admin-socket", sock,
                                    "--audit-log", audit)
sid = srv.session(env)

def admin(*args, ok=True):
    r = subprocess.run([SHED, "worker", "admin", "--socket", sock] + list(args), capture_output=True, text=True, timeout=60)
    check((r.returncode == 0) == ok, "shed worker admin %s: %d %s %s" % (args, r.returncode, r.stdout, r.stderr))
    return r

def fetch():
    r = srv.wait_result(sid, srv.tool(sid, "bash", {"command":
        "curl -sS -m 10 -o body -w '%%{http_code}' http://svc.test:%d/hello.txt; echo; cat body 2>/dev/null" % port}), 60)
    return text_of(r)

step("the worker's policy lacks svc.test: 403")
out = fetch()
check(out.startswith("403"), "denied before the change: %r" % out)
step("a bad policy is refused, naming the field, and changes nothing")
r = admin("policy", sid, bad, ok=False)
check("allowCidrs" in r.stderr, "error names the field: %r" % r.stderr)
r = admin("policy", "sesn_nope", opened, ok=False)
check("sesn_nope" in r.stderr, "unknown session: %r" % r.stderr)
check(fetch().startswith("403"), "still denied")
step("policy opens svc.test")
r = json.loads(admin("policy", sid, opened).stdout)
check(r["ok"] and r["old_digest"] != r["new_digest"], "answer: %r" % r)
lst = json.loads(admin("list", "--json").stdout)["sessions"]
check(lst[0]["network_policy"] == "admin" and lst[0]["network_digest"] == r["new_digest"], "list shows it: %r" % lst)
out = fetch()
check(out.startswith("200") and "hello after the policy change" in out, "allowed after the change: %r" % out)
step("--reset closes it again")
r2 = json.loads(admin("policy", sid, "--reset").stdout)
check(r2["ok"] and r2["new_digest"] == r["old_digest"] and r2["old_digest"] == r["new_digest"], "reset answer: %r" % r2)
out = fetch()
check(out.startswith("403"), "denied after the reset: %r" % out)
check(w.stop() == 0, "worker exit")
recs = [json.loads(l) for l in open(audit)]
ch = [x for x in recs if x["event"] == "policy.changed"]
check(len(ch) == 2, "two policy changes audited: %r" % ch)
check(ch[0]["session_id"] == sid and ch[0]["by"] == "admin" and "svc.test:%d" % port in ch[0]["network"]["allowedDomains"]
      and ch[0]["new_digest"] == r["new_digest"], "open audited: %r" % ch[0])
check(ch[1]["policy"] == "worker" and ch[1]["new_digest"] == r["old_digest"], "reset audited: %r" % ch[1])
r = subprocess.run([SHED, "audit", "verify", audit], capture_output=True, text=True)
check(r.returncode == 0, "audit verify: %s %s" % (r.stdout, r.stderr))
srv.stop()
httpd.shutdown()
assert_no_secrets([audit, w.log_path], [key])
print("admin policy ok")
PY
