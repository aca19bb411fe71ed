"""Hundreds of concurrent long-polls and SSE streams on one `shed serve`:
all are answered, and the server's thread count does not grow with them
(waiting requests are suspended connections, not threads). Run by
serve_scale.sh."""
import os
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from serve_lib import Server, check, eq  # noqa: E402

T = os.environ["T"]
N = 250
srv = Server(T, "--sse-ping-ms", "5000")
e = srv.env("scale")
eid = e["id"]
key = srv.env_key(eid)


def threads():
    with open("/proc/%d/status" % srv.proc.pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])


base = threads()
print("--- server threads at rest: %d" % base, flush=True)


def open_raw(path, cred_header):
    s = socket.create_connection((srv.host, srv.port), timeout=10)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\nAnthropic-Worker-ID: scale\r\n\r\n" % (path, cred_header)).encode())
    return s


def read_all(socks, until, timeout):
    """Read from every socket until until(data) is true for each; returns data per socket."""
    sel = selectors.DefaultSelector()
    data = {s: b"" for s in socks}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    left = set(socks)
    deadline = time.time() + timeout
    while left and time.time() < deadline:
        for k, _ in sel.select(timeout=0.5):
            s = k.fileobj
            try:
                d = s.recv(65536)
            except BlockingIOError:
                continue
            if not d:
                sel.unregister(s)
                left.discard(s)
                continue
            data[s] += d
            if until(data[s]):
                sel.unregister(s)
                left.discard(s)
    return data, left


print("--- %d long-polls at once on an empty queue" % N, flush=True)
polls = [open_raw("/v1/environments/%s/work/poll?block_ms=999" % eid, "Authorization: Bearer " + key) for _ in range(N)]
time.sleep(0.3)
during = threads()
t0 = time.time()
data, left = read_all(polls, lambda d: b"\r\n\r\n" in d, 15)
check(not left, "%d long-polls never answered" % len(left))
check(all(d.startswith(b"HTTP/1.1 204") for d in data.values()), "every empty poll answers 204")
print("    all answered 204 within %.1f s; threads while waiting: %d" % (time.time() - t0, during), flush=True)
check(during <= base + 1, "threads grew with waiting polls: %d -> %d" % (base, during))
for s in polls:
    s.close()

print("--- %d SSE streams at once; one event reaches all" % N, flush=True)
sid = srv.session(eid)["id"]
streams = [open_raw("/v1/sessions/%s/events/stream" % sid, "x-api-key: " + srv.admin) for _ in range(N)]
head, left = read_all(streams, lambda d: b"\r\n\r\n" in d, 15)
check(not left, "%d streams never opened" % len(left))
during = threads()
check(during <= base + 1, "threads grew with open streams: %d -> %d" % (base, during))
srv.post_events(sid, [{"type": "agent.message", "content": [{"type": "text", "text": "to all"}]}])
got, left = read_all(streams, lambda d: b"to all" in d, 15)
check(not left, "%d streams did not get the event" % len(left))
print("    all %d streams got it; threads: %d" % (N, during), flush=True)
for s in streams:
    s.close()
time.sleep(0.5)
eq(srv.call("GET", "/v1/environments/%s" % eid)[0], 200, "still serving")
print("--- SIGTERM with 50 streams and 50 long-polls open: exits 0, every client sees the end", flush=True)
streams = [open_raw("/v1/sessions/%s/events/stream" % sid, "x-api-key: " + srv.admin) for _ in range(50)]
polls = [open_raw("/v1/environments/%s/work/poll?block_ms=999" % eid, "Authorization: Bearer " + key) for _ in range(50)]
time.sleep(0.3)
t0 = time.time()
eq(srv.stop(), 0, "exit status")
check(time.time() - t0 < 5, "shutdown took %.1f s" % (time.time() - t0))
data, left = read_all(streams + polls, lambda d: False, 5)
check(not left, "%d connections left open after the server exited" % len(left))
print("serve scale ok")
