"""serve_syncfail.sh: what serve does when the fsync of an early append
fails (docs/protocol.md, "Durability")."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_lib import Server, check, eq  # noqa: E402

T = os.environ["T"]
flag = os.path.join(T, "fail-now")
env = dict(os.environ)
env["LD_PRELOAD"] = os.path.join(T, "failsync.so")
env["FAILSYNC_FILE"] = flag
# an ASan build (make asan) wants its runtime first among the libraries
env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
d = os.path.join(T, "serve")
os.makedirs(d)
srv = Server(d, env=env)
eid = srv.env()["id"]
sid = srv.session(eid)["id"]
msg = lambda t: [{"type": "user.message", "content": [{"type": "text", "text": t}]}]  # noqa: E731
srv.post_events(sid, msg("before"))


def store_failed_gauge():
    st, js, _ = srv.call("GET", "/metrics")
    eq(st, 200, "/metrics")
    for line in js["raw"].decode().splitlines():
        if line.startswith("shed_serve_store_failed "):
            return float(line.split()[1])
    check(False, "/metrics has shed_serve_store_failed")


eq(store_failed_gauge(), 0.0, "shed_serve_store_failed before")

print("--- the fsync fails: that POST is answered 500")
open(flag, "w").close()
st, js, _ = srv.call("POST", "/v1/sessions/%s/events" % sid, {"events": msg("flush fails")})
eq(st, 500, "the POST whose flush failed")
os.unlink(flag)  # the disk is fine again; serve must not trust it without a restart

print("--- every later write is refused with 503 naming the fix; reads answer")
st, js, _ = srv.call("POST", "/v1/sessions/%s/events" % sid, {"events": msg("after")})
eq(st, 503, "a later events POST")
check("restart shed serve" in json.dumps(js), "the 503 names the fix: %s" % js)
st, js, _ = srv.call("POST", "/v1/sessions", {"environment_id": eid})
eq(st, 503, "a later session create")
st, js, _ = srv.call("GET", "/v1/sessions/%s/events" % sid)
eq(st, 200, "reading the events")
texts = [e["content"][0]["text"] for e in js["data"] if e["type"] == "user.message"]
check("before" in texts and "after" not in texts, "events read: %s" % texts)
st, js, _ = srv.call("GET", "/readyz")
eq(st, 503, "/readyz while writes are refused")
body = js["raw"].decode() if js and "raw" in js else json.dumps(js)
check("flush failed" in body, "/readyz says why: %s" % body)
eq(store_failed_gauge(), 1.0, "shed_serve_store_failed once a flush failed")
st, _, _ = srv.call("GET", "/healthz")
eq(st, 200, "/healthz (the process is alive)")
eq(srv.stop(), 0, "serve exits 0")
with open(os.path.join(d, "serve.log")) as f:
    log = f.read()
check("fsync of the write-ahead log" in log and "restart shed serve" in log,
      "the log says what failed and the fix")

print("--- restarted on a healthy disk: writes are taken again")
srv.start()
srv.post_events(sid, msg("restarted"))
st, _, _ = srv.call("GET", "/readyz")
eq(st, 200, "/readyz after the restart")
eq(store_failed_gauge(), 0.0, "shed_serve_store_failed after the restart")
eq(srv.stop(), 0, "serve exits 0")

print("--- --sync strict, and a write that is not an events POST: the fsync")
print("    inside COMMIT fails: 500, then 503 as above, and /readyz says why")
d2 = os.path.join(T, "serve-strict")
os.makedirs(d2)
srv = Server(d2, "--sync", "strict", env=env)
eid = srv.env()["id"]
sid = srv.session(eid)["id"]
open(flag, "w").close()
st, js, _ = srv.call("POST", "/v1/sessions/%s/events" % sid, {"events": msg("strict flush fails")})
eq(st, 500, "strict: the POST whose COMMIT's fsync failed")
os.unlink(flag)
st, js, _ = srv.call("POST", "/v1/sessions", {"environment_id": eid})
eq(st, 503, "strict: a later session create")
st, js, _ = srv.call("GET", "/readyz")
eq(st, 503, "strict: /readyz while writes are refused")
eq(srv.stop(), 0, "serve exits 0")
srv.start()
srv.post_events(sid, msg("restarted"))
eq(srv.stop(), 0, "serve exits 0")
print("ok")
