"""A TLS terminator in front of `shed serve` for the worker's https tests
(worker_tls.sh) and bench/worker_mem.sh (BENCH_MEM_TLS=1), python3 stdlib
plus the openssl CLI.
  make_pki(d)             a test CA and a server certificate for DNS:localhost
                          signed by it, plus a self-signed one nobody trusts;
  Terminator(up, c, k)    accepts TLS on 127.0.0.1:<port> and pipes each
                          connection's bytes to 127.0.0.1:<up> (one thread per
                          connection, select over both sides: an SSL socket is
                          never used from two threads)."""
import os
import socket
import ssl
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import tcprelay  # noqa: E402


def _openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_pki(d):
    """Returns dict(ca, cert, key, rogue_cert, rogue_key) of PEM paths."""
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=shed test CA", "-keyout", p("ca.key"),
             "-out", p("ca.pem"), "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", *ec, "-subj", "/CN=localhost", "-keyout", p("srv.key"), "-out", p("srv.csr"))
    with open(p("srv.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", p("srv.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial",
             "-days", "2", "-out", p("srv.pem"), "-extfile", p("srv.ext"))
    _openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=localhost", "-keyout", p("rogue.key"),
             "-out", p("rogue.pem"), "-addext", "subjectAltName=DNS:localhost")
    return dict(ca=p("ca.pem"), cert=p("srv.pem"), key=p("srv.key"), rogue_cert=p("rogue.pem"),
                rogue_key=p("rogue.key"))


class Terminator:
    def __init__(self, upstream_port, cert, key):
        self.up = upstream_port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.load_cert_chain(cert, key)
        self.ls, self.port = tcprelay.listen(256)
        self.handshakes = 0
        self.failed_handshakes = 0
        self.sni = set()
        self.lock = threading.Lock()
        tcprelay.accept_forever(self.ls, self._serve)

    def _sni(self, sock, name, ctx):
        with self.lock:
            self.sni.add(name)

    def _serve(self, raw):
        raw.settimeout(30)
        self.ctx.sni_callback = self._sni
        try:
            t = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            with self.lock:
                self.failed_handshakes += 1
            raw.close()
            return
        with self.lock:
            self.handshakes += 1
        try:
            u = socket.create_connection(("127.0.0.1", self.up), timeout=30)
        except OSError:
            t.close()
            return
        tcprelay.pipe(t, u, 600)
        for s in (t, u):
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.ls.close()
