"""shed serve: agents, skills, memory stores and memories (issue #9, server side).
Every endpoint, the auth scopes (admin, environment key, sessions token,
read_only), bad input, paging, and restart. Run by serve9_objects.sh."""
import hashlib
import io
import json
import os
import sys
import uuid
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_lib import Server, check, eq, fail  # noqa: E402

T = os.environ["T"]
os.makedirs(os.path.join(T, "state"), exist_ok=True)
srv = Server(os.path.join(T, "state"))


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def multipart(files, fields=None, key=None, path="/v1/skills", name="files[]"):
    b = "----shedtest" + uuid.uuid4().hex
    out = io.BytesIO()
    for k, v in (fields or {}).items():
        out.write(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (b, k, v)).encode())
    for fn, data in files:
        out.write(("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                   "Content-Type: application/octet-stream\r\n\r\n" % (b, name, fn)).encode())
        out.write(data if isinstance(data, bytes) else data.encode())
        out.write(b"\r\n")
    out.write(("--%s--\r\n" % b).encode())
    h = {"Content-Type": "multipart/form-data; boundary=" + b}
    c = srv.conn()
    hd = {"anthropic-beta": "skills-2025-10-02"}
    if key and key.startswith("sk-shed-"):
        hd["Authorization"] = "Bearer " + key
    else:
        hd["x-api-key"] = key or srv.admin
    hd.update(h)
    c.request("POST", path, body=out.getvalue(), headers=hd)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, json.loads(body) if body else None


def raw_get(path, bearer=None):
    c = srv.conn()
    hd = {"Accept": "application/binary"}
    if bearer:
        hd["Authorization"] = "Bearer " + bearer
    else:
        hd["x-api-key"] = srv.admin
    c.request("GET", path, headers=hd)
    r = c.getresponse()
    body = r.read()
    ct = r.getheader("Content-Type")
    c.close()
    return r.status, body, ct


SKILL_MD = "---\nname: pdf-tools\ndescription: Tools for PDFs\n---\n# PDF tools\n"

# ---------------------------------------------------------------- skills
st, sk = multipart([("pdf-tools/SKILL.md", SKILL_MD), ("pdf-tools/scripts/run.sh", "#!/bin/sh\necho hi\n")],
                   {"display_name": "PDF tools"})
eq(st, 200, "skill create: %s" % sk)
check(sk["id"].startswith("skill_"), "skill id")
eq(sk["type"], "skill", "skill type")
eq(sk["display_name"], "PDF tools", "display_name")
eq(sk["source"], {"type": "custom"}, "source")
v1 = sk["latest_version_id"]
check(v1.isdigit(), "version id is numeric: %r" % v1)
ver = srv.ok("GET", "/v1/skills/%s/versions/%s" % (sk["id"], v1))
eq(ver["type"], "skill_version", "version type")
eq(ver["name"], "pdf-tools", "version name from frontmatter")
eq(ver["description"], "Tools for PDFs", "version description")
eq(ver["skill_id"], sk["id"], "version skill_id")
eq(ver["version"], v1, "version field")
eq(srv.ok("GET", "/v1/skills/%s/versions/latest" % sk["id"])["id"], v1, "latest")
st, body, ct = raw_get("/v1/skills/%s/versions/%s/content" % (sk["id"], v1))
eq(st, 200, "content")
eq(ct, "application/zip", "content type")
check(len(body) < 2048, "no block padding: %d bytes" % len(body))
z = zipfile.ZipFile(io.BytesIO(body))
eq(sorted(z.namelist()), ["pdf-tools/SKILL.md", "pdf-tools/scripts/run.sh"], "zip members")
eq(z.read("pdf-tools/SKILL.md").decode(), SKILL_MD, "zip content")
# a second version
st, v2 = multipart([("pdf-tools/SKILL.md", SKILL_MD.replace("Tools for PDFs", "v2"))],
                   path="/v1/skills/%s/versions" % sk["id"])
eq(st, 200, "version create: %s" % v2)
check(int(v2["id"]) > int(v1), "versions increase")
eq(srv.ok("GET", "/v1/skills/%s" % sk["id"])["latest_version_id"], v2["id"], "latest_version_id moved")
eq(srv.ok("GET", "/v1/skills/%s/versions/latest" % sk["id"])["description"], "v2", "latest is v2")
vl = srv.ok("GET", "/v1/skills/%s/versions?limit=1" % sk["id"])
eq(len(vl["data"]), 1, "versions page 1")
check(vl["next_page"], "versions next_page")
vl2 = srv.ok("GET", "/v1/skills/%s/versions?limit=1&page=%s" % (sk["id"], vl["next_page"]))
eq([x["id"] for x in vl["data"] + vl2["data"]], [v1, v2["id"]], "versions paged")
eq(vl2["next_page"], None, "versions end")
eq(len(srv.ok("GET", "/v1/skills")["data"]), 1, "skills list")
# bad uploads
for files, why in [([], "no files"),
                   ([("SKILL.md", SKILL_MD)], "no top directory"),
                   ([("a/SKILL.md", SKILL_MD), ("b/x", "y")], "two top directories"),
                   ([("a/../SKILL.md", SKILL_MD)], "dot-dot"),
                   ([("/a/SKILL.md", SKILL_MD)], "absolute"),
                   ([("a/readme", "x")], "no SKILL.md"),
                   ([("a/SKILL.md", "no frontmatter")], "no frontmatter"),
                   ([("a/SKILL.md", SKILL_MD), ("a/SKILL.md", SKILL_MD)], "duplicate")]:
    st, js = multipart(files)
    eq(st, 400, "bad upload (%s): %s" % (why, js))
    eq(js["type"], "error", "envelope")
st, js = srv.call("POST", "/v1/skills", {"files": []})[:2]
eq(st, 400, "JSON body for a skill upload")
check("multipart" in js["error"]["message"], "names multipart: %s" % js)
eq(srv.call("GET", "/v1/skills/skill_nope/versions/latest")[0], 404, "unknown skill")
eq(srv.call("GET", "/v1/skills/%s/versions/12345" % sk["id"])[0], 404, "unknown version")
eq(srv.call("GET", "/v1/skills/%s/versions/x..y" % sk["id"])[0], 404, "bad version")

# ---------------------------------------------------------------- agents
st, js, _ = srv.call("POST", "/v1/agents", {"name": "a"})
eq(st, 400, "agent without model")
check("model" in js["error"]["message"], "names model")
eq(srv.call("POST", "/v1/agents", {"model": "m"})[0], 400, "agent without name")
st, js, _ = srv.call("POST", "/v1/agents", {"name": "a", "model": "m",
                                             "skills": [{"type": "custom", "skill_id": "skill_01234567890123456789012345"}]})
eq(st, 400, "agent with an unknown skill")
check("skills[0]" in js["error"]["message"], "names skills[0]: %s" % js)
eq(srv.call("POST", "/v1/agents", {"name": "a", "model": "m", "skills": [{"type": "x", "skill_id": "s"}]})[0],
   400, "bad skill type")
eq(srv.call("POST", "/v1/agents", {"name": "a", "model": "m", "tools": [{}]})[0], 400, "tool without type")
ag = srv.ok("POST", "/v1/agents", {
    "name": "coder", "model": "claude-sonnet-4-5", "system": "be brief",
    "tools": [{"type": "agent_toolset_20260401"}],
    "skills": [{"type": "custom", "skill_id": sk["id"]}, {"type": "custom", "skill_id": sk["id"], "version": v1}],
    "metadata": {"team": "x"}})
check(ag["id"].startswith("agent_"), "agent id")
eq(ag["type"], "agent", "agent type")
eq(ag["model"], {"id": "claude-sonnet-4-5"}, "model config")
eq(ag["skills"], [{"type": "custom", "skill_id": sk["id"], "version": "latest"},
                  {"type": "custom", "skill_id": sk["id"], "version": v1}], "skills normalized")
eq(ag["version"], 1, "agent version")
eq(srv.ok("GET", "/v1/agents/" + ag["id"]), ag, "agent retrieve")
eq([a["id"] for a in srv.ok("GET", "/v1/agents")["data"]], [ag["id"]], "agent list")
eq(srv.call("GET", "/v1/agents/agent_01234567890123456789012345")[0], 404, "unknown agent")

# --------------------------------------------------------- memory stores
eq(srv.call("POST", "/v1/memory_stores", {})[0], 400, "store without name")
ms = srv.ok("POST", "/v1/memory_stores", {"name": "User Preferences", "description": "prefs"})
check(ms["id"].startswith("memstore_"), "store id")
eq(ms["type"], "memory_store", "store type")
eq(ms["metadata"], {}, "store metadata")
ro = srv.ok("POST", "/v1/memory_stores", {"name": "Team docs"})
eq(ro["description"], "", "description default")
eq(srv.ok("GET", "/v1/memory_stores/" + ms["id"]), ms, "store retrieve")
eq(len(srv.ok("GET", "/v1/memory_stores")["data"]), 2, "store list")
other = srv.ok("POST", "/v1/memory_stores", {"name": "not attached"})

# ----------------------------------------------------- session with both
env = srv.env()
envkey = srv.env_key(env["id"])
eq(srv.call("POST", "/v1/sessions", {"environment_id": env["id"], "agent": "agent_01234567890123456789012345"})[0],
   400, "session with an unknown agent")
for res, why in [([{"type": "memory_store"}], "no id"),
                 ([{"type": "memory_store", "memory_store_id": "memstore_01234567890123456789012345"}], "unknown"),
                 ([{"type": "memory_store", "memory_store_id": ms["id"], "access": "rw"}], "bad access"),
                 ([{"type": "memory_store", "memory_store_id": ms["id"]}] * 2, "twice"),
                 ([{"type": "memory_store", "memory_store_id": ms["id"], "instructions": 5}], "instructions")]:
    st, js, _ = srv.call("POST", "/v1/sessions", {"environment_id": env["id"], "resources": res})
    eq(st, 400, "resources (%s): %s" % (why, js))
    check("resources" in js["error"]["message"], "names resources: %s" % js)
many = [srv.ok("POST", "/v1/memory_stores", {"name": "m%d" % i})["id"] for i in range(9)]
st, js, _ = srv.call("POST", "/v1/sessions", {"environment_id": env["id"], "resources": [
    {"type": "memory_store", "memory_store_id": m} for m in many]})
eq(st, 400, "9 stores refused")
sess = srv.session(env["id"], agent={"type": "agent", "id": ag["id"]}, resources=[
    {"type": "memory_store", "memory_store_id": ms["id"], "instructions": "use it"},
    {"type": "memory_store", "memory_store_id": ro["id"], "access": "read_only"}])
a = sess["agent"]
eq(a["id"], ag["id"], "session agent id")
eq(a["skills"], ag["skills"], "session agent skills")
eq(a["tools"], ag["tools"], "session agent tools")
eq(a["system"], "be brief", "session agent system")
check("metadata" not in a and "created_at" not in a, "snapshot shape")
eq(sess["resources"][0], {"type": "memory_store", "memory_store_id": ms["id"], "access": "read_write",
                          "mount_path": "/mnt/memory/user-preferences", "name": "User Preferences",
                          "description": "prefs", "instructions": "use it"}, "resource 0")
eq(sess["resources"][1]["access"], "read_only", "resource 1 access")
eq(sess["resources"][1]["mount_path"], "/mnt/memory/team-docs", "resource 1 mount")
eq(srv.ok("GET", "/v1/sessions/" + sess["id"])["resources"], sess["resources"], "resources stored")
s2 = srv.session(env["id"], agent=ag["id"])
eq(s2["agent"]["skills"], ag["skills"], "agent by id string")
s3 = srv.session(env["id"], agent={"type": "agent_with_overrides", "id": ag["id"], "skills": []})
eq(s3["agent"]["skills"], [], "agent_with_overrides")
eq(srv.session(env["id"], agent="agent_compat")["agent"]["id"], "agent_compat", "legacy agent string")

# the worker's token for that session
w = None
while True:
    w = srv.poll(env["id"], envkey)
    check(w is not None, "work for the session")
    if w["data"]["id"] == sess["id"]:
        break
import base64  # noqa: E402
sec = w["secret"]
tok = json.loads(base64.urlsafe_b64decode(sec + "=" * (-len(sec) % 4)))["sessions_token"]

# --------------------------------------------------------------- memories
base = "/v1/memory_stores/%s/memories" % ms["id"]
m1 = srv.ok("POST", base, {"path": "/notes/todo.md", "content": "buy milk"})
check(m1["id"].startswith("mem_"), "memory id")
eq(m1["type"], "memory", "memory type")
eq(m1["content"], None, "create answers view=basic")
eq(m1["content_sha256"], sha("buy milk"), "content_sha256")
eq(m1["content_size_bytes"], 8, "size")
eq(m1["memory_store_id"], ms["id"], "memory_store_id")
check(m1["memory_version_id"].startswith("memver_"), "memory_version_id")
eq(srv.ok("GET", base + "/" + m1["id"])["content"], "buy milk", "retrieve defaults to full")
eq(srv.ok("GET", base + "/" + m1["id"] + "?view=basic")["content"], None, "retrieve basic")
st, js, _ = srv.call("POST", base, {"path": "/notes/todo.md", "content": "x"})
eq(st, 409, "existing path")
eq(js["error"]["type"], "memory_path_conflict_error", "conflict type")
eq(js["error"]["conflicting_memory_id"], m1["id"], "conflicting id")
eq(srv.call("POST", base, {"path": "/notes/todo.md/x", "content": "x"})[0], 409, "below a file")
eq(srv.call("POST", base, {"path": "/notes", "content": "x"})[0], 409, "above a file")
for p in ["notes/x", "/a//b", "/a/../b", "/a/./b", "/a/", "/", "/a\nb", "/" + "x" * 1100,
          "/" + "/".join(["s"] * 21), "/a\u2028b", "/a\u200bb"]:
    st, js, _ = srv.call("POST", base, {"path": p, "content": "x"})
    eq(st, 400, "bad path %r: %s" % (p[:30], js))
    check("path" in js["error"]["message"], "names path")
eq(srv.call("POST", base, {"path": "/ok"})[0], 400, "content required")
eq(srv.call("POST", base, {"path": "/ok", "content": 5})[0], 400, "content type")
eq(srv.call("POST", base, {"path": "/big", "content": "x" * 102401})[0], 413, "over 100 kB")
eq(srv.ok("POST", base, {"path": "/exact", "content": "x" * 102400})["content_size_bytes"], 102400, "100 kB ok")
emp = srv.ok("POST", base + "?view=full", {"path": "/empty", "content": None})
eq((emp["content"], emp["content_sha256"]), ("", sha("")), "null content is empty")
srv.ok("POST", base, {"path": "/notes/deep/a.md", "content": "a"})
srv.ok("POST", base, {"path": "/notes-archive/b.md", "content": "b"})
# listing
paths = [m["path"] for m in srv.ok("GET", base)["data"]]
eq(paths, sorted(paths), "listed by path")
eq(set(paths), {"/notes/todo.md", "/exact", "/empty", "/notes/deep/a.md", "/notes-archive/b.md"}, "all listed")
check(all(m["content"] is None for m in srv.ok("GET", base)["data"]), "list default basic")
check(all(m["content"] is not None for m in srv.ok("GET", base + "?view=full")["data"]), "list full")
eq([m["path"] for m in srv.ok("GET", base + "?path_prefix=/notes/")["data"]],
   ["/notes/deep/a.md", "/notes/todo.md"], "path_prefix matches whole segments")
eq(srv.ok("GET", base + "?path_prefix=/notes/&depth=1")["data"],
   [{"type": "memory_prefix", "path": "/notes/deep/"}] + [m for m in srv.ok("GET", base + "?path_prefix=/notes/")["data"] if m["path"] == "/notes/todo.md"],
   "depth=1 groups")
top = srv.ok("GET", base + "?depth=1")["data"]
eq([(x["type"], x["path"]) for x in top],
   [("memory", "/empty"), ("memory", "/exact"), ("memory_prefix", "/notes-archive/"), ("memory_prefix", "/notes/")],
   "depth=1 at the root")
got, page = [], None
while True:
    js = srv.ok("GET", base + "?limit=2" + ("&page=" + page if page else ""))
    check(len(js["data"]) <= 2, "page size")
    got += [m["path"] for m in js["data"]]
    page = js["next_page"]
    if not page:
        break
eq(got, paths, "paged listing equals the full one")
got, page = [], None
while True:
    js = srv.ok("GET", base + "?depth=1&limit=1" + ("&page=" + page if page else ""))
    got += [m["path"] for m in js["data"]]
    page = js["next_page"]
    if not page:
        break
eq(got, [x["path"] for x in top], "paged grouped listing")
eq(srv.call("GET", base + "?view=huge")[0], 400, "bad view")
eq(srv.call("GET", base + "?path_prefix=notes")[0], 400, "bad path_prefix")
eq(srv.call("GET", base + "?depth=-1")[0], 400, "bad depth")
eq(srv.call("GET", base + "?page=zz")[0], 400, "bad cursor")
eq(len(srv.ok("GET", base + "?view=full&limit=1000")["data"]), 5, "full caps at 20 (5 here)")
# update with the precondition
u = srv.ok("POST", base + "/" + m1["id"], {"content": "buy oat milk",
                                            "precondition": {"type": "content_sha256", "content_sha256": sha("buy milk")}})
eq(u["content_sha256"], sha("buy oat milk"), "updated")
check(u["memory_version_id"] != m1["memory_version_id"], "new version id")
st, js, _ = srv.call("POST", base + "/" + m1["id"], {"content": "lost",
                                                      "precondition": {"type": "content_sha256", "content_sha256": sha("buy milk")}})
eq(st, 409, "stale precondition")
eq(js["error"]["type"], "memory_precondition_failed_error", "precondition error type")
eq(srv.ok("GET", base + "/" + m1["id"])["content"], "buy oat milk", "stale update wrote nothing")
same = srv.ok("POST", base + "/" + m1["id"], {"content": "buy oat milk",
                                               "precondition": {"type": "content_sha256", "content_sha256": sha("other")}})
eq(same["memory_version_id"], u["memory_version_id"], "same content: success, no new version")
eq(srv.call("POST", base + "/" + m1["id"], {"content": "x", "precondition": {"type": "etag"}})[0], 400, "bad precondition")
eq(srv.call("POST", base + "/" + m1["id"], {"content": "x", "precondition": {"type": "content_sha256", "content_sha256": "ABC"}})[0],
   400, "bad sha")
mv = srv.ok("POST", base + "/" + m1["id"] + "?view=full", {"path": "/notes/done.md"})
eq((mv["path"], mv["content"]), ("/notes/done.md", "buy oat milk"), "rename keeps content")
eq(srv.call("POST", base + "/" + m1["id"], {"path": "/exact"})[0], 409, "rename onto another")
eq(srv.call("POST", base + "/mem_01234567890123456789012345", {"content": "x"})[0], 404, "update unknown")
# delete with expected sha
st, js, _ = srv.call("DELETE", base + "/" + m1["id"] + "?expected_content_sha256=" + sha("nope"))
eq(st, 409, "delete with a stale sha")
eq(js["error"]["type"], "memory_precondition_failed_error", "delete precondition type")
eq(srv.ok("DELETE", base + "/" + m1["id"] + "?expected_content_sha256=" + sha("buy oat milk")),
   {"id": m1["id"], "type": "memory_deleted"}, "deleted")
eq(srv.call("GET", base + "/" + m1["id"])[0], 404, "gone")
eq(srv.call("DELETE", base + "/" + m1["id"])[0], 404, "delete twice")

# ---------------------------------------------------------------- scopes
# environment key: refused on memory stores, allowed to read skills
for meth, path, jbody in [("GET", base, None), ("GET", "/v1/memory_stores/" + ms["id"], None),
                         ("POST", base, {"path": "/k", "content": "k"}), ("GET", "/v1/memory_stores", None)]:
    st, js, _ = srv.call(meth, path, jbody, bearer=envkey)
    eq(st, 403, "env key on %s %s" % (meth, path))
    check("environment key" in js["error"]["message"], "says why")
eq(srv.call("GET", "/v1/skills/%s/versions/latest" % sk["id"], bearer=envkey)[0], 200, "env key reads a skill version")
eq(raw_get("/v1/skills/%s/versions/%s/content" % (sk["id"], v1), bearer=envkey)[0], 200, "env key downloads")
eq(raw_get("/v1/skills/%s/versions/%s/content" % (sk["id"], v1), bearer=tok)[0], 200, "token downloads")
eq(multipart([("a/SKILL.md", SKILL_MD)], key=envkey)[0], 403, "env key cannot upload")
eq(srv.call("GET", "/v1/agents/" + ag["id"], bearer=envkey)[0], 403, "env key cannot read agents")
eq(srv.call("POST", "/v1/agents", {"name": "a", "model": "m"}, bearer=tok)[0], 403, "token cannot create agents")
eq(srv.call("POST", "/v1/memory_stores", {"name": "x"}, bearer=tok)[0], 403, "token cannot create stores")
# sessions token: its attached stores only; read_only refuses writes
mt = srv.ok("POST", base, {"path": "/by-token.md", "content": "t"}, bearer=tok)
eq(srv.ok("GET", base + "/" + mt["id"], bearer=tok)["content"], "t", "token reads")
eq(srv.ok("GET", "/v1/memory_stores/" + ms["id"], bearer=tok)["id"], ms["id"], "token reads its store")
rob = "/v1/memory_stores/%s/memories" % ro["id"]
rm = srv.ok("POST", rob, {"path": "/doc.md", "content": "d"})
eq(srv.ok("GET", rob, bearer=tok)["data"][0]["path"], "/doc.md", "token lists the read_only store")
st, js, _ = srv.call("POST", rob, {"path": "/x.md", "content": "x"}, bearer=tok)
eq(st, 403, "read_only store refuses a create")
check("read_only" in js["error"]["message"], "says read_only")
eq(srv.call("POST", rob + "/" + rm["id"], {"content": "x"}, bearer=tok)[0], 403, "read_only refuses an update")
eq(srv.call("DELETE", rob + "/" + rm["id"], bearer=tok)[0], 403, "read_only refuses a delete")
eq(srv.call("GET", "/v1/memory_stores/%s/memories" % other["id"], bearer=tok)[0], 404, "unattached store: 404")
eq(srv.call("GET", "/v1/memory_stores/" + other["id"], bearer=tok)[0], 404, "unattached store object: 404")
eq(srv.call("GET", base, key="wrong-key-000000000000")[0], 401, "bad key")

# ----------------------------------------------------- restart keeps all
eq(srv.stop(), 0, "clean exit (no sanitizer report)")
srv.start()
eq(srv.ok("GET", base + "/" + mt["id"])["content"], "t", "memory after restart")
eq(srv.ok("GET", "/v1/agents/" + ag["id"]), ag, "agent after restart")
st, body2, _ = raw_get("/v1/skills/%s/versions/%s/content" % (sk["id"], v1))
eq(hashlib.sha256(body2).hexdigest(), hashlib.sha256(body).hexdigest(), "archive after restart")
eq(srv.stop(), 0, "clean exit (no sanitizer report)")
print("ok")
