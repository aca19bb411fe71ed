#!/usr/bin/env bash
# Environment key handling: a group/world-readable key file is refused; a
# 401 makes the worker re-read its key file and go on with the rotated key;
# SIGHUP re-reads it too; a revoked key with no replacement stops the worker
# with a clear error. No key ever appears in the output.
# timeout: 120
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, sys, time, signal, subprocess
from worker_lib import *
T = sys.argv[1]
srv = Server(T + "/serve")
env = srv.environment()
k1id, k1 = srv.new_key(env)
kf = T + "/key"
write_key_file(kf, k1)

step("a key file readable by group or others is refused")
os.chmod(kf, 0o640)
r = subprocess.run([os.environ["SHED"], "worker", "--environment-id", env, "--environment-key-file", kf,
                    "--base-url", srv.url, "--state-dir", T + "/wstate"], capture_output=True, text=True, timeout=30)
check(r.returncode == 125 and "chmod 600" in r.stderr, "refused: %d %r" % (r.returncode, r.stderr))
check(k1 not in r.stderr + r.stdout, "no key in the message")
os.chmod(kf, 0o600)

w = Worker(srv, env, kf, T + "/wstate", "--max-idle", "60")
sid = srv.session(env)
srv.wait_result(sid, srv.tool(sid, "bash", {"command": "echo one"}))

step("rotate: new key in the file, old key revoked -> 401 -> re-read -> continue")
k2id, k2 = srv.new_key(env)
write_key_file(kf, k2)
srv.revoke_key(env, k1id)
w.wait_log(r"environment key changed on disk; retrying")
s2 = srv.session(env)
r = srv.wait_result(s2, srv.tool(s2, "bash", {"command": "echo two"}), 30)
check(text_of(r).strip() == "two", "served with the rotated key: %r" % r)

step("SIGHUP re-reads the key file")
k3id, k3 = srv.new_key(env)
write_key_file(kf, k3)
w.signal(signal.SIGHUP)
w.wait_log(r"SIGHUP: environment key reloaded \(changed\)")
srv.revoke_key(env, k2id)
s3 = srv.session(env)
r = srv.wait_result(s3, srv.tool(s3, "bash", {"command": "echo three"}), 30)
check(text_of(r).strip() == "three", "served after SIGHUP: %r" % r)
check("environment key changed on disk" in w.log(), "")

step("revoked with no replacement: the worker stops with a clear error")
srv.revoke_key(env, k3id)
rc = w.wait(60)
check(rc != 0, "non-zero exit after a permanent 401 (%s)" % rc)
check("poll failed permanently" in w.log(), "clear message")
srv.stop()
assert_no_secrets([w.log_path, srv.log_path], [k1, k2, k3, ADMIN])
print("worker keys ok")
PY
