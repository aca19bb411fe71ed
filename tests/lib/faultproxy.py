#!/usr/bin/env python3
"""A seeded fault-injecting HTTP proxy between `shed worker` and `shed serve`
for the fault tests (python3 stdlib only). It only forwards and breaks
traffic; it never makes up a successful answer.

    faultproxy.py UPSTREAM_HOST:PORT SEED RATE [--mix basic|full] [--stall-dead]

Prints "listening PORT" (a free 127.0.0.1 port). Each connection carries one
request (answers carry "Connection: close"); a seeded RNG picks one fault
for it. Two mixes, each with its own draws so a seed replays the same
sequence it always did:
  basic (worker_faults.sh, the default):
    plain requests: 503 answered by the proxy (not forwarded); drop (reset
      before forwarding); reset-after (the server applied the request, its
      answer is lost); delay (0.05-0.6 s);
    event streams: cut (reset after 0.5-3 s).
  full (safety_faults.py):
    plain requests: 500 / 502 / 503 answered by the proxy; drop;
      reset-after; delay (0.05-0.8 s); truncate (the status line, headers
      and part of the body, then the connection closes);
    event streams: cut; stall (nothing forwarded for 1-4 s, then the stream
      goes on); with --stall-dead, also at most one stall-dead (nothing more
      is ever forwarded and the socket stays open: the worker must notice
      on its own).
Counts per fault go to stderr on SIGTERM."""
import argparse
import random
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

from tcprelay import ThreadedServer, answer, copy, error_body, read_request, send_request

ap = argparse.ArgumentParser(description="seeded fault-injecting HTTP proxy")
ap.add_argument("upstream", help="HOST:PORT of shed serve")
ap.add_argument("seed", type=int)
ap.add_argument("rate", type=float, nargs="?", default=0.15)
ap.add_argument("--mix", choices=("basic", "full"), default="basic")
ap.add_argument("--stall-dead", action="store_true", help="full mix: one stream stalls for good")
opt = ap.parse_intermixed_args()
UP_HOST, UP_PORT = opt.upstream.rsplit(":", 1)
UP_PORT = int(UP_PORT)
SEED, RATE, MIX = opt.seed, opt.rate, opt.mix
STALL_DEAD = opt.stall_dead
lock = threading.Lock()
rng = random.Random(SEED)
counts = {}
stall_dead_left = [1]  # at most one dead stream per run: each costs the worker's stall timeout


def pick_basic(stream):
    r = rng.random()
    d = rng.uniform(0.05, 0.6)
    cut = rng.uniform(0.5, 3.0)
    if stream:
        f = "stream-cut" if r < RATE * 2 else "ok"
    elif r < RATE * 0.3:
        f = "503"
    elif r < RATE * 0.5:
        f = "drop"
    elif r < RATE * 0.75:
        f = "reset-after"
    elif r < RATE:
        f = "delay"
    else:
        f = "ok"
    return f, d, cut, 0.0, 0.0


def pick_full(stream):
    r = rng.random()
    d = rng.uniform(0.05, 0.8)
    cut = rng.uniform(0.5, 3.0)
    stall = rng.uniform(1.0, 4.0)
    frac = rng.random()
    if stream:
        if STALL_DEAD and r < RATE * 0.3 and stall_dead_left[0] > 0:
            stall_dead_left[0] -= 1
            f = "stream-stall-dead"
        elif r < RATE:
            f = "stream-cut"
        elif r < RATE * 2:
            f = "stream-stall"
        else:
            f = "ok"
    else:
        faults = ["500", "502", "503", "drop", "reset-after", "delay", "truncate"]
        f = faults[int(r / RATE * len(faults))] if r < RATE else "ok"
    return f, d, cut, stall, frac


def pick(stream):
    """(fault, delay, cut after, stall for, fraction of the body kept)"""
    with lock:
        got = (pick_full if MIX == "full" else pick_basic)(stream)
        counts[got[0]] = counts.get(got[0], 0) + 1
    return got


def rst(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def recv_all(u):
    data = b""
    while True:
        try:
            chunk = u.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


REASON = {"500": b"Internal Server Error", "502": b"Bad Gateway", "503": b"Service Unavailable"}


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        c = self.request
        req = read_request(c.makefile("rb"), (b"connection", b"keep-alive", b"proxy-connection"))
        if not req:
            c.close()
            return
        line = req[0]
        stream = b"/events/stream" in line
        fault, delay, cut, stall, frac = pick(stream)
        if fault in REASON:
            answer(c, b"%s %s" % (fault.encode(), REASON[fault]), error_body(b"api_error", b"injected " + fault.encode()))
            return
        if fault == "drop":
            rst(c)
            return
        if fault == "delay":
            time.sleep(delay)
        try:
            u = socket.create_connection((UP_HOST, UP_PORT), timeout=30)
        except OSError:
            rst(c)
            return
        send_request(u, req)
        if fault in ("reset-after", "truncate"):
            # Let the server apply the request, then lose (part of) its answer.
            u.settimeout(30)
            data = recv_all(u)
            u.close()
            if fault == "truncate" and b"\r\n\r\n" in data:
                head, rest = data.split(b"\r\n\r\n", 1)
                keep = int(len(rest) * frac) if rest else 0
                if keep >= len(rest) and rest:
                    keep = len(rest) - 1
                try:
                    c.sendall(head + b"\r\n\r\n" + rest[:keep])
                except OSError:
                    pass
                c.close()
                return
            rst(c)
            return
        start = time.time()
        u.settimeout(1.0 if stream else None)
        stalled = False

        def tick(sent):
            """After each chunk forwarded (sent) or a second of nothing
            (None): true ends the forwarding."""
            nonlocal stalled
            if fault == "stream-cut" and time.time() - start > cut:
                return True
            if sent is None:
                return False
            if fault == "stream-stall" and not stalled and time.time() - start > 0.3:
                stalled = True
                time.sleep(stall)  # upstream data queues meanwhile, then flows on
            if fault == "stream-stall-dead" and time.time() - start > 0.3:
                # Forward nothing more; hold the socket until the client gives up.
                c.settimeout(None)
                try:
                    while c.recv(1024):
                        pass
                except OSError:
                    pass
                return True
            return False

        # Mark the response as the connection's last.
        copy(u, c, mark_close=True, tick=tick)
        u.close()
        if fault == "stream-cut":
            rst(c)
        else:
            c.close()


def main():
    srv = ThreadedServer(("127.0.0.1", 0), Handler)
    print("listening %d" % srv.server_address[1], flush=True)

    def bye(*_):
        print("faults: %s" % sorted(counts.items()), file=sys.stderr, flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGINT, bye)
    srv.serve_forever()


main()
