#!/usr/bin/env python3
"""Upstream servers for the egress integration tests, on the host's loopback:
a TCP echo server and an HTTP server (GET /big?n=N sends N deterministic
bytes, POST /sha answers the SHA-256 of the body, GET /keepalive "hello"
ignoring Connection: close, anything else "hello"; each GET is logged to
stderr as "seen GET PATH host=HOST").
Prints "ECHO_PORT HTTP_PORT" once listening."""
import hashlib, http.server, socket, socketserver, sys, threading

def pattern(n):
    block = hashlib.sha256(b"shed").digest() * 2048  # 64 KiB
    out = bytearray()
    while len(out) < n:
        out += block
    return bytes(out[:n])

class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        while True:
            d = s.recv(65536)
            if not d:
                break
            s.sendall(d)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def _send(self, body, ctype="text/plain"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Seen-Host", self.headers.get("Host", ""))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        # Every request served is logged (stderr), so a test can see what
        # reached the upstream.
        print(f"seen GET {self.path} host={self.headers.get('Host', '')}", file=sys.stderr,
              flush=True)
        if self.path == "/keepalive":
            # An upstream that ignores the proxy's "Connection: close" and
            # would serve whatever else comes on the connection.
            self._send(b"hello from upstream\n")
            self.close_connection = False
            return
        if self.path.startswith("/big?n="):
            n = int(self.path.split("=", 1)[1])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            data = pattern(n)
            for i in range(0, n, 1 << 20):
                self.wfile.write(data[i:i + (1 << 20)])
            return
        self._send(b"hello from upstream\n")
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        h = hashlib.sha256()
        left = n
        while left:
            d = self.rfile.read(min(left, 1 << 20))
            if not d:
                break
            h.update(d)
            left -= len(d)
        self._send((h.hexdigest() + "\n").encode())

class TS(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 256

class HS(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

e = TS(("127.0.0.1", 0), Echo)
h = HS(("127.0.0.1", 0), H)
threading.Thread(target=e.serve_forever, daemon=True).start()
print(e.server_address[1], h.server_address[1], flush=True)
h.serve_forever()
