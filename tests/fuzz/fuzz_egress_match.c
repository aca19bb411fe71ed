/* Fuzz the domain matcher: input = "pattern\nhost[:port]". Properties:
 * whatever a wildcard allows is a strict subdomain of its suffix; a denied
 * pattern always wins; normalization is idempotent. */
#include "egress/egress_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 600) return 0;
    char buf[601];
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *nl = memchr(buf, '\n', size);
    if (!nl) return 0;
    *nl = '\0';
    const char *pattern = buf, *host = nl + 1;
    size_t hlen = strlen(host);

    char norm[EGRESS_NAME_MAX + 1], again[EGRESS_NAME_MAX + 1];
    if (egress_name_normalize(host, hlen, norm) == 0) {
        if (egress_name_normalize(norm, strlen(norm), again) != 0 || strcmp(norm, again) != 0)
            abort();
    }
    egress_addr a;
    egress_ip_parse(host, hlen, &a);

    json_t *net = json_pack("{s:[s], s:[s]}", "allowedDomains", pattern, "deniedDomains", "deny.me");
    if (!net) return 0;
    egress_policy *p = NULL;
    shed_err err;
    if (egress_policy_parse(net, &p, &err) == 0) {
        char rule[EGRESS_RULE_MAX];
        if (egress_name_normalize(host, hlen, norm) == 0) {
            bool ok = egress_decide_name(p, norm, 443, rule);
            if (ok && strcmp(norm, "deny.me") == 0) abort();
            if (ok && p->allow[0].wildcard) {
                size_t n = strlen(norm), s = strlen(p->allow[0].name);
                if (n <= s + 1 || norm[n - s - 1] != '.' || strcmp(norm + n - s, p->allow[0].name))
                    abort();
            }
            if (ok && !p->allow[0].wildcard && strcmp(norm, p->allow[0].name) != 0) abort();
        }
        if (egress_ip_parse(host, hlen, &a)) {
            egress_decide_ip(p, &a, 443, rule);
            egress_addr_refused(p, &a);
        }
        egress_policy_free(p);
    }
    json_decref(net);
    return 0;
}
