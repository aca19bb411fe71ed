#!/usr/bin/env bash
# shed worker over https: shed serve behind a TLS terminator (python3 ssl)
# whose certificate a test CA (openssl CLI) signed. Trusted through
# SSL_CERT_FILE, every call works (poll, stream, results; SNI sent); a
# certificate nobody trusts, or one for another host name, stops the worker
# with an error naming the fix; a plain http:// worker never loads libssl.
# timeout: 120
. "$(dirname "$0")/../lib/worker.sh"
command -v openssl >/dev/null || skip "the openssl CLI is not installed"
python3 - "$T" <<'PY'
import os, sys, time
from worker_lib import *
from worker_tls_lib import make_pki, Terminator
T = sys.argv[1]
pki = make_pki(T + "/pki")
srv, env, key = serve_with_key(T)
up = int(srv.url.rsplit(":", 1)[1])

step("https base URL, CA trusted through SSL_CERT_FILE: tool calls answered")
tls = Terminator(up, pki["cert"], pki["key"])
os.environ["SSL_CERT_FILE"] = pki["ca"]
w = Worker(srv, env, T + "/key", T + "/wstate", "--max-idle", "30",
           base_url="https://localhost:%d" % tls.port, log_name="worker-tls.log")
sid = srv.session(env)
r = srv.wait_result(sid, srv.tool(sid, "bash", {"command": "echo over tls"}), 60)
check(text_of(r).strip() == "over tls" and not r["is_error"], "result over https: %r" % r)
r = srv.wait_result(sid, srv.tool(sid, "write", {"file_path": "x.txt", "content": "y" * 200000}), 60)
check(not r["is_error"], "a large tool input over https: %r" % r)
check(tls.handshakes >= 1 and "localhost" in tls.sni, "TLS handshakes %d, SNI %r" % (tls.handshakes, tls.sni))
maps = open("/proc/%d/maps" % w.proc.pid).read()
check("libssl.so" in maps, "libssl is loaded for an https base URL")
check("libcurl" not in maps, "libcurl is not loaded by the worker")
check(w.stop() == 0, "worker exits 0 on SIGTERM")
del os.environ["SSL_CERT_FILE"]

step("a plain http:// worker never loads libssl")
w = Worker(srv, env, T + "/key", T + "/wstate", "--max-idle", "30", log_name="worker-plain.log")
sid2 = srv.session(env)
srv.wait_result(sid2, srv.tool(sid2, "bash", {"command": "true"}), 60)
maps = open("/proc/%d/maps" % w.proc.pid).read()
check("libssl" not in maps and "libcrypto" not in maps and "libcurl" not in maps,
      "no libssl, libcrypto or libcurl in a plain worker")
w.stop()

def refused(name, base_url, cert_file, want):
    if cert_file:
        os.environ["SSL_CERT_FILE"] = cert_file
    w = Worker(srv, env, T + "/key", T + "/wstate-" + name, "--max-idle", "30", base_url=base_url,
               log_name="worker-%s.log" % name)
    os.environ.pop("SSL_CERT_FILE", None)
    rc = w.wait(60)
    log = w.log()
    check(rc != 0, "%s: the worker stops (exit %s)" % (name, rc))
    check("failed verification" in log and want in log and "SSL_CERT_FILE" in log,
          "%s: the error names the failure and the fix:\n%s" % (name, log[-1500:]))
    check(log.count("failed verification") <= 3, "%s: no retry loop:\n%s" % (name, log[-1500:]))

step("a certificate nobody trusts: the worker stops with the fix named")
rogue = Terminator(up, pki["rogue_cert"], pki["rogue_key"])
refused("rogue", "https://localhost:%d" % rogue.port, None, "self-signed certificate")

step("the test CA is trusted but the server is not who the URL names (an address, the cert says localhost)")
refused("mismatch", "https://127.0.0.1:%d" % tls.port, pki["ca"], "mismatch")

step("the test CA's cert, without SSL_CERT_FILE: the default store does not trust it")
refused("untrusted", "https://localhost:%d" % tls.port, None, "unable to get local issuer certificate")

assert_no_secrets([T + "/" + f for f in os.listdir(T) if f.endswith(".log")], [key])
print("ok")
PY
