"""shed worker's set-up cost for skills and memory stores (issue #9), end to
end against a real shed serve: time from creating a session to the result
of its first tool call, for a bare session (the anchor, same run) and for
one with 5 skills (200 files each) and 2 memory stores (200 memories each);
and the end of the item (final sync, flush, folders and skills removed)
from the idle event to the item stopped. Medians of 3. Used by
bench/skills_memory.sh; prints figures, never fails because the machine is
slow."""
import os, statistics, sys, tempfile, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from worker_lib import Server, Worker, write_key_file, sandbox_available  # noqa: E402
from skills_lib import upload_skill, agent, session, memory_store, put_memory  # noqa: E402

ok, why = sandbox_available()
if not ok:
    print("worker set-up: skipped (no sandbox on this host: %s)" % why[:120])
    sys.exit(0)
T = tempfile.mkdtemp(prefix="shed-bench-sm-")
os.chmod(T, 0o711)
srv = Server(T + "/serve")
env = srv.environment(); _, key = srv.new_key(env)
write_key_file(T + "/key", key)
skills = [upload_skill(srv, "bench-%d" % i, {"f/%03d.txt" % k: "x" * 500 for k in range(200)})[0] for i in range(5)]
ag = agent(srv, skills)
stores = []
for i in range(2):
    st = memory_store(srv, "bench %d" % i)
    for k in range(200):
        put_memory(srv, st, "/m/%03d.md" % k, "memory %d" % k)
    stores.append(st)
w = Worker(srv, env, T + "/key", T + "/wstate", "--max-idle", "1")


def first_call(with_files):
    t0 = time.time()
    s = session(srv, env, ag if with_files else None,
                [{"type": "memory_store", "memory_store_id": x} for x in stores] if with_files else None)
    sid = s["id"]
    srv.wait_result(sid, srv.tool(sid, "bash", {"command": "ls /workspace/skills 2>/dev/null | wc -l"}), 120)
    t1 = time.time()
    srv.idle(sid)
    while not all(x["state"] == "stopped" for x in srv.work_of(env, sid)):
        time.sleep(0.02)
    return (t1 - t0) * 1000, (time.time() - t1) * 1000


bare, full, bare_end, full_end = [], [], [], []
for _ in range(3):
    a, b = first_call(False); bare.append(a); bare_end.append(b)
    a, b = first_call(True); full.append(a); full_end.append(b)
m = statistics.median
print("worker set-up, session created -> first result: bare %.0f ms, with 5 skills x 200 files + 2 stores x 200 "
      "memories %.0f ms (+%.0f ms)" % (m(bare), m(full), m(full) - m(bare)))
print("worker end, idle -> item stopped (includes --max-idle 1 s): bare %.0f ms, with skills and stores %.0f ms "
      "(+%.0f ms: final sync, flush, removal)" % (m(bare_end), m(full_end), m(full_end) - m(bare_end)))
w.stop(); srv.stop()
import shutil
shutil.rmtree(T, ignore_errors=True)
