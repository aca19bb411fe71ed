#!/usr/bin/env python3
"""A fault-injecting HTTP proxy for the worker tests (python3 stdlib only).

    worker_faultproxy.py UPSTREAM_HOST:PORT SEED [RATE]

Listens on a free 127.0.0.1 port (printed as "listening PORT" on stdout) and
forwards each HTTP/1.1 request to UPSTREAM, injecting faults chosen by a
seeded RNG: 503 answers (not forwarded), connections dropped before
forwarding, connections reset AFTER the server applied the request (the
answer is lost), delays, and event streams cut mid-way. Each response is sent
with "Connection: close". Counts of each fault go to stderr at exit (SIGTERM).
"""
import random
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

UP_HOST, UP_PORT = sys.argv[1].rsplit(":", 1)
UP_PORT = int(UP_PORT)
SEED = int(sys.argv[2])
RATE = float(sys.argv[3]) if len(sys.argv) > 3 else 0.15
lock = threading.Lock()
rng = random.Random(SEED)
counts = {}


def pick(stream):
    with lock:
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
    with lock:
        counts[f] = counts.get(f, 0) + 1
    return f, d, cut


def rst(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def read_request(f):
    line = f.readline()
    if not line:
        return None
    headers = []
    length = 0
    while True:
        h = f.readline()
        if not h or h in (b"\r\n", b"\n"):
            break
        name = h.split(b":", 1)[0].strip().lower()
        if name == b"content-length":
            length = int(h.split(b":", 1)[1].strip())
        if name in (b"connection", b"keep-alive", b"proxy-connection"):
            continue
        headers.append(h)
    body = f.read(length) if length else b""
    return line, headers, body


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        c = self.request
        f = c.makefile("rb")
        req = read_request(f)
        if not req:
            c.close()
            return
        line, headers, body = req
        stream = b"/events/stream" in line
        fault, delay, cut = pick(stream)
        if fault == "503":
            msg = b'{"type":"error","error":{"type":"api_error","message":"injected 503"}}'
            c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(msg), msg))
            c.close()
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
        u.sendall(line + b"".join(headers) + b"Connection: close\r\n\r\n" + body)
        if fault == "reset-after":
            # Let the server apply the request, then lose its answer.
            u.settimeout(30)
            try:
                while u.recv(65536):
                    pass
            except OSError:
                pass
            u.close()
            rst(c)
            return
        start = time.time()
        u.settimeout(None if not stream else 1.0)
        first = True
        try:
            while True:
                try:
                    data = u.recv(65536)
                except socket.timeout:
                    if fault == "stream-cut" and time.time() - start > cut:
                        break
                    continue
                if not data:
                    break
                if first:
                    # Mark the response as the connection's last.
                    data = data.replace(b"\r\n", b"\r\nConnection: close\r\n", 1)
                    first = False
                c.sendall(data)
                if fault == "stream-cut" and time.time() - start > cut:
                    break
        except OSError:
            pass
        u.close()
        if fault == "stream-cut":
            rst(c)
        else:
            c.close()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    print("listening %d" % srv.server_address[1], flush=True)

    def bye(*_):
        print("faults: %s" % sorted(counts.items()), file=sys.stderr, flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGINT, bye)
    srv.serve_forever()


main()
