#!/usr/bin/env bash
# shed worker through a forward proxy from its environment, as libcurl did:
# a small python3 proxy (CONNECT tunnels and absolute-form requests, logging
# what it saw, requiring Proxy-Authorization) between the worker and
# `shed serve`: over http (absolute form seen), over https (CONNECT seen, TLS
# verified against the origin's name through worker_tls_lib's terminator and
# test CA, the key never in the clear), NO_PROXY going direct, the proxy
# refusing CONNECT (407, 403: the worker stops with the proxy and the status
# named, no credential in any log), the proxy down (retried, named), and an
# unsupported socks5h:// proxy refused at the start.
# timeout: 90
. "$(dirname "$0")/../lib/worker.sh"
command -v openssl >/dev/null || skip "the openssl CLI is not installed"
python3 - "$T" <<'PY'
import base64, os, socket, sys, threading, time
from worker_lib import *
from worker_tls_lib import make_pki, Terminator
sys.path.insert(0, os.environ["SHED_ROOT"] + "/tests/lib")
import tcprelay
T = sys.argv[1]

PROXY_PW = "pr0xy-s3cret"


class Proxy:
    """A forward proxy on 127.0.0.1: CONNECT host:port (then bytes both
    ways) and absolute-form requests (rewritten to origin form and sent on
    to the origin the request line names; responses piped back). Every
    request head it gets is recorded (method, target, whether it carried
    Proxy-Authorization / Authorization); `deny` answers every CONNECT with
    that status; a wrong or missing Proxy-Authorization gets 407."""

    def __init__(self, user=None, password=None, deny=None):
        self.auth = None
        if user is not None:
            self.auth = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        self.deny = deny
        self.seen = []          # (conn_no, method, target, proxy_auth_ok, has_authorization)
        self.tunnel_bytes = bytearray()  # client->origin bytes inside CONNECT tunnels (bounded)
        self.mixed_origins = 0  # absolute-form requests for another origin on one connection
        self.lock = threading.Lock()
        self.conns = 0
        self.ls, self.port = tcprelay.listen(128)
        tcprelay.accept_forever(self.ls, self._serve, self._next_conn)

    def _next_conn(self):
        with self.lock:
            self.conns += 1
            return self.conns

    @staticmethod
    def _head(sock, buf):
        while b"\r\n\r\n" not in buf:
            if len(buf) > 65536:
                return None, b""
            d = sock.recv(65536)
            if not d:
                return None, b""
            buf += d
        head, rest = buf.split(b"\r\n\r\n", 1)
        return head.decode("latin-1"), rest

    def _serve(self, c, n):
        c.settimeout(60)
        buf = b""
        up = None
        origin = None
        try:
            while True:
                head, buf = self._head(c, buf)
                if head is None:
                    return
                lines = head.split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                fields = {}
                for l in lines[1:]:
                    k, _, v = l.partition(":")
                    fields[k.strip().lower()] = v.strip()
                pa = fields.get("proxy-authorization")
                ok = self.auth is None or pa == self.auth
                with self.lock:
                    self.seen.append((n, method, target, pa is not None and ok, "authorization" in fields))
                if not ok:
                    c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                              b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
                    return
                if method == "CONNECT":
                    if self.deny:
                        c.sendall(("HTTP/1.1 %d No\r\nContent-Length: 0\r\n\r\n" % self.deny).encode())
                        return
                    host, port = target.rsplit(":", 1)
                    up = socket.create_connection((host, int(port)), timeout=30)
                    c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    if buf:
                        up.sendall(buf)
                    tcprelay.pipe(c, up, 120, self._record)
                    return
                # absolute form: http://host[:port]/path
                check(target.startswith("http://"), "absolute-form target: %r" % target)
                rest = target[len("http://"):]
                hostport, slash, path = rest.partition("/")
                if origin is None:
                    origin = hostport
                    h, _, p = hostport.rpartition(":") if ":" in hostport else (hostport, "", "80")
                    up = socket.create_connection((h, int(p)), timeout=30)
                    threading.Thread(target=self._back, args=(up, c), daemon=True).start()
                elif origin != hostport:
                    with self.lock:
                        self.mixed_origins += 1
                    return
                body_len = int(fields.get("content-length", "0"))
                while len(buf) < body_len:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                body, buf = buf[:body_len], buf[body_len:]
                out = ["%s /%s HTTP/1.1" % (method, path)]
                out += [l for l in lines[1:] if not l.lower().startswith("proxy-")]
                up.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
        except (OSError, ValueError):
            pass
        finally:
            for s in (c, up):  # shutdown first: _back may still be in recv on up
                if s:
                    for f in (lambda: s.shutdown(socket.SHUT_RDWR), s.close):
                        try:
                            f()
                        except OSError:
                            pass

    @staticmethod
    def _back(up, c):
        tcprelay.copy(up, c)
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _record(self, d):
        with self.lock:
            if len(self.tunnel_bytes) < (8 << 20):
                self.tunnel_bytes += d

    def stop(self):
        self.ls.close()


def with_env(env, fn):
    """Start a worker with these proxy variables (only the worker sees them:
    this script's own urllib calls to shed serve stay direct)."""
    names = ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
             "no_proxy", "NO_PROXY", "SSL_CERT_FILE"]
    saved = {k: os.environ.pop(k) for k in names if k in os.environ}
    os.environ.update(env)
    try:
        return fn()
    finally:
        for k in names:
            os.environ.pop(k, None)
        os.environ.update(saved)


pki = make_pki(T + "/pki")
srv, env, key = serve_with_key(T)
tls = Terminator(srv.port, pki["cert"], pki["key"])


def call_ok(w, what):
    sid = srv.session(env)
    r = srv.wait_result(sid, srv.tool(sid, "bash", {"command": "echo %s; env" % what}), 60)
    check(not r["is_error"] and text_of(r).startswith(what + "\n"), "%s: result %r" % (what, r))
    check(PROXY_PW not in text_of(r), "the proxy's password is not in the sandbox's environment")
    check(w.proc.poll() is None, "worker still running")


step("http:// base URL through http_proxy (credentials required): absolute-form requests")
px = Proxy("shed", PROXY_PW)
w = with_env({"http_proxy": "http://shed:%s@127.0.0.1:%d" % (PROXY_PW, px.port)},
             lambda: Worker(srv, env, T + "/key", T + "/ws-http", "--max-idle", "30", log_name="worker-http.log"))
call_ok(w, "via-http-proxy")
seen = list(px.seen)
check(seen and all(s[2].startswith("http://127.0.0.1:%d/v1/" % srv.port) for s in seen),
      "every request went through the proxy in absolute form: %r" % seen[:3])
check(all(s[3] for s in seen), "every request carried the proxy's credentials")
check(any(s[1] == "POST" for s in seen) and any("/work/poll" in s[2] for s in seen), "polls and posts: %r" % seen[:5])
check(px.mixed_origins == 0, "no connection carried two origins")
check("through the proxy http://127.0.0.1:%d (from http_proxy)" % px.port in w.log(), "the log says which proxy")
check(w.stop() == 0, "worker exits 0")

step("https:// base URL through HTTPS_PROXY: CONNECT, TLS verified against the origin's name")
px2 = Proxy("shed", PROXY_PW)
base = "https://localhost:%d" % tls.port
w = with_env({"HTTPS_PROXY": "http://shed:%s@127.0.0.1:%d" % (PROXY_PW, px2.port), "SSL_CERT_FILE": pki["ca"],
              "http_proxy": "http://127.0.0.1:1"},
             lambda: Worker(srv, env, T + "/key", T + "/ws-https", "--max-idle", "30", base_url=base,
                            log_name="worker-https.log"))
call_ok(w, "via-connect")
seen = list(px2.seen)
check(seen and all(s[1] == "CONNECT" and s[2] == "localhost:%d" % tls.port for s in seen),
      "only CONNECT localhost:%d reached the proxy: %r" % (tls.port, seen[:3]))
check(all(s[3] and not s[4] for s in seen), "CONNECT carried the proxy's credentials, never an Authorization")
check(len(px2.tunnel_bytes) > 1000 and key.encode() not in px2.tunnel_bytes and b"/v1/" not in px2.tunnel_bytes,
      "the API key and paths travel only inside TLS (%d tunnel bytes)" % len(px2.tunnel_bytes))
check("localhost" in tls.sni and tls.handshakes >= 1, "SNI localhost, %d handshakes" % tls.handshakes)
check(len(seen) <= 8 and tls.handshakes == len(seen),
      "tunnels are kept and reused: %d CONNECTs, one TLS session in each (%d)" % (len(seen), tls.handshakes))
check("through the proxy http://127.0.0.1:%d (from HTTPS_PROXY)" % px2.port in w.log(), "the log names the proxy")
check(w.stop() == 0, "worker exits 0")

step("NO_PROXY exempts the base URL's host: direct")
dead = free_port()
w = with_env({"http_proxy": "http://127.0.0.1:%d" % dead, "NO_PROXY": "example.com, 127.0.0.0/8"},
             lambda: Worker(srv, env, T + "/key", T + "/ws-noproxy", "--max-idle", "30",
                            log_name="worker-noproxy.log"))
call_ok(w, "direct")
check("direct, not through the proxy in http_proxy (NO_PROXY exempts it)" in w.log(), "the log says why direct")
check(w.stop() == 0, "worker exits 0")


def stops(name, envv, want):
    w = with_env(envv, lambda: Worker(srv, env, T + "/key", T + "/ws-" + name, "--max-idle", "30", base_url=base,
                                      log_name="worker-%s.log" % name))
    rc = w.wait(45)
    log = w.log()
    check(rc != 0, "%s: the worker stops (exit %s)" % (name, rc))
    for s in want:
        check(s in log, "%s: %r in the log:\n%s" % (name, s, log[-1500:]))
    check(log.count(want[0]) <= 3, "%s: no retry loop" % name)
    return log


step("the proxy refuses CONNECT: 407 (wrong credentials), 403 (not allowed)")
px3 = Proxy("shed", PROXY_PW)
stops("407", {"HTTPS_PROXY": "http://shed:wrong-%s@127.0.0.1:%d" % (PROXY_PW, px3.port), "SSL_CERT_FILE": pki["ca"]},
      ["the proxy http://127.0.0.1:%d (from HTTPS_PROXY) refused CONNECT to localhost:%d: HTTP 407" % (px3.port, tls.port),
       "(authentication failed); correct the user:password in HTTPS_PROXY"])
check(all(s[1] == "CONNECT" and not s[4] for s in px3.seen), "only CONNECTs, without the key: %r" % px3.seen)
px4 = Proxy(deny=403)
stops("403", {"https_proxy": "localhost:%d" % px4.port, "SSL_CERT_FILE": pki["ca"]},  # a name, no scheme
      ["the proxy http://localhost:%d (from https_proxy) refused CONNECT to localhost:%d: HTTP 403" % (px4.port, tls.port),
       "NO_PROXY"])

step("the proxy is down: retried with backoff, the error names the proxy")
dead = free_port()
w = with_env({"ALL_PROXY": "http://u:%s@127.0.0.1:%d" % (PROXY_PW, dead), "SSL_CERT_FILE": pki["ca"]},
             lambda: Worker(srv, env, T + "/key", T + "/ws-down", "--max-idle", "30", base_url=base,
                            log_name="worker-down.log"))
w.wait_log(r"connect to the proxy http://127\.0\.0\.1:%d \(from ALL_PROXY\) for localhost:%d: "
           r"Connection refused" % (dead, tls.port), 30)
w.wait_log(r"backing off", 10)
check(w.stop() == 0, "worker exits 0 on SIGTERM")

step("a socks5h:// proxy is refused at the start, naming the variable")
w = with_env({"https_proxy": "socks5h://u:%s@127.0.0.1:1080" % PROXY_PW},
             lambda: Worker(srv, env, T + "/key", T + "/ws-socks", base_url=base, log_name="worker-socks.log"))
rc = w.wait(20)
check(rc != 0 and "https_proxy: SOCKS proxies (socks5h://) are not supported" in w.log(),
      "refused (exit %s):\n%s" % (rc, w.log()[-1000:]))

assert_no_secrets([T + "/" + f for f in os.listdir(T) if f.endswith(".log")], [key, PROXY_PW,
                  base64.b64encode(("shed:%s" % PROXY_PW).encode()).decode()])
print("ok")
PY
