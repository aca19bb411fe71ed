#!/usr/bin/env bash
# shed worker mounts a session's memory stores in its sandbox and keeps them
# in sync with a real shed serve (issue #9): the marker and the full pull,
# modes and owner, remote-only change, local-only change, both (the server
# wins), deletion on each side (a local one at the final sync), a read-only
# store (read-only in the sandbox, pulls only), a tampered marker (the folder
# is left alone, nothing pushed), and the folders removed at the end.
# timeout: 170
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, re, sys, time
from worker_lib import *
from skills_lib import *
T = sys.argv[1]
srv, env, key = serve_with_key(T)
notes = memory_store(srv, "Notes")
team = memory_store(srv, "Team docs")
third = memory_store(srv, "Third")
ids = {}
for p, c in [("/a.md", "alpha"), ("/dir/c.md", "charlie"), ("/e.md", "echo"), ("/f.md", "foxtrot"), ("/g.md", "golf")]:
    ids[p] = put_memory(srv, notes, p, c)
tid = put_memory(srv, team, "/rules.md", "be kind")
put_memory(srv, third, "/t.md", "third")
w = Worker(srv, env, T + "/key", T + "/wstate", "--max-idle", "3", "--memory-sync-interval", "5s",
           "--audit-log", T + "/audit.log")
s = session(srv, env, resources=[{"type": "memory_store", "memory_store_id": notes},
                                 {"type": "memory_store", "memory_store_id": team, "access": "read_only"},
                                 {"type": "memory_store", "memory_store_id": third}])
sid = s["id"]
mp = {r["memory_store_id"]: r["mount_path"] for r in s["resources"]}
N, TM, TH = mp[notes], mp[team], mp[third]
check(N == "/mnt/memory/notes" and TM == "/mnt/memory/team-docs", "mount paths: %r" % mp)

step("mounted before the first call: marker, contents, owner and modes")
r, out = bash(srv, sid, "cat %s/a.md; echo; cat %s/dir/c.md; echo; cat %s/.anthropic-memory-store; echo; "
              "stat -c '%%a %%U' %s %s/a.md; id -un; cat %s/rules.md" % (N, N, N, N, N, TM))
check(not r["is_error"], "first call: %r" % r)
lines = out.split("\n")
user = lines[6]
check(lines[:4] == ["alpha", "charlie", "version 1", notes], "contents and marker: %r" % lines)
check(lines[4] == "700 " + user and lines[5].endswith(" " + user), "owner/modes: %r" % lines)
check(lines[7] == "be kind", "read-only store pulled: %r" % lines)
host = os.path.join(T, "wstate", "sessions", sid, "memory")
check(sorted(os.listdir(host)) == sorted(["0-" + notes, "1-" + team, "2-" + third]), "host folders: %r" % os.listdir(host))

step("read-only store: writes refused in the sandbox")
r, out = bash(srv, sid, "echo x > %s/new.md" % TM)
check(r["is_error"] and "Read-only" in out, "read-only write: %r" % out)
r = srv.wait_result(sid, srv.tool(sid, "write", {"file_path": TM + "/w.md", "content": "x"}))
check(r["is_error"], "write tool into a read-only store: %r" % r)

step("local-only changes, a remote-only change, both, a remote deletion, a tampered marker")
r, out = bash(srv, sid, "echo -n beta > %s/b.md && echo -n alpha2 > %s/a.md && echo -n local-echo > %s/e.md && "
              "rm %s/g.md && printf 'version 1\\nmemstore_other' > %s/.anthropic-memory-store && "
              "echo -n sneaky > %s/sneak.md" % (N, N, N, N, TH, TH))
check(not r["is_error"], "local edits: %r" % r)
update_memory(srv, notes, ids["/dir/c.md"], "charlie2")
update_memory(srv, notes, ids["/e.md"], "remote-echo")
delete_memory(srv, notes, ids["/f.md"])
update_memory(srv, team, tid, "be very kind")
time.sleep(5.5)
bash(srv, sid, "true")  # due: this call's end starts a sync; the next call waits for it
r, out = bash(srv, sid, "cat %s/dir/c.md; echo; cat %s/e.md; echo; ls %s | tr '\\n' ' '; echo; cat %s/rules.md" % (N, N, N, TM))
lines = out.split("\n")
check(lines[0] == "charlie2", "remote-only change pulled: %r" % lines)
check(lines[1] == "remote-echo", "changed on both sides: the server wins: %r" % lines)
check("f.md" not in lines[2].split() and "g.md" not in lines[2].split(), "remote deletion applied, local stays deleted: %r" % lines)
check(lines[3] == "be very kind", "read-only store pulls: %r" % lines)
m = memories(srv, notes)
check(m["/b.md"][0] == "beta" and m["/a.md"][0] == "alpha2", "local-only changes pushed: %r" % m)
check(m["/e.md"][0] == "remote-echo", "conflict: server version kept: %r" % m)
check("/g.md" in m, "a local deletion is not sent on the first sync that sees it")
check("/f.md" not in m, "remote deletion stays")
log = w.log()
check(re.search(r"marker file does not match", log), "tampered marker warned")
check("/sneak.md" not in memories(srv, third), "nothing pushed from a folder with a tampered marker")
check(list(memories(srv, team).keys()) == ["/rules.md"], "nothing pushed from the read-only store")

step("a last local edit; the turn ends: final sync (deletion sent), flush, folders removed")
bash(srv, sid, "echo -n final > %s/h.md" % N)
srv.idle(sid)
w.wait_log(r"work item stopped", 60)
m = memories(srv, notes)
check(m.get("/h.md", [None])[0] == "final", "the final sync pushed the last edit: %r" % m)
check("/g.md" not in m, "the final sync sent the local deletion: %r" % m)
check(not os.path.exists(host) or os.listdir(host) == [] or
      os.listdir(host) == ["2-" + third], "store folders removed (a tampered one with files is kept): %r" %
      (os.listdir(host) if os.path.exists(host) else None))
audit = open(T + "/audit.log").read()
check(audit.count('"memory.mounted"') == 3, "mounts audited")
check(w.stop() == 0, "worker exit status")
srv.stop()
assert_no_secrets([w.log_path, srv.log_path, T + "/audit.log"], [key, ADMIN])
print("memory worker ok")
PY
