/* Fuzz the work secret decoder (base64url JSON carrying sessions_token). */
#include "worker/proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = 0;
    char *tok = NULL, *url = NULL;
    shed_err err;
    if (proto_secret_decode(s, &tok, &url, &err) == 0) {
        if (!tok || !*tok) abort();
        for (char *c = tok; *c; c++)
            if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e) abort();
    }
    free(tok);
    free(url);
    free(s);
    return 0;
}
