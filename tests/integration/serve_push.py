"""serve_push.sh: an append sends its events to the session's waiting
streams itself (no wake-up of the stream through libmicrohttpd, no query).
Checks every stream gets every event once, in order, whole, whatever the
stream's socket does meanwhile."""
import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_lib import Server, SSE, check, eq, fail  # noqa: E402

T = os.environ["T"]
srv = Server(T, "--sync", "normal", "--sse-ping-ms", "2000")
env = srv.env()["id"]
sid = srv.session(env)["id"]


def post(text, n=1):
    evs = [{"type": "agent.tool_use", "name": "bash", "input": {"command": text + "-%d" % i}} for i in range(n)]
    return [e["id"] for e in srv.post_events(sid, evs)["data"]]


def drain(s, want, timeout=20):
    """The next len(want) non-ping events on s: their ids, checked whole."""
    got = []
    deadline = time.time() + timeout
    while len(got) < len(want):
        r = s.next(timeout=max(0.1, deadline - time.time()))
        if r is None:
            fail("stream: %d of %d events, then nothing (closed=%s)" % (len(got), len(want), s.closed))
        ev, data = r
        d = json.loads(data)  # a torn or interleaved event would not parse
        eq(ev, d["type"], "event line matches its data")
        got.append(d["id"])
    eq(got, want, "events in order, each once")


print("--- two streams, 50 single appends and 10 of 10 events: each event once, in order")
a, b = SSE(srv, sid), SSE(srv, sid)
eq(a.status, 200, "stream status")
check("transfer-encoding: chunked" not in a.head.lower(), "stream body is not chunked")
check("connection: close" in a.head.lower(), "stream says Connection: close")
time.sleep(0.2)
want = []
for i in range(50):
    want += post("one%d" % i)
for i in range(10):
    want += post("ten%d" % i, 10)
drain(a, want)
drain(b, want)

print("--- pings still come after direct sends, then events again")
time.sleep(2.3)
ev = a.next(timeout=5, skip_ping=False)
check(ev is not None and ev[0] == "ping", "a ping after 2 s idle: %r" % (ev,))
while True:  # b may have had a ping or two too
    ids = post("after-ping")
    r = b.next(timeout=5)
    check(r is not None, "event after ping")
    if json.loads(r[1])["id"] == ids[0]:
        break
drain(a, ids)

print("--- a stream whose client reads nothing: its socket fills, the rest is sent later, whole")
slow = socket.socket()
slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
slow.connect((srv.host, srv.port))
slow.sendall(("GET /v1/sessions/%s/events/stream HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\n\r\n"
              % (sid, srv.admin)).encode())
time.sleep(0.3)
fast = SSE(srv, sid)
time.sleep(0.2)
big = "x" * 1000000  # 12 MB in all: more than the socket buffers take
want2 = []
for i in range(12):
    want2 += [e["id"] for e in srv.post_events(
        sid, [{"type": "agent.tool_use", "name": "bash", "input": {"command": "%d %s" % (i, big)}}])["data"]]
drain(fast, want2)
# now read the slow one: head, then every event whole and in order
sse_slow = SSE.__new__(SSE)
sse_slow.sock, sse_slow.buf, sse_slow.raw, sse_slow.closed = slow, b"", b"", False
head = sse_slow._until(b"\r\n\r\n", 10)
check(head is not None and b" 200 " in head, "slow stream head: %r" % head)
sse_slow.chunked = False
drain(sse_slow, want2, timeout=30)
drain(a, want2)  # a had every event too

print("--- a stream whose client is gone (RST): appends go on, other streams unharmed")
gone = SSE(srv, sid)
drain(a, [])
ids = post("gone-probe")  # gone's stream has sent once and waits (no ping due)
for s_ in (a, fast, sse_slow):
    drain(s_, ids)
gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
gone.sock.close()
time.sleep(0.01)
want3 = []
for i in range(5):
    want3 += post("after-gone%d" % i)
drain(fast, want3)
drain(sse_slow, want3)
st, js, _ = srv.call("GET", "/v1/sessions/%s/events?limit=1000" % sid)
eq(st, 200, "list after a gone stream")

print("--- terminated: the event reaches every stream, then each ends")
term = [e["id"] for e in srv.post_events(sid, [{"type": "session.status_terminated"}])["data"]]
for s in (fast, sse_slow):
    drain(s, term, timeout=30)
    check(s.next(timeout=5) is None and s.closed, "stream ended after terminated")
eq(srv.stop(), 0, "serve exits 0")
print("serve push ok")
