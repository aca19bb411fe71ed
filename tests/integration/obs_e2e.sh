#!/usr/bin/env bash
# Operations view of an end-to-end run (real shed serve, real worker, real
# sandboxes): /metrics scraped during the run matches what happened, call
# for call; the page passes `promtool check metrics` and carries no id; the
# audit trail (full content, rotated small) verifies across its files and
# names every call; and no key, token or secret appears in any log, audit
# file or metrics page — checked both for the known keys and for anything
# shaped like a credential.
# timeout: 150
. "$(dirname "$0")/../lib/worker.sh"
command -v promtool >/dev/null || fail "promtool missing: run scripts/install-deps"
python3 - "$T" <<'PY'
import glob, json, os, re, socket, subprocess, sys, urllib.request
from worker_lib import *
T = sys.argv[1]
SHED = os.environ["SHED"]

mport = free_port()
os.makedirs(T + "/audit", mode=0o700)
audit = T + "/audit/audit.log"
srv, env, key, w = serve_and_worker(T, "--max-idle", "60",
                                    "--metrics-listen", "127.0.0.1:%d" % mport, "--audit-log", audit,
                                    "--audit-content", "full", "--audit-rotate-size", "4K")
base = "http://127.0.0.1:%d" % mport

def get(path):
    try:
        r = urllib.request.urlopen(base + path, timeout=10)
        return r.status, r.read().decode(), r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("Content-Type")

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

def parse(page):
    """Prometheus text 0.0.4 -> {(name, frozenset(labels)): value}."""
    out = {}
    for line in page.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        check(m, "not a sample line: %r" % line)
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out

def v(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)

step("a session: tool calls that succeed, fail, read, and try the network")
sid = srv.session(env)
calls = [("bash", {"command": "echo one"}, "ok"),
         ("bash", {"command": "echo two; echo sk-ant-api03-FAKEFAKEFAKEFAKE0123 >/dev/null"}, "ok"),
         ("bash", {"command": "exit 4"}, "error"),
         ("write", {"file_path": "n.txt", "content": "x" * 3000}, "ok"),
         ("read", {"file_path": "n.txt"}, "ok"),
         ("read", {"file_path": "/etc/shadow"}, "error"),
         ("bash", {"command": "curl -s -m 5 http://example.com/ >/dev/null; echo tried"}, "ok")]
for name, inp, _ in calls:
    r = srv.wait_result(sid, srv.tool(sid, name, inp))
want = {}
for name, _, outcome in calls:
    want[(name, outcome)] = want.get((name, outcome), 0) + 1

step("/metrics during the run matches what happened")
code, page, ctype = get("/metrics")
check(code == 200 and ctype.startswith("text/plain; version=0.0.4"), "metrics answer %s %s" % (code, ctype))
open(T + "/metrics.txt", "w").write(page)
m = parse(page)
for (name, outcome), n in want.items():
    got = v(m, "shed_tool_calls_total", tool=name, outcome=outcome)
    check(got == n, "shed_tool_calls_total{tool=%s,outcome=%s} = %s, want %d" % (name, outcome, got, n))
for name in ("bash", "read", "write"):
    n = sum(c for (t, _), c in want.items() if t == name)
    got = v(m, "shed_tool_call_seconds_count", tool=name)
    check(got == n, "shed_tool_call_seconds_count{tool=%s} = %s, want %d" % (name, got, n))
    inf = v(m, "shed_tool_call_seconds_bucket", tool=name, le="+Inf")
    check(inf == n, "+Inf bucket of %s = %s, want %d" % (name, inf, n))
check(v(m, "shed_work_claimed_total") == 1, "one work item claimed")
check(v(m, "shed_acks_total", outcome="ok") == 1, "one ack")
check(v(m, "shed_sessions_active") == 1, "one active session")
check(v(m, "shed_sandbox_create_seconds_count") == 1, "one sandbox created")
check(v(m, "shed_polls_total", outcome="work") >= 1, "a poll that brought work")
check(v(m, "shed_heartbeats_total", outcome="ok") >= 1, "heartbeats")
check(v(m, "shed_egress_decisions_total", proto="http", verdict="deny") +
      v(m, "shed_egress_decisions_total", proto="dns", verdict="deny") +
      v(m, "shed_egress_decisions_total", proto="connect", verdict="deny") >= 1,
      "the denied network attempt counted")
check(v(m, "shed_audit_records_dropped_total") == 0, "no audit record dropped")
check(v(m, "shed_metrics_label_overflow_total", metric="shed_tool_calls_total") == 0, "no overflow")
check(any(n == "shed_build_info" and v == 1 for (n, _), v in m.items()), "build info")
check(sid not in page, "a session id in the metrics page")
check(not re.search(r'(work|sesn|sevt)_[0-9a-z]{26}', page), "an id in the metrics page")
r = subprocess.run(["promtool", "check", "metrics"], input=page, capture_output=True, text=True)
check(r.returncode == 0, "promtool check metrics: %s %s" % (r.stdout, r.stderr))
code, body, _ = get("/healthz"); check(code == 200, "healthz %s" % code)
code, body, _ = get("/readyz"); check(code == 200, "readyz %s %s" % (code, body))

step("the worker stops; the audit trail verifies across its rotated files")
check(w.stop() == 0, "worker exit status")
srv.stop()
files = sorted(glob.glob(audit + ".[0-9]*")) + [audit]
check(len(files) >= 2, "the 4K rotation size should have rotated: %r" % files)
r = subprocess.run([SHED, "audit", "verify", "--with-rotated", audit], capture_output=True, text=True)
check(r.returncode == 0, "audit verify: %s %s" % (r.stdout, r.stderr))
print(r.stdout.strip())
recs = [json.loads(l) for f in files for l in open(f)]
tool_recs = [x for x in recs if x["event"] == "tool.call"]
check(len(tool_recs) == len(calls), "one tool.call record per call: %d vs %d" % (len(tool_recs), len(calls)))
check(all(x.get("session_id") == sid for x in tool_recs), "tool.call records name the session")
check(sum(1 for x in tool_recs if x.get("is_error")) == sum(1 for c in calls if c[2] == "error"),
      "errors recorded as such")
events = {x["event"] for x in recs}
for e in ("audit.opened", "audit.rotated", "work.claimed", "sandbox.created", "tool.call",
          "egress.decision", "sandbox.destroyed", "audit.closed"):
    check(e in events, "audit has %s: %r" % (e, sorted(events)))
full = "".join(open(f).read() for f in files)
check("echo one" in full, "full content mode keeps the command")
check("FAKEFAKEFAKE" not in full, "a credential in a command is masked in the audit trail")
check(json.loads(open(audit).readline()).get("prev_file", "").startswith("audit.log."),
      "the live file's first record names the rotated file before it")

step("no key, token or secret in any log, audit file or metrics page")
outputs = files + [w.log_path, srv.log_path, T + "/metrics.txt"]
assert_no_secrets(outputs, [key, ADMIN, "FAKEFAKEFAKE"])
shaped = re.compile(r'(sk-(ant|shed)-[A-Za-z0-9_]|whsec_[A-Za-z0-9]|Bearer [A-Za-z0-9])')
for p in outputs:
    for n, line in enumerate(open(p, errors="replace"), 1):
        hit = shaped.search(line)
        check(not hit, "%s:%d holds something shaped like a credential: %r" % (p, n, hit and hit.group(0)))
print("obs e2e ok")
PY
