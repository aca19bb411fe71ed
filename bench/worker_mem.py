"""Driver of bench/worker_mem.sh (python3 stdlib): the shed worker's memory.
  idle    RSS of a started, polling worker with no session (VmRSS, its
          anonymous and file parts, PSS, the largest mappings), measured
          after start-up has finished (the first polls answered);
  active  RSS with S sessions each active (its sandbox made, its stream open,
          one call answered), per session above idle; sandbox processes are
          other processes and not counted.
With BENCH_MEM_TLS=1 the worker talks https to shed serve through a TLS
terminator (tests/integration/worker_tls_lib.py: a test CA made by the openssl
CLI, trusted through SSL_CERT_FILE), so libssl is loaded and every connection
carries TLS state.
Prints figures; never fails because the machine is slow."""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from worker_lib import Server, write_key_file  # noqa: E402
from worker_tls_lib import Terminator, make_pki  # noqa: E402


def status(pid):
    out = {}
    for line in open("/proc/%d/status" % pid):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM", "Threads"):
            out[k] = int(v.split()[0])
    for line in open("/proc/%d/smaps_rollup" % pid):
        if line.startswith("Pss:"):
            out["Pss"] = int(line.split()[1])
    return out


def mappings(pid, n):
    """The n largest mappings by Rss, summed per file (kB)."""
    per, cur = {}, None
    for line in open("/proc/%d/smaps" % pid):
        m = re.match(r"[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)", line)
        if m:
            cur = os.path.basename(m.group(1)) or "[anon]"
        elif line.startswith("Rss:"):
            per[cur] = per.get(cur, 0) + int(line.split()[1])
    return sorted(per.items(), key=lambda kv: -kv[1])[:n]


def main():
    T = sys.argv[1]
    S = int(os.environ.get("BENCH_RSS_SESSIONS", "50"))
    srv = Server(T + "/serve")
    env = srv.environment()
    _, key = srv.new_key(env)
    write_key_file(T + "/key", key)
    log = open(T + "/worker.log", "w")
    base_url, wenv, label = srv.url, dict(os.environ), "http"
    if os.environ.get("BENCH_MEM_TLS") == "1":
        pki = make_pki(T + "/pki")
        tls = Terminator(int(srv.url.rsplit(":", 1)[1]), pki["cert"], pki["key"])
        base_url, label = "https://localhost:%d" % tls.port, "https"
        wenv["SSL_CERT_FILE"] = pki["ca"]
    p = subprocess.Popen([os.environ["SHED"], "worker", "--environment-id", env, "--environment-key-file",
                          T + "/key", "--base-url", base_url, "--state-dir", T + "/wstate", "--max-idle", "600",
                          "--max-sessions", str(S + 10), "--log-level", "info"], stderr=log, env=wenv)
    # Start-up is over once the worker has logged that it started and has
    # polled for a while (the first long polls answered empty).
    deadline = time.time() + 60
    while time.time() < deadline and "started:" not in open(T + "/worker.log").read():
        time.sleep(0.1)
    time.sleep(3.0)
    idle = status(p.pid)
    print("idle worker (%s): VmRSS %.2f MiB (anonymous %.2f MiB, file-backed %.2f MiB), PSS %.2f MiB, %d threads" % (
        label, idle["VmRSS"] / 1024.0, idle["RssAnon"] / 1024.0, idle["RssFile"] / 1024.0, idle["Pss"] / 1024.0,
        idle["Threads"]))
    print("  largest mappings (KiB): " + ", ".join("%s %d" % kv for kv in mappings(p.pid, 8)))
    sids = [srv.session(env) for _ in range(S)]
    tids = [srv.tool(s, "bash", {"command": "echo up"}) for s in sids]
    for s, t in zip(sids, tids):
        srv.wait_result(s, t, 300)
    time.sleep(1.0)
    busy = status(p.pid)
    print("%d active sessions (%s): VmRSS %.2f MiB (anonymous %.2f MiB): +%.0f KiB per session over idle "
          "(sandbox processes not counted)" % (S, label, busy["VmRSS"] / 1024.0, busy["RssAnon"] / 1024.0,
                                               (busy["VmRSS"] - idle["VmRSS"]) / float(S)))
    print("RESULT mem %d %d %d" % (idle["VmRSS"], busy["VmRSS"], S))
    p.terminate()
    p.wait(120)
    srv.stop()


main()
