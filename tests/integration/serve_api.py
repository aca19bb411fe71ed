"""Every endpoint of `shed serve`, its auth rules, queue semantics and bad
input, against a real server (run by serve_api.sh)."""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from serve_lib import SSE, Server, check, eq, fail, sessions_token  # noqa: E402

T = os.environ["T"]
srv = Server(T, "--lease-ttl", "2", "--sse-ping-ms", "300", "--reclaim-ms", "5000")


def step(s):
    print("---", s, flush=True)


step("environments: create, retrieve, list, update, archive, delete")
e = srv.env("alpha")
eid = e["id"]
eq(e["type"], "environment", "env type")
eq(e["config"], {"type": "self_hosted"}, "env config")
check(e["archived_at"] is None and e["created_at"].endswith("Z"), "env timestamps")
eq(srv.ok("GET", "/v1/environments/%s?beta=true" % eid)["name"], "alpha", "retrieve")
upd = srv.ok("POST", "/v1/environments/" + eid, {"name": "alpha2", "metadata": {"a": "1", "b": "2"}})
eq(upd["name"], "alpha2", "update name")
upd = srv.ok("POST", "/v1/environments/" + eid, {"metadata": {"a": None}})
eq(upd["metadata"], {"b": "2"}, "metadata merge-patch")
e2 = srv.env("beta")
lst = srv.ok("GET", "/v1/environments?limit=1")
eq(len(lst["data"]), 1, "page size")
check(lst["next_page"], "next_page on a full page")
lst2 = srv.ok("GET", "/v1/environments?limit=1&page=" + lst["next_page"])
eq(lst2["data"][0]["id"], e2["id"], "second page")
arch = srv.ok("POST", "/v1/environments/%s/archive" % e2["id"])
check(arch["archived_at"], "archived_at set")
ids = [x["id"] for x in srv.ok("GET", "/v1/environments")["data"]]
check(e2["id"] not in ids, "archived env hidden by default")
ids = [x["id"] for x in srv.ok("GET", "/v1/environments?include_archived=true")["data"]]
check(e2["id"] in ids, "include_archived lists it")
st, js, _ = srv.call("POST", "/v1/sessions", {"environment_id": e2["id"]})
eq(st, 400, "session in archived env")
eq(srv.ok("DELETE", "/v1/environments/" + e2["id"])["type"], "environment_deleted", "delete")
eq(srv.call("GET", "/v1/environments/" + e2["id"])[0], 404, "deleted env is gone")

step("bad input: 400 naming the field, envelope, never a crash")
for body, field in [({"config": {"type": "self_hosted"}}, "name"),
                    ({"name": 5, "config": {"type": "self_hosted"}}, "name"),
                    ({"name": "x"}, "config"),
                    ({"name": "x", "config": {"type": "cloud"}}, "config.type"),
                    ({"name": "x", "config": {"type": "self_hosted"}, "metadata": {"k": 1}}, "metadata.k")]:
    st, js, hd = srv.call("POST", "/v1/environments", body)
    eq(st, 400, "status for %s" % body)
    eq(js["type"], "error", "envelope type")
    eq(js["error"]["type"], "invalid_request_error", "error type")
    check("'%s'" % field in js["error"]["message"], "message names %s: %s" % (field, js["error"]["message"]))
    eq(hd.get("x-should-retry"), "false", "4xx is final")
for raw in [b"{", b"[1,2]", b"nul", b"\xff\xfe", b'{"name":"' + b"a" * 10 + b'"', b"[" * 200 + b"]" * 200]:
    st, js, _ = srv.call("POST", "/v1/environments", raw=raw)
    eq(st, 400, "malformed body %r" % raw[:20])
st, js, _ = srv.call("POST", "/v1/environments", raw=b"{" + b'"a":"' + b"x" * (5 << 20) + b'"}')
eq(st, 413, "over-large body")
eq(js["error"]["type"], "request_too_large", "413 type")
st, _, _ = srv.call("GET", "/v1/environments", headers={"X-Big": "y" * 100000})
check(st in (400, 413, 431), "oversized header refused (%d)" % st)
eq(srv.call("GET", "/v1/nothing")[0], 404, "unknown route")
import socket  # noqa: E402
for junk in [b"\x00\xff garbage\r\n\r\n", b"GET /v1/environments HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
             b"POST /v1/environments HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\nContent-Length: 50\r\n\r\n{\"name\":" % srv.admin.encode(),
             b"GET /v1/environments HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]:
    s_ = socket.create_connection((srv.host, srv.port), timeout=5)
    s_.sendall(junk)
    s_.shutdown(socket.SHUT_WR)
    try:
        s_.recv(4096)
    except OSError:
        pass
    s_.close()
eq(srv.call("GET", "/v1/environments")[0], 200, "the server survives garbage and truncated requests")
eq(srv.call("GET", "/v1/environments/not-an-id")[0], 404, "malformed id")
eq(srv.call("GET", "/v1/environments/env_00000000000000000000000000")[0], 404, "unknown env")
eq(srv.call("GET", "/v1/environments?limit=0")[0], 400, "limit 0")
eq(srv.call("GET", "/v1/environments?page=garbage")[0], 400, "bad cursor")

step("auth: none, wrong, admin via bearer, env key scope")
eq(srv.call("GET", "/v1/environments", key="")[0], 401, "no credential")
st, js, _ = srv.call("GET", "/v1/environments", key="wrong-key-wrong-key")
eq(st, 401, "wrong admin key")
eq(js["error"]["type"], "authentication_error", "401 type")
eq(srv.call("GET", "/v1/environments", bearer=srv.admin)[0], 200, "admin key as bearer")
key = srv.env_key(eid)
check(key.startswith("sk-shed-env-"), "env key format")
keys = srv.ok("GET", "/v1/environments/%s/keys" % eid)["data"]
eq(len(keys), 1, "key listed")
check("key" not in keys[0], "list never shows the key")
db = open(os.path.join(T, "shed.db"), "rb").read() + open(os.path.join(T, "shed.db-wal"), "rb").read() \
    if os.path.exists(os.path.join(T, "shed.db-wal")) else open(os.path.join(T, "shed.db"), "rb").read()
check(key.encode() not in db, "the key is not stored in clear")
eq(srv.call("GET", "/v1/environments", bearer=key)[0], 403, "env key cannot list environments")
eq(srv.call("POST", "/v1/environments/%s/keys" % eid, bearer=key)[0], 403, "env key cannot mint keys")
eq(srv.call("POST", "/v1/sessions", {"environment_id": eid}, bearer=key)[0], 403, "env key cannot create sessions")
other = srv.env("other")
okey = srv.env_key(other["id"])
eq(srv.call("GET", "/v1/environments/%s/work/poll" % eid, bearer=okey)[0], 403, "cross-env poll")
eq(srv.call("GET", "/v1/environments/%s/work/stats" % eid, bearer=okey)[0], 403, "cross-env stats")

step("sessions: create enqueues work; retrieve; list")
s = srv.session(eid, metadata={"k": "v"}, title="t1", agent="agent_x")
sid = s["id"]
eq(s["status"], "idle", "new session status")
eq(s["agent"]["id"], "agent_x", "agent id kept")
eq(s["agent"]["skills"], [], "agent skills default")
eq(s["resources"], [], "resources default")
eq(srv.ok("GET", "/v1/sessions/" + sid, bearer=key)["metadata"], {"k": "v"}, "env key reads its session")
eq(srv.call("GET", "/v1/sessions/" + sid, bearer=okey)[0], 404, "other env's key gets 404")
eq(len(srv.ok("GET", "/v1/sessions")["data"]) >= 1, True, "sessions list")
eq(srv.call("POST", "/v1/sessions", {"environment_id": eid, "resources": [{"type": "file"}]})[0], 400,
   "file resources refused")
eq(srv.call("POST", "/v1/sessions", {"environment_id": "env_00000000000000000000000000"})[0], 404, "unknown env")
eq(srv.call("POST", "/v1/sessions", {"environment_id": 7})[0], 400, "environment_id type")

step("work: poll with secret, pending, reclaim, ack, heartbeat, stop")
stats = srv.ok("GET", "/v1/environments/%s/work/stats" % eid, bearer=key)
eq((stats["type"], stats["depth"], stats["pending"]), ("work_queue_stats", 1, 0), "stats before poll")
check(stats["oldest_queued_at"], "oldest_queued_at")
eq(srv.call("GET", "/v1/environments/%s/work/poll?block_ms=0" % eid, bearer=key)[0], 400, "block_ms=0")
eq(srv.call("GET", "/v1/environments/%s/work/poll?block_ms=1000" % eid, bearer=key)[0], 400, "block_ms=1000")
w = srv.poll(eid, key, block_ms=999, worker="worker-A")
eq(w["type"], "work", "work type")
eq(w["data"], {"type": "session", "id": sid}, "work data")
eq(w["state"], "queued", "polled state")
tok = sessions_token(w["secret"])
check(tok.startswith("sk-shed-req-"), "sessions token format")
wid = w["id"]
stats = srv.ok("GET", "/v1/environments/%s/work/stats" % eid, bearer=key)
eq((stats["depth"], stats["pending"], stats["workers_polling"]), (0, 1, 1), "stats after poll")
t0 = time.time()
eq(srv.poll(eid, key, block_ms=300, worker="worker-B"), None, "no double delivery")
check(time.time() - t0 >= 0.25, "empty poll held the request ~block_ms")
eq(srv.poll(eid, key, reclaim=1, worker="worker-B")["id"], wid, "reclaim re-delivers an unacked item")
tok2 = sessions_token(srv.poll(eid, key, reclaim=1, worker="worker-C")["secret"])
check(tok2 != tok, "a new delivery gets a new token")
eq(srv.call("POST", "/v1/environments/%s/work/%s/ack" % (eid, wid), bearer=tok)[0], 409,
   "a stale delivery's token cannot ack")
eq(srv.ok("GET", "/v1/environments/%s/work/%s" % (eid, wid), bearer=key)["secret"], None, "retrieve has no secret")
a = srv.ok("POST", "/v1/environments/%s/work/%s/ack" % (eid, wid), bearer=tok2)
eq(a["state"], "starting", "ack -> starting")
check(a["acknowledged_at"], "acknowledged_at")
eq(srv.poll(eid, key, reclaim=1), None, "acked item is not re-delivered")
hbpath = "/v1/environments/%s/work/%s/heartbeat" % (eid, wid)
st, js, _ = srv.call("POST", hbpath + "?expected_last_heartbeat=2020-01-01T00:00:00Z", bearer=tok2)
eq(st, 412, "wrong expectation on first beat")
eq(js["error"]["type"], "precondition_failed", "412 type")
eq(js["error"]["details"]["current_state"]["state"], "starting", "412 current_state.state")
check("ttl_seconds" in js["error"]["details"]["current_state"], "412 ttl_seconds")
hb = srv.ok("POST", hbpath + "?expected_last_heartbeat=NO_HEARTBEAT", bearer=tok2)
eq((hb["type"], hb["state"], hb["lease_extended"], hb["ttl_seconds"]), ("work_heartbeat", "active", True, 2), "first beat")
last = hb["last_heartbeat"]
hb2 = srv.ok("POST", hbpath + "?expected_last_heartbeat=" + last, bearer=tok2)
check(hb2["last_heartbeat"] != last, "each beat has a new value")
st, js, _ = srv.call("POST", hbpath + "?expected_last_heartbeat=" + last, bearer=tok2)
eq(st, 412, "stale heartbeat echo")
eq(js["error"]["details"]["current_state"]["last_heartbeat"], hb2["last_heartbeat"], "412 carries the current beat")
last = hb2["last_heartbeat"]
hb3 = srv.ok("POST", hbpath + "?expected_last_heartbeat=%s&desired_ttl_seconds=30" % last, bearer=key)
eq(hb3["ttl_seconds"], 30, "desired_ttl_seconds honoured")
last = hb3["last_heartbeat"]
eq(srv.call("POST", hbpath + "?expected_last_heartbeat=NO_HEARTBEAT&desired_ttl_seconds=0", bearer=key)[0], 400,
   "desired_ttl_seconds range")
w2 = srv.ok("POST", "/v1/environments/%s/work/%s" % (eid, wid), {"metadata": {"x": "1"}})
eq(w2["metadata"], {"x": "1"}, "work metadata patch")
eq(srv.call("POST", "/v1/environments/%s/work/%s" % (eid, wid), {"metadata": {"x": 1}})[0], 400, "metadata type")
# graceful stop by an operator: stopping, seen on the next beat; the holder confirms.
eq(srv.call("POST", "/v1/environments/%s/work/%s/stop" % (eid, wid), {"force": False})[0], 204, "graceful stop")
eq(srv.ok("GET", "/v1/environments/%s/work/%s" % (eid, wid))["state"], "stopping", "stopping")
hb4 = srv.ok("POST", hbpath + "?expected_last_heartbeat=" + last, bearer=tok2)
eq(hb4["state"], "stopping", "holder sees stopping on its heartbeat")
st, _, _ = srv.call("POST", "/v1/environments/%s/work/%s/stop" % (eid, wid), raw=b"", bearer=tok2)
eq(st, 204, "holder confirms the stop")
ws = srv.ok("GET", "/v1/environments/%s/work/%s" % (eid, wid))
eq(ws["state"], "stopped", "stopped")
check(ws["stopped_at"] and ws["stop_requested_at"], "stop timestamps")
st, js, _ = srv.call("POST", "/v1/environments/%s/work/%s/stop" % (eid, wid), {"force": True}, bearer=tok2)
eq(st, 409, "stop on a stopped item")
eq(js["error"]["type"], "conflict_error", "409 type")
eq(srv.call("POST", "/v1/environments/%s/work/%s/stop" % (eid, wid), {"force": "yes"})[0], 400, "force type")

step("sessions token scope")
s2 = srv.session(eid)
eq(srv.call("GET", "/v1/sessions/" + s2["id"], bearer=tok2)[0], 404, "token cannot read another session")
eq(srv.ok("GET", "/v1/sessions/" + sid, bearer=tok2)["id"], sid, "token reads its session")
eq(srv.call("GET", "/v1/environments/%s/work/poll" % eid, bearer=tok2)[0], 403, "token cannot poll")
w3 = srv.poll(eid, key)
eq(w3["data"]["id"], s2["id"], "second session's item")
eq(srv.call("POST", "/v1/environments/%s/work/%s/ack" % (eid, w3["id"]), bearer=tok2)[0], 403,
   "token of another item cannot ack")
eq(srv.call("POST", "/v1/environments/%s/work/%s/stop" % (eid, w3["id"]), {"force": True}, bearer=okey)[0], 403,
   "other env key cannot stop")
eq(srv.call("POST", "/v1/environments/%s/work/%s/stop" % (eid, w3["id"]), {"force": True})[0], 204, "force stop")

step("lease expiry: back to queued with the same id; old holder gets 412")
s3 = srv.session(eid)
w4 = srv.poll(eid, key, worker="A")
t4 = sessions_token(w4["secret"])
srv.ok("POST", "/v1/environments/%s/work/%s/ack" % (eid, w4["id"]), bearer=t4)
hb = srv.ok("POST", "/v1/environments/%s/work/%s/heartbeat?expected_last_heartbeat=NO_HEARTBEAT" % (eid, w4["id"]), bearer=t4)
time.sleep(2.6)
w5 = srv.poll(eid, key, worker="B")
check(w5 is not None, "expired lease re-delivered")
eq(w5["id"], w4["id"], "same work id")
eq(w5["state"], "queued", "back to queued")
st, js, _ = srv.call("POST", "/v1/environments/%s/work/%s/heartbeat?expected_last_heartbeat=%s" % (eid, w4["id"], hb["last_heartbeat"]), bearer=t4)
eq(st, 412, "old holder's heartbeat")
st, js, _ = srv.call("POST", "/v1/environments/%s/work/%s/heartbeat?expected_last_heartbeat=%s" % (eid, w4["id"], hb["last_heartbeat"]), bearer=key)
eq(st, 412, "old holder's heartbeat with the env key")
eq(js["error"]["details"]["current_state"]["state"], "queued", "current state queued")
eq(js["error"]["details"]["error_code"], "heartbeat_precondition_failed", "error_code")
srv.ok("POST", "/v1/environments/%s/work/%s/stop" % (eid, w4["id"]), {"force": True}, want=204)

step("events: agent-side events, tool results, validation, list paging")
s4 = srv.session(eid)
sid4 = s4["id"]
w6 = srv.poll(eid, key)
srv.ok("POST", "/v1/environments/%s/work/%s/stop" % (eid, w6["id"]), {"force": True}, want=204)
eq(srv.call("POST", "/v1/sessions/%s/events" % sid4, {"events": [{"type": "agent.tool_use", "name": "bash", "input": {}}]}, bearer=key)[0],
   403, "agent events need the admin key")
ev = srv.post_events(sid4, [{"type": "agent.tool_use", "name": "bash", "input": {"command": "echo hi"}}])["data"][0]
check(ev["id"].startswith("sevt_") and ev["processed_at"], "event id and processed_at")
eq(srv.ok("GET", "/v1/sessions/" + sid4)["status"], "running", "tool_use -> running")
w7 = srv.poll(eid, key)
check(w7 is not None and w7["data"]["id"] == sid4, "a dormant session is woken by a tool call")
ev2 = srv.post_events(sid4, [{"type": "agent.tool_use", "name": "read", "input": {"file_path": "x"}}])["data"][0]
eq(srv.poll(eid, key, reclaim=60000), None, "no second item while one is open")
st, js, _ = srv.call("POST", "/v1/sessions/%s/events" % sid4,
                     {"events": [{"type": "user.tool_result", "tool_use_id": "sevt_nope", "content": []}]}, bearer=key)
eq(st, 400, "unknown tool_use_id")
check("tool_use_id" in js["error"]["message"], "names tool_use_id")
res = {"type": "user.tool_result", "tool_use_id": ev["id"], "content": [{"type": "text", "text": "hi"}], "is_error": False}
srv.post_events(sid4, [res], bearer=key)
st, js, _ = srv.call("POST", "/v1/sessions/%s/events" % sid4, {"events": [dict(res, content=[{"type": "text", "text": "second"}])]}, bearer=key)
eq(st, 409, "duplicate result")
# a batch with one bad event writes nothing
n_before = len(srv.ok("GET", "/v1/sessions/%s/events?limit=1000" % sid4)["data"])
st, _, _ = srv.call("POST", "/v1/sessions/%s/events" % sid4, {"events": [
    {"type": "user.tool_result", "tool_use_id": ev2["id"], "content": []},
    {"type": "user.tool_result", "tool_use_id": ev2["id"], "content": []}]}, bearer=key)
eq(st, 409, "duplicate within a batch")
eq(len(srv.ok("GET", "/v1/sessions/%s/events?limit=1000" % sid4)["data"]), n_before, "nothing half-written")
for bad in [{}, {"events": []}, {"events": [{"type": "user.nope"}]}, {"events": [{"type": "agent.tool_use", "name": "x"}]},
            {"events": [{"type": "user.tool_result"}]}, {"events": [{"type": "user.message", "content": "s"}]},
            {"events": [{"type": "agent.tool_use", "name": "x", "input": {}, "evaluated_permission": "maybe"}]},
            {"events": [7]}]:
    eq(srv.call("POST", "/v1/sessions/%s/events" % sid4, bad)[0], 400, "bad events %s" % bad)
hist = srv.ok("GET", "/v1/sessions/%s/events" % sid4, bearer=key)["data"]
eq([h["type"] for h in hist], ["agent.tool_use", "agent.tool_use", "user.tool_result"], "history in order")
eq(hist[2]["content"][0]["text"], "hi", "the first result stands")
p1 = srv.ok("GET", "/v1/sessions/%s/events?limit=2" % sid4)
eq(len(p1["data"]), 2, "events page 1")
p2 = srv.ok("GET", "/v1/sessions/%s/events?limit=2&page=%s" % (sid4, p1["next_page"]))
eq([h["id"] for h in p2["data"]], [hist[2]["id"]], "events page 2")
eq(p2["next_page"], None, "last page")
desc = srv.ok("GET", "/v1/sessions/%s/events?order=desc" % sid4)["data"]
eq([h["id"] for h in desc], [h["id"] for h in reversed(hist)], "desc order")
eq(srv.call("GET", "/v1/sessions/%s/events?order=up" % sid4)[0], 400, "bad order")
only = srv.ok("GET", "/v1/sessions/%s/events?types%%5B%%5D=user.tool_result&types%%5B%%5D=user.message" % sid4)["data"]
eq([h["type"] for h in only], ["user.tool_result"], "types[] filter")
eq(srv.call("GET", "/v1/sessions/%s/events?types[]=DROP%%20TABLE" % sid4)[0], 400, "bad types[]")

step("SSE: events pushed, pings, terminated closes the stream")
sse = SSE(srv, sid4, bearer=key)
eq(sse.status, 200, "stream status")
check("text/event-stream" in sse.head, "content type")
got = sse.next(timeout=2, skip_ping=False)
eq(got and got[0], "ping", "ping within the configured interval")
srv.post_events(sid4, [{"type": "agent.message", "content": [{"type": "text", "text": "m"}]}])
got = sse.next(timeout=5)
check(got is not None, "event arrives on the stream")
eq(got[0], "agent.message", "event name")
eq(json.loads(got[1])["type"], "agent.message", "data type")
srv.post_events(sid4, [{"type": "session.status_idle", "stop_reason": {"type": "end_turn"}}])
eq(sse.next(timeout=5)[0], "session.status_idle", "idle event")
eq(srv.ok("GET", "/v1/sessions/" + sid4)["status"], "idle", "idle status")
srv.post_events(sid4, [{"type": "session.status_terminated"}])
eq(sse.next(timeout=5)[0], "session.status_terminated", "terminated event")
eq(sse.next(timeout=5), None, "stream ends")
check(sse.closed, "stream closed after termination")
sse.close()
eq(srv.call("POST", "/v1/sessions/%s/events" % sid4, {"events": [{"type": "user.interrupt"}]})[0], 400, "terminated session takes no events")
eq(srv.call("GET", "/v1/sessions/%s/events/stream" % sid4, bearer=okey)[0], 404, "other env cannot stream")

step("SSE: a 3 MB result and the events after it all arrive, in order")
s6 = srv.session(eid)["id"]
srv.ok("POST", "/v1/environments/%s/work/%s/stop" % (eid, srv.poll(eid, key)["id"]), {"force": True}, want=204)
u6 = srv.post_events(s6, [{"type": "agent.tool_use", "name": "read", "input": {"file_path": "big"}}])["data"][0]["id"]
sse = SSE(srv, s6, bearer=key)
big = "x" * (3 << 20)
srv.post_events(s6, [{"type": "user.tool_result", "tool_use_id": u6, "content": [{"type": "text", "text": big}]},
                     {"type": "agent.message", "content": [{"type": "text", "text": "after"}]}], bearer=None)
got = sse.next(timeout=10)
eq(got and got[0], "user.tool_result", "big event")
eq(len(json.loads(got[1])["content"][0]["text"]), 3 << 20, "big event intact")
eq(sse.next(timeout=10)[0], "agent.message", "the event after it")
sse.close()

step("a waiting long-poll is answered as soon as work arrives")
while True:  # drain what earlier steps left queued
    w_ = srv.poll(eid, key, reclaim=1)
    if w_ is None:
        break
    srv.ok("POST", "/v1/environments/%s/work/%s/stop" % (eid, w_["id"]), {"force": True}, want=204)
box = {}


def waiter():
    t = time.time()
    box["w"] = srv.poll(eid, key, block_ms=999, worker="waiter")
    box["dt"] = time.time() - t


th = threading.Thread(target=waiter)
th.start()
time.sleep(0.2)
s5 = srv.session(eid)
th.join(5)
check(box.get("w") and box["w"]["data"]["id"] == s5["id"], "long-poll got the new item")

step("revoked key: 401 on its next request")
k2 = srv.env_key(eid)
eq(srv.call("GET", "/v1/environments/%s/work/stats" % eid, bearer=k2)[0], 200, "fresh key works")
kid = [k for k in srv.ok("GET", "/v1/environments/%s/keys" % eid)["data"] if k["revoked_at"] is None][-1]["id"]
srv.ok("DELETE", "/v1/environments/%s/keys/%s" % (eid, kid))
eq(srv.call("GET", "/v1/environments/%s/work/stats" % eid, bearer=k2)[0], 401, "revoked key refused")
eq(srv.call("DELETE", "/v1/environments/%s/keys/envkey_00000000000000000000000000" % eid)[0], 404, "unknown key")

step("restart keeps everything; SIGTERM exits 0")
eq(srv.stop(), 0, "exit status on SIGTERM")
srv.start()
eq(srv.ok("GET", "/v1/sessions/%s/events" % sid4)["data"][0]["id"], hist[0]["id"], "events survive restart")
eq(srv.call("GET", "/v1/environments/%s/work/stats" % eid, bearer=key)[0], 200, "keys survive restart")
eq(srv.call("GET", "/v1/environments/%s/work/stats" % eid, bearer=k2)[0], 401, "revocation survives restart")
eq(srv.stop(), 0, "exit status")
log = open(os.path.join(T, "serve.log")).read()
check(srv.admin not in log and key not in log and tok not in log, "no credential in the log")
print("serve api ok")
