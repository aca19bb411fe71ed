/* Fuzz base64/base64url decoding (the work secret arrives this way) and
 * check that decode(encode(x)) == x for whatever decodes. */
#include "base/b64.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int url = 0; url < 2; url++) {
        size_t n;
        unsigned char *dec = b64_decode_alloc((const char *)data, size, url, &n);
        if (!dec) continue;
        char *enc = b64_encode_alloc(dec, n, url, false);
        size_t m;
        unsigned char *again = b64_decode_alloc(enc, strlen(enc), url, &m);
        if (!again || m != n || memcmp(again, dec, n) != 0) abort();
        free(again);
        free(enc);
        free(dec);
    }
    return 0;
}
