#!/usr/bin/env bash
# timeout: 170
# Egress end to end through a real sandbox (`shed run`): the only way out is
# shed's proxy; names resolve through staticHosts to servers this test runs
# on the host's loopback (allowCidrs 127.0.0.0/8 lets the proxy reach them).
# The checks run inside the sandbox (tests/integration/egress_client.py).
source "$(dirname "$0")/../lib/common.sh"
here=$(cd "$(dirname "$0")" && pwd)
command -v python3 >/dev/null || skip "python3 not installed"
command -v curl >/dev/null || skip "curl not installed"

ws=$T/ws
mkdir -p "$ws"
cp "$here/egress_client.py" "$ws/client.py"
chmod -R a+rX "$ws"

python3 "$here/egress_upstream.py" >"$T/ports" 2>"$T/upstream.log" &
up=$!
at_exit "kill $up"
wait_for 10 test -s "$T/ports" || fail "upstream servers did not start"
read -r ECHO HTTP <"$T/ports"

cat >"$T/policy.json" <<JSON
{"network": {
  "allowedDomains": ["ok.test", "*.example.test", "private.test", "meta.test", "127.0.0.1:$ECHO"],
  "deniedDomains": ["bad.example.test"],
  "staticHosts": {"ok.test": "127.0.0.1", "a.example.test": "127.0.0.1",
                  "example.test": "127.0.0.1", "evilexample.test": "127.0.0.1",
                  "bad.example.test": "127.0.0.1", "private.test": "10.0.0.1",
                  "meta.test": "169.254.169.254"},
  "allowCidrs": ["127.0.0.0/8"]}}
JSON

inside() { # inside CMD... : run in a fresh sandbox with the test policy
    "$SHED" run --policy "$T/policy.json" --workspace "$ws" -- "$@" 2>>"$T/stderr"
}
check() { # check NAME ARGS... : a client.py check must hold
    step "$*"
    inside python3 /workspace/client.py "$@" || fail "check '$*' failed (stderr: $(tail -n 5 "$T/stderr"))"
}

step "allowed name via plain HTTP, CONNECT and SOCKS5 (curl, proxy from the environment)"
out=$(inside curl -sS -m 10 "http://ok.test:$HTTP/") || fail "plain HTTP: $out"
expect_eq "$out" "hello from upstream" "plain HTTP body"
out=$(inside curl -sS -m 10 -p "http://ok.test:$HTTP/") || fail "CONNECT: $out"
expect_eq "$out" "hello from upstream" "CONNECT body"
out=$(inside curl -sS -m 10 --socks5-hostname 127.0.0.1:1080 "http://a.example.test:$HTTP/") ||
    fail "SOCKS5: $out"
expect_eq "$out" "hello from upstream" "SOCKS5 body"
out=$(inside curl -sS -m 10 -D - -o /dev/null "http://ok.test:$HTTP/")
expect_contains "$out" "X-Seen-Host: ok.test:$HTTP" "Host header as the proxy rewrote it"

step "denied name: 403 naming shed's policy and the rule"
out=$(inside curl -sS -m 10 -i "http://evil.test:$HTTP/" || true)
expect_contains "$out" "HTTP/1.1 403" "plain HTTP denial"
expect_contains "$out" "X-Shed-Denied: no network.allowedDomains entry matches evil.test:$HTTP" "header"
expect_contains "$out" "shed egress policy denied" "body"
out=$("$SHED" run --policy "$T/policy.json" -- \
    curl -sS -m 10 --socks5-hostname 127.0.0.1:1080 "http://evil.test:$HTTP/" 2>&1 || true)
expect_contains "$out" "connection to evil.test. (2)" "SOCKS5 denial (reply 2: not allowed by ruleset)"
grep -q "egress denied http evil.test:$HTTP" "$T/stderr" || fail "denial not logged by shed run"

check connect-echo a.example.test "$ECHO"
check connect-denied example.test "$ECHO" "no network.allowedDomains entry matches example.test"
check connect-denied evilexample.test "$ECHO" "no network.allowedDomains entry matches"
check connect-denied bad.example.test "$ECHO" 'network.deniedDomains[0] "bad.example.test"'
check connect-denied BAD.Example.TEST. "$ECHO" 'network.deniedDomains[0]'
check connect-denied private.test 443 "10.0.0.0/8, refused by default"
check connect-denied meta.test 80 "169.254.0.0/16, refused by default"
check connect-echo 127.0.0.1 "$ECHO"
check connect-denied 127.0.0.2 "$ECHO" "IP literal 127.0.0.2"
check connect-denied 127.0.0.1 "$HTTP" "IP literal 127.0.0.1:$HTTP is not listed"
check connect-denied "[::ffff:127.0.0.2]" "$ECHO" "IP literal 127.0.0.2"
check dns ok.test NOERROR
check dns a.example.test NOERROR
check dns evil.test REFUSED
check dns bad.example.test REFUSED
check dns ZXhmaWx0cmF0ZQ.evilexample.test REFUSED
check direct 127.0.0.1 "$HTTP"
check download ok.test "$HTTP" $((64 << 20))
check upload ok.test "$HTTP" $((64 << 20))
check pipelined ok.test "$HTTP"
grep -q "seen GET /keepalive host=ok.test:$HTTP" "$T/upstream.log" ||
    fail "pipelined: the first request did not reach the upstream ($(tail -n 5 "$T/upstream.log"))"
if grep -E "seen GET /(second|third)|host=evil" "$T/upstream.log"; then
    fail "pipelined: a request after the first reached the upstream unchecked"
fi
check concurrent ok.test "$ECHO" 100
check malformed
check oversized
check half-open ok.test "$ECHO"
check never-sends
echo "all egress checks held"
