/* Fuzz the HTTP proxy request-head parser (CONNECT and absolute-URI plain
 * HTTP) and the chunked-body scanner on what follows the head: no crash, no
 * over-read, a parsed head is self-consistent, and the scanner claims the
 * same body end whether fed at once or byte by byte. */
#include "egress/egress_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A heap copy of exactly `size` bytes so ASan sees any over-read. */
    char *p = malloc(size ? size : 1);
    if (!p) return 0;
    memcpy(p, data, size);
    egress_http_req r;
    int rc = egress_http_parse(p, size, &r);
    if (rc == 1) {
        if (r.head_len > size || r.port < 1 || r.port > 65535) abort();
        if (!r.is_connect && (!r.upstream || strlen(r.upstream) != r.upstream_len)) abort();
        if (r.upstream && (strstr(r.upstream, "\r\n\r\n") != r.upstream + r.upstream_len - 4))
            abort(); /* the rewritten head ends exactly once */
        if (r.chunked && (r.is_connect || r.content_length)) abort();
        if (r.chunked) {
            const char *b = p + r.head_len;
            size_t bl = size - r.head_len;
            egress_chunked a = {0}, s = {0};
            bool da = false, ds = false;
            long ka = egress_chunked_scan(&a, b, bl, &da);
            if (ka > (long)bl || (da && ka <= 0)) abort();
            long ks = 0;
            for (size_t i = 0; i < bl && !ds; i++) {
                long k = egress_chunked_scan(&s, b + i, 1, &ds);
                if (k < 0) {
                    ks = -1;
                    break;
                }
                ks += k;
            }
            if ((ka < 0) != (ks < 0) || (ka >= 0 && (da != ds || (da && ka != ks)))) abort();
        }
    } else if (rc < 0 && rc != -400 && rc != -431) {
        abort();
    }
    egress_http_req_clear(&r);
    free(p);
    return 0;
}
