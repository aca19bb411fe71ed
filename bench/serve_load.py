"""Load driver for bench/serve.sh (python3 stdlib only). Against a running
`shed serve` (SHED_URL, SHED_ADMIN_KEY, SHED_PID) it measures:
  1. poll -> ack -> heartbeat -> stop cycles per second, 1 and 50 workers;
  2. event post -> SSE delivery latency p50/p99, 1 and 50 concurrent streams;
  3. the server's CPU while 50 workers long-poll an empty queue;
and an anchor in the same run: GET .../work/stats requests per second (one
read through the same HTTP + auth path), to put the others in proportion.
Every loop is bounded in time; nothing here talks to anything but loopback."""
import base64
import http.client
import json
import os
import socket
import statistics
import threading
import time

URL = os.environ["SHED_URL"]
ADMIN = os.environ["SHED_ADMIN_KEY"]
PID = int(os.environ["SHED_PID"])
HOST, PORT = URL[len("http://"):].rsplit(":", 1)
PORT = int(PORT)
DUR = float(os.environ.get("BENCH_SECONDS", "3"))


class Client:
    def __init__(self):
        self.c = http.client.HTTPConnection(HOST, PORT, timeout=30)

    def call(self, method, path, body=None, bearer=None, headers=None):
        h = {"Authorization": "Bearer " + bearer} if bearer else {"x-api-key": ADMIN}
        if headers:
            h.update(headers)
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            h["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.c.request(method, path, body=data, headers=h)
                r = self.c.getresponse()
                text = r.read()
                return r.status, (json.loads(text) if text else None)
            except (http.client.HTTPException, OSError):
                self.c.close()
                self.c = http.client.HTTPConnection(HOST, PORT, timeout=30)
                if attempt:
                    raise


admin = Client()


def ok(method, path, body=None, want=200, **kw):
    st, js = admin.call(method, path, body, **kw)
    assert st == want, (method, path, st, js)
    return js


def new_env():
    e = ok("POST", "/v1/environments", {"name": "bench", "config": {"type": "self_hosted"}})
    k = ok("POST", "/v1/environments/%s/keys" % e["id"], want=201)["key"]
    return e["id"], k


def token(secret):
    s = secret.replace("-", "+").replace("_", "/")
    return json.loads(base64.b64decode(s + "=" * (-len(s) % 4)))["sessions_token"]


def cpu_ticks():
    with open("/proc/%d/stat" % PID) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])  # utime + stime


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def anchor():
    env, key = new_env()
    c = Client()
    n, t0 = 0, time.time()
    while time.time() - t0 < DUR / 2:
        c.call("GET", "/v1/environments/%s/work/stats" % env, bearer=key)
        n += 1
    return n / (time.time() - t0)


def anchor_write():
    env, key = new_env()
    c = Client()
    n, t0 = 0, time.time()
    while time.time() - t0 < DUR / 2:
        c.call("POST", "/v1/sessions", {"environment_id": env})
        n += 1
    return n / (time.time() - t0)


def cycles(workers):
    env, key = new_env()
    # the queue: created by a feeder thread while the workers drain it
    stop = threading.Event()
    done = [0] * workers

    def feeder():
        c = Client()
        while not stop.is_set():
            st, js = c.call("GET", "/v1/environments/%s/work/stats" % env, bearer=key)
            if js["depth"] < 100:
                for _ in range(50):
                    c.call("POST", "/v1/sessions", {"environment_id": env})
            else:
                time.sleep(0.01)

    def worker(i):
        c = Client()
        while not stop.is_set():
            st, w = c.call("GET", "/v1/environments/%s/work/poll?block_ms=999" % env, bearer=key,
                           headers={"Anthropic-Worker-ID": "bench-%d" % i})
            if st != 200:
                continue
            tok = token(w["secret"])
            base = "/v1/environments/%s/work/%s" % (env, w["id"])
            c.call("POST", base + "/ack", bearer=tok)
            c.call("POST", base + "/heartbeat?expected_last_heartbeat=NO_HEARTBEAT", bearer=tok)
            st, _ = c.call("POST", base + "/stop", {"force": True}, bearer=tok)
            if st == 204:
                done[i] += 1

    f = threading.Thread(target=feeder)
    f.start()
    time.sleep(0.3)
    ths = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    t0 = time.time()
    c0 = cpu_ticks()
    for t in ths:
        t.start()
    time.sleep(DUR)
    stop.set()
    el = time.time() - t0
    c1 = cpu_ticks()
    for t in ths + [f]:
        t.join(30)
    return sum(done) / el, 100.0 * (c1 - c0) / os.sysconf("SC_CLK_TCK") / el


class Stream:
    def __init__(self, sid):
        self.s = socket.create_connection((HOST, PORT), timeout=30)
        self.s.sendall(("GET /v1/sessions/%s/events/stream HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\n\r\n"
                        % (sid, ADMIN)).encode())
        self.buf = b""

    def events(self, stop):
        """Yield (recv_time, event data dict) for non-ping events."""
        while not stop.is_set():
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                continue
            if not d:
                return
            now = time.time()
            self.buf += d
            while b"\n\n" in self.buf:
                block, self.buf = self.buf.split(b"\n\n", 1)
                for line in block.split(b"\n"):
                    if line.startswith(b"data: {") and b'"ping"' not in line:
                        yield now, json.loads(line[6:])


def latency(n_streams, per_stream):
    env, _ = new_env()
    sids = [ok("POST", "/v1/sessions", {"environment_id": env})["id"] for _ in range(n_streams)]
    lat = []
    lock = threading.Lock()
    stop = threading.Event()
    ready = threading.Barrier(n_streams + 1)

    def reader(sid):
        st = Stream(sid)
        st.s.settimeout(1)
        ready.wait()
        got = 0
        for now, ev in st.events(stop):
            if ev.get("type") == "agent.message":
                sent = float(ev["content"][0]["text"])
                with lock:
                    lat.append((now - sent) * 1000)
                got += 1
                if got == per_stream:
                    break
        st.s.close()

    ths = [threading.Thread(target=reader, args=(s,)) for s in sids]
    for t in ths:
        t.start()
    ready.wait()
    time.sleep(0.2)

    def poster(my_sids):
        c = Client()
        for _ in range(per_stream):
            for sid in my_sids:
                c.call("POST", "/v1/sessions/%s/events" % sid,
                       {"events": [{"type": "agent.message", "content": [{"type": "text", "text": repr(time.time())}]}]})
            time.sleep(0.02)

    nposters = min(8, n_streams)
    ps = [threading.Thread(target=poster, args=(sids[i::nposters],)) for i in range(nposters)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(120)
    deadline = time.time() + 10
    for t in ths:
        t.join(max(0.1, deadline - time.time()))
    stop.set()
    return pct(lat, 50), pct(lat, 99), len(lat)


def idle_cpu(workers, seconds):
    env, key = new_env()
    stop = threading.Event()
    polls = [0] * workers

    def poller(i):
        c = Client()
        while not stop.is_set():
            c.call("GET", "/v1/environments/%s/work/poll?block_ms=999" % env, bearer=key,
                   headers={"Anthropic-Worker-ID": "idle-%d" % i})
            polls[i] += 1

    ths = [threading.Thread(target=poller, args=(i,)) for i in range(workers)]
    for t in ths:
        t.start()
    time.sleep(1.5)
    c0, t0, p0 = cpu_ticks(), time.time(), sum(polls)
    time.sleep(seconds)
    c1, t1, p1 = cpu_ticks(), time.time(), sum(polls)
    stop.set()
    for t in ths:
        t.join(5)
    return 100.0 * (c1 - c0) / os.sysconf("SC_CLK_TCK") / (t1 - t0), (p1 - p0) / (t1 - t0)


a = anchor()
print("anchor: GET work/stats (env key)            %8.0f req/s" % a)
aw = anchor_write()
print("anchor: POST sessions (one write commit)   %8.0f req/s  (%.2f ms each)" % (aw, 1000.0 / aw))
if os.environ.get("BENCH_PHASES", "all") == "writes":
    for w in (1, 50):
        rate, cpu = cycles(w)
        print("poll->ack->heartbeat->stop, %2d worker(s):  %8.0f cycles/s  (server CPU %.0f%%)" % (w, rate, cpu))
    raise SystemExit(0)
for w in (1, 50):
    rate, cpu = cycles(w)
    print("poll->ack->heartbeat->stop, %2d worker(s):  %8.0f cycles/s  (%.1f req/s per anchor req/s: %.2f; server CPU %.0f%%)"
          % (w, rate, rate * 4, rate * 4 / a, cpu))
for n, k in ((1, 200), (50, 20)):
    p50, p99, cnt = latency(n, k)
    print("event post -> SSE delivery, %2d stream(s):   p50 %6.2f ms  p99 %6.2f ms  (%d events)" % (n, p50, p99, cnt))
cpu, rate = idle_cpu(50, 5)
print("50 idle long-polling workers (block_ms=999): server CPU %.1f%%  (%.0f polls/s answered)" % (cpu, rate))
