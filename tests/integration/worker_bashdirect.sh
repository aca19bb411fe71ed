#!/usr/bin/env bash
# The worker's direct bash path (init lends the session's shell; the worker
# writes the command and reads the output on its loop): timeouts, a stop
# request mid-call, the shell killed mid-call, restart, huge output, a
# command larger than a pipe buffer, background output between calls, an
# output flood, and the workspace watchdog killing everything during a call.
# Each time the results are the toolset's (docs/toolset.md) and the next
# call gets a working shell.
# timeout: 150
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import json, os, re, sys, time
from worker_lib import *
T = sys.argv[1]
pol = T + "/policy.json"
json.dump({"limits": {"workspaceMax": "16M"}}, open(pol, "w"))
srv, env, key, w = serve_and_worker(T, "--max-idle", "60", "--policy", pol, lease_ttl=4)
sid = srv.session(env)

def bash(inp, timeout=60):
    if isinstance(inp, str):
        inp = {"command": inp}
    return srv.wait_result(sid, srv.tool(sid, "bash", inp), timeout)

def alive(tag):
    r = bash("echo alive-%s" % tag)
    check(text_of(r) == "alive-%s" % tag and not r["is_error"], "a working shell after %s: %r" % (tag, r))

step("state persists on the lent shell; exit codes")
r = bash("export X=kept; cd /tmp; echo start")
check(text_of(r) == "start" and not r["is_error"], "first call: %r" % r)
r = bash("echo $X $PWD")
check(text_of(r) == "kept /tmp", "state kept: %r" % r)
r = bash("false")
check(r["is_error"] and text_of(r) == "exit 1", "non-zero exit: %r" % r)
r = bash({"command": 5})
check(r["is_error"] and text_of(r) == "bash: command must be a string", "bad input: %r" % r)
r = bash({})
check(r["is_error"] and text_of(r) == "bash: command is required", "no command: %r" % r)

step("timeout_ms: the group killed, the next call gets a fresh shell")
t0 = time.time()
r = bash({"command": "sleep 30 & echo started; sleep 30", "timeout_ms": 700})
check(r["is_error"] and text_of(r) == "bash: bash command timed out after 700ms", "timeout: %r" % r)
check(time.time() - t0 < 20, "timed out in time")
r = bash("echo ${X:-fresh}; pgrep -c sleep || true")
check(text_of(r).split() == ["fresh", "0"], "fresh shell, its group gone: %r" % r)

step("the shell killed mid-call")
bash("export X=again")
r = bash("kill -9 $$")
check(r["is_error"] and text_of(r) == "bash: bash session terminated", "killed shell: %r" % r)
r = bash("echo ${X:-fresh}")
check(text_of(r) == "fresh", "fresh shell after the death: %r" % r)

step("restart, with and without a command")
bash("export X=before")
r = bash({"restart": True})
check(not r["is_error"] and text_of(r) == "bash session restarted", "restart: %r" % r)
r = bash("echo ${X:-gone}")
check(text_of(r) == "gone", "restart dropped the state: %r" % r)
bash("export X=before")
r = bash({"restart": True, "command": "echo ${X:-gone2}"})
check(text_of(r) == "gone2", "restart with a command: %r" % r)

step("huge output: the last 100 KiB, marked truncated")
r = bash("seq 1 400000; echo the-end")
t = text_of(r)
check(t.startswith("[output truncated]\n") and t.endswith("400000\nthe-end"), "truncated head: %r" % t[:60])
check(len(t) <= 100 * 1024 + 40, "bounded: %d chars" % len(t))
r = bash("head -c 3000000 /dev/zero | tr '\\0' x; echo")
check(len(text_of(r)) <= 100 * 1024 + 40 and text_of(r).endswith("xxx"), "3 MB line: %d" % len(text_of(r)))

step("a command larger than a pipe buffer (1 MiB)")
big = "x" * (1 << 20)
r = bash(": '%s'; echo ${#BASH_COMMAND} ok" % big, 90)
check(text_of(r).endswith("ok") and not r["is_error"], "big command: %r" % text_of(r)[:80])
r = bash("printf %%s '%s' | wc -c" % ("y" * 300000))
check(text_of(r).strip() == "300000", "300 KB argument: %r" % r)

step("background output between calls is not the next call's")
r = bash("(sleep 1; echo late-output) & echo bg-started")
check(text_of(r) == "bg-started", "bg start: %r" % r)
time.sleep(2.0)
r = bash("echo now")
check(text_of(r) == "now", "stale output dropped: %r" % r)

step("an output flood in the background: calls still end, memory bounded")
r = bash("yes flood & echo flood-started")
t = text_of(r)
check("flood-started" in t or t.startswith("[output truncated]\n"), "flood start: %r" % t[-80:])
for i in range(3):
    r = bash("echo marker-%d" % i, 60)
    t = text_of(r)
    # the flood interleaves with the call's own output (as with the
    # reference): the marker may be cut off with the head, never unbounded
    check(("marker-%d" % i in t or t.startswith("[output truncated]\n")) and len(t) <= 100 * 1024 + 40,
          "call during a flood: %d chars: %r" % (len(t), t[-60:]))
r = bash("kill $(jobs -p) 2>/dev/null; wait; echo stopped", 60)
check("stopped" in text_of(r), "flood stopped: %r" % text_of(r)[-80:])
alive("flood")
rss = int(re.search(r"VmRSS:\s+(\d+)", open("/proc/%d/status" % w.proc.pid).read()).group(1))
check(rss < 64 * 1024, "worker RSS after floods: %d kB" % rss)

step("a stop request mid-call cancels the direct call")
bash("export X=cancel")
tid = srv.tool(sid, "bash", {"command": "sleep 30; touch finished"})
w.wait_log(r"running call %s" % tid)
time.sleep(0.3)
active = [x for x in srv.work_of(env, sid) if x["state"] == "active"]
check(len(active) == 1, "one active item: %r" % srv.work_of(env, sid))
t0 = time.time()
srv.call("POST", "/v1/environments/%s/work/%s/stop" % (env, active[0]["id"]), {"force": False})
r = srv.wait_result(sid, tid, 30)
check(r["is_error"] and text_of(r) == "bash: This operation was aborted", "cancelled: %r" % r)
check(time.time() - t0 < 20, "cancelled in time")
ws = os.path.join(T, "wstate", "sessions", sid, "workspace")
time.sleep(0.5)
check(not os.path.exists(os.path.join(ws, "finished")), "the call did not finish")

step("the session comes back: a fresh shell")
r = srv.wait_result(sid, srv.tool(sid, "bash", {"command": "echo ${X:-fresh-after-stop}"}), 60)
check(text_of(r) == "fresh-after-stop", "after the stop: %r" % r)

step("the workspace watchdog kills everything during a direct call")
r = bash("head -c 64M /dev/zero > fill; sleep 20; echo never", 60)
t = text_of(r)
check(r["is_error"], "limit: an error: %r" % r)
check("bash: bash session terminated" in t and "shed: the workspace grew over its limit" in t, "limit text: %r" % r)
check(len(r["content"]) == 2, "the toolset's result and the limit's text: %r" % r)
r = bash("rm -f fill; echo cleaned")
check(text_of(r) == "cleaned", "a fresh shell after the limit: %r" % r)
w.wait_log(r"hit a limit: disk")

res = srv.results(sid)
check(all(len(v) == 1 for v in res.values()), "one result per call")
check(w.stop() == 0, "worker exit")
srv.stop()
print("worker bash direct ok")
PY
