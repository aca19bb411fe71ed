/* Fuzz the DNS stub's question parser and answer builder: every answer
 * fits in 512 bytes and echoes the query id. */
#include "egress/egress_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    if (!p) return 0;
    memcpy(p, data, size);
    egress_dns_q q;
    int rc = egress_dns_parse(p, size, &q);
    if (rc >= 0) {
        if (rc == 0 && q.qend > size) abort();
        if (q.qend > size) q.qend = 0;
        egress_addr a[2];
        egress_ip_parse("1.2.3.4", 7, &a[0]);
        egress_ip_parse("2001:db8::1", 11, &a[1]);
        uint8_t out[512];
        size_t n = egress_dns_answer(p, &q, rc, a, 2, out, sizeof(out));
        if (n < 12 || n > 512) abort();
        if (out[0] != p[0] || out[1] != p[1]) abort();
        if (rc == 0 && q.name_ok) {
            char norm[EGRESS_NAME_MAX + 1];
            if (egress_name_normalize(q.name, strlen(q.name), norm) != 0) abort();
        }
    }
    free(p);
    return 0;
}
