/* Fuzz the HTTP proxy request-head parser (CONNECT and absolute-URI plain
 * HTTP): no crash, no over-read, and a parsed head is self-consistent. */
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
    } else if (rc < 0 && rc != -400 && rc != -431) {
        abort();
    }
    egress_http_req_clear(&r);
    free(p);
    return 0;
}
