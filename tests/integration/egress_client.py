#!/usr/bin/env python3
"""Runs inside a sandbox: adversarial and ordinary clients of the egress
proxy at 127.0.0.1:3128 (HTTP), :1080 (SOCKS5) and :53 (DNS).
Usage: client.py CHECK [ARGS...]; exit 0 = the check held, else a message."""
import hashlib, os, socket, struct, sys, threading, time

PROXY = ("127.0.0.1", 3128)

def fail(msg):
    print("client: " + msg, file=sys.stderr)
    sys.exit(1)

def recv_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        d = s.recv(1)
        if not d:
            break
        data += d
    return data.decode("latin-1")

def recv_all(s, cap=1 << 30):
    out = bytearray()
    while len(out) < cap:
        d = s.recv(1 << 20)
        if not d:
            break
        out += d
    return bytes(out)

def tunnel(host, port):
    s = socket.create_connection(PROXY, timeout=20)
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = recv_head(s)
    return s, head

def pattern(n):
    block = hashlib.sha256(b"shed").digest() * 2048
    out = bytearray()
    while len(out) < n:
        out += block
    return bytes(out[:n])

def dns(name, qtype=1):
    q = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(q, ("127.0.0.1", 53))
    r = s.recv(512)
    rcode = r[3] & 0xF
    an = struct.unpack(">H", r[6:8])[0]
    return rcode, an, r

def main():
    check, args = sys.argv[1], sys.argv[2:]
    if check == "connect-echo":
        host, port = args[0], int(args[1])
        s, head = tunnel(host, port)
        if " 200 " not in head.split("\r\n")[0]:
            fail(f"CONNECT {host}: {head!r}")
        s.sendall(b"ping")
        if s.recv(4) != b"ping":
            fail("echo through the tunnel")
    elif check == "connect-denied":
        host, port, want = args[0], int(args[1]), args[2]
        s, head = tunnel(host, port)
        if " 403 " not in head.split("\r\n")[0] or "X-Shed-Denied:" not in head or want not in head:
            fail(f"CONNECT {host}: expected 403 naming {want!r}, got {head!r}")
        body = recv_all(s).decode()
        if "shed egress policy denied" not in body:
            fail(f"403 body: {body!r}")
    elif check == "dns":
        name, want = args[0], args[1]
        rcode, an, _ = dns(name)
        got = {0: "NOERROR", 5: "REFUSED"}.get(rcode, str(rcode))
        if got != want:
            fail(f"DNS {name}: {got} ({an} answers), expected {want}")
        if want == "NOERROR" and an < 1:
            fail(f"DNS {name}: no answer")
    elif check == "direct":
        # Bypassing the proxy: the netns has only lo, nothing outside.
        for addr in [(args[0], int(args[1])), ("10.0.0.1", 80), ("169.254.169.254", 80),
                     ("1.1.1.1", 443)]:
            try:
                socket.create_connection(addr, timeout=3)
            except OSError:
                continue
            fail(f"direct connection to {addr} succeeded")
        try:
            s = socket.socket(socket.AF_INET6)
            s.settimeout(3)
            s.connect(("2606:4700:4700::1111", 443))
            fail("direct IPv6 connection succeeded")
        except OSError:
            pass
        # DNS straight to a public resolver, bypassing the stub: no route.
        try:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.settimeout(2)
            u.sendto(b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6 + b"\x01a\x00\x00\x01\x00\x01",
                     ("8.8.8.8", 53))
            u.recv(512)
            fail("a UDP query to 8.8.8.8 got an answer")
        except OSError:
            pass
    elif check == "download":
        host, port, n = args[0], int(args[1]), int(args[2])
        s, head = tunnel(host, port)
        if " 200 " not in head:
            fail(head)
        s.sendall(f"GET /big?n={n} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = recv_all(s)
        body = data.split(b"\r\n\r\n", 1)[1]
        if len(body) != n or body != pattern(n):
            fail(f"download: {len(body)} bytes, expected {n} (or content differs)")
    elif check == "upload":
        host, port, n = args[0], int(args[1]), int(args[2])
        s = socket.create_connection(PROXY, timeout=60)
        data = os.urandom(n)
        s.sendall(f"POST http://{host}:{port}/sha HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n".encode())
        s.sendall(data)
        resp = recv_all(s).decode()
        if hashlib.sha256(data).hexdigest() not in resp:
            fail(f"upload: digest mismatch: {resp[-200:]!r}")
    elif check == "pipelined":
        # A second request on the same connection (for a denied name, and
        # one naming another Host) must not reach the upstream unchecked.
        host, port = args[0], int(args[1])
        s = socket.create_connection(PROXY, timeout=20)
        s.sendall(f"GET http://{host}:{port}/keepalive HTTP/1.1\r\nHost: {host}\r\n\r\n"
                  f"GET http://evil.test:{port}/second HTTP/1.1\r\nHost: evil.test\r\n\r\n"
                  f"GET /third HTTP/1.1\r\nHost: evil.test\r\n\r\n".encode())
        s.shutdown(socket.SHUT_WR)
        resp = recv_all(s).decode("latin-1")
        if resp.count("HTTP/1.1 ") != 1 or "hello from upstream" not in resp:
            fail(f"pipelined: expected exactly one response, got {resp[:400]!r}")
    elif check == "concurrent":
        host, port, n = args[0], int(args[1]), int(args[2])
        errors = []
        socks = []
        lock = threading.Lock()
        def one(i):
            try:
                s, head = tunnel(host, port)
                if " 200 " not in head:
                    raise Exception(head)
                with lock:
                    socks.append((i, s))
            except Exception as ex:
                errors.append(f"{i}: {ex}")
        ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        if errors:
            fail(f"{len(errors)} of {n} failed: {errors[:3]}")
        # all n open at once; each echoes its own bytes
        for i, s in socks:
            s.sendall(f"conn-{i};".encode())
        for i, s in socks:
            want = f"conn-{i};".encode()
            got = b""
            while len(got) < len(want):
                d = s.recv(len(want) - len(got))
                if not d:
                    break
                got += d
            if got != want:
                fail(f"conn {i}: {got!r}")
            s.close()
    elif check == "malformed":
        for line in [b"CONNECT ok.test HTTP/1.1\r\n\r\n", b"CONNECT ok.test:99999 HTTP/1.1\r\n\r\n",
                     b"CONNECT :443 HTTP/1.1\r\n\r\n", b"GARBAGE\r\n\r\n",
                     b"CONNECT ok.test:443 HTTP/1.1\r\nX: a\rb\r\n\r\n",
                     b"\x16\x03\x01\x02\x01\x01\r\n\r\n"]:
            s = socket.create_connection(PROXY, timeout=10)
            s.sendall(line)
            resp = recv_all(s).decode("latin-1")
            if not resp.startswith("HTTP/1.1 400"):
                fail(f"{line!r}: {resp[:80]!r}")
    elif check == "oversized":
        s = socket.create_connection(PROXY, timeout=10)
        s.sendall(b"CONNECT ok.test:443 HTTP/1.1\r\n")
        try:
            for _ in range(100):
                s.sendall(b"X-Pad: " + b"a" * 1000 + b"\r\n")
        except OSError:
            pass
        resp = recv_all(s).decode("latin-1")
        if not resp.startswith("HTTP/1.1 431"):
            fail(f"oversized head: {resp[:80]!r}")
    elif check == "half-open":
        host, port = args[0], int(args[1])
        s, head = tunnel(host, port)
        s.sendall(b"last words")
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s)
        if got != b"last words":
            fail(f"half-open: {got!r}")
    elif check == "never-sends":
        t0 = time.time()
        s = socket.create_connection(PROXY, timeout=30)
        s.sendall(b"CONNECT ok.te")
        resp = recv_all(s).decode("latin-1")
        if not resp.startswith("HTTP/1.1 408"):
            fail(f"slow client: {resp[:80]!r} after {time.time() - t0:.1f}s")
    else:
        fail("unknown check " + check)

main()
