"""Helpers for the `shed worker` integration tests and bench/worker.sh
(python3 stdlib only): a real `shed serve` on a free port, an environment
and key file, real `shed worker` processes, and the agent's side of a
session (post agent.tool_use, wait for user.tool_result)."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ADMIN = "sk-shed-admin-worker-tests-0123456789"


_workers = []


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr, flush=True)
    for w in _workers:
        try:
            lines = [l for l in open(w.log_path, errors="replace").read().splitlines() if "heartbeat ok" not in l]
            print("--- %s (last 80 lines)" % w.log_path, file=sys.stderr)
            print("\n".join(lines[-80:]), file=sys.stderr, flush=True)
        except OSError:
            pass
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def step(msg):
    print("--- " + msg, flush=True)


class Server:
    def __init__(self, state_dir, lease_ttl=None, extra=()):
        self.state_dir = state_dir
        os.makedirs(state_dir, exist_ok=True)
        env = dict(os.environ)
        env["SHED_ADMIN_KEY"] = ADMIN
        args = [os.environ["SHED"], "serve", "--listen", "127.0.0.1:0", "--state-dir", state_dir]
        if lease_ttl:
            args += ["--lease-ttl", str(lease_ttl)]
        args += list(extra)
        self.log_path = os.path.join(state_dir, "serve.log")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(self.log_path, "a"),
                                     env=env, text=True)
        line = self.proc.stdout.readline()
        check(line.startswith("shed serve: listening on http://"), "serve ready line: %r" % line)
        self.url = line.strip().split("listening on ")[1]
        self.host, port = self.url[len("http://"):].rsplit(":", 1)
        self.port = int(port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def call(self, method, path, body=None, bearer=None, timeout=30, ok=(200, 201, 204)):
        for attempt in range(20):
            try:
                c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
                h = {"anthropic-version": "2023-06-01"}
                if bearer:
                    h["Authorization"] = "Bearer " + bearer
                else:
                    h["x-api-key"] = ADMIN
                data = None
                if body is not None:
                    data = json.dumps(body)
                    h["content-type"] = "application/json"
                c.request(method, path, body=data, headers=h)
                r = c.getresponse()
                raw = r.read()
                c.close()
                break
            except (ConnectionError, OSError) as e:
                if attempt == 19:
                    fail("%s %s: %s" % (method, path, e))
                time.sleep(0.2)
        j = json.loads(raw) if raw else None
        if ok and r.status not in ok:
            fail("%s %s: HTTP %d %s" % (method, path, r.status, raw[:300]))
        return r.status, j

    # environments and keys
    def environment(self, name="worker-test"):
        _, e = self.call("POST", "/v1/environments", {"name": name, "config": {"type": "self_hosted"}})
        return e["id"]

    def new_key(self, env_id):
        _, k = self.call("POST", "/v1/environments/%s/keys" % env_id)
        return k["id"], k["key"]

    def revoke_key(self, env_id, key_id):
        self.call("DELETE", "/v1/environments/%s/keys/%s" % (env_id, key_id))

    def session(self, env_id):
        _, s = self.call("POST", "/v1/sessions", {"environment_id": env_id})
        return s["id"]

    def post(self, sid, events):
        _, r = self.call("POST", "/v1/sessions/%s/events" % sid, {"events": events})
        return r["data"]

    def tool(self, sid, name, inp, perm=None):
        ev = {"type": "agent.tool_use", "name": name, "input": inp}
        if perm:
            ev["evaluated_permission"] = perm
        return self.post(sid, [ev])[0]["id"]

    def custom_tool(self, sid, name, inp):
        return self.post(sid, [{"type": "agent.custom_tool_use", "name": name, "input": inp}])[0]["id"]

    def idle(self, sid, reason="end_turn"):
        self.post(sid, [{"type": "session.status_idle", "stop_reason": {"type": reason}}])

    def terminate(self, sid):
        self.post(sid, [{"type": "session.status_terminated"}])

    def events(self, sid):
        out, page = [], None
        while True:
            q = "?limit=1000" + ("&page=" + page if page else "")
            _, r = self.call("GET", "/v1/sessions/%s/events%s" % (sid, q))
            out += r["data"]
            page = r.get("next_page")
            if not page:
                return out

    def results(self, sid):
        """tool_use_id -> list of user.tool_result events."""
        res = {}
        for e in self.events(sid):
            if e.get("type") == "user.tool_result":
                res.setdefault(e["tool_use_id"], []).append(e)
        return res

    def wait_results(self, sid, ids, timeout=60):
        deadline = time.time() + timeout
        while True:
            res = self.results(sid)
            if all(i in res for i in ids):
                return res
            if time.time() > deadline:
                missing = [i for i in ids if i not in res]
                fail("session %s: no result for %d call(s) after %ds (e.g. %s)" %
                     (sid, len(missing), timeout, missing[:3]))
            time.sleep(0.1)

    def wait_result(self, sid, tid, timeout=60):
        return self.wait_results(sid, [tid], timeout)[tid][0]

    def work_items(self, env_id):
        _, r = self.call("GET", "/v1/environments/%s/work?limit=1000" % env_id)
        return r["data"]

    def work_of(self, env_id, sid):
        return [w for w in self.work_items(env_id) if w["data"]["id"] == sid]


def text_of(result):
    return "".join(b.get("text", "") for b in result.get("content", []) if b.get("type") == "text")


def write_key_file(path, key):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (key + "\n").encode())
    os.close(fd)
    os.chmod(path, 0o600)


class Worker:
    def __init__(self, server, env_id, key_file, state_dir, *extra, base_url=None, log_name="worker.log"):
        self.args = [os.environ["SHED"], "worker", "--environment-id", env_id,
                     "--environment-key-file", key_file, "--base-url", base_url or server.url,
                     "--state-dir", state_dir] + list(extra)
        self.log_path = os.path.join(os.path.dirname(state_dir.rstrip("/")) or ".", log_name)
        self.proc = None
        _workers.append(self)
        self.start()

    def start(self):
        env = dict(os.environ)
        env.pop("ANTHROPIC_ENVIRONMENT_KEY", None)
        self.proc = subprocess.Popen(self.args, stdout=open(self.log_path, "a"),
                                     stderr=subprocess.STDOUT, env=env)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if re.search(pattern, self.log()):
                return
            if self.proc.poll() is not None:
                fail("worker exited (%s) while waiting for /%s/; log:\n%s" %
                     (self.proc.returncode, pattern, self.log()[-3000:]))
            time.sleep(0.05)
        fail("worker log never matched /%s/; log tail:\n%s" % (pattern, self.log()[-3000:]))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail("worker did not exit within %ds; log tail:\n%s" % (timeout, self.log()[-3000:]))

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.wait(timeout)
        return self.proc.returncode

    def kill9(self):
        self.proc.kill()
        self.proc.wait()


def serve_with_key(T, lease_ttl=None):
    """`shed serve` on T/serve and an environment whose key is in T/key
    (mode 0600). Returns (srv, env, key)."""
    srv = Server(T + "/serve", lease_ttl=lease_ttl)
    env = srv.environment()
    _, key = srv.new_key(env)
    write_key_file(T + "/key", key)
    return srv, env, key


def serve_and_worker(T, *worker_args, lease_ttl=None, state_dir=None):
    """The usual fixture: serve_with_key, then a worker on T/wstate (or
    state_dir) started with worker_args. Returns (srv, env, key, w)."""
    srv, env, key = serve_with_key(T, lease_ttl)
    w = Worker(srv, env, T + "/key", state_dir or T + "/wstate", *worker_args)
    return srv, env, key, w


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def file_server(directory, files):
    """A quiet HTTP server on 127.0.0.1 (a daemon thread) serving `files`
    ({name: text}, written into directory). Returns the server (port:
    .server_address[1]; stop: .shutdown())."""
    import http.server
    import threading
    os.makedirs(directory, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=directory, **k)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def metrics_page(port):
    """The Prometheus page a worker's --metrics-listen 127.0.0.1:PORT serves."""
    return urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()


def assert_no_secrets(paths, secrets):
    """No key, token or secret in any log or output file."""
    for p in paths:
        if not os.path.exists(p):
            continue
        with open(p, errors="replace") as f:
            data = f.read()
        for s in secrets:
            if s and s in data:
                fail("%s contains a credential (%s...)" % (p, s[:12]))


def sandbox_available():
    """True when this build's worker can create sandboxes (probe by `shed run`)."""
    r = subprocess.run([os.environ["SHED"], "run", "--", "/bin/true"], capture_output=True, text=True)
    return r.returncode == 0, (r.stderr or r.stdout).strip()[-300:]


def main_check_sandbox():
    ok, why = sandbox_available()
    if not ok:
        print("skip: the worker cannot create sandboxes on this build/host: " + why)
        sys.exit(77)
    sys.exit(0)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--check-sandbox":
    main_check_sandbox()
