"""kill -9 of `shed serve` under load, then restart: nothing that was
acknowledged is lost, and no work item is held by two live workers.
Run by serve_crash.sh."""
import os
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from serve_lib import Server, check, eq, sessions_token  # noqa: E402

T = os.environ["T"]
SYNC = os.environ.get("SYNC", "full")
T = os.path.join(T, SYNC)
os.makedirs(T, exist_ok=True)
print("=== --sync %s" % SYNC, flush=True)
srv = Server(T, "--lease-ttl", "20", "--sync", SYNC)
e = srv.env("crash")
eid = e["id"]
key = srv.env_key(eid)
sessions = [srv.session(eid)["id"] for _ in range(12)]

acked_events = {}  # session id -> [event ids whose POST answered 200]
held = {}  # work id -> (token, last_heartbeat) for items whose ack and first beat answered 200
lock = threading.Lock()
stop = threading.Event()
errors = []


def poster(i):
    n = 0
    while not stop.is_set():
        sid = sessions[(i + n) % len(sessions)]
        n += 1
        try:
            st, js, _ = srv.call("POST", "/v1/sessions/%s/events" % sid,
                                 {"events": [{"type": "agent.message", "content": [{"type": "text", "text": "m%d" % n}]}]},
                                 timeout=5)
        except OSError:
            continue
        if st == 200:
            with lock:
                acked_events.setdefault(sid, []).append(js["data"][0]["id"])


def worker(i):
    while not stop.is_set():
        try:
            st, w, _ = srv.call("GET", "/v1/environments/%s/work/poll?block_ms=200" % eid, bearer=key,
                                headers={"Anthropic-Worker-ID": "crash-%d" % i}, timeout=5)
            if st != 200:
                continue
            tok = sessions_token(w["secret"])
            st, _, _ = srv.call("POST", "/v1/environments/%s/work/%s/ack" % (eid, w["id"]), bearer=tok, timeout=5)
            if st != 200:
                continue
            st, hb, _ = srv.call("POST", "/v1/environments/%s/work/%s/heartbeat?expected_last_heartbeat=NO_HEARTBEAT"
                                 % (eid, w["id"]), bearer=tok, timeout=5)
            if st == 200:
                with lock:
                    if w["id"] in held:
                        errors.append("item %s delivered to two workers" % w["id"])
                    held[w["id"]] = (tok, hb["last_heartbeat"])
        except OSError:
            continue


threads = [threading.Thread(target=poster, args=(i,)) for i in range(4)]
threads += [threading.Thread(target=worker, args=(i,)) for i in range(4)]
print("--- load, then kill -9", flush=True)
for t in threads:
    t.start()
time.sleep(1.5)
srv.kill9()
time.sleep(0.2)
stop.set()
for t in threads:
    t.join(10)
check(not errors, "; ".join(errors))
n_events = sum(len(v) for v in acked_events.values())
print("acknowledged before the kill: %d events, %d held items" % (n_events, len(held)), flush=True)
check(n_events > 0 and held, "the load did something")

print("--- restart on the same port", flush=True)
srv.start()
for sid, ids in acked_events.items():
    hist = []
    page = None
    while True:
        js = srv.ok("GET", "/v1/sessions/%s/events?limit=1000%s" % (sid, "&page=" + page if page else ""))
        hist += [h["id"] for h in js["data"]]
        page = js["next_page"]
        if not page:
            break
    eq(len(hist), len(set(hist)), "no event recorded twice in %s" % sid)
    missing = set(ids) - set(hist)
    check(not missing, "acknowledged events lost in %s: %s" % (sid, sorted(missing)[:3]))

print("--- every held item is still held by its worker, and by no one else", flush=True)
for wid, (tok, last) in held.items():
    w = srv.ok("GET", "/v1/environments/%s/work/%s" % (eid, wid))
    check(w["state"] in ("starting", "active"), "held item %s is %s after restart" % (wid, w["state"]))
# the old holders keep beating (their last heartbeat survived) while new workers poll
beats = {}
for wid, (tok, last) in held.items():
    hb = srv.ok("POST", "/v1/environments/%s/work/%s/heartbeat?expected_last_heartbeat=%s" % (eid, wid, last), bearer=tok)
    eq(hb["lease_extended"], True, "lease extended for %s" % wid)
    beats[wid] = hb["last_heartbeat"]
for _ in range(len(sessions) + 2):
    w = srv.poll(eid, key, reclaim=1, worker="after-restart")
    if w is None:
        break
    check(w["id"] not in held, "item %s held by a live worker was delivered again" % w["id"])
    # the rest are fine to take: not held by anyone
    srv.ok("POST", "/v1/environments/%s/work/%s/ack" % (eid, w["id"]), bearer=sessions_token(w["secret"]))

eq(srv.stop(), 0, "SIGTERM after the crash test")
db = sqlite3.connect(os.path.join(T, "shed.db"))
eq(db.execute("PRAGMA integrity_check").fetchone()[0], "ok", "database integrity")
print("serve crash ok")
