#!/usr/bin/env bash
# The worker's admin socket: `list` shows the running session (and no
# credential), `kill` ends a session mid-call (error result posted, sandbox
# gone, item stopped, audited, counted), and another uid cannot use it.
# timeout: 120
. "$(dirname "$0")/../lib/worker.sh"
command -v setpriv >/dev/null || { echo "skip: setpriv (util-linux) is missing"; exit 77; }
PUB=$(mktemp -d /tmp/shed-admin.XXXXXX)
at_exit "rm -rf '$PUB'"
chmod 755 "$PUB"
python3 - "$T" "$PUB" <<'PY'
import os, sys, time, json, subprocess, urllib.request, socket
from worker_lib import *
T, PUB = sys.argv[1], sys.argv[2]
SHED = os.environ["SHED"]
sock = PUB + "/admin.sock"
mport = free_port()

step("a path that exists and is not a socket is refused")
open(T + "/notsock", "w").write("x")
r = subprocess.run([SHED, "worker", "--environment-id", "env_x", "--environment-key", "k", "--base-url",
                    "http://127.0.0.1:9", "--state-dir", T + "/ws0", "--admin-socket", T + "/notsock"],
                   capture_output=True, text=True, timeout=30)
check(r.returncode != 0 and "not a socket" in r.stderr, "not-a-socket refused: %d %r" % (r.returncode, r.stderr))

audit = T + "/audit.log"
step("a stale socket is replaced: one nobody listens on, and one still listening that never answers")
st = socket.socket(socket.AF_UNIX); st.bind(sock); st.close()
p = subprocess.Popen([SHED, "worker", "--environment-id", "env_x", "--environment-key", "k", "--base-url",
                      "http://127.0.0.1:9", "--state-dir", T + "/ws1", "--admin-socket", sock],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
deadline, seen = time.time() + 30, ""
while time.time() < deadline and "admin socket" not in seen and p.poll() is None:
    seen += p.stderr.readline()
p.kill(); p.wait()
check("another process" not in seen and "admin socket" in seen, "unbound stale socket replaced: %r" % seen)
# what a killed worker's listening socket looks like while a copy of its fd
# outlives it: connections queue, nobody answers
st = socket.socket(socket.AF_UNIX)
if os.path.exists(sock): os.unlink(sock)
st.bind(sock); st.listen(4)
srv, env, key, w = serve_and_worker(T, "--max-idle", "60", "--admin-socket", sock,
                                    "--metrics-listen", "127.0.0.1:%d" % mport, "--audit-log", audit)
w.wait_log(r"admin socket")
st.close()
check(os.stat(sock).st_mode & 0o777 == 0o600, "socket mode 0600: %o" % os.stat(sock).st_mode)

step("a second worker on the same live admin socket is refused")
r = subprocess.run([SHED, "worker", "--environment-id", "env_x", "--environment-key", "k", "--base-url",
                    "http://127.0.0.1:9", "--state-dir", T + "/ws2", "--admin-socket", sock],
                   capture_output=True, text=True, timeout=60)
check(r.returncode != 0 and "another process is serving it" in r.stderr, "live socket kept: %d %r" % (r.returncode, r.stderr))

def admin(*args, ok=True):
    r = subprocess.run([SHED, "worker", "admin", "--socket", sock] + list(args), capture_output=True, text=True, timeout=60)
    if ok:
        check(r.returncode == 0, "shed worker admin %s: %d %s %s" % (args, r.returncode, r.stdout, r.stderr))
    return r

def raw(req, user=None):
    code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n"
            "try: s.sendall(sys.argv[2].encode()+b'\\n')\nexcept OSError: pass\n"
            "print(s.makefile().readline().strip())\n")
    cmd = ["python3", "-c", code, sock, json.dumps(req)]
    if user:
        cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)

sid = srv.session(env)
srv.wait_result(sid, srv.tool(sid, "bash", {"command": "echo warm"}), 60)
step("list: the session, its sandbox, its call in flight; no credential")
tid = srv.tool(sid, "bash", {"command": "echo started > started; sleep 30; echo finished > finished"})
ws = os.path.join(T, "wstate", "sessions", sid, "workspace")
deadline = time.time() + 30
while not os.path.exists(ws + "/started") and time.time() < deadline: time.sleep(0.1)
lst = json.loads(admin("list", "--json").stdout)
check(lst["ok"] and len(lst["sessions"]) == 1, "one session listed: %r" % lst)
se = lst["sessions"][0]
check(se["session_id"] == sid and se["state"] == "running" and se["calls_served"] >= 1, "session row: %r" % se)
check(isinstance(se["sandbox_pid"], int) and se["sandbox_pid"] > 1 and isinstance(se["host_uid"], int), "sandbox: %r" % se)
check(se["current_call"] and se["current_call"]["tool"] == "bash" and se["current_call"]["running_ms"] >= 0, "call: %r" % se)
check(os.path.exists("/proc/%d" % se["sandbox_pid"]), "sandbox init alive")
table = admin("list").stdout
check(sid in table and "bash (" in table, "table: %r" % table)
raw_list = raw({"cmd": "list"}).stdout
check(key not in raw_list and "token" not in raw_list and "secret" not in raw_list, "no credential in list")
check(not json.loads(raw({"cmd": "bogus"}).stdout)["ok"], "unknown command is an error")
e = json.loads(raw({"cmd": "kill"}).stdout)
check(not e["ok"] and "session_id" in e["error"], "missing field named: %r" % e)
for junk in ("not json", "[1,2]", '{"cmd": 7}', "x" * 300000):
    c = socket.socket(socket.AF_UNIX); c.connect(sock)
    try: c.sendall(junk.encode() + b"\n")
    except OSError: pass
    ans = json.loads(c.makefile().readline())
    c.close()
    check(ans["ok"] is False and ans["error"], "junk %r... refused: %r" % (junk[:20], ans))
e = json.loads(raw({"cmd": "kill", "session_id": "sesn_nope"}).stdout)
check(not e["ok"] and "sesn_nope" in e["error"], "unknown session: %r" % e)

step("another uid cannot use it: the socket mode, then SO_PEERCRED")
r = raw({"cmd": "list"}, user=65534)
check(r.returncode != 0 and "Permission denied" in r.stderr, "uid 65534 cannot connect: %r %r" % (r.stdout, r.stderr))
os.chmod(sock, 0o666)
r = raw({"cmd": "list"}, user=65534)
check(sid not in r.stdout and '"ok": false' in r.stdout.replace('"ok":false', '"ok": false'), "uid 65534 refused by SO_PEERCRED: %r %r" % (r.stdout, r.stderr))
os.chmod(sock, 0o600)
w.wait_log(r"admin: refused a connection from uid 65534")

step("kill mid-call")
t0 = time.time()
out = admin("kill", sid, "--reason", "stuck in a test").stdout
check(json.loads(out)["ok"], "kill answer: %r" % out)
res = srv.wait_result(sid, tid, 30)
check(res["is_error"] and "killed by the worker's operator: stuck in a test" in text_of(res), "error result: %r" % res)
check(time.time() - t0 < 25, "the call was cut, not waited for")
deadline = time.time() + 30
while time.time() < deadline and (os.path.exists("/proc/%d" % se["sandbox_pid"]) or
                                  any(x["state"] != "stopped" for x in srv.work_of(env, sid))):
    time.sleep(0.1)
check(not os.path.exists("/proc/%d" % se["sandbox_pid"]), "sandbox init gone")
check(all(x["state"] == "stopped" for x in srv.work_of(env, sid)), "item stopped: %r" % srv.work_of(env, sid))
check(not os.path.exists(ws + "/finished"), "the call did not finish")
m = metrics_page(mport)
check('shed_kills_total{reason="admin"} 1' in m, "kills metric: %r" % [l for l in m.splitlines() if "kills" in l])
lst = json.loads(admin("list", "--json").stdout)
check(all(x["session_id"] != sid or x["state"] in ("ending", "stopping") for x in lst["sessions"]), "no longer served: %r" % lst)
check(w.stop() == 0, "worker exit")
check(not os.path.exists(sock), "socket removed at exit")
recs = [json.loads(l) for l in open(audit)]
kills = [x for x in recs if x["event"] == "kill"]
check(len(kills) == 1 and kills[0]["by"] == "admin" and kills[0]["reason"] == "admin" and kills[0]["session_id"] == sid,
      "kill audited: %r" % kills)
ends = [(x["event"], x["reason"]) for x in recs
        if x["event"] in ("sandbox.destroyed", "work.stopped") and x.get("session_id") == sid]
check(sorted(ends) == [("sandbox.destroyed", "admin"), ("work.stopped", "admin")],
      "the end of the killed session is audited as an admin kill: %r" % ends)
r = subprocess.run([SHED, "audit", "verify", audit], capture_output=True, text=True)
check(r.returncode == 0, "audit verify: %s %s" % (r.stdout, r.stderr))
srv.stop()
assert_no_secrets([audit, w.log_path], [key])
print("admin kill ok")
PY
