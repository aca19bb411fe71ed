"""Per-call request cost of `shed serve` on a worker's path (python3 stdlib),
driven by bench/serve.sh (SHED_URL, SHED_ADMIN_KEY, SHED_PID): one session
with two SSE streams open (the driver's and the worker's), then N calls of
  POST .../events agent.tool_use      (admin key, as the agent side)
  POST .../events user.tool_result    (the work item's sessions token)
one after the other on kept-alive connections. Prints p50/p99 of each
request's round trip, of tool_use POST sent -> that event read on each
stream (all 2N reads, counted after the calls), and the server's
CPU time per call (utime+stime ticks / calls). Bounded: N calls
(BENCH_APPEND_CALLS, default 1000), every socket with a timeout."""
import base64
import json
import os
import socket
import threading
import time

URL = os.environ["SHED_URL"]
ADMIN = os.environ["SHED_ADMIN_KEY"]
PID = int(os.environ["SHED_PID"])
HOST, PORT = URL[len("http://"):].rsplit(":", 1)
PORT = int(PORT)
N = int(os.environ.get("BENCH_APPEND_CALLS", "1000"))


class Conn:
    """HTTP/1.1 keep-alive with Content-Length bodies only (what serve sends here)."""

    def __init__(self):
        self.s = socket.create_connection((HOST, PORT), timeout=30)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def call(self, method, path, body=None, auth=None):
        data = json.dumps(body).encode() if body is not None else b""
        h = "%s %s HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: %d\r\n" % (
            method, path, auth or ("x-api-key: " + ADMIN), len(data))
        if data:
            h += "Content-Type: application/json\r\n"
        self.s.sendall(h.encode() + b"\r\n" + data)
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        n = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v)
        while len(self.buf) < n:
            self.buf += self._recv()
        text, self.buf = self.buf[:n], self.buf[n:]
        return status, (json.loads(text) if text else None)

    def _recv(self):
        d = self.s.recv(65536)
        if not d:
            raise OSError("connection closed")
        return d


def ok(c, method, path, body=None, want=200, auth=None):
    st, js = c.call(method, path, body, auth)
    assert st == want, (method, path, st, js)
    return js


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def ticks():
    with open("/proc/%d/stat" % PID) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


admin = Conn()
env = ok(admin, "POST", "/v1/environments", {"name": "bench", "config": {"type": "self_hosted"}})["id"]
key = ok(admin, "POST", "/v1/environments/%s/keys" % env, want=201)["key"]
sid = ok(admin, "POST", "/v1/sessions", {"environment_id": env})["id"]
w = ok(admin, "GET", "/v1/environments/%s/work/poll?block_ms=999" % env, auth="Authorization: Bearer " + key)
sec = w["secret"].replace("-", "+").replace("_", "/")
tok = json.loads(base64.b64decode(sec + "=" * (-len(sec) % 4)))["sessions_token"]
ok(admin, "POST", "/v1/environments/%s/work/%s/ack" % (env, w["id"]),
   auth="Authorization: Bearer " + tok)
worker = Conn()
wauth = "Authorization: Bearer " + tok

seen = {}  # (stream, event id) -> time read
lock = threading.Lock()


def reader(k):
    s = socket.create_connection((HOST, PORT), timeout=30)
    s.sendall(("GET /v1/sessions/%s/events/stream HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\n\r\n"
               % (sid, ADMIN)).encode())
    buf = b""
    while True:
        try:
            d = s.recv(65536)
        except OSError:
            return
        if not d:
            return
        now = time.perf_counter()
        buf += d
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            for line in block.split(b"\n"):
                i = line.find(b'"id":"sevt_')
                if i >= 0:
                    eid = line[i + 6:line.index(b'"', i + 6)].decode()
                    with lock:
                        seen[(k, eid)] = now


for k in range(2):
    threading.Thread(target=reader, args=(k,), daemon=True).start()
time.sleep(0.3)

use_rtt, res_rtt, push = [], [], []
sent = {}  # tool_use id -> time its POST was sent
t_first = time.perf_counter()
c0 = ticks()
for i in range(N):
    t0 = time.perf_counter()
    ev = ok(admin, "POST", "/v1/sessions/%s/events" % sid,
            {"events": [{"type": "agent.tool_use", "id": "x", "name": "bash",
                         "input": {"command": "echo %d" % i}}]})["data"][0]
    t1 = time.perf_counter()
    ok(worker, "POST", "/v1/sessions/%s/events" % sid,
       {"events": [{"type": "user.tool_result", "tool_use_id": ev["id"],
                    "content": [{"type": "text", "text": "%d\n" % i}]}]}, auth=wauth)
    t2 = time.perf_counter()
    use_rtt.append((t1 - t0) * 1000)
    res_rtt.append((t2 - t1) * 1000)
    sent[ev["id"]] = t0
el = time.perf_counter() - t_first
c1 = ticks()
time.sleep(0.5)  # the last events reach the readers
with lock:
    for eid, t0 in sent.items():
        for k in range(2):
            if (k, eid) in seen:
                push.append((seen[(k, eid)] - t0) * 1000)
print("%d calls in %.2f s: tool_use POST p50 %.3f ms p99 %.3f ms | tool_result POST p50 %.3f ms p99 %.3f ms"
      % (N, el, pct(use_rtt, 50), pct(use_rtt, 99), pct(res_rtt, 50), pct(res_rtt, 99)))
if push:
    print("tool_use POST -> read on a stream: p50 %.3f ms p99 %.3f ms (%d reads)" % (pct(push, 50), pct(push, 99), len(push)))
print("serve CPU per call (2 requests + 2 pushes): %.3f ms" % ((c1 - c0) * 1000.0 / os.sysconf("SC_CLK_TCK") / N))
