#!/usr/bin/env bash
# kill -9 of shed worker in the middle of a memory sync, then a restart on
# the same state dir (issue #9): the dead run's store folder is removed at
# start (never uploaded), the item comes back when its lease lapses, the
# store is mounted afresh from the server (what landed before the kill plus
# what changed meanwhile), and syncing goes on. A pass-through proxy lets
# the first 20 memory writes through and holds the rest, so the kill lands
# mid-sync.
# timeout: 150
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import os, re, sys, time
from worker_lib import *
from skills_lib import *
T = sys.argv[1]
srv, env, key = serve_with_key(T, lease_ttl=2)
st = memory_store(srv, "Scratch")
keep = put_memory(srv, st, "/keep.md", "v1")
import threading
held = threading.Event()
px = ContentProxy(srv.host, srv.port, {}, hold_memory_writes=(20, held))
args = ("--max-idle", "60", "--memory-sync-interval", "5s")
w = Worker(srv, env, T + "/key", T + "/wstate", *args, base_url=px.url)
s = session(srv, env, resources=[{"type": "memory_store", "memory_store_id": st}])
sid, M = s["id"], s["resources"][0]["mount_path"]
N = 400

step("%d new files in the sandbox; a sync starts; kill -9 while it uploads" % N)
r, out = bash(srv, sid, "cat %s/keep.md && for i in $(seq 1 %d); do echo -n n$i > %s/n$i.md; done" % (M, N, M))
check(not r["is_error"] and out.startswith("v1"), "files written: %r" % out[:200])
time.sleep(5.5)
bash(srv, sid, "true")
wait_for(lambda: px.writes > 20, "the sync to upload (the first 20 writes land, the rest are held)", 60, 0.05)
w.kill9()
held.set()
mem_dir = os.path.join(T, "wstate", "sessions", sid, "memory")
check(os.path.isdir(mem_dir), "the dead run's folder is still there")
time.sleep(0.5)
before = memories(srv, st)
print("memories on the server at the kill: %d of %d" % (len(before) - 1, N), flush=True)
check(len(before) - 1 < N, "the kill landed mid-sync (%d of %d uploaded)" % (len(before) - 1, N))
for p, (c, _, _) in before.items():
    check(p == "/keep.md" or c == p[1:-3], "an upload that landed is whole: %s=%r" % (p, c))

step("while it is down the server changes; restart on the same state dir")
update_memory(srv, st, keep, "v2")
w.start()
w.wait_log(r"removed the memory store folders of 1 session", 30)
w.wait_log(r"memory store %s mounted" % st, 60)
r, out = bash(srv, sid, "cat %s/keep.md; echo; ls %s | grep -c '^n'" % (M, M), 90)
lines = out.split("\n")
now = memories(srv, st)
check(lines[0] == "v2", "mounted afresh from the server: %r" % lines)
check(int(lines[1]) == len(now) - 1, "the folder holds exactly the server's memories: %r vs %d" % (lines, len(now) - 1))
check(len(now) >= len(before), "nothing the dead run landed was lost")

step("syncing goes on after the restart")
bash(srv, sid, "echo -n after > %s/after.md" % M)
time.sleep(5.5)
bash(srv, sid, "true")
wait_for(lambda: memories(srv, st).get("/after.md", [None])[0] == "after", "the new file to reach the store", 60)
check(w.stop() == 0, "worker exit status")
check(not os.path.exists(mem_dir) or not os.listdir(mem_dir), "folders removed at the end")
px.stop(); srv.stop()
print("memory killed ok")
PY
