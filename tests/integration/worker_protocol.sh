#!/usr/bin/env bash
# Protocol fidelity on the wire (docs/protocol.md "Fidelity to the SDK
# worker"): a recording proxy between the worker and shed serve checks each
# call against what the SDK's EnvironmentWorker sends (method, path,
# ?beta=true, anthropic-beta, which credential, Anthropic-Worker-ID and
# block_ms on the poll only, NO_HEARTBEAT then the echo in the heartbeat's
# query, the result event's shape, stop {"force":true}); and the server's
# Retry-After on a 429 is honoured, as the SDK's client does: a poll and a
# result post answered 429 are retried no sooner than the server asked; a
# result post answered 409 without "x-should-retry: false" is retried (a
# lock timeout to the SDK), not taken for "already answered"; a
# heartbeat answered 503 is retried at once (the SDK client's own retries),
# not a whole interval later.
# timeout: 120
. "$(dirname "$0")/../lib/worker.sh"
python3 - "$T" <<'PY'
import base64, json, os, socket, socketserver, sys, threading, time
from worker_lib import *
sys.path.insert(0, os.environ["SHED_ROOT"] + "/tests/lib")
from tcprelay import ThreadedServer, answer, copy, error_body, read_request, send_request
T = sys.argv[1]
srv, env, key = serve_with_key(T, lease_ttl=12)  # heartbeat interval 6 s

log, lock = [], threading.Lock()
inject = {"poll": 1, "post": 1}  # how many of each to answer 429 first
posts_seen = [0]  # the second result post is answered 409 (no x-should-retry)
beats = [0]  # heartbeats seen; the second is answered 503

class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        c = self.request
        req = read_request(c.makefile("rb"))
        if not req:
            return
        line, headers, body = req
        method, target = line.decode().split()[:2]
        hd = {}
        for h in headers:
            k, v = h.decode().split(":", 1)
            hd[k.strip().lower()] = v.strip()
        kind = ("poll" if "/work/poll" in target else
                "post" if method == "POST" and target.split("?")[0].endswith("/events") else None)
        now = time.time()
        with lock:
            answer429 = kind is not None and inject[kind] > 0
            if answer429:
                inject[kind] -= 1
            answer503 = answer409 = False
            if kind == "post":
                posts_seen[0] += 1
                answer409 = posts_seen[0] == 2
            if "/heartbeat" in target:
                beats[0] += 1
                answer503 = beats[0] == 2
            log.append({"t": now, "method": method, "target": target, "h": hd, "body": body,
                        "429": answer429, "503": answer503, "409": answer409})
        if answer409:
            answer(c, b"409 Conflict", error_body(b"conflict_error", b"lock timeout"))
            return
        if answer503:
            answer(c, b"503 Service Unavailable", error_body(b"api_error", b"injected"))
            return
        if answer429:
            hdr = b"Retry-After: 3" if kind == "poll" else b"retry-after-ms: 2500"
            answer(c, b"429 Too Many Requests", error_body(b"rate_limit_error", b"slow down"), extra=hdr + b"\r\n")
            return
        u = socket.create_connection((srv.host, srv.port), timeout=30)
        send_request(u, req)
        copy(u, c, mark_close=True)
        u.close()
        c.close()

ps = ThreadedServer(("127.0.0.1", 0), Handler)
threading.Thread(target=ps.serve_forever, daemon=True).start()
base = "http://127.0.0.1:%d" % ps.server_address[1]

step("worker -> recording proxy -> shed serve; first poll and first result post answered 429")
w = Worker(srv, env, T + "/key", T + "/wstate", "--max-idle", "2", "--worker-id", "proto-w1",
           base_url=base)
sid = srv.session(env)
tid = srv.tool(sid, "bash", {"command": "echo wire"})
r = srv.wait_result(sid, tid, 60)
check(not r["is_error"] and text_of(r).strip() == "wire", "result: %r" % r)
deadline = time.time() + 40
while time.time() < deadline and beats[0] < 3:
    time.sleep(0.1)
check(beats[0] >= 3, "the heartbeat after the injected 503: %d beats" % beats[0])
srv.idle(sid, "end_turn")
deadline = time.time() + 30
while time.time() < deadline and any(x["state"] != "stopped" for x in srv.work_of(env, sid)):
    time.sleep(0.1)
check(all(x["state"] == "stopped" for x in srv.work_of(env, sid)), "item stopped after idle")
check(w.stop() == 0, "worker exit")
time.sleep(0.2)
with lock:
    calls = list(log)

def path(c):
    return c["target"].split("?")[0]

def query(c):
    q = c["target"].split("?", 1)[1] if "?" in c["target"] else ""
    return [p for p in q.split("&") if p]

step("every call: ?beta=true, anthropic-beta managed-agents-2026-04-01, a Bearer credential")
for c in calls:
    check("beta=true" in query(c), "no ?beta=true on %s %s" % (c["method"], c["target"]))
    check("managed-agents-2026-04-01" in c["h"].get("anthropic-beta", "").split(","),
          "anthropic-beta on %s %s: %r" % (c["method"], path(c), c["h"].get("anthropic-beta")))
    check(c["h"].get("authorization", "").startswith("Bearer "), "Bearer on %s" % path(c))
    check("x-api-key" not in c["h"], "x-api-key sent on %s" % path(c))

work = srv.work_of(env, sid)[0]
wid = work["id"]
pre = "/v1/environments/%s/work" % env
polls = [c for c in calls if path(c) == pre + "/poll"]
check(polls and all(c["method"] == "GET" for c in polls), "polls are GETs")
step("poll: environment key, Anthropic-Worker-ID, block_ms=999, no reclaim_older_than_ms")
for c in polls:
    check(c["h"]["authorization"] == "Bearer " + key, "poll with the environment key")
    check(c["h"].get("anthropic-worker-id") == "proto-w1", "worker id header: %r" % c["h"])
    check("block_ms=999" in query(c), "block_ms: %r" % c["target"])
    check(not any(q.startswith("reclaim_older_than_ms") for q in query(c)), "reclaim sent")
for c in calls:
    if path(c) != pre + "/poll":
        check("anthropic-worker-id" not in c["h"], "worker id header on %s" % path(c))

step("ack: environment key, POST, no body")
acks = [c for c in calls if path(c) == "%s/%s/ack" % (pre, wid)]
check(len(acks) == 1 and acks[0]["method"] == "POST", "one ack: %d" % len(acks))
check(acks[0]["h"]["authorization"] == "Bearer " + key, "ack with the environment key")
check(acks[0]["body"] in (b"", b"{}"), "ack body %r" % acks[0]["body"])

# The item's sessions token: from the secret the poll answered (the proxy saw
# it go by; ask the server's view through the token's prefix instead).
per_item = [c for c in calls if c is not acks[0] and path(c) != pre + "/poll"]
tokens = {c["h"]["authorization"] for c in per_item}
check(len(tokens) == 1, "one credential for every per-item call: %d" % len(tokens))
tok = tokens.pop()
check(tok != "Bearer " + key and tok.startswith("Bearer sk-shed-req-"),
      "per-item calls carry the sessions token, not the environment key")

step("heartbeat: POST, no body, expected_last_heartbeat NO_HEARTBEAT first, then the echo")
hbs = [c for c in calls if path(c) == "%s/%s/heartbeat" % (pre, wid)]
check(len(hbs) >= 1, "heartbeats: %d" % len(hbs))
check(all(c["method"] == "POST" and c["body"] == b"" for c in hbs), "heartbeat shape")
check("expected_last_heartbeat=NO_HEARTBEAT" in query(hbs[0]), "first beat: %r" % hbs[0]["target"])
check(hbs[1]["503"], "the second beat was the 503")
gap = hbs[2]["t"] - hbs[1]["t"]
check(gap < 4.5, "a beat answered 503 is retried at once, not an interval (6 s) later: %.2f s" % gap)
check(hbs[2]["target"] == hbs[1]["target"], "the retry echoes the same last_heartbeat")
for c in hbs[1:]:
    check(any(q.startswith("expected_last_heartbeat=") and q != "expected_last_heartbeat=NO_HEARTBEAT"
              for q in query(c)), "later beat echoes the last one: %r" % c["target"])
first_hb = calls.index(hbs[0])
get = [i for i, c in enumerate(calls) if c["method"] == "GET" and path(c) == "/v1/sessions/" + sid]
check(get and get[0] > first_hb, "the first heartbeat goes out before the session retrieve")

step("stream opened before the history is listed")
st = [i for i, c in enumerate(calls) if path(c) == "/v1/sessions/%s/events/stream" % sid]
ls = [i for i, c in enumerate(calls) if c["method"] == "GET" and path(c) == "/v1/sessions/%s/events" % sid]
check(st and ls and st[0] < ls[0], "stream %r list %r" % (st[:1], ls[:1]))
check(calls[st[0]]["h"].get("accept") == "text/event-stream", "stream Accept header")

step("result: {events:[{type:user.tool_result, tool_use_id, content:[text], is_error:false}]}")
posts = [c for c in calls if c["method"] == "POST" and path(c) == "/v1/sessions/%s/events" % sid]
check(len(posts) == 3 and posts[0]["429"] and posts[1]["409"] and not posts[2]["429"],
      "429, 409, then the post that lands: %d" % len(posts))
check(len(srv.results(sid)[tid]) == 1, "one result")
b = json.loads(posts[2]["body"])
check(list(b) == ["events"] and len(b["events"]) == 1, "body: %r" % b)
e = b["events"][0]
check(e["type"] == "user.tool_result" and e["tool_use_id"] == tid and e["is_error"] is False,
      "event: %r" % e)
check(isinstance(e["content"], list) and e["content"][0]["type"] == "text" and
      e["content"][0]["text"].strip() == "wire", "content: %r" % e["content"])
check(posts[0]["body"] == posts[1]["body"] == posts[2]["body"], "each retry posts the same event")

step("Retry-After honoured: poll waited >= 3 s, result post >= 2.5 s (backoff alone: <= 1 s)")
i429 = next(i for i, c in enumerate(calls) if c["429"] and path(c).endswith("/poll"))
nxt = next(c for c in calls[i429 + 1:] if path(c).endswith("/poll"))
gap = nxt["t"] - calls[i429]["t"]
check(gap >= 2.8, "the poll after a 429 with Retry-After: 3 came %.2f s later" % gap)
gap = posts[1]["t"] - posts[0]["t"]
check(gap >= 2.3, "the result post after retry-after-ms: 2500 came %.2f s later" % gap)

step("stop: POST {\"force\":true} with the sessions token, after the work")
stops = [c for c in calls if path(c) == "%s/%s/stop" % (pre, wid)]
check(len(stops) == 1 and json.loads(stops[0]["body"]) == {"force": True}, "stop: %r" % stops)
check(calls.index(stops[0]) > calls.index(posts[2]), "stop after the result")
srv.stop()
ps.shutdown()
assert_no_secrets([w.log_path], [key])
print("worker protocol ok")
PY
