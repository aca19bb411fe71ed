/* Egress internals shared by the module's files, its unit tests and its fuzz
 * harnesses: the parsed policy, the matcher, address ranges, and the pure
 * parsers of the three wire protocols (HTTP proxy request head, SOCKS5, DNS).
 * Nothing here does I/O. Every parser takes untrusted bytes and must never
 * read past `len`, allocate without a bound, or abort. */
#pragma once
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "egress/egress.h"

#define EGRESS_NAME_MAX 253     /* DNS name, without trailing dot */
#define EGRESS_HEAD_MAX (32 * 1024) /* HTTP request head (line + headers) */
#define EGRESS_HEADERS_MAX 100
#define EGRESS_RULE_MAX 384     /* text of a decision's rule */
#define EGRESS_ADDRS_MAX 16     /* addresses kept per resolved name */

/* Every address as 16 bytes: IPv4 as the v4-mapped ::ffff:a.b.c.d. */
typedef struct egress_addr {
    uint8_t b[16];
} egress_addr;

typedef struct egress_rule {
    char name[EGRESS_NAME_MAX + 1]; /* normalized; for a wildcard the suffix without "*." */
    bool wildcard;
    bool is_ip;
    egress_addr ip;
    int port;          /* 0 = any port */
    int index;         /* position in its list, for messages */
    char text[300];    /* as written (normalized), for messages */
} egress_rule;

typedef struct egress_cidr {
    egress_addr net;
    int prefix;        /* in the 128-bit space (v4 prefixes + 96) */
    char text[64];
} egress_cidr;

typedef struct egress_static {
    char name[EGRESS_NAME_MAX + 1];
    egress_addr addrs[EGRESS_ADDRS_MAX];
    int n;
} egress_static;

struct egress_policy {
    int refs;
    egress_rule *allow;
    size_t nallow;
    egress_rule *deny;
    size_t ndeny;
    egress_cidr *cidrs;
    size_t ncidrs;
    egress_static *statics;
    size_t nstatics;
    int max_connections;
    int64_t connect_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t header_timeout_ms;
};

/* Take another reference (egress_policy_free drops one). */
egress_policy *egress_policy_ref(const egress_policy *p);

/* Host normalization: lower-case, one trailing dot removed, letters, digits,
 * '-' and '_' only, labels 1..63, total <= 253, last label not all digits
 * (so "127.1" or "2130706433" can never pass as a name). Non-ASCII is
 * refused: write internationalized names in their "xn--" form.
 * Returns 0, or -EINVAL. */
int egress_name_normalize(const char *in, size_t len, char out[EGRESS_NAME_MAX + 1]);
/* Strict IP literal: dotted quad, or IPv6 (optionally in brackets; no zone).
 * Returns true and fills *a. */
bool egress_ip_parse(const char *in, size_t len, egress_addr *a);
void egress_addr_str(const egress_addr *a, char *out, size_t outlen);
bool egress_addr_is_v4(const egress_addr *a);
void egress_addr_to_sockaddr(const egress_addr *a, int port, struct sockaddr_storage *ss,
                             socklen_t *len);
void egress_addr_from_sockaddr(const struct sockaddr *sa, egress_addr *a);

/* Decide a destination by name (normalized) or IP literal. Returns true if
 * allowed; rule (EGRESS_RULE_MAX) names the deciding rule either way. */
bool egress_decide_name(const egress_policy *p, const char *name, int port, char *rule);
bool egress_decide_ip(const egress_policy *p, const egress_addr *a, int port, char *rule);
/* Is the name allowed on some port (for the DNS stub)? */
bool egress_name_allowed_any_port(const egress_policy *p, const char *name, char *rule);
/* Default-refused ranges: returns NULL if `a` may be connected to, else the
 * range's description; allowCidrs lifts the refusal. */
const char *egress_addr_refused(const egress_policy *p, const egress_addr *a);
/* staticHosts lookup (name normalized); NULL if absent. */
const egress_static *egress_static_lookup(const egress_policy *p, const char *name);

/* ---- HTTP proxy request head ---- */
typedef struct egress_http_req {
    bool is_connect;
    char host[EGRESS_NAME_MAX + 3]; /* as given (IPv6 without brackets) */
    bool host_is_ip;
    int port;
    int minor;         /* HTTP/1.minor */
    size_t head_len;   /* bytes of the head, including the blank line */
    /* For plain HTTP: the request to send upstream (origin-form, Host
     * replaced, hop-by-hop headers dropped, "Connection: close"). */
    char *upstream;    /* malloc'd, NUL-terminated; NULL for CONNECT */
    size_t upstream_len;
    /* The request body's framing (plain HTTP; CONNECT has no body): exactly
     * one of none (content_length 0), a Content-Length, or chunked. */
    uint64_t content_length;
    bool chunked;
    bool upgrade;      /* Upgrade with Connection: upgrade (kept upstream) */
} egress_http_req;

/* Returns 1 when a complete head was parsed (fills *r), 0 when more bytes
 * are needed, or a negative value: -(HTTP status) to answer with (400, 431).
 * Free r->upstream when done. A plain-HTTP head must use CRLF line endings;
 * ambiguous body framing is -400: Transfer-Encoding with Content-Length,
 * differing Content-Lengths, a Transfer-Encoding other than exactly one
 * "chunked" (or on HTTP/1.0), a Content-Length over 18 digits. */
int egress_http_parse(const char *data, size_t len, egress_http_req *r);
void egress_http_req_clear(egress_http_req *r);

/* Chunked body scanner (RFC 9112 section 7.1): finds where a chunked body
 * ends, so exactly one request's bytes are forwarded. Strict: CRLF only, no
 * whitespace around the size, at most 15 hex digits, extensions and
 * trailers of visible ASCII/tab bounded by EGRESS_HEAD_MAX. Zero it to start. */
typedef struct egress_chunked {
    int state;
    uint64_t left;     /* data bytes left in the current chunk */
    int digits;
    size_t linelen;    /* bytes in the current extension/trailer section */
} egress_chunked;
/* Scan n more bytes. Returns how many belong to the body (== n unless the
 * body ended inside them; then *done is set), or -1 if malformed. */
long egress_chunked_scan(egress_chunked *s, const char *p, size_t n, bool *done);

/* ---- SOCKS5 (RFC 1928) ---- */
enum {
    SOCKS_REP_OK = 0,
    SOCKS_REP_FAIL = 1,
    SOCKS_REP_RULESET = 2,
    SOCKS_REP_NETUNREACH = 3,
    SOCKS_REP_HOSTUNREACH = 4,
    SOCKS_REP_REFUSED = 5,
    SOCKS_REP_TTL = 6,
    SOCKS_REP_CMD = 7,
    SOCKS_REP_ATYP = 8,
};
/* Greeting: returns bytes consumed (>0), 0 for more, -1 if malformed.
 * *noauth says whether method 0 (no authentication) was offered. */
int egress_socks_greeting(const uint8_t *d, size_t len, bool *noauth);
typedef struct egress_socks_req {
    int cmd;
    int atyp;
    char host[EGRESS_NAME_MAX + 3];
    bool host_is_ip;
    int port;
} egress_socks_req;
/* Request: returns bytes consumed (>0), 0 for more, or -(SOCKS reply code)
 * to fail with. */
int egress_socks_request(const uint8_t *d, size_t len, egress_socks_req *r);

/* ---- DNS (RFC 1035), the stub's questions ---- */
enum { DNS_NOERROR = 0, DNS_FORMERR = 1, DNS_SERVFAIL = 2, DNS_NXDOMAIN = 3, DNS_NOTIMP = 4,
       DNS_REFUSED = 5 };
typedef struct egress_dns_q {
    uint16_t id;
    uint16_t flags;
    char name[EGRESS_NAME_MAX + 2]; /* as text, not normalized; "" if not a valid name */
    bool name_ok;
    uint16_t qtype, qclass;
    size_t qend;       /* end of the question section in the packet */
} egress_dns_q;
/* Returns 0, or a DNS rcode (>0) to answer with; -1 = drop (not a query, or
 * too short to even answer). */
int egress_dns_parse(const uint8_t *pkt, size_t len, egress_dns_q *q);
/* Build the answer into out (>= 512 bytes): echo the question, rcode, and
 * the addresses matching q->qtype (A: v4 ones, AAAA: the rest), TTL 0.
 * Returns the length. */
size_t egress_dns_answer(const uint8_t *pkt, const egress_dns_q *q, int rcode,
                         const egress_addr *addrs, int naddrs, uint8_t *out, size_t outcap);
