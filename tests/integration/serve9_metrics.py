"""shed serve: /metrics, /healthz, /readyz on its own listener; the queue
gauges follow the queue; request counters carry route patterns, never ids.
Run by serve9_metrics.sh."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_lib import Server, check, eq  # noqa: E402

T = os.environ["T"]
os.makedirs(os.path.join(T, "state"), exist_ok=True)
srv = Server(os.path.join(T, "state"))


def get(path):
    c = srv.conn()
    c.request("GET", path)
    r = c.getresponse()
    body = r.read().decode()
    ct = r.getheader("Content-Type")
    c.close()
    return r.status, body, ct


def series(page, name, env):
    m = re.search(r'^%s\{environment="%s"\} (\S+)$' % (re.escape(name), re.escape(env)), page, re.M)
    return float(m.group(1)) if m else None


eq(get("/healthz")[:2], (200, "ok\n"), "healthz")
eq(get("/readyz")[:2], (200, "ready\n"), "readyz")
st, page, ct = get("/metrics")
eq(st, 200, "metrics")
check(ct.startswith("text/plain; version=0.0.4"), "content type %r" % ct)
check("shed_build_info" in page, "catalogue registered")

env = srv.env()
eid = env["id"]
key = srv.env_key(eid)
s1 = srv.session(eid)
s2 = srv.session(eid)
page = get("/metrics")[1]
eq(series(page, "shed_queue_depth", eid), 2.0, "depth 2")
eq(series(page, "shed_queue_pending", eid), 0.0, "pending 0")
check(series(page, "shed_queue_oldest_age_seconds", eid) >= 0, "oldest age")
w = srv.poll(eid, key, worker="metrics-w")
page = get("/metrics")[1]
eq(series(page, "shed_queue_depth", eid), 1.0, "depth after a poll")
eq(series(page, "shed_queue_pending", eid), 1.0, "pending after a poll")
eq(series(page, "shed_workers_polling", eid), 1.0, "workers_polling")
srv.ok("POST", "/v1/environments/%s/work/%s/ack" % (eid, w["id"]), bearer=key)
page = get("/metrics")[1]
eq(series(page, "shed_queue_pending", eid), 0.0, "pending after the ack")
# request counters: route patterns only
check(re.search(r'^shed_http_requests_total\{route="/v1/environments/\{id\}/work/\{id\}/ack",code="200"\} 1$',
                page, re.M), "ack counted under its pattern")
check(re.search(r'^shed_http_requests_total\{route="/v1/sessions",code="200"\} 2$', page, re.M),
      "session creates counted")
check(re.search(r'shed_http_request_seconds_count\{route="/v1/environments/\{id\}/work/poll"\} 1', page),
      "poll histogram")
srv.call("GET", "/v1/sessions/sesn_nope")
page = get("/metrics")[1]
check('code="404"' in page, "404 counted")
for ident in [s1["id"], s2["id"], w["id"], "sesn_nope", key]:
    check(ident not in page, "no id or key in the page: %s" % ident[:9])
# promtool accepts the page
pt = subprocess.run(["promtool", "check", "metrics"], input=page, capture_output=True, text=True)
check(pt.returncode == 0, "promtool check metrics: %s %s" % (pt.stdout, pt.stderr))
# the API still requires a credential; these three do not
eq(srv.call("GET", "/v1/environments", key="")[0], 401, "API still authenticated")
eq(srv.call("POST", "/metrics", {})[0], 405, "POST /metrics")
eq(srv.stop(), 0, "clean exit (no sanitizer report)")
print("ok")
