/* Egress policy: parse and validate `network.*`, match destinations against
 * allowedDomains / deniedDomains, and refuse the default-denied address
 * ranges. Pure logic, no I/O. It must never allow what the policy does not
 * list: every ambiguity (odd number forms, non-ASCII, zones, v4-mapped
 * addresses) is resolved toward refusal. */
#include "egress/egress_int.h"

#include "base/cleanup.h"
#include "base/json.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEF_MAX_CONNECTIONS 256
#define DEF_CONNECT_TIMEOUT_MS 10000
#define DEF_IDLE_TIMEOUT_MS 300000
#define DEF_HEADER_TIMEOUT_MS 10000

/* ---------- names and addresses ---------- */

int egress_name_normalize(const char *in, size_t len, char out[EGRESS_NAME_MAX + 1])
{
    if (len > 0 && in[len - 1] == '.') len--;
    if (len == 0 || len > EGRESS_NAME_MAX) return -EINVAL;
    size_t label = 0;
    bool last_all_digits = true;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '.') {
            if (label == 0) return -EINVAL;
            label = 0;
            last_all_digits = true;
            out[i] = '.';
            continue;
        }
        if (!(isascii(c) && (isalnum(c) || c == '-' || c == '_'))) return -EINVAL;
        if (!isdigit(c)) last_all_digits = false;
        if (++label > 63) return -EINVAL;
        out[i] = (char)tolower(c);
    }
    if (label == 0 || last_all_digits) return -EINVAL;
    out[len] = '\0';
    return 0;
}

bool egress_ip_parse(const char *in, size_t len, egress_addr *a)
{
    char tmp[INET6_ADDRSTRLEN + 4];
    if (len >= 2 && in[0] == '[' && in[len - 1] == ']') {
        in++;
        len -= 2;
        if (!memchr(in, ':', len)) return false; /* "[1.2.3.4]" is not a form */
    }
    if (len == 0 || len >= sizeof(tmp)) return false;
    memcpy(tmp, in, len);
    tmp[len] = '\0';
    struct in_addr v4;
    struct in6_addr v6;
    memset(a, 0, sizeof(*a));
    /* inet_pton(AF_INET) takes only the dotted quad (no "127.1", no hex). */
    if (inet_pton(AF_INET, tmp, &v4) == 1) {
        a->b[10] = a->b[11] = 0xff;
        memcpy(a->b + 12, &v4, 4);
        return true;
    }
    if (inet_pton(AF_INET6, tmp, &v6) == 1) {
        memcpy(a->b, &v6, 16);
        return true;
    }
    return false;
}

bool egress_addr_is_v4(const egress_addr *a)
{
    static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a->b, pre, 12) == 0;
}

void egress_addr_str(const egress_addr *a, char *out, size_t outlen)
{
    if (egress_addr_is_v4(a))
        inet_ntop(AF_INET, a->b + 12, out, (socklen_t)outlen);
    else
        inet_ntop(AF_INET6, a->b, out, (socklen_t)outlen);
}

void egress_addr_to_sockaddr(const egress_addr *a, int port, struct sockaddr_storage *ss,
                             socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (egress_addr_is_v4(a)) {
        struct sockaddr_in *s = (struct sockaddr_in *)ss;
        s->sin_family = AF_INET;
        s->sin_port = htons((uint16_t)port);
        memcpy(&s->sin_addr, a->b + 12, 4);
        *len = sizeof(*s);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
        s->sin6_family = AF_INET6;
        s->sin6_port = htons((uint16_t)port);
        memcpy(&s->sin6_addr, a->b, 16);
        *len = sizeof(*s);
    }
}

void egress_addr_from_sockaddr(const struct sockaddr *sa, egress_addr *a)
{
    memset(a, 0, sizeof(*a));
    if (sa->sa_family == AF_INET) {
        a->b[10] = a->b[11] = 0xff;
        memcpy(a->b + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else {
        memcpy(a->b, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

static bool addr_in(const egress_addr *a, const egress_addr *net, int prefix)
{
    int full = prefix / 8, rest = prefix % 8;
    if (memcmp(a->b, net->b, (size_t)full) != 0) return false;
    if (rest == 0) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a->b[full] & mask) == (net->b[full] & mask);
}

static int cidr_parse(const char *s, egress_cidr *c)
{
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (!egress_ip_parse(s, alen, &c->net)) return -EINVAL;
    bool v4 = egress_addr_is_v4(&c->net);
    int max = v4 ? 32 : 128;
    int prefix = max;
    if (slash) {
        char *end;
        errno = 0;
        long v = strtol(slash + 1, &end, 10);
        if (errno || end == slash + 1 || *end || v < 0 || v > max || !isdigit((unsigned char)slash[1]))
            return -EINVAL;
        prefix = (int)v;
    }
    c->prefix = v4 ? prefix + 96 : prefix;
    /* Normalize host bits away so "10.1.2.3/8" means 10.0.0.0/8. */
    for (int bit = c->prefix; bit < 128; bit++) c->net.b[bit / 8] &= (uint8_t) ~(0x80 >> (bit % 8));
    char a[INET6_ADDRSTRLEN];
    egress_addr_str(&c->net, a, sizeof(a));
    snprintf(c->text, sizeof(c->text), "%s/%d", a, prefix);
    return 0;
}

/* Refused unless allowCidrs lists them. IPv4 ranges also apply to the v4
 * address embedded in NAT64 (64:ff9b::/96) and 6to4 (2002::/16). */
static const struct {
    const char *cidr, *what;
} REFUSED[] = {
    {"0.0.0.0/8", "this-network"},      {"127.0.0.0/8", "loopback"},
    {"10.0.0.0/8", "private"},          {"172.16.0.0/12", "private"},
    {"192.168.0.0/16", "private"},      {"169.254.0.0/16", "link-local, cloud metadata"},
    {"100.64.0.0/10", "CGNAT"},         {"192.0.0.0/24", "IETF protocol assignments"},
    {"198.18.0.0/15", "benchmarking"},  {"224.0.0.0/4", "multicast"},
    {"240.0.0.0/4", "reserved, broadcast"},
    {"::/96", "unspecified, loopback, v4-compatible"},
    {"fc00::/7", "unique-local"},       {"fe80::/10", "link-local"},
    {"fec0::/10", "site-local"},        {"ff00::/8", "multicast"},
    {"100::/64", "discard"},            {"::ffff:0:0:0/96", "IPv4-translated"},
    {"64:ff9b:1::/48", "local-use NAT64"},
};

static egress_cidr refused_cidrs[ARRAY_SIZE(REFUSED)];
static bool refused_ready;

static void refused_init(void)
{
    /* Idempotent and made of constants: a race writes the same bytes. */
    if (__atomic_load_n(&refused_ready, __ATOMIC_ACQUIRE)) return;
    for (size_t i = 0; i < ARRAY_SIZE(REFUSED); i++) cidr_parse(REFUSED[i].cidr, &refused_cidrs[i]);
    __atomic_store_n(&refused_ready, true, __ATOMIC_RELEASE);
}

static const char *refused_plain(const egress_addr *a)
{
    for (size_t i = 0; i < ARRAY_SIZE(REFUSED); i++)
        if (addr_in(a, &refused_cidrs[i].net, refused_cidrs[i].prefix)) return REFUSED[i].cidr;
    return NULL;
}

static bool cidr_allowed(const egress_policy *p, const egress_addr *a)
{
    for (size_t i = 0; i < p->ncidrs; i++)
        if (addr_in(a, &p->cidrs[i].net, p->cidrs[i].prefix)) return true;
    return false;
}

const char *egress_addr_refused(const egress_policy *p, const egress_addr *a)
{
    refused_init();
    if (cidr_allowed(p, a)) return NULL;
    const char *r = refused_plain(a);
    if (r) return r;
    /* An IPv6 form that carries an IPv4 address: judge the IPv4 inside too. */
    egress_addr inner = {.b = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(a->b, nat64, 12) == 0) {
        memcpy(inner.b + 12, a->b + 12, 4);
    } else if (a->b[0] == 0x20 && a->b[1] == 0x02) {
        memcpy(inner.b + 12, a->b + 2, 4);
    } else {
        return NULL;
    }
    if (cidr_allowed(p, &inner)) return NULL;
    r = refused_plain(&inner);
    return r ? (a->b[0] == 0x20 ? "2002::/16 (6to4) with a refused IPv4 inside"
                                : "64:ff9b::/96 (NAT64) with a refused IPv4 inside")
             : NULL;
}

/* ---------- rules ---------- */

/* "name", "*.name", "name:port", "1.2.3.4", "1.2.3.4:443", "::1", "[::1]:443". */
static int rule_parse(const char *s, egress_rule *r)
{
    memset(r, 0, sizeof(*r));
    size_t len = strlen(s);
    const char *host = s;
    size_t hlen = len;
    const char *portstr = NULL;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close) return -EINVAL;
        hlen = (size_t)(close - s) + 1;
        if (close[1] == ':')
            portstr = close + 2;
        else if (close[1])
            return -EINVAL;
    } else {
        const char *colon = strchr(s, ':');
        if (colon && !strchr(colon + 1, ':')) {
            hlen = (size_t)(colon - s);
            portstr = colon + 1;
        }
    }
    if (portstr) {
        char *end;
        if (!isdigit((unsigned char)*portstr)) return -EINVAL;
        errno = 0;
        long v = strtol(portstr, &end, 10);
        if (errno || *end || v < 1 || v > 65535) return -EINVAL;
        r->port = (int)v;
    }
    if (egress_ip_parse(host, hlen, &r->ip)) {
        r->is_ip = true;
        egress_addr_str(&r->ip, r->name, sizeof(r->name));
    } else {
        if (hlen >= 2 && host[0] == '*' && host[1] == '.') {
            r->wildcard = true;
            host += 2;
            hlen -= 2;
        }
        if (egress_name_normalize(host, hlen, r->name) < 0) return -EINVAL;
    }
    bool v6 = r->is_ip && !egress_addr_is_v4(&r->ip);
    char pbuf[16] = "";
    if (r->port) snprintf(pbuf, sizeof(pbuf), ":%d", r->port);
    snprintf(r->text, sizeof(r->text), "%s%s%s%s%s", r->wildcard ? "*." : "", v6 && r->port ? "[" : "",
             r->name, v6 && r->port ? "]" : "", pbuf);
    return 0;
}

static bool rule_matches_name(const egress_rule *r, const char *name, int port)
{
    if (r->is_ip) return false;
    if (r->port && r->port != port) return false;
    if (!r->wildcard) return strcmp(r->name, name) == 0;
    size_t n = strlen(name), s = strlen(r->name);
    /* Subdomains only: "x.example.test" matches "*.example.test", the bare
     * "example.test" and "evilexample.test" do not. */
    return n > s + 1 && name[n - s - 1] == '.' && strcmp(name + n - s, r->name) == 0;
}

static bool rule_matches_ip(const egress_rule *r, const egress_addr *a, int port)
{
    if (!r->is_ip) return false;
    if (r->port && r->port != port) return false;
    return memcmp(r->ip.b, a->b, 16) == 0;
}

#define NO_NETWORK "network.allowedDomains is empty: this sandbox has no network"

bool egress_decide_name(const egress_policy *p, const char *name, int port, char *rule)
{
    if (!p || p->nallow == 0) {
        snprintf(rule, EGRESS_RULE_MAX, NO_NETWORK);
        return false;
    }
    for (size_t i = 0; i < p->ndeny; i++) {
        if (rule_matches_name(&p->deny[i], name, port)) {
            snprintf(rule, EGRESS_RULE_MAX, "network.deniedDomains[%d] \"%s\"", p->deny[i].index,
                     p->deny[i].text);
            return false;
        }
    }
    for (size_t i = 0; i < p->nallow; i++) {
        if (rule_matches_name(&p->allow[i], name, port)) {
            snprintf(rule, EGRESS_RULE_MAX, "network.allowedDomains[%d] \"%s\"", p->allow[i].index,
                     p->allow[i].text);
            return true;
        }
    }
    snprintf(rule, EGRESS_RULE_MAX, "no network.allowedDomains entry matches %s:%d", name, port);
    return false;
}

bool egress_name_allowed_any_port(const egress_policy *p, const char *name, char *rule)
{
    if (!p || p->nallow == 0) {
        snprintf(rule, EGRESS_RULE_MAX, NO_NETWORK);
        return false;
    }
    /* A deny without a port hides the name entirely; a deny on one port does
     * not, since other ports may still be allowed. */
    for (size_t i = 0; i < p->ndeny; i++) {
        if (!p->deny[i].port && rule_matches_name(&p->deny[i], name, 0)) {
            snprintf(rule, EGRESS_RULE_MAX, "network.deniedDomains[%d] \"%s\"", p->deny[i].index,
                     p->deny[i].text);
            return false;
        }
    }
    for (size_t i = 0; i < p->nallow; i++) {
        egress_rule r = p->allow[i];
        r.port = 0;
        if (rule_matches_name(&r, name, 0)) {
            snprintf(rule, EGRESS_RULE_MAX, "network.allowedDomains[%d] \"%s\"", p->allow[i].index,
                     p->allow[i].text);
            return true;
        }
    }
    snprintf(rule, EGRESS_RULE_MAX, "no network.allowedDomains entry matches %s", name);
    return false;
}

bool egress_decide_ip(const egress_policy *p, const egress_addr *a, int port, char *rule)
{
    char s[INET6_ADDRSTRLEN];
    egress_addr_str(a, s, sizeof(s));
    if (!p || p->nallow == 0) {
        snprintf(rule, EGRESS_RULE_MAX, NO_NETWORK);
        return false;
    }
    for (size_t i = 0; i < p->ndeny; i++) {
        if (rule_matches_ip(&p->deny[i], a, port)) {
            snprintf(rule, EGRESS_RULE_MAX, "network.deniedDomains[%d] \"%s\"", p->deny[i].index,
                     p->deny[i].text);
            return false;
        }
    }
    for (size_t i = 0; i < p->nallow; i++) {
        if (rule_matches_ip(&p->allow[i], a, port)) {
            snprintf(rule, EGRESS_RULE_MAX, "network.allowedDomains[%d] \"%s\"", p->allow[i].index,
                     p->allow[i].text);
            return true;
        }
    }
    snprintf(rule, EGRESS_RULE_MAX,
             "IP literal %s:%d is not listed in network.allowedDomains (use a name, or list the "
             "address)",
             s, port);
    return false;
}

const egress_static *egress_static_lookup(const egress_policy *p, const char *name)
{
    if (!p) return NULL;
    for (size_t i = 0; i < p->nstatics; i++)
        if (strcmp(p->statics[i].name, name) == 0) return &p->statics[i];
    return NULL;
}

/* ---------- parsing ---------- */

static int parse_rules(json_t *network, const char *key, egress_rule **out, size_t *n,
                       shed_err *err)
{
    json_t *arr = NULL;
    int rc = json_get_arr(network, key, false, &arr, err);
    if (rc < 0) return err_wrap(err, "network");
    *out = NULL;
    *n = 0;
    if (rc == 1) return 0;
    size_t cnt = json_array_size(arr);
    if (cnt > 10000) return err_msg(err, EINVAL, "network.%s: more than 10000 entries", key);
    if (cnt == 0) return 0;
    egress_rule *r = calloc(cnt, sizeof(*r));
    if (!r) return err_set(err, ENOMEM, "network.%s", key);
    for (size_t i = 0; i < cnt; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_string(v)) {
            free(r);
            return err_msg(err, EINVAL, "network.%s[%zu]: must be a string", key, i);
        }
        const char *s = json_string_value(v);
        if (strcmp(s, "*") == 0 || strlen(s) > 300 || rule_parse(s, &r[i]) < 0) {
            free(r);
            return err_msg(err, EINVAL,
                           "network.%s[%zu]: \"%.80s\" is not a host name, \"*.\" wildcard or IP "
                           "address with an optional \":port\" (ASCII only: write international "
                           "names in their xn-- form; \"*\" alone is not allowed)",
                           key, i, s);
        }
        r[i].index = (int)i;
    }
    *out = r;
    *n = cnt;
    return 0;
}

static int parse_limit(json_t *network, const char *key, int64_t min, int64_t max, int64_t *out,
                       shed_err *err)
{
    int64_t v;
    int rc = json_get_int(network, key, false, &v, err);
    if (rc < 0) return err_wrap(err, "network");
    if (rc == 1) return 0;
    if (v < min || v > max)
        return err_msg(err, EINVAL, "network.%s: %lld is out of range [%lld, %lld]", key,
                       (long long)v, (long long)min, (long long)max);
    *out = v;
    return 0;
}

static const char *const KNOWN_KEYS[] = {
    "allowedDomains",  "deniedDomains",    "allowCidrs",     "staticHosts",
    "maxConnections",  "connectTimeoutMs", "idleTimeoutMs",  "headerTimeoutMs",
};

int egress_policy_parse(json_t *network, egress_policy **out, shed_err *err)
{
    *out = NULL;
    egress_policy *p = calloc(1, sizeof(*p));
    if (!p) return err_set(err, ENOMEM, "egress policy");
    p->refs = 1;
    p->max_connections = DEF_MAX_CONNECTIONS;
    p->connect_timeout_ms = DEF_CONNECT_TIMEOUT_MS;
    p->idle_timeout_ms = DEF_IDLE_TIMEOUT_MS;
    p->header_timeout_ms = DEF_HEADER_TIMEOUT_MS;
    if (!network || json_is_null(network)) {
        *out = p;
        return 0;
    }
    int rc = 0;
    if (!json_is_object(network)) {
        rc = err_msg(err, EINVAL, "network: must be an object");
        goto fail;
    }
    const char *k;
    json_t *v;
    json_object_foreach(network, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(KNOWN_KEYS); i++) known |= strcmp(k, KNOWN_KEYS[i]) == 0;
        if (!known) {
            rc = err_msg(err, EINVAL, "network.%s: unknown key (known: allowedDomains, "
                                      "deniedDomains, allowCidrs, staticHosts, maxConnections, "
                                      "connectTimeoutMs, idleTimeoutMs, headerTimeoutMs)",
                         k);
            goto fail;
        }
    }
    if ((rc = parse_rules(network, "allowedDomains", &p->allow, &p->nallow, err)) < 0) goto fail;
    if ((rc = parse_rules(network, "deniedDomains", &p->deny, &p->ndeny, err)) < 0) goto fail;

    json_t *arr = NULL;
    rc = json_get_arr(network, "allowCidrs", false, &arr, err);
    if (rc < 0) {
        err_wrap(err, "network");
        goto fail;
    }
    if (rc == 0 && json_array_size(arr) > 0) {
        size_t cnt = json_array_size(arr);
        if (cnt > 10000) {
            rc = err_msg(err, EINVAL, "network.allowCidrs: more than 10000 entries");
            goto fail;
        }
        p->cidrs = calloc(cnt, sizeof(*p->cidrs));
        if (!p->cidrs) {
            rc = err_set(err, ENOMEM, "network.allowCidrs");
            goto fail;
        }
        for (size_t i = 0; i < cnt; i++) {
            json_t *e = json_array_get(arr, i);
            if (!json_is_string(e) || cidr_parse(json_string_value(e), &p->cidrs[i]) < 0) {
                rc = err_msg(err, EINVAL,
                             "network.allowCidrs[%zu]: must be an address or \"address/prefix\" "
                             "such as \"127.0.0.0/8\" or \"fd00::/8\"",
                             i);
                goto fail;
            }
        }
        p->ncidrs = cnt;
    }
    rc = 0;

    json_t *hosts = NULL;
    rc = json_get_obj(network, "staticHosts", false, &hosts, err);
    if (rc < 0) {
        err_wrap(err, "network");
        goto fail;
    }
    if (rc == 0 && json_object_size(hosts) > 0) {
        size_t cnt = json_object_size(hosts);
        if (cnt > 10000) {
            rc = err_msg(err, EINVAL, "network.staticHosts: more than 10000 entries");
            goto fail;
        }
        p->statics = calloc(cnt, sizeof(*p->statics));
        if (!p->statics) {
            rc = err_set(err, ENOMEM, "network.staticHosts");
            goto fail;
        }
        json_object_foreach(hosts, k, v)
        {
            egress_static *s = &p->statics[p->nstatics];
            if (egress_name_normalize(k, strlen(k), s->name) < 0) {
                rc = err_msg(err, EINVAL, "network.staticHosts.%.80s: not a host name", k);
                goto fail;
            }
            if (egress_static_lookup(p, s->name)) {
                rc = err_msg(err, EINVAL, "network.staticHosts.%.80s: listed twice", k);
                goto fail;
            }
            size_t na = json_is_array(v) ? json_array_size(v) : 1;
            if (na == 0 || na > EGRESS_ADDRS_MAX) {
                rc = err_msg(err, EINVAL, "network.staticHosts.%.80s: give 1 to %d addresses", k,
                             EGRESS_ADDRS_MAX);
                goto fail;
            }
            for (size_t i = 0; i < na; i++) {
                json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
                const char *as = json_string_value(e);
                if (!as || !egress_ip_parse(as, strlen(as), &s->addrs[i])) {
                    rc = err_msg(err, EINVAL,
                                 "network.staticHosts.%.80s: must be an IP address or an array "
                                 "of them",
                                 k);
                    goto fail;
                }
            }
            s->n = (int)na;
            p->nstatics++;
        }
    }
    rc = 0;

    int64_t mc = p->max_connections;
    if ((rc = parse_limit(network, "maxConnections", 1, 65536, &mc, err)) < 0) goto fail;
    p->max_connections = (int)mc;
    if ((rc = parse_limit(network, "connectTimeoutMs", 100, 600000, &p->connect_timeout_ms, err)) < 0)
        goto fail;
    if ((rc = parse_limit(network, "idleTimeoutMs", 100, 86400000, &p->idle_timeout_ms, err)) < 0)
        goto fail;
    if ((rc = parse_limit(network, "headerTimeoutMs", 100, 600000, &p->header_timeout_ms, err)) < 0)
        goto fail;
    *out = p;
    return 0;
fail:
    egress_policy_free(p);
    return rc < 0 ? rc : -EINVAL;
}

egress_policy *egress_policy_ref(const egress_policy *cp)
{
    egress_policy *p = (egress_policy *)cp;
    if (p) __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
    return p;
}

void egress_policy_free(egress_policy *p)
{
    if (!p) return;
    if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
    free(p->allow);
    free(p->deny);
    free(p->cidrs);
    free(p->statics);
    free(p);
}
