/* Unit tests of the egress policy (parsing, validation, name matching,
 * address ranges) and of the pure wire parsers (HTTP proxy head, SOCKS5,
 * DNS). No sockets here; see test_egress_proxy.c for those. */
#include "test.h"

#include "base/cleanup.h"
#include "base/json.h"
#include "egress/egress.h"
#include "egress/egress_int.h"

#include <errno.h>

static egress_policy *parse_ok(const char *json)
{
    shed_err err = {0};
    _cleanup_json_ json_t *j = json_parse(json, strlen(json), 1 << 20, 16, &err);
    if (!j) test_fail(__FILE__, __LINE__, "json: %s", err.msg);
    egress_policy *p = NULL;
    if (egress_policy_parse(j, &p, &err) < 0) test_fail(__FILE__, __LINE__, "parse: %s", err.msg);
    return p;
}

static void parse_bad(const char *json, const char *want_msg)
{
    shed_err err = {0};
    _cleanup_json_ json_t *j = json_parse(json, strlen(json), 1 << 20, 16, &err);
    if (!j) test_fail(__FILE__, __LINE__, "json: %s", err.msg);
    egress_policy *p = NULL;
    int rc = egress_policy_parse(j, &p, &err);
    if (rc >= 0) test_fail(__FILE__, __LINE__, "accepted %s", json);
    ASSERT_TRUE(p == NULL);
    ASSERT_CONTAINS(err.msg, want_msg);
}

TEST(policy_errors_name_the_key)
{
    parse_bad("{\"allowedDomains\":[\"a.test\",\"b.test\",\"b\\u00fccher.test\"]}",
              "network.allowedDomains[2]");
    parse_bad("{\"allowedDomains\":[\"b\\u00fccher.test\"]}", "xn--");
    parse_bad("{\"allowedDomains\":[\"*\"]}", "allowedDomains[0]");
    parse_bad("{\"allowedDomains\":[\"a.*.test\"]}", "allowedDomains[0]");
    parse_bad("{\"allowedDomains\":[\"*.*.test\"]}", "allowedDomains[0]");
    parse_bad("{\"allowedDomains\":[\"a.test:0\"]}", "allowedDomains[0]");
    parse_bad("{\"allowedDomains\":[\"a.test:65536\"]}", "allowedDomains[0]");
    parse_bad("{\"allowedDomains\":[\"a.test:\"]}", "allowedDomains[0]");
    parse_bad("{\"allowedDomains\":[\"a.test:+80\"]}", "allowedDomains[0]");
    parse_bad("{\"allowedDomains\":[\"a..test\"]}", "allowedDomains[0]");
    parse_bad("{\"allowedDomains\":[\"\"]}", "allowedDomains[0]");
    parse_bad("{\"allowedDomains\":[\"127.1\"]}", "allowedDomains[0]");
    parse_bad("{\"allowedDomains\":[\"fe80::1%eth0\"]}", "allowedDomains[0]");
    parse_bad("{\"allowedDomains\":[\"a test\"]}", "allowedDomains[0]");
    parse_bad("{\"allowedDomains\":[3]}", "allowedDomains[0]: must be a string");
    parse_bad("{\"allowedDomains\":\"a.test\"}", "allowedDomains");
    parse_bad("{\"deniedDomains\":[\"ok\",\"x/y\"]}", "network.deniedDomains[1]");
    parse_bad("{\"allowCidrs\":[\"10.0.0.0/33\"]}", "network.allowCidrs[0]");
    parse_bad("{\"allowCidrs\":[\"10.0.0.0/\"]}", "network.allowCidrs[0]");
    parse_bad("{\"allowCidrs\":[\"::/129\"]}", "network.allowCidrs[0]");
    parse_bad("{\"allowCidrs\":[\"10.0.0.0/-1\"]}", "network.allowCidrs[0]");
    parse_bad("{\"allowCidrs\":[\"example.test/8\"]}", "network.allowCidrs[0]");
    parse_bad("{\"staticHosts\":{\"a.test\":\"not-an-ip\"}}", "network.staticHosts.a.test");
    parse_bad("{\"staticHosts\":{\"a.test\":[]}}", "network.staticHosts.a.test");
    parse_bad("{\"staticHosts\":{\"a..test\":\"1.2.3.4\"}}", "network.staticHosts.a..test");
    parse_bad("{\"staticHosts\":{\"A.test\":\"1.2.3.4\",\"a.test.\":\"1.2.3.5\"}}", "listed twice");
    parse_bad("{\"maxConnections\":0}", "network.maxConnections");
    parse_bad("{\"connectTimeoutMs\":\"5\"}", "connectTimeoutMs");
    parse_bad("{\"allowedDomain\":[]}", "network.allowedDomain: unknown key");
    parse_bad("[]", "network: must be an object");
}

TEST(policy_null_or_empty_means_no_network)
{
    char rule[EGRESS_RULE_MAX];
    egress_policy *p = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(egress_policy_parse(NULL, &p, &err), 0);
    ASSERT_FALSE(egress_decide_name(p, "example.test", 443, rule));
    ASSERT_CONTAINS(rule, "no network");
    egress_policy_free(p);
    p = parse_ok("{\"allowedDomains\":[],\"deniedDomains\":[\"x.test\"]}");
    ASSERT_FALSE(egress_decide_name(p, "x.test", 443, rule));
    ASSERT_CONTAINS(rule, "allowedDomains is empty");
    egress_addr a;
    ASSERT_TRUE(egress_ip_parse("1.1.1.1", 7, &a));
    ASSERT_FALSE(egress_decide_ip(p, &a, 443, rule));
    ASSERT_FALSE(egress_name_allowed_any_port(p, "x.test", rule));
    egress_policy_free(p);
}

static bool allowed(const egress_policy *p, const char *host, int port)
{
    char norm[EGRESS_NAME_MAX + 1], rule[EGRESS_RULE_MAX];
    if (egress_name_normalize(host, strlen(host), norm) < 0) return false;
    return egress_decide_name(p, norm, port, rule);
}

TEST(policy_wildcards_exact_names_deny_wins)
{
    egress_policy *p = parse_ok("{\"allowedDomains\":[\"*.example.test\",\"api.other.test\","
                                "\"*.deep.test\"],"
                                "\"deniedDomains\":[\"bad.example.test\",\"*.evil.example.test\"]}");
    ASSERT_TRUE(allowed(p, "a.example.test", 443));
    ASSERT_TRUE(allowed(p, "a.b.example.test", 443));
    ASSERT_TRUE(allowed(p, "A.EXAMPLE.test", 443));
    ASSERT_TRUE(allowed(p, "a.example.test.", 443));
    ASSERT_FALSE(allowed(p, "example.test", 443));       /* wildcard = subdomains only */
    ASSERT_FALSE(allowed(p, "evilexample.test", 443));   /* not a label boundary */
    ASSERT_FALSE(allowed(p, "example.test.evil", 443));
    ASSERT_FALSE(allowed(p, "bad.example.test", 443));   /* deny wins */
    ASSERT_FALSE(allowed(p, "BAD.example.test.", 443));
    ASSERT_TRUE(allowed(p, "notbad.example.test", 443));
    ASSERT_TRUE(allowed(p, "evil.example.test", 443));   /* deny wildcard: subdomains only */
    ASSERT_FALSE(allowed(p, "x.evil.example.test", 443));
    ASSERT_TRUE(allowed(p, "api.other.test", 80));
    ASSERT_FALSE(allowed(p, "x.api.other.test", 80));    /* exact = exact */
    ASSERT_FALSE(allowed(p, "other.test", 80));
    ASSERT_FALSE(allowed(p, ".example.test", 443));      /* empty label */
    ASSERT_FALSE(allowed(p, "a..example.test", 443));
    ASSERT_FALSE(allowed(p, "a.example.test..", 443));
    ASSERT_FALSE(allowed(p, "a\xc3\xa4.example.test", 443)); /* non-ASCII refused */
    ASSERT_FALSE(allowed(p, "a.example.test\n", 443));
    char rule[EGRESS_RULE_MAX];
    ASSERT_FALSE(egress_decide_name(p, "bad.example.test", 1, rule));
    ASSERT_EQ_STR(rule, "network.deniedDomains[0] \"bad.example.test\"");
    ASSERT_TRUE(egress_decide_name(p, "q.example.test", 1, rule));
    ASSERT_EQ_STR(rule, "network.allowedDomains[0] \"*.example.test\"");
    egress_policy_free(p);
}

TEST(policy_ports)
{
    egress_policy *p = parse_ok("{\"allowedDomains\":[\"a.test:443\",\"b.test\",\"*.c.test:8080\","
                                "\"[::1]:22\",\"10.0.0.1:5432\"],"
                                "\"deniedDomains\":[\"b.test:25\"]}");
    ASSERT_TRUE(allowed(p, "a.test", 443));
    ASSERT_FALSE(allowed(p, "a.test", 80));
    ASSERT_TRUE(allowed(p, "b.test", 80));
    ASSERT_TRUE(allowed(p, "b.test", 1));
    ASSERT_FALSE(allowed(p, "b.test", 25));
    ASSERT_TRUE(allowed(p, "x.c.test", 8080));
    ASSERT_FALSE(allowed(p, "x.c.test", 8081));
    char rule[EGRESS_RULE_MAX];
    /* DNS: a name allowed on some port resolves; a port-only deny does not hide it. */
    ASSERT_TRUE(egress_name_allowed_any_port(p, "a.test", rule));
    ASSERT_TRUE(egress_name_allowed_any_port(p, "b.test", rule));
    ASSERT_FALSE(egress_name_allowed_any_port(p, "d.test", rule));
    egress_addr a;
    ASSERT_TRUE(egress_ip_parse("::1", 3, &a));
    ASSERT_TRUE(egress_decide_ip(p, &a, 22, rule));
    ASSERT_EQ_STR(rule, "network.allowedDomains[3] \"[::1]:22\"");
    ASSERT_FALSE(egress_decide_ip(p, &a, 23, rule));
    ASSERT_TRUE(egress_ip_parse("::ffff:10.0.0.1", 15, &a)); /* same address, mapped form */
    ASSERT_TRUE(egress_decide_ip(p, &a, 5432, rule));
    ASSERT_TRUE(egress_ip_parse("10.0.0.2", 8, &a));
    ASSERT_FALSE(egress_decide_ip(p, &a, 5432, rule));
    ASSERT_CONTAINS(rule, "not listed");
    egress_policy_free(p);
}

TEST(policy_names_normalize)
{
    char out[EGRESS_NAME_MAX + 1];
    ASSERT_EQ_INT(egress_name_normalize("WWW.Example.TEST.", 17, out), 0);
    ASSERT_EQ_STR(out, "www.example.test");
    ASSERT_EQ_INT(egress_name_normalize("_dmarc.x-y.test", 15, out), 0);
    ASSERT_EQ_INT(egress_name_normalize("xn--bcher-kva.test", 18, out), 0);
    const char *bad[] = {"", ".", "..", "a..b", ".a", "a.b..", "1.2.3.4", "2130706433", "a.123",
                         "a b.test", "a/b.test", "a:b", "a\x01.test", "b\xc3\xbc.test"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        if (egress_name_normalize(bad[i], strlen(bad[i]), out) == 0)
            test_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
    char label[80];
    memset(label, 'a', 64);
    memcpy(label + 64, ".test", 6);
    ASSERT_EQ_INT(egress_name_normalize(label, strlen(label), out), -EINVAL); /* label > 63 */
    char longname[300];
    size_t n = 0;
    while (n + 10 < 260) {
        memcpy(longname + n, "abcdefghi.", 10);
        n += 10;
    }
    memcpy(longname + n, "test", 5);
    ASSERT_EQ_INT(egress_name_normalize(longname, strlen(longname), out), -EINVAL); /* > 253 */
    ASSERT_EQ_INT(egress_name_normalize("a.b", 1, out), 0); /* respects len: just "a" */
    ASSERT_EQ_STR(out, "a");
}

TEST(policy_ip_literals_are_strict)
{
    egress_addr a;
    ASSERT_TRUE(egress_ip_parse("1.2.3.4", 7, &a));
    ASSERT_TRUE(egress_addr_is_v4(&a));
    ASSERT_TRUE(egress_ip_parse("[::1]", 5, &a));
    ASSERT_TRUE(egress_ip_parse("::ffff:1.2.3.4", 14, &a));
    ASSERT_TRUE(egress_addr_is_v4(&a)); /* the mapped form is the same v4 address */
    char s[64];
    egress_addr_str(&a, s, sizeof(s));
    ASSERT_EQ_STR(s, "1.2.3.4");
    const char *bad[] = {"127.1", "0x7f.0.0.1", "2130706433", "017.0.0.1", "1.2.3.4.", "[1.2.3.4]",
                         "fe80::1%lo", "[::1", "1.2.3", "::g", ""};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        if (egress_ip_parse(bad[i], strlen(bad[i]), &a))
            test_fail(__FILE__, __LINE__, "accepted \"%s\" as an address", bad[i]);
}

static const char *refused(const egress_policy *p, const char *ip)
{
    egress_addr a;
    if (!egress_ip_parse(ip, strlen(ip), &a)) test_fail(__FILE__, __LINE__, "bad ip %s", ip);
    return egress_addr_refused(p, &a);
}

TEST(policy_default_refused_ranges)
{
    egress_policy *p = parse_ok("{\"allowedDomains\":[\"x.test\"]}");
    const char *no[] = {"127.0.0.1",       "127.255.255.254", "0.0.0.0",          "10.0.0.1",
                        "10.255.255.255",  "172.16.0.1",      "172.31.255.255",   "192.168.1.1",
                        "169.254.169.254", "169.254.0.1",     "100.64.0.1",       "100.127.255.255",
                        "224.0.0.1",       "239.255.255.250", "255.255.255.255",  "240.0.0.1",
                        "::1",             "::",              "::ffff:127.0.0.1", "::ffff:10.0.0.1",
                        "::ffff:169.254.169.254",             "::127.0.0.1",      "fc00::1",
                        "fd12:3456::1",    "fe80::1",         "febf::1",          "fec0::1",
                        "ff02::1",         "ff0e::1",         "64:ff9b::a00:1",   "64:ff9b::7f00:1",
                        "2002:a00:1::1",   "2002:a9fe:a9fe::1", "192.0.0.8",      "198.18.0.1",
                        "::ffff:0:7f00:1", "64:ff9b:1::808:808"};
    for (size_t i = 0; i < ARRAY_SIZE(no); i++)
        if (!refused(p, no[i])) test_fail(__FILE__, __LINE__, "%s was not refused", no[i]);
    const char *yes[] = {"1.1.1.1",         "8.8.8.8",  "172.15.255.255", "172.32.0.1",
                         "100.63.255.255",  "100.128.0.1", "192.169.0.1", "169.253.255.255",
                         "11.0.0.1",        "2606:4700::1111", "2001:4860:4860::8888",
                         "64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8"};
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
        if (refused(p, yes[i])) test_fail(__FILE__, __LINE__, "%s was refused", yes[i]);
    ASSERT_EQ_STR(refused(p, "169.254.169.254"), "169.254.0.0/16");
    ASSERT_EQ_STR(refused(p, "::ffff:10.1.1.1"), "10.0.0.0/8");
    egress_policy_free(p);
}

TEST(policy_allow_cidrs_lift_only_their_range)
{
    egress_policy *p = parse_ok("{\"allowedDomains\":[\"x.test\"],"
                                "\"allowCidrs\":[\"127.0.0.0/8\",\"10.1.2.3/16\",\"fd00::/8\"]}");
    ASSERT_TRUE(refused(p, "127.0.0.1") == NULL);
    ASSERT_TRUE(refused(p, "::ffff:127.0.0.1") == NULL);
    ASSERT_TRUE(refused(p, "10.1.0.1") == NULL); /* host bits of 10.1.2.3/16 ignored */
    ASSERT_TRUE(refused(p, "10.1.255.255") == NULL);
    ASSERT_TRUE(refused(p, "10.2.0.1") != NULL);
    ASSERT_TRUE(refused(p, "fd00::1") == NULL);
    ASSERT_TRUE(refused(p, "fc00::1") != NULL);
    ASSERT_TRUE(refused(p, "::1") != NULL);  /* v6 loopback is not 127/8 */
    ASSERT_TRUE(refused(p, "169.254.169.254") != NULL);
    ASSERT_TRUE(refused(p, "64:ff9b::7f00:1") == NULL); /* NAT64 of an allowed v4 */
    egress_policy_free(p);
}

TEST(policy_static_hosts)
{
    egress_policy *p = parse_ok("{\"allowedDomains\":[\"a.test\"],\"staticHosts\":"
                                "{\"A.Test.\":\"127.0.0.1\",\"b.test\":[\"::1\",\"10.0.0.1\"]}}");
    const egress_static *s = egress_static_lookup(p, "a.test");
    ASSERT_TRUE(s != NULL);
    ASSERT_EQ_INT(s->n, 1);
    s = egress_static_lookup(p, "b.test");
    ASSERT_TRUE(s != NULL);
    ASSERT_EQ_INT(s->n, 2);
    ASSERT_TRUE(egress_static_lookup(p, "c.test") == NULL);
    /* A static entry grants nothing by itself. */
    ASSERT_FALSE(allowed(p, "b.test", 443));
    egress_policy_free(p);
}

TEST(policy_refcount)
{
    egress_policy *p = parse_ok("{\"allowedDomains\":[\"a.test\"]}");
    egress_policy *q = egress_policy_ref(p);
    ASSERT_TRUE(p == q);
    egress_policy_free(p);
    ASSERT_TRUE(allowed(q, "a.test", 1)); /* still alive (ASan would catch otherwise) */
    egress_policy_free(q);
}

/* ---------- HTTP head ---------- */

static int http(const char *s, egress_http_req *r)
{
    return egress_http_parse(s, strlen(s), r);
}

TEST(http_connect_forms)
{
    egress_http_req r;
    ASSERT_EQ_INT(http("CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n", &r), 1);
    ASSERT_TRUE(r.is_connect);
    ASSERT_EQ_STR(r.host, "api.test");
    ASSERT_EQ_INT(r.port, 443);
    ASSERT_FALSE(r.host_is_ip);
    ASSERT_TRUE(r.upstream == NULL);
    egress_http_req_clear(&r);
    ASSERT_EQ_INT(http("CONNECT [::1]:22 HTTP/1.0\n\n", &r), 1);
    ASSERT_EQ_STR(r.host, "::1");
    ASSERT_TRUE(r.host_is_ip);
    ASSERT_EQ_INT(r.head_len, strlen("CONNECT [::1]:22 HTTP/1.0\n\n"));
    egress_http_req_clear(&r);
    ASSERT_EQ_INT(http("CONNECT 1.2.3.4:80 HTTP/1.1\r\n\r\nEXTRA", &r), 1);
    ASSERT_TRUE(r.host_is_ip);
    ASSERT_EQ_INT(r.head_len, strlen("CONNECT 1.2.3.4:80 HTTP/1.1\r\n\r\n"));
    egress_http_req_clear(&r);
    ASSERT_EQ_INT(http("CONNECT api.test:443 HTTP/1.1\r\nHost: x", &r), 0); /* incomplete */
    const char *bad[] = {"CONNECT api.test HTTP/1.1\r\n\r\n", "CONNECT :443 HTTP/1.1\r\n\r\n",
                         "CONNECT [::1 HTTP/1.1\r\n\r\n",     "CONNECT [zz]:1 HTTP/1.1\r\n\r\n",
                         "CONNECT a:1:2 HTTP/1.1\r\n\r\n",    "CONNECT a:123456 HTTP/1.1\r\n\r\n",
                         "CONNECT a:1 HTTP/1.1 x\r\n\r\n",    "CONNECT a:1 HTTP/3.0\r\n\r\n",
                         "CONNECT a:1 HTTP/1.1\rX\r\n\r\n",   "CON NECT a:1 HTTP/1.1\r\n\r\n",
                         "CONNECT a:1 HTTP/1.1\r\nX: a\rb\r\n\r\n"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        int rc = http(bad[i], &r);
        if (rc != -400) test_fail(__FILE__, __LINE__, "case %zu: rc %d", i, rc);
        egress_http_req_clear(&r);
    }
}

TEST(http_plain_rewrite)
{
    egress_http_req r;
    ASSERT_EQ_INT(http("POST http://Api.Test:8080/a/b?c=d#frag HTTP/1.1\r\nHost: other\r\n"
                       "Content-Length: 3\r\nConnection: keep-alive, X-Foo\r\n"
                       "Proxy-Authorization: Basic eA==\r\nKeep-Alive: 5\r\n\r\nabc",
                       &r),
                  1);
    ASSERT_FALSE(r.is_connect);
    ASSERT_EQ_STR(r.host, "Api.Test");
    ASSERT_EQ_INT(r.port, 8080);
    ASSERT_EQ_STR(r.upstream, "POST /a/b?c=d HTTP/1.1\r\nHost: Api.Test:8080\r\n"
                              "Content-Length: 3\r\nConnection: close\r\n\r\n");
    egress_http_req_clear(&r);
    ASSERT_EQ_INT(http("GET http://a.test HTTP/1.0\r\n\r\n", &r), 1);
    ASSERT_EQ_STR(r.upstream, "GET / HTTP/1.0\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    ASSERT_EQ_INT(r.port, 80);
    egress_http_req_clear(&r);
    ASSERT_EQ_INT(http("GET http://a.test?x HTTP/1.1\r\n\r\n", &r), 1);
    ASSERT_CONTAINS(r.upstream, "GET /?x HTTP/1.1\r\n");
    egress_http_req_clear(&r);
    ASSERT_EQ_INT(http("GET http://[2001:db8::1]:81/ HTTP/1.1\r\n\r\n", &r), 1);
    ASSERT_CONTAINS(r.upstream, "Host: [2001:db8::1]:81\r\n");
    egress_http_req_clear(&r);
    ASSERT_EQ_INT(http("GET http://ws.test/ HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: "
                       "websocket\r\n\r\n",
                       &r),
                  1);
    ASSERT_CONTAINS(r.upstream, "Upgrade: websocket\r\nConnection: upgrade\r\n\r\n");
    egress_http_req_clear(&r);
    const char *bad[] = {"GET /x HTTP/1.1\r\n\r\n",
                         "GET https://a.test/ HTTP/1.1\r\n\r\n",
                         "GET http://u:p@a.test/ HTTP/1.1\r\n\r\n",
                         "GET http://a.test:x/ HTTP/1.1\r\n\r\n",
                         "GET http:///x HTTP/1.1\r\n\r\n",
                         "GET http://a.test/ HTTP/1.1\r\n folded\r\n\r\n",
                         "GET http://a.test/ HTTP/1.1\r\nNoColon\r\n\r\n",
                         "GET http://a.test/ HTTP/1.1\r\n: empty\r\n\r\n",
                         "GET http://a.test/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                         "GET http://a.test/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                         "GET http://a.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                         "Content-Length: 2\r\n\r\n",
                         "GET http://a.test/\x7f HTTP/1.1\r\n\r\n"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        int rc = http(bad[i], &r);
        if (rc != -400) test_fail(__FILE__, __LINE__, "case %zu: rc %d", i, rc);
        egress_http_req_clear(&r);
    }
    /* A NUL anywhere in a header (found by fuzzing: strchr matched the terminator). */
    static const char nul[] = "GET http://a.test/ HTTP/1.1\r\nX-A\0b: 1\r\n\r\n";
    ASSERT_EQ_INT(egress_http_parse(nul, sizeof(nul) - 1, &r), -400);
    static const char nulv[] = "GET http://a.test/ HTTP/1.1\r\nX-A: 1\0\r\n\r\n";
    ASSERT_EQ_INT(egress_http_parse(nulv, sizeof(nulv) - 1, &r), -400);
    /* Same Content-Length twice is tolerated. */
    ASSERT_EQ_INT(http("GET http://a.test/ HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
                       &r),
                  1);
    egress_http_req_clear(&r);
}

TEST(http_body_framing)
{
    egress_http_req r;
    ASSERT_EQ_INT(http("POST http://a.test/ HTTP/1.1\r\nContent-Length: 42\r\n\r\n", &r), 1);
    ASSERT_EQ_INT(r.content_length, 42);
    ASSERT_FALSE(r.chunked);
    egress_http_req_clear(&r);
    ASSERT_EQ_INT(http("POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", &r), 1);
    ASSERT_TRUE(r.chunked);
    ASSERT_EQ_INT(r.content_length, 0);
    egress_http_req_clear(&r);
    ASSERT_EQ_INT(http("GET http://a.test/ HTTP/1.1\r\n\r\n", &r), 1);
    ASSERT_FALSE(r.chunked);
    ASSERT_EQ_INT(r.content_length, 0);
    ASSERT_FALSE(r.upgrade);
    egress_http_req_clear(&r);
    const char *bad[] = {
        "POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        "POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
        "POST http://a.test/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST http://a.test/ HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n",
        "POST http://a.test/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 01\r\n\r\n",
        "GET http://a.test/ HTTP/1.1\n\n",
        "GET http://a.test/ HTTP/1.1\r\nX: y\n\r\n",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        int rc = http(bad[i], &r);
        if (rc != -400) test_fail(__FILE__, __LINE__, "case %zu: rc %d", i, rc);
        egress_http_req_clear(&r);
    }
}

static long scan_all(const char *body, size_t step, bool *done)
{
    egress_chunked ck = {0};
    size_t len = strlen(body), off = 0;
    *done = false;
    while (off < len && !*done) {
        size_t n = len - off < step ? len - off : step;
        long k = egress_chunked_scan(&ck, body + off, n, done);
        if (k < 0) return -1;
        off += (size_t)k;
    }
    return (long)off;
}

TEST(http_chunked_scanner)
{
    const char *ok = "5\r\nhello\r\n1a;x=\"y\"\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: v\r\n\r\n";
    char with_tail[256];
    snprintf(with_tail, sizeof(with_tail), "%sGET http://evil.test/ HTTP/1.1\r\n\r\n", ok);
    for (size_t step = 1; step <= strlen(with_tail); step += 7) {
        bool done;
        long k = scan_all(with_tail, step, &done);
        ASSERT_TRUE(done);
        ASSERT_EQ_INT(k, (long)strlen(ok));
    }
    bool done;
    ASSERT_EQ_INT(scan_all("0\r\n\r\n", 100, &done), 5);
    ASSERT_TRUE(done);
    ASSERT_EQ_INT(scan_all("5\r\nhel", 100, &done), 6); /* not yet */
    ASSERT_FALSE(done);
    const char *bad[] = {"\r\n", "g\r\n", " 5\r\nhello\r\n", "5 \r\nhello\r\n", "5\nhello\r\n",
                         "5\r\nhelloX\r\n", "5\r\nhello\n", "1000000000000000\r\n",
                         "0\r\n T: v\r\n\r\n", "0\r\nT: v\n\r\n", "0\r\n\n", "1;\x01\r\n",
                         "-1\r\n", "0x5\r\n"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        if (scan_all(bad[i], 3, &done) != -1) test_fail(__FILE__, __LINE__, "case %zu accepted", i);
}

TEST(http_limits)
{
    egress_http_req r;
    size_t n = EGRESS_HEAD_MAX + 10;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    memcpy(big, "CONNECT a.test:1 HTTP/1.1\r\nX: ", 30);
    big[n] = '\0';
    ASSERT_EQ_INT(egress_http_parse(big, n, &r), -431);
    ASSERT_EQ_INT(egress_http_parse(big, EGRESS_HEAD_MAX - 1, &r), 0); /* not yet */
    free(big);
    char many[8192] = "CONNECT a.test:1 HTTP/1.1\r\n";
    for (int i = 0; i < EGRESS_HEADERS_MAX + 1; i++) strcat(many, "X: y\r\n");
    strcat(many, "\r\n");
    ASSERT_EQ_INT(http(many, &r), -431);
}

/* ---------- SOCKS5 ---------- */

TEST(socks5_greeting_and_request)
{
    bool noauth;
    ASSERT_EQ_INT(egress_socks_greeting((const uint8_t *)"\x05", 1, &noauth), 0);
    ASSERT_EQ_INT(egress_socks_greeting((const uint8_t *)"\x05\x02\x02", 3, &noauth), 0);
    ASSERT_EQ_INT(egress_socks_greeting((const uint8_t *)"\x05\x02\x02\x00", 4, &noauth), 4);
    ASSERT_TRUE(noauth);
    ASSERT_EQ_INT(egress_socks_greeting((const uint8_t *)"\x05\x01\x02", 3, &noauth), 3);
    ASSERT_FALSE(noauth);
    ASSERT_EQ_INT(egress_socks_greeting((const uint8_t *)"\x04\x01\x00", 3, &noauth), -1);
    ASSERT_EQ_INT(egress_socks_greeting((const uint8_t *)"\x05\x00", 2, &noauth), -1);

    egress_socks_req r;
    const uint8_t name[] = {5, 1, 0, 3, 6, 'a', '.', 't', 'e', 's', 't', 1, 187};
    ASSERT_EQ_INT(egress_socks_request(name, sizeof(name) - 1, &r), 0);
    ASSERT_EQ_INT(egress_socks_request(name, sizeof(name), &r), (int)sizeof(name));
    ASSERT_EQ_STR(r.host, "a.test");
    ASSERT_EQ_INT(r.port, 443);
    ASSERT_FALSE(r.host_is_ip);
    const uint8_t v4[] = {5, 1, 0, 1, 10, 0, 0, 1, 0, 80};
    ASSERT_EQ_INT(egress_socks_request(v4, sizeof(v4), &r), 10);
    ASSERT_EQ_STR(r.host, "10.0.0.1");
    ASSERT_TRUE(r.host_is_ip);
    uint8_t v6[22] = {5, 1, 0, 4};
    v6[19] = 1;
    v6[21] = 22;
    ASSERT_EQ_INT(egress_socks_request(v6, sizeof(v6), &r), 22);
    ASSERT_EQ_STR(r.host, "::1");
    const uint8_t lit[] = {5, 1, 0, 3, 9, '1', '2', '7', '.', '0', '.', '0', '.', '1', 0, 80};
    ASSERT_EQ_INT(egress_socks_request(lit, sizeof(lit), &r), (int)sizeof(lit));
    ASSERT_TRUE(r.host_is_ip); /* an address spelled as a name is still an address */
    const uint8_t bind[] = {5, 2, 0, 1, 10, 0, 0, 1, 0, 80};
    ASSERT_EQ_INT(egress_socks_request(bind, sizeof(bind), &r), -SOCKS_REP_CMD);
    const uint8_t udp[] = {5, 3, 0, 1, 10, 0, 0, 1, 0, 80};
    ASSERT_EQ_INT(egress_socks_request(udp, sizeof(udp), &r), -SOCKS_REP_CMD);
    const uint8_t atyp[] = {5, 1, 0, 7, 10, 0, 0, 1, 0, 80};
    ASSERT_EQ_INT(egress_socks_request(atyp, sizeof(atyp), &r), -SOCKS_REP_ATYP);
    const uint8_t nul[] = {5, 1, 0, 3, 3, 'a', 0, 'b', 0, 80};
    ASSERT_EQ_INT(egress_socks_request(nul, sizeof(nul), &r), -SOCKS_REP_HOSTUNREACH);
    const uint8_t empty[] = {5, 1, 0, 3, 0, 0, 80};
    ASSERT_EQ_INT(egress_socks_request(empty, sizeof(empty), &r), -SOCKS_REP_HOSTUNREACH);
    const uint8_t port0[] = {5, 1, 0, 1, 10, 0, 0, 1, 0, 0};
    ASSERT_EQ_INT(egress_socks_request(port0, sizeof(port0), &r), -SOCKS_REP_HOSTUNREACH);
    const uint8_t ver[] = {4, 1, 0, 1, 10, 0, 0, 1, 0, 80};
    ASSERT_EQ_INT(egress_socks_request(ver, sizeof(ver), &r), -SOCKS_REP_FAIL);
}

/* ---------- DNS ---------- */

static size_t dns_q(uint8_t *q, const char *name, int qtype)
{
    size_t off = 12;
    memset(q, 0, 12);
    q[0] = 0xab;
    q[1] = 0xcd;
    q[2] = 1;
    q[5] = 1;
    const char *p = name;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        q[off++] = (uint8_t)l;
        memcpy(q + off, p, l);
        off += l;
        p += l + (dot ? 1 : 0);
    }
    q[off++] = 0;
    q[off++] = 0;
    q[off++] = (uint8_t)qtype;
    q[off++] = 0;
    q[off++] = 1;
    return off;
}

TEST(dns_parse_and_answer)
{
    uint8_t q[512], out[512];
    size_t n = dns_q(q, "Api.Example.test", 1);
    egress_dns_q d;
    ASSERT_EQ_INT(egress_dns_parse(q, n, &d), 0);
    ASSERT_EQ_STR(d.name, "Api.Example.test");
    ASSERT_TRUE(d.name_ok);
    ASSERT_EQ_INT(d.qtype, 1);
    ASSERT_EQ_INT(d.qend, n);
    egress_addr a[3];
    egress_ip_parse("1.2.3.4", 7, &a[0]);
    egress_ip_parse("2001:db8::1", 11, &a[1]);
    egress_ip_parse("5.6.7.8", 7, &a[2]);
    size_t len = egress_dns_answer(q, &d, DNS_NOERROR, a, 3, out, sizeof(out));
    ASSERT_EQ_INT(len, n + 2 * 16);
    ASSERT_EQ_INT(out[0], 0xab);
    ASSERT_EQ_INT(out[2] & 0x80, 0x80); /* QR */
    ASSERT_EQ_INT(out[2] & 0x01, 0x01); /* RD echoed */
    ASSERT_EQ_INT(out[7], 2);
    ASSERT_MEM_EQ(out + 12, q + 12, n - 12); /* question echoed as sent (0x20 case kept) */
    ASSERT_EQ_INT(out[n + 12], 1);
    ASSERT_EQ_INT(out[n + 16 + 12 + 3], 8); /* second A record: 5.6.7.8 */
    len = egress_dns_answer(q, &d, DNS_REFUSED, a, 3, out, sizeof(out));
    ASSERT_EQ_INT(len, n);
    ASSERT_EQ_INT(out[3] & 0xf, DNS_REFUSED);
    ASSERT_EQ_INT(out[7], 0);

    /* A label holding a dot or NUL is not a host name. */
    uint8_t tricky[] = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'a', '.', 'b', 4, 't', 'e', 's',
                        't', 0, 0, 1, 0, 1};
    ASSERT_EQ_INT(egress_dns_parse(tricky, sizeof(tricky), &d), 0);
    ASSERT_FALSE(d.name_ok);
    tricky[14] = 0;
    ASSERT_EQ_INT(egress_dns_parse(tricky, sizeof(tricky), &d), 0);
    ASSERT_FALSE(d.name_ok);
    /* Malformed. */
    ASSERT_EQ_INT(egress_dns_parse(q, 11, &d), -1);
    ASSERT_EQ_INT(egress_dns_parse(q, n - 1, &d), DNS_FORMERR);
    uint8_t resp[512];
    memcpy(resp, q, n);
    resp[2] |= 0x80;
    ASSERT_EQ_INT(egress_dns_parse(resp, n, &d), -1); /* never answer a response */
    memcpy(resp, q, n);
    resp[5] = 2;
    ASSERT_EQ_INT(egress_dns_parse(resp, n, &d), DNS_FORMERR);
    memcpy(resp, q, n);
    resp[2] = 0x28; /* opcode 5 (UPDATE) */
    ASSERT_EQ_INT(egress_dns_parse(resp, n, &d), DNS_NOTIMP);
    memcpy(resp, q, n);
    resp[12] = 0xc0; /* compression pointer in the question */
    ASSERT_EQ_INT(egress_dns_parse(resp, n, &d), DNS_FORMERR);
    /* Too long a name. */
    uint8_t big[600];
    memset(big, 0, 12);
    big[5] = 1;
    size_t off = 12;
    for (int i = 0; i < 5; i++) {
        big[off++] = 63;
        memset(big + off, 'a', 63);
        off += 63;
    }
    big[off++] = 0;
    memset(big + off, 0, 4);
    off += 4;
    ASSERT_EQ_INT(egress_dns_parse(big, off, &d), DNS_FORMERR);
}
