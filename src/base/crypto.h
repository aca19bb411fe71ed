/* SHA-256 and HMAC-SHA256 (own FIPS 180-4 / RFC 2104 code, no libcrypto), hex helpers,
 * constant-time compare. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define SHA256_LEN     32
#define SHA256_HEX_LEN 65

int crypto_sha256(const void *data, size_t n, unsigned char out[SHA256_LEN]);
int crypto_sha256_hex(const void *data, size_t n, char out[SHA256_HEX_LEN]);
int crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t n,
                       unsigned char out[SHA256_LEN]);
void crypto_hex(const unsigned char *in, size_t n, char *out);
bool crypto_equal(const void *a, const void *b, size_t n);

/* Incremental SHA-256 for chained records and streamed files. */
typedef struct crypto_sha256_ctx crypto_sha256_ctx;
crypto_sha256_ctx *crypto_sha256_begin(void);
int crypto_sha256_update(crypto_sha256_ctx *c, const void *data, size_t n);
int crypto_sha256_end(crypto_sha256_ctx *c, unsigned char out[SHA256_LEN]); /* frees c */
