"""Helpers for the skills and memory-store tests of `shed worker` (issue #9;
python3 stdlib only), on top of worker_lib: skills uploaded to a real
`shed serve` (multipart, as the SDK does), agents and sessions carrying them
and memory stores, skill archives of every format and hostile ones built
here, and a pass-through proxy that hands the worker a chosen archive in
place of a skill's content (the hostile server or uploader of the threat
model). Everything else the proxy forwards untouched, streams included."""
import http.client
import io
import json
import os
import socket
import socketserver
import sys
import tarfile
import threading
import time
import uuid
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from worker_lib import ADMIN, check, fail  # noqa: E402
import tcprelay  # noqa: E402


def skill_md(name, desc="a test skill"):
    return "---\nname: %s\ndescription: %s\n---\n# %s\n" % (name, desc, name)


def upload_skill(srv, name, files=None):
    """Create a skill whose top directory is `name`; returns (skill_id, version)."""
    files = files or {}
    files.setdefault("SKILL.md", skill_md(name))
    b = "----shed" + uuid.uuid4().hex
    out = io.BytesIO()
    for fn, data in files.items():
        out.write(("--%s\r\nContent-Disposition: form-data; name=\"files[]\"; filename=\"%s/%s\"\r\n"
                   "Content-Type: application/octet-stream\r\n\r\n" % (b, name, fn)).encode())
        out.write(data if isinstance(data, bytes) else data.encode())
        out.write(b"\r\n")
    out.write(("--%s--\r\n" % b).encode())
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    c.request("POST", "/v1/skills", body=out.getvalue(),
              headers={"x-api-key": ADMIN, "anthropic-version": "2023-06-01",
                       "anthropic-beta": "skills-2025-10-02",
                       "Content-Type": "multipart/form-data; boundary=" + b})
    r = c.getresponse()
    body = r.read()
    c.close()
    check(r.status == 200, "skill upload %s: %d %s" % (name, r.status, body[:300]))
    j = json.loads(body)
    return j["id"], j["latest_version_id"]


def agent(srv, skill_ids, name="agent"):
    _, a = srv.call("POST", "/v1/agents", {"name": name, "model": "claude-test",
                                           "skills": [{"type": "custom", "skill_id": s, "version": "latest"}
                                                      for s in skill_ids]})
    return a["id"]


def session(srv, env_id, agent_id=None, resources=None):
    body = {"environment_id": env_id}
    if agent_id:
        body["agent"] = agent_id
    if resources:
        body["resources"] = resources
    _, s = srv.call("POST", "/v1/sessions", body)
    return s


def memory_store(srv, name):
    _, m = srv.call("POST", "/v1/memory_stores", {"name": name})
    return m["id"]


def memories(srv, store_id):
    """path -> content (full view, every page)."""
    out, page = {}, None
    while True:
        q = "?view=full&limit=20" + ("&page=" + page if page else "")
        _, r = srv.call("GET", "/v1/memory_stores/%s/memories%s" % (store_id, q))
        for m in r["data"]:
            if m.get("type") == "memory":
                out[m["path"]] = (m["content"], m["id"], m["content_sha256"])
        page = r.get("next_page")
        if not page:
            return out


def put_memory(srv, store_id, path, content):
    _, m = srv.call("POST", "/v1/memory_stores/%s/memories" % store_id, {"path": path, "content": content})
    return m["id"]


def update_memory(srv, store_id, mem_id, content):
    srv.call("POST", "/v1/memory_stores/%s/memories/%s" % (store_id, mem_id), {"content": content})


def delete_memory(srv, store_id, mem_id):
    srv.call("DELETE", "/v1/memory_stores/%s/memories/%s" % (store_id, mem_id))


# ---------------------------------------------------------------- archives

def _tar(members, mode):
    """members: list of (TarInfo-ish dict). mode: "w", "w:gz", "w:bz2", "w:xz"."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as t:
        for m in members:
            ti = tarfile.TarInfo(m["name"])
            ti.type = m.get("type", tarfile.REGTYPE)
            ti.mode = m.get("mode", 0o644)
            ti.linkname = m.get("linkname", "")
            if ti.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                ti.devmajor, ti.devminor = 1, 3
            data = m.get("data", b"")
            if isinstance(data, str):
                data = data.encode()
            if ti.type == tarfile.REGTYPE and "stream" in m:
                ti.size = m["size"]
                t.addfile(ti, m["stream"])
            elif ti.type == tarfile.REGTYPE:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
    return buf.getvalue()


def _zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for m in members:
            zi = zipfile.ZipInfo(m["name"])
            zi.external_attr = (0o100000 | m.get("mode", 0o644)) << 16
            data = m.get("data", b"")
            z.writestr(zi, data.encode() if isinstance(data, str) else data)
    return buf.getvalue()


def skill_archive(name, fmt, marker):
    """A well-formed skill in `fmt` (zip, tar, tar.gz, tar.bz2, tar.xz) with a
    wrapper directory, an executable script and a marker naming the format."""
    members = [{"name": "%s/SKILL.md" % name, "data": skill_md(name)},
               {"name": "%s/format.txt" % name, "data": marker},
               {"name": "%s/scripts/run.sh" % name, "data": "#!/bin/sh\necho ran-%s\n" % name, "mode": 0o755}]
    if fmt == "zip":
        return _zip(members)
    return _tar(members, {"tar": "w", "tar.gz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}[fmt])


class _Zeros(io.RawIOBase):
    def __init__(self, n):
        self.left = n

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


def hostile_archives():
    """name -> (archive, refused?) for every attack of the issue."""
    ok = lambda n: [{"name": "%s/SKILL.md" % n, "data": skill_md(n)}]  # noqa: E731
    out = {}
    out["evil-traversal"] = (_tar(ok("evil-traversal") + [{"name": "evil-traversal/../../../escape-traversal",
                                                            "data": "x"}], "w:gz"), True)
    out["evil-absolute"] = (_tar(ok("evil-absolute") + [{"name": "/tmp/escape-absolute", "data": "x"}], "w"), True)
    out["evil-zipslip"] = (_zip(ok("evil-zipslip") + [{"name": "../../escape-zipslip", "data": "x"}]), True)
    out["evil-symlink"] = (_tar(ok("evil-symlink") + [
        {"name": "evil-symlink/passwd", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"},
        {"name": "evil-symlink/up", "type": tarfile.SYMTYPE, "linkname": "../../.."},
        {"name": "evil-symlink/kept.txt", "data": "kept"}], "w"), False)
    out["evil-hardlink"] = (_tar(ok("evil-hardlink") + [
        {"name": "evil-hardlink/shadow", "type": tarfile.LNKTYPE, "linkname": "/etc/shadow"},
        {"name": "evil-hardlink/kept.txt", "data": "kept"}], "w:bz2"), False)
    out["evil-device"] = (_tar(ok("evil-device") + [
        {"name": "evil-device/null", "type": tarfile.CHRTYPE},
        {"name": "evil-device/disk", "type": tarfile.BLKTYPE},
        {"name": "evil-device/fifo", "type": tarfile.FIFOTYPE},
        {"name": "evil-device/kept.txt", "data": "kept"}], "w:xz"), False)
    # a bomb: one member of 160 MiB of zeros (the per-file bound is 128 MiB), ~160 kB compressed
    out["evil-bomb"] = (_tar(ok("evil-bomb") + [{"name": "evil-bomb/zeros", "stream": _Zeros(160 << 20),
                                                  "size": 160 << 20}], "w:gz"), True)
    deep = "evil-deep/" + "/".join("d%d" % i for i in range(40)) + "/f"
    out["evil-deep"] = (_tar(ok("evil-deep") + [{"name": deep, "data": "x"}], "w"), True)
    return out


# ---------------------------------------------------------------- the proxy

class ContentProxy:
    """127.0.0.1:<port> -> upstream; GET .../skills/<id>/versions/<v>/content of
    a skill in `swap` is answered with swap[id] instead; the content of a
    skill in `slow_skills` is delayed that many seconds (or held until the
    threading.Event given for it is set); memory writes can be
    slowed down (delay_memory_writes seconds each) to catch a sync mid-way."""

    def __init__(self, upstream_host, upstream_port, swap, delay_memory_writes=0.0, slow_skills=None,
                 hold_memory_writes=None):
        proxy = self
        self.swap = dict(swap)
        self.delay = delay_memory_writes
        # (n, threading.Event): the first n memory writes pass, the rest wait for the event
        self.hold = hold_memory_writes
        self.writes = 0
        self.lock = threading.Lock()
        self.slow = dict(slow_skills or {})
        self.served = {}

        class H(socketserver.BaseRequestHandler):
            def handle(self):
                proxy._handle(self.request, upstream_host, upstream_port)

        self.srv = tcprelay.ThreadedServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()

    def _handle(self, c, uh, up):
        req = tcprelay.read_request(c.makefile("rb"))
        if not req:
            c.close()
            return
        line = req[0]
        parts = line.split(b" ")
        path = parts[1].split(b"?")[0].decode() if len(parts) > 1 else ""
        seg = path.split("/")
        # /v1/skills/<id>/versions/<v>/content
        if parts[0] == b"GET" and len(seg) == 7 and seg[2] == "skills" and seg[6] == "content" \
                and seg[3] in self.swap:
            data = self.swap[seg[3]]
            self.served[seg[3]] = self.served.get(seg[3], 0) + 1
            tcprelay.answer(c, b"200 OK", data, b"application/octet-stream")
            return
        if parts[0] in (b"POST", b"DELETE") and "/memories" in path:
            if self.delay:
                time.sleep(self.delay)
            if self.hold:
                with self.lock:
                    self.writes += 1
                    n = self.writes
                if n > self.hold[0]:
                    self.hold[1].wait(60)
        if parts[0] == b"GET" and len(seg) == 7 and seg[2] == "skills" and seg[6] == "content" \
                and seg[3] in self.slow:
            hold = self.slow[seg[3]]
            if isinstance(hold, threading.Event):
                hold.wait(60)
            else:
                time.sleep(hold)
        try:
            u = socket.create_connection((uh, up), timeout=30)
        except OSError:
            c.close()
            return
        tcprelay.send_request(u, req)
        u.settimeout(None)
        tcprelay.copy(u, c)
        u.close()
        c.close()


def bash(srv, sid, cmd, timeout=90):
    from worker_lib import text_of
    r = srv.wait_result(sid, srv.tool(sid, "bash", {"command": cmd}), timeout)
    return r, text_of(r)


def wait_for(cond, what, timeout=60, every=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(every)
    fail("timed out waiting for " + what)
