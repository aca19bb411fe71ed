"""Driver of bench/worker.sh (python3 stdlib): the agent's side of the
benchmark sessions against `shed serve`, and the measurements (latency from
the server's processed_at of each agent.tool_use to that of its
user.tool_result: both stamped by the same `shed serve` when it appends the
event, so neither side's own clock or client enters the figure; wall time;
RSS from /proc)."""
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from worker_lib import Server, write_key_file, text_of, fail  # noqa: E402


def ts(s):
    # "2026-11-27T00:14:06.123456Z" -> seconds (float)
    import datetime
    return datetime.datetime.strptime(s.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


class Stream:
    """An SSE reader on the session's event stream (the agent waits here)."""

    def __init__(self, srv, sid):
        self.c = http.client.HTTPConnection(srv.host, srv.port, timeout=120)
        self.c.request("GET", "/v1/sessions/%s/events/stream" % sid,
                       headers={"x-api-key": os.environ.get("BENCH_ADMIN", ""), "accept": "text/event-stream"})
        self.r = self.c.getresponse()
        if self.r.status != 200:
            fail("stream: HTTP %d" % self.r.status)

    def wait_result(self, tid):
        while True:
            line = self.r.fp.readline()
            if not line:
                fail("stream ended while waiting for %s" % tid)
            if line.startswith(b"data:"):
                ev = json.loads(line[5:])
                if ev.get("type") == "user.tool_result" and ev.get("tool_use_id") == tid:
                    return ev


class Agent:
    """The agent's posts on one kept-alive HTTP/1.1 connection (the agent is
    Anthropic's backend in production, not part of what is measured: a new
    TCP connection per post made serve accept and tear down a connection on
    its only thread just when the worker's result was due, in both workers'
    intervals alike). Serve answers these posts with Content-Length."""

    def __init__(self, srv):
        self.srv = srv
        self.s = None
        self.buf = b""

    def _connect(self):
        self.s = socket.create_connection((self.srv.host, self.srv.port), timeout=60)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _recv(self):
        d = self.s.recv(65536)
        if not d:
            raise OSError("connection closed by serve")
        return d

    def post(self, sid, events):
        data = json.dumps({"events": events}).encode()
        req = ("POST /v1/sessions/%s/events HTTP/1.1\r\nHost: %s\r\nx-api-key: %s\r\n"
               "anthropic-version: 2023-06-01\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % (sid, self.srv.host, os.environ["BENCH_ADMIN"], len(data))).encode() + data
        for attempt in range(2):
            try:
                if self.s is None:
                    self._connect()
                self.s.sendall(req)
                while b"\r\n\r\n" not in self.buf:
                    self.buf += self._recv()
                break
            except OSError:
                if self.s is not None:
                    self.s.close()
                self.s = None
                if attempt:
                    raise
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        n = 0
        close = False
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                n = int(v)
            elif k == b"connection" and v.strip().lower() == b"close":
                close = True
        while len(self.buf) < n:
            self.buf += self._recv()
        body, self.buf = self.buf[:n], self.buf[n:]
        if close:
            self.s.close()
            self.s = None
        if status != 200:
            fail("POST events: HTTP %d %s" % (status, body[:300]))
        return json.loads(body)["data"]

    def tool(self, sid, name, inp):
        return self.post(sid, [{"type": "agent.tool_use", "name": name, "input": inp}])[0]["id"]


def rss_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pct(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def one_session(srv, env, n, label, agent=None):
    sid = srv.session(env)
    st = Stream(srv, sid)
    # BENCH_AGENT_CONN=new: the agent opens a connection per post (as
    # before session 4), to compare.
    if agent is None or os.environ.get("BENCH_AGENT_CONN") == "new":
        agent = srv
    t0 = time.time()
    for i in range(n):
        tid = agent.tool(sid, "bash", {"command": "echo call-%d" % i})
        r = st.wait_result(tid)
        if text_of(r).strip() != "call-%d" % i:
            fail("%s: wrong result for call %d: %r" % (label, i, r))
    wall = time.time() - t0
    evs = srv.events(sid)
    use = {e["id"]: ts(e["processed_at"]) for e in evs if e["type"] == "agent.tool_use"}
    lat = [(ts(e["processed_at"]) - use[e["tool_use_id"]]) * 1000 for e in evs if e["type"] == "user.tool_result"]
    if len(lat) != n:
        fail("%s: %d results for %d calls" % (label, len(lat), n))
    # End the session: the SDK worker serves one session at a time.
    srv.terminate(sid)
    return lat, wall


def main():
    mode = sys.argv[1]
    T = sys.argv[2]
    shed = os.environ["SHED"]
    # BENCH_SERVE_SYNC=normal: serve without an fsync per append (its
    # `--sync normal`); =strict: the tool use's fsync before its push, inside
    # both workers' interval (serve's default, full, overlaps the two).
    sync = os.environ.get("BENCH_SERVE_SYNC", "full")
    srv = Server(T + "/serve", extra=["--sync", sync] if sync != "full" else [])
    if mode == "pair":
        print("shed serve --sync %s" % sync, flush=True)
    os.environ["BENCH_ADMIN"] = __import__("worker_lib").ADMIN
    env = srv.environment()
    _, key = srv.new_key(env)
    write_key_file(T + "/key", key)
    N = int(os.environ.get("BENCH_CALLS", "200"))
    if mode == "pair":
        # Both workers on the same serve, each polling its own environment,
        # both up the whole time; their 200-call sessions interleaved
        # (shed, SDK, SDK, shed, ...) so load on this shared machine hits
        # both alike. BENCH_SHED_BASE=path adds a third worker, another shed
        # binary (before/after comparisons).
        # BENCH_SERVE_BASE=path adds a shed worker on a second serve run
        # from another binary (serve before/after, same rounds).
        sides = [("shed", shed)]
        if os.access(os.path.join(os.environ["SHED_ROOT"], "node_modules/.bin/node"), os.X_OK) and \
                os.environ.get("BENCH_NO_SDK") != "1":
            sides.append(("sdk", None))
        if os.environ.get("BENCH_SHED_BASE"):
            sides.append(("base", os.environ["BENCH_SHED_BASE"]))
        servers = {name: srv for name, _ in sides}
        if os.environ.get("BENCH_SERVE_BASE"):
            sides.append(("sbase", shed))
            os.environ["SHED"] = os.environ["BENCH_SERVE_BASE"]
            servers["sbase"] = Server(T + "/serve-base", extra=["--sync", sync] if sync != "full" else [])
            os.environ["SHED"] = shed
        agents = {name: Agent(servers[name]) for name, _ in sides}
        R = int(os.environ.get("BENCH_ROUNDS", "3"))
        procs, envs = {}, {}
        for name, binary in sides:
            ssrv = servers[name]
            e = env if name == "shed" else ssrv.environment(name)
            if name != "shed":
                _, k = ssrv.new_key(e)
                write_key_file(T + "/key-" + name, k)
            kf = T + "/key" if name == "shed" else T + "/key-" + name
            envs[name] = e
            log = open(T + "/worker-%s.log" % name, "w")
            if binary:
                procs[name] = subprocess.Popen([binary, "worker", "--environment-id", e, "--environment-key-file", kf,
                                                "--base-url", ssrv.url, "--state-dir", T + "/wstate-" + name,
                                                "--max-idle", "600", "--log-level", "warn"], stderr=log)
            else:
                os.makedirs(T + "/sdkwork", exist_ok=True)
                node = os.path.join(os.environ["SHED_ROOT"], "node_modules/.bin/node")
                procs[name] = subprocess.Popen([node, os.path.join(os.environ["SHED_ROOT"], "bench/worker_sdk.mjs"),
                                                srv.url, e, kf, T + "/sdkwork"], stderr=log, cwd=os.environ["SHED_ROOT"])
        time.sleep(1.0)
        for name, _ in sides:
            one_session(servers[name], envs[name], 5, name + " warm-up", agents[name])
        lats = {name: [] for name, _ in sides}
        walls = {name: [] for name, _ in sides}
        for r in range(R):
            order = [n for n, _ in sides]
            if r % 2:
                order.reverse()
            line = []
            for name in order:
                time.sleep(1.0)  # the previous session's teardown is over
                lat, wall = one_session(servers[name], envs[name], N, name, agents[name])
                lats[name] += lat
                walls[name].append(wall)
                line.append("%s p50 %.2f ms" % (name, statistics.median(lat)))
            print("round %d: %s" % (r + 1, ", ".join(line)), flush=True)
        for name, _ in sides:
            lat = lats[name]
            peak = rss_kb(procs[name].pid, "VmHWM")
            procs[name].terminate()
            procs[name].wait(30)
            print("%-4s %d x %d calls: p50 %.2f ms  p99 %.2f ms  mean %.2f ms  wall (median session) %.2f s  "
                  "worker peak RSS %.1f MB" % (name, R, N, statistics.median(lat), pct(lat, 99), statistics.mean(lat),
                                               statistics.median(walls[name]), peak / 1024.0), flush=True)
            print("RESULT %s %.3f %.3f %.3f %d" % (name, statistics.median(lat), pct(lat, 99),
                                                    statistics.median(walls[name]), peak))
        for name, ssrv in servers.items():
            if ssrv is not srv:
                ssrv.stop()
    elif mode == "rss":
        S = int(os.environ.get("BENCH_RSS_SESSIONS", "50"))
        p = subprocess.Popen([shed, "worker", "--environment-id", env, "--environment-key-file", T + "/key",
                              "--base-url", srv.url, "--state-dir", T + "/wstate", "--max-idle", "600",
                              "--max-sessions", str(S + 10), "--log-level", "warn"], stderr=open(T + "/worker.log", "w"))
        time.sleep(2.0)
        idle = rss_kb(p.pid, "VmRSS")
        sids = [srv.session(env) for _ in range(S)]
        tids = [srv.tool(s, "bash", {"command": "echo up"}) for s in sids]
        for s, t in zip(sids, tids):
            srv.wait_result(s, t, 120)
        time.sleep(1.0)
        busy = rss_kb(p.pid, "VmRSS")
        p.terminate()
        p.wait(60)
        print("shed worker RSS: idle %.1f MB; with %d active sessions (each with its sandbox, stream, "
              "runner) %.1f MB: +%.0f KB per session (sandbox processes not counted)" % (
                  idle / 1024.0, S, busy / 1024.0, (busy - idle) / float(S)))
        print("RESULT rss %d %d %d" % (idle, busy, S))
    elif mode == "many":
        S = int(os.environ.get("BENCH_MANY", "200"))
        C = 3
        p = subprocess.Popen([shed, "worker", "--environment-id", env, "--environment-key-file", T + "/key",
                              "--base-url", srv.url, "--state-dir", T + "/wstate", "--max-idle", "600",
                              "--max-sessions", str(S), "--log-level", os.environ.get("BENCH_LOG", "warn")], stderr=open(T + "/worker.log", "w"))
        time.sleep(1.0)
        sids = [srv.session(env) for _ in range(S)]
        errors = []
        lats = []

        def agent(sid):
            try:
                for j in range(C):
                    tid = srv.tool(sid, "bash", {"command": "echo %s-%d" % (sid, j)})
                    r = srv.wait_result(sid, tid, 300)
                    if text_of(r).strip() != "%s-%d" % (sid, j):
                        errors.append(sid)
            except SystemExit:
                errors.append(sid)

        t0 = time.time()
        ths = [threading.Thread(target=agent, args=(s,)) for s in sids]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        wall = time.time() - t0
        peak = rss_kb(p.pid, "VmHWM")
        lost = 0
        for sid in sids:
            evs = srv.events(sid)
            use = {e["id"]: ts(e["processed_at"]) for e in evs if e["type"] == "agent.tool_use"}
            res = [e for e in evs if e["type"] == "user.tool_result"]
            lost += len(use) - len(res)
            lats += [(ts(e["processed_at"]) - use[e["tool_use_id"]]) * 1000 for e in res]
        p.terminate()
        p.wait(120)
        print("%d concurrent sessions x %d calls: wall %.1f s, %d results lost, %d wrong, call latency p50 %.1f ms "
              "p99 %.1f ms (includes sandbox creation for first calls), worker peak RSS %.1f MB" % (
                  S, C, wall, lost, len(errors), statistics.median(lats), pct(lats, 99), peak / 1024.0))
    srv.stop()


main()
