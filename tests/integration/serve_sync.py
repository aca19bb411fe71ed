"""serve_sync.sh: the order of a POSTed event's stream send, the fsync of
the write-ahead log, and the POST's answer, as serve's system calls show
them (strace -f on the serve process), for --sync full, strict and normal."""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_lib import Server, SSE, check, eq, fail  # noqa: E402

T = os.environ["T"]
REAL = os.environ["SHED"]
TRACED = ("pwrite64", "fdatasync", "fsync", "sendto", "sendmsg", "write", "writev")


def run(mode, calls=5):
    """Starts serve under strace, posts `calls` events one at a time to a
    session with a waiting stream; returns the trace's lines and the markers."""
    d = os.path.join(T, mode)
    os.makedirs(d)
    log = os.path.join(d, "strace.log")
    wrap = os.path.join(d, "shed")
    with open(wrap, "w") as f:
        # LeakSanitizer (make asan) stops the process with ptrace at exit,
        # which a traced process cannot: no leak check here (others do it)
        f.write("#!/bin/sh\nASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 exec strace -f -qq -e signal=none -s 600 -e trace=%s -o %s %s \"$@\"\n"
                % (",".join(TRACED), log, REAL))
    os.chmod(wrap, 0o755)
    os.environ["SHED"] = wrap
    try:
        srv = Server(d, "--sync", mode, "--sse-ping-ms", "15000")
    finally:
        os.environ["SHED"] = REAL
    env = srv.env()["id"]
    sid = srv.session(env)["id"]
    s = SSE(srv, sid)
    eq(s.status, 200, "stream status")
    time.sleep(0.3)  # the stream is waiting (suspended) before the first post
    marks = []
    for i in range(calls):
        m = "mark-%s-%d-%d" % (mode, i, os.getpid())
        ids = [e["id"] for e in srv.post_events(sid, [{"type": "user.message", "content": [{"type": "text", "text": m}]}])["data"]]
        r = s.next(timeout=10)
        check(r is not None and ids[0] in r[1], "%s: the stream got event %d" % (mode, i))
        marks.append(m)
    # a write that is not an events POST, after them: FULL is back for it
    after = "after-%s-%d" % (mode, os.getpid())
    srv.session(env, title=after)
    s.close()
    # srv.proc is strace: the signal goes to serve, strace ends with it
    with open("/proc/%d/task/%d/children" % (srv.proc.pid, srv.proc.pid)) as f:
        serve_pid = int(f.read().split()[0])
    os.kill(serve_pid, signal.SIGTERM)
    eq(srv.proc.wait(20), 0, "%s: serve exits 0" % mode)
    srv.proc = None
    with open(log) as f:
        lines = f.read().splitlines()
    return lines, marks, after


def find(lines, pred, what):
    for i, line in enumerate(lines):
        if pred(line):
            return i
    fail("strace: no %s" % what)


def last_write(lines, before, what):
    """The commit of what is sent or answered at line `before`: the last
    write of the write-ahead log ahead of it."""
    writes = [i for i in range(before) if "pwrite64(" in lines[i]]
    check(writes != [], "a WAL write precedes the %s" % what)
    return writes[-1]


def is_sync(line):
    return re.search(r"\b(fdatasync|fsync)\(", line) is not None


def check_mode(mode):
    lines, marks, after = run(mode)
    for m in marks:
        push = find(lines, lambda l: m in l and '"event: user.message' in l, "stream send of " + m)
        answer = find(lines, lambda l: m in l and "event: " not in l and "pwrite64" not in l,
                      "POST answer with " + m)
        commit = last_write(lines, push, "%s: stream send of %s" % (mode, m))
        before = [i for i in range(commit, push) if is_sync(lines[i])]
        between = [i for i in range(push, answer) if is_sync(lines[i])]
        if mode == "full":
            check(push < answer, "full: the stream send precedes the answer (%d < %d)" % (push, answer))
            eq(len(before), 0, "full: no fsync between the commit and the stream send of " + m)
            check(len(between) >= 1, "full: the fsync comes between the stream send and the answer of " + m)
        elif mode == "strict":
            check(len(before) >= 1, "strict: the fsync precedes the stream send of " + m)
            check(push < answer, "strict: the stream send precedes the answer")
            eq(len(between), 0, "strict: nothing left to fsync after the send of " + m)
        else:
            eq(len(before) + len(between), 0, "normal: no fsync for " + m)
    answer = find(lines, lambda l: after in l and "pwrite64" not in l, "answer of the session create")
    commit = last_write(lines, answer, "%s: answer of the session create" % mode)
    synced = any(is_sync(lines[i]) for i in range(commit, answer))
    eq(synced, mode != "normal", "%s: a later session create fsynced before its answer" % mode)
    print("ok: --sync %s: %d appends in the expected order, then a session create" % (mode, len(marks)))


for mode in ("full", "strict", "normal"):
    check_mode(mode)
