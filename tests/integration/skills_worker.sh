#!/usr/bin/env bash
# shed worker brings a session agent's skills into the sandbox (issue #9):
# every archive format (zip, tar, tar.gz, tar.bz2, tar.xz) lands in
# <workdir>/skills/<name>/ readable (and runnable) by the bash tool, owned by
# the sandbox user; hostile archives (traversal, absolute paths, zip-slip,
# symlinks, hardlinks, devices, a bomb, deep nesting) are refused or have
# their special members skipped, without harm, while the other skills still
# load; skills are removed at teardown. Content swapped in by a proxy
# standing for a hostile server; everything else is a real shed serve.
# timeout: 150
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import glob, json, os, re, sys, time
from worker_lib import *
from skills_lib import *
T = sys.argv[1]
srv, env, key = serve_with_key(T)

step("skills uploaded; archives of every format and hostile ones swapped in by the proxy")
swap, names = {}, {}
FORMATS = ["zip", "tar", "tar.gz", "tar.bz2", "tar.xz"]
for fmt in FORMATS:
    n = "fmt-" + fmt.replace(".", "-")
    sid_, _ = upload_skill(srv, n)
    swap[sid_] = skill_archive(n, fmt, "format " + fmt)
    names[n] = sid_
hostile = hostile_archives()
for n, (data, refused) in hostile.items():
    sid_, _ = upload_skill(srv, n)
    swap[sid_] = data
    names[n] = sid_
# one served as shed serve built it (its own zip), two versions: latest must win
plain, v1 = upload_skill(srv, "plain", {"v.txt": "one"})
names["plain"] = plain
import http.client, uuid, io
b = "----x" + uuid.uuid4().hex
body = ("--%s\r\nContent-Disposition: form-data; name=\"files[]\"; filename=\"plain/SKILL.md\"\r\n\r\n%s\r\n"
        "--%s\r\nContent-Disposition: form-data; name=\"files[]\"; filename=\"plain/v.txt\"\r\n\r\ntwo\r\n--%s--\r\n"
        % (b, skill_md("plain"), b, b)).encode()
c = http.client.HTTPConnection(srv.host, srv.port); c.request("POST", "/v1/skills/%s/versions" % plain, body=body,
    headers={"x-api-key": ADMIN, "Content-Type": "multipart/form-data; boundary=" + b}); r = c.getresponse()
check(r.status == 200, "second version: %d %s" % (r.status, r.read()[:200]))
px = ContentProxy(srv.host, srv.port, swap)
ag = agent(srv, list(names.values()))
w = Worker(srv, env, T + "/key", T + "/wstate", "--max-idle", "3", "--audit-log", T + "/audit.log",
           base_url=px.url)
s = session(srv, env, ag)
sid = s["id"]

step("the first call runs only after every skill was handled")
r, out = bash(srv, sid, "ls -1 /workspace/skills | sort")
check(not r["is_error"], "ls skills: %r" % r)
got = out.split()
want = sorted([n for n in names if not (n in hostile and hostile[n][1])])
check(got == want, "skills present: %r, expected %r" % (got, want))
log = w.log()
for n, (data, refused) in hostile.items():
    if refused:
        check(re.search(r"failed to load skill %s" % names[n], log), "failure of %s logged" % n)
for n in names:
    check(px.served.get(names[n], 0) <= 1, "each archive fetched once")

step("every format: contents, wrapper stripped, modes, script runs as the sandbox user")
for fmt in FORMATS:
    n = "fmt-" + fmt.replace(".", "-")
    r, out = bash(srv, sid, "cd /workspace/skills/%s && cat format.txt && echo && stat -c '%%a %%U' . SKILL.md scripts scripts/run.sh && ./scripts/run.sh && id -un" % n)
    check(not r["is_error"], "%s: %r" % (n, r))
    lines = out.strip().split("\n")
    check(lines[0] == "format " + fmt, "%s marker: %r" % (n, lines))
    user = lines[-1]
    check(lines[1:5] == ["700 " + user, "644 " + user, "700 " + user, "755 " + user],
          "%s modes/owner: %r" % (n, lines))
    check(lines[5] == "ran-" + n, "%s script: %r" % (n, lines))
r, out = bash(srv, sid, "cat /workspace/skills/plain/v.txt")
check(out.strip() == "two", "latest version loaded: %r" % out)

step("hostile archives: special members skipped, nothing outside")
for n in ["evil-symlink", "evil-hardlink", "evil-device"]:
    r, out = bash(srv, sid, "cd /workspace/skills/%s && find . -mindepth 1 | sort && cat kept.txt" % n)
    check(out.split() == ["./SKILL.md", "./kept.txt", "kept"], "%s contents: %r" % (n, out))
for pat in ["escape-*"]:
    found = [p for p in glob.glob(T + "/**/" + pat, recursive=True)] + glob.glob("/tmp/" + pat)
    check(not found, "nothing escaped: %r" % found)
ws = os.path.join(T, "wstate", "sessions", sid, "workspace")
check(not [p for p in os.listdir(os.path.join(ws, "skills")) if p.startswith(".")], "no stage left")
audit = open(T + "/audit.log").read()
check(audit.count('"skill.failed"') >= 5 and audit.count('"skill.loaded"') == 9,
      "audited: %d failed, %d loaded" % (audit.count('"skill.failed"'), audit.count('"skill.loaded"')))

step("teardown removes the skills (the workspace stays for the session)")
srv.idle(sid)
w.wait_log(r"skills removed", 60)
w.wait_log(r"work item stopped", 30)
check(os.listdir(os.path.join(ws, "skills")) == [], "skills removed: %r" % os.listdir(os.path.join(ws, "skills")))
check(w.stop() == 0, "worker exit status")
px.stop(); srv.stop()
assert_no_secrets([w.log_path, srv.log_path, T + "/audit.log"], [key, ADMIN])
print("skills worker ok")
PY
