#!/usr/bin/env bash
# Escape campaign, second round (issue #10): from inside a real worker
# session (shed serve + shed worker). The worker's secrets — the environment
# key (file and value), the admin key, ANTHROPIC_* and other variables of the
# worker's own environment, the sessions token — appear nowhere a tool can
# read: not in bash's environment, not in any readable file or /proc entry of
# the sandbox; the worker's state dir, key file and audit log are not
# reachable; signals to init from a tool leave the session serving.
# timeout: 150
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, sys
from worker_lib import *
T = sys.argv[1]
os.environ["ANTHROPIC_API_KEY"] = "sk-ant-api03-escape2-worker-secret"
os.environ["SHED_ESCAPE2_SECRET"] = "escape2-worker-env-secret"
srv, env, key, w = serve_and_worker(T, "--max-idle", "60", "--audit-log", T + "/audit.log")
sid = srv.session(env)

def bash(cmd, timeout=60):
    r = srv.wait_result(sid, srv.tool(sid, "bash", {"command": cmd}), timeout)
    return r, text_of(r)

step("positive control: bash runs in the session's sandbox")
r, out = bash("id -u; echo ok > mark.txt; cat mark.txt")
check(not r["is_error"] and out.split() == ["1000", "ok"], "bash: %r" % r)

# every secret the worker holds; "sk-shed-" covers the sessions token too
# (sk-shed-req-..., only ever in the poll answer's secret), whose value this
# test cannot see. The patterns reach grep through a builtin printf and a
# pipe, so no process's command line or file in the sandbox holds them.
secrets = [key, ADMIN, "sk-shed-", "sk-ant-api03-escape2-worker-secret", "escape2-worker-env-secret"]
pats = "pats() { printf '%s\\n' " + " ".join("'%s'" % x for x in secrets) + "; }; "

step("the worker's secrets are nowhere in the sandbox (environment, files, /proc)")
r, out = bash(pats +
    "env | grep -c -F -f <(pats); "
    "cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n' | grep -c -F -f <(pats); "
    "grep -r -l -s -F -f <(pats) / --exclude-dir=proc --exclude-dir=usr 2>/dev/null | head -n 5; "
    "echo searched", timeout=120)
lines = out.split("\n")
check(lines[0] == "0", "a secret in bash's environment: %r" % out)
check(lines[1] == "0", "a secret in a readable /proc environ/cmdline: %r" % out)
check(lines[2:] == ["searched"], "a secret in a readable file: %r" % out)
r, out = bash("echo 'ANTHROPIC_API_KEY=x' > probe.env; grep -c -F -f <(printf '%s\\n' ANTHROPIC_API_KEY) probe.env; rm probe.env")
check(out == "1", "the search finds a planted string (control): %r" % out)
r, out = bash("cat /proc/1/environ 2>&1; echo")
check("Permission denied" in out, "init's environment is closed: %r" % out)

step("the worker's state dir, key file and audit log are not reachable")
wstate = os.path.join(T, "wstate")
for p in [wstate, wstate + "/sessions", T + "/key", T + "/audit.log", T + "/serve"]:
    r, out = bash("ls -d %s 2>&1; cat %s 2>&1 | head -c 200" % (p, p))
    check("No such file" in out and key not in out, "%s reachable: %r" % (p, out))
r, out = bash("ls -a /workspace; ls -d /workspace/..")
check(out.split()[:3] == [".", "..", "mark.txt"], "the workspace holds only the session's files: %r" % out)

step("signals to init from a tool: the session keeps serving")
# an ASan build's init has ASan's SIGSEGV handler (a pid namespace's init
# receives the signals it handles): -SEGV only on a normal build
segv = "" if b"__asan_init" in open(os.environ["SHED"], "rb").read() else "kill -SEGV 1;"
r, out = bash("kill -KILL 1; kill -STOP 1; %s kill -TERM 1; sleep 0.2; grep State /proc/1/status" % segv)
check(not r["is_error"] and "S (sleeping)" in out, "init after the signals: %r" % r)
r, out = bash("cat mark.txt")
check(out == "ok", "the same sandbox answers: %r" % r)

srv.terminate(sid)
check(w.stop() == 0, "worker exit status")
srv.stop()
print("escape2 worker: nothing leaked")
PY
