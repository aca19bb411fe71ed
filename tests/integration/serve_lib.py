"""Helpers for the `shed serve` integration tests (python3 stdlib only):
start a real server on a free 127.0.0.1 port, call it, read its SSE streams.
Used by tests/integration/serve_*.sh and bench/serve.sh."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

ADMIN = "test-admin-key-0123456789abcdef"


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def eq(got, want, what):
    if got != want:
        fail("%s: got %r, expected %r" % (what, got, want))


class Server:
    def __init__(self, state_dir, *extra, admin=ADMIN, env=None):
        self.state_dir = state_dir
        self.extra = list(extra)
        self.admin = admin
        self.penv = env
        self.proc = None
        self.start()

    def start(self):
        shed = os.environ["SHED"]
        env = dict(os.environ if self.penv is None else self.penv)
        if self.admin:
            env["SHED_ADMIN_KEY"] = self.admin
        listen = "127.0.0.1:%d" % getattr(self, "port", 0)
        self.log = open(os.path.join(self.state_dir, "serve.log"), "a")
        self.proc = subprocess.Popen(
            [shed, "serve", "--listen", listen, "--state-dir", self.state_dir] + self.extra,
            stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)
        line = self.proc.stdout.readline()
        check(line.startswith("shed serve: listening on http://"), "ready line: %r" % line)
        self.url = line.strip().split("listening on ")[1]
        self.host, port = self.url[len("http://"):].rsplit(":", 1)
        self.port = int(port)
        return line

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                fail("shed serve did not exit within %ds of signal %d" % (timeout, sig))
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def conn(self, timeout=10):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def call(self, method, path, body=None, key=None, bearer=None, headers=None, raw=None,
             timeout=10):
        """Returns (status, parsed JSON or None, response headers)."""
        h = {"anthropic-version": "2023-06-01", "anthropic-beta": "managed-agents-2026-04-01"}
        if bearer is not None:
            h["Authorization"] = "Bearer " + bearer
        elif key is not None:
            h["x-api-key"] = key
        else:
            h["x-api-key"] = self.admin
        if headers:
            h.update(headers)
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            h["Content-Type"] = "application/json"
        c = self.conn(timeout)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            text = r.read()
            hd = {k.lower(): v for k, v in r.getheaders()}
            try:
                js = json.loads(text) if text else None
            except ValueError:
                js = {"raw": text}
            return r.status, js, hd
        finally:
            c.close()

    def ok(self, method, path, body=None, want=200, **kw):
        st, js, _ = self.call(method, path, body, **kw)
        if st != want:
            fail("%s %s: status %d, expected %d: %s" % (method, path, st, want, js))
        return js

    # conveniences
    def env(self, name="e"):
        return self.ok("POST", "/v1/environments", {"name": name, "config": {"type": "self_hosted"}})

    def env_key(self, env_id):
        return self.ok("POST", "/v1/environments/%s/keys" % env_id, want=201)["key"]

    def session(self, env_id, **fields):
        body = {"environment_id": env_id}
        body.update(fields)
        return self.ok("POST", "/v1/sessions", body)

    def poll(self, env_id, key, block_ms=None, reclaim=None, worker="w1"):
        q = []
        if block_ms is not None:
            q.append("block_ms=%d" % block_ms)
        if reclaim is not None:
            q.append("reclaim_older_than_ms=%d" % reclaim)
        path = "/v1/environments/%s/work/poll?beta=true%s" % (env_id, "".join("&" + x for x in q))
        st, js, _ = self.call("GET", path, bearer=key, headers={"Anthropic-Worker-ID": worker})
        if st == 204:
            return None
        if st != 200:
            fail("poll: %d %s" % (st, js))
        return js

    def post_events(self, sid, events, want=200, **kw):
        return self.ok("POST", "/v1/sessions/%s/events" % sid, {"events": events}, want=want, **kw)


def sessions_token(secret):
    import base64
    s = secret.replace("-", "+").replace("_", "/")
    s += "=" * (-len(s) % 4)
    return json.loads(base64.b64decode(s))["sessions_token"]


class SSE:
    """A raw SSE reader over a socket, with deadlines."""

    def __init__(self, server, sid, bearer=None, key=None):
        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        cred = ("Authorization: Bearer %s" % bearer) if bearer else ("x-api-key: %s" % (key or server.admin))
        req = ("GET /v1/sessions/%s/events/stream?beta=true HTTP/1.1\r\nHost: x\r\n%s\r\n"
               "Accept: text/event-stream\r\n\r\n" % (sid, cred))
        self.sock.sendall(req.encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n", 10)
        check(head is not None, "SSE: no response head")
        self.status = int(head.split(b" ")[1])
        self.head = head.decode("latin1")
        self.chunked = "transfer-encoding: chunked" in self.head.lower()
        self.raw = b""
        self.closed = False

    def _until(self, sep, timeout):
        deadline = time.time() + timeout
        while sep not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not d:
                return None
            self.buf += d
        i = self.buf.index(sep)
        out, self.buf = self.buf[:i], self.buf[i + len(sep):]
        return out

    def _recv(self, deadline):
        """Bytes from the socket; None on timeout, b"" at EOF (then closed)."""
        self.sock.settimeout(max(0.01, deadline - time.time()))
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            return None
        if not d:
            self.closed = True
        return d

    def _fill(self, timeout):
        """Move decoded body bytes into self.raw; False on EOF/timeout."""
        if not self.chunked:
            deadline = time.time() + timeout
            if self.buf:
                self.raw += self.buf
                self.buf = b""
                return True
            d = self._recv(deadline)
            if not d:
                return False
            self.raw += d
            return True
        size = self._until(b"\r\n", timeout)
        if size is None:
            return False
        n = int(size.split(b";")[0], 16)
        if n == 0:
            self.closed = True
            return False
        deadline = time.time() + timeout
        while len(self.buf) < n + 2:
            d = self._recv(deadline)
            if not d:
                return False
            self.buf += d
        self.raw += self.buf[:n]
        self.buf = self.buf[n + 2:]
        return True

    def next(self, timeout=10, skip_ping=True):
        """Next (event, data) or None on timeout/close."""
        deadline = time.time() + timeout
        while True:
            if b"\n\n" in self.raw:
                block, self.raw = self.raw.split(b"\n\n", 1)
                ev, data = None, []
                for line in block.decode().split("\n"):
                    if line.startswith("event:"):
                        ev = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip())
                if skip_ping and ev == "ping":
                    continue
                return ev, "\n".join(data)
            left = deadline - time.time()
            if left <= 0 or self.closed:
                return None
            self._fill(left)

    def close(self):
        self.sock.close()
