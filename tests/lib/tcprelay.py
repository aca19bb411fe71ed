"""The pieces the tests' own TCP/HTTP proxies share (python3 stdlib only):
tests/lib/faultproxy.py, tests/integration/skills_lib.py (SwapProxy),
worker_protocol.sh (the recording proxy), worker_proxy.sh (the forward
proxy) and worker_tls_lib.py (the TLS terminator). Each proxy keeps its own
decisions (which fault, which answer, what to record); this module only
reads a request, answers one, and moves bytes between sockets. It never
makes up an answer on its own.

    ThreadedServer           socketserver.ThreadingTCPServer, daemon threads,
                             address reuse
    listen(backlog)          a listening socket on 127.0.0.1:<free port>
    accept_forever(ls, serve[, tag])
                             a daemon thread accepting on ls, one daemon
                             thread serve(c) (or serve(c, tag())) each
    read_request(f[, drop])  (request line, header lines, body) or None
    send_request(u, req)     that request on to u, "Connection: close"
    answer(c, status, body)  a whole answer of the proxy's own, then close
    error_body(type, msg)    an API error body
    copy(src, dst)           src's bytes to dst until src ends
    pipe(a, b, timeout)      bytes both ways until a side ends"""
import select
import socket
import socketserver
import threading

HOP_HEADERS = (b"connection", b"keep-alive")


class ThreadedServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def listen(backlog):
    """(listening socket, port) on 127.0.0.1, a free port."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(backlog)
    return ls, ls.getsockname()[1]


def accept_forever(ls, serve, tag=None):
    """Accept on ls in a daemon thread until ls is closed; each connection
    c is served by serve(c) in a daemon thread of its own, or by
    serve(c, tag()) with tag called in the accepting thread (in accept
    order)."""
    def loop():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            args = (c,) if tag is None else (c, tag())
            threading.Thread(target=serve, args=args, daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def read_request(f, drop=HOP_HEADERS):
    """One HTTP/1.1 request from the binary file f: (request line, header
    lines without those named in drop (lower case), body of Content-Length
    bytes), or None at EOF before a request line."""
    line = f.readline()
    if not line:
        return None
    headers, length = [], 0
    while True:
        h = f.readline()
        if not h or h in (b"\r\n", b"\n"):
            break
        name = h.split(b":", 1)[0].strip().lower()
        if name == b"content-length":
            length = int(h.split(b":", 1)[1].strip())
        if name in drop:
            continue
        headers.append(h)
    return line, headers, (f.read(length) if length else b"")


def send_request(u, req):
    """The request read_request returned, sent on to u as the connection's
    last ("Connection: close")."""
    line, headers, body = req
    u.sendall(line + b"".join(headers) + b"Connection: close\r\n\r\n" + body)


def answer(c, status, body, ctype=b"application/json", extra=b""):
    """The whole answer `HTTP/1.1 <status>` (e.g. b"503 Service
    Unavailable") with body, extra header lines (each ending in CRLF) after
    the Content-Type, then close c."""
    c.sendall(b"HTTP/1.1 %s\r\nContent-Type: %s\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n"
              % (status, ctype, extra, len(body)) + body)
    c.close()


def error_body(etype, message):
    """The API's error body: {"type":"error","error":{"type","message"}}."""
    return b'{"type":"error","error":{"type":"%s","message":"%s"}}' % (etype, message)


def copy(src, dst, mark_close=False, tick=None):
    """src's bytes to dst until src ends (EOF, or an error or timeout on
    either side); with mark_close, "Connection: close" goes in after the
    first line of what src sends first (an HTTP answer's status line).
    tick, if given, is called with each chunk after it is sent and with
    None each time src's timeout passes with nothing read (then the copy
    goes on); copying stops when it returns true. Closes neither; timeouts
    are the caller's."""
    first = mark_close
    try:
        while True:
            try:
                data = src.recv(65536)
            except socket.timeout:
                if tick is None or tick(None):
                    return
                continue
            if not data:
                return
            if first:
                data = data.replace(b"\r\n", b"\r\nConnection: close\r\n", 1)
                first = False
            dst.sendall(data)
            if tick and tick(data):
                return
    except OSError:
        pass


def pipe(a, b, timeout, tap=None):
    """Bytes both ways between a and b (blocking; select over both, so an
    SSL socket is used from this thread only) until either side ends, an
    error, or nothing moves for timeout seconds. a may be an SSL socket:
    what it already decrypted is read before select is asked. tap(data)
    sees each chunk that went from a to b. Closes neither."""
    a.settimeout(None)
    b.settimeout(None)
    try:
        while True:
            pending = getattr(a, "pending", None)
            r = [a] if pending and pending() else select.select([a, b], [], [], timeout)[0]
            if not r:
                return
            for s in (a, b):
                if s not in r:
                    continue
                d = s.recv(65536)
                if not d:
                    return
                (b if s is a else a).sendall(d)
                if s is a and tap:
                    tap(d)
    except OSError:
        pass
