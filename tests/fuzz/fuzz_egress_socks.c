/* Fuzz the SOCKS5 greeting and request parsers. */
#include "egress/egress_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    if (!p) return 0;
    memcpy(p, data, size);
    bool noauth;
    int g = egress_socks_greeting(p, size, &noauth);
    if (g > (int)size) abort();
    size_t off = g > 0 ? (size_t)g : 0;
    egress_socks_req r;
    int n = egress_socks_request(p + off, size - off, &r);
    if (n > 0) {
        if ((size_t)n > size - off || r.port < 1 || r.cmd != 1) abort();
        if (strlen(r.host) == 0) abort();
    }
    free(p);
    return 0;
}
