/* SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), written here so the shed
 * binary does not load OpenSSL's libcrypto on every start (see crypto.h).
 * Must never branch or index on secret data in crypto_equal, and must never
 * leave key material on the stack it owns (HMAC pads are wiped). */
#include "base/crypto.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct crypto_sha256_ctx {
    uint32_t h[8];
    uint64_t bytes;         /* total message length so far */
    unsigned char buf[64];  /* partial block */
    size_t used;            /* bytes in buf */
};

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(uint32_t h[8], const unsigned char *p)
{
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
               (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = ror(w[t - 15], 7) ^ ror(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = ror(w[t - 2], 17) ^ ror(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t t1 = k + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g; g = f; f = e; e = d + t1;
        d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

static void sha256_init(crypto_sha256_ctx *c)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, iv, sizeof(iv));
    c->bytes = 0;
    c->used = 0;
}

static void sha256_update(crypto_sha256_ctx *c, const void *data, size_t n)
{
    const unsigned char *p = data;
    c->bytes += n;
    if (c->used) {
        size_t take = 64 - c->used < n ? 64 - c->used : n;
        memcpy(c->buf + c->used, p, take);
        c->used += take;
        p += take;
        n -= take;
        if (c->used < 64) return;
        sha256_block(c->h, c->buf);
        c->used = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha256_block(c->h, p);
    memcpy(c->buf, p, n);
    c->used = n;
}

static void sha256_final(crypto_sha256_ctx *c, unsigned char out[SHA256_LEN])
{
    uint64_t bits = c->bytes * 8;
    c->buf[c->used++] = 0x80;
    if (c->used > 56) {
        memset(c->buf + c->used, 0, 64 - c->used);
        sha256_block(c->h, c->buf);
        c->used = 0;
    }
    memset(c->buf + c->used, 0, 56 - c->used);
    for (int i = 0; i < 8; i++) c->buf[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
    sha256_block(c->h, c->buf);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(c->h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
        out[4 * i + 3] = (unsigned char)c->h[i];
    }
}

static void wipe(void *p, size_t n)
{
    memset(p, 0, n);
    __asm__ __volatile__("" : : "r"(p) : "memory"); /* keep the memset */
}

int crypto_sha256(const void *data, size_t n, unsigned char out[SHA256_LEN])
{
    crypto_sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, data, n);
    sha256_final(&c, out);
    return 0;
}

void crypto_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int crypto_sha256_hex(const void *data, size_t n, char out[SHA256_HEX_LEN])
{
    unsigned char d[SHA256_LEN];
    int rc = crypto_sha256(data, n, d);
    if (rc < 0) return rc;
    crypto_hex(d, sizeof(d), out);
    return 0;
}

/* RFC 2104: H((K0 ^ opad) || H((K0 ^ ipad) || text)), K0 = key padded (or
 * hashed, if longer than the 64-byte block) to the block size. */
int crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t n,
                       unsigned char out[SHA256_LEN])
{
    unsigned char k0[64] = {0}, pad[64], inner[SHA256_LEN];
    crypto_sha256_ctx c;
    if (keylen > sizeof(k0)) crypto_sha256(key, keylen, k0);
    else if (keylen) memcpy(k0, key, keylen);

    for (int i = 0; i < 64; i++) pad[i] = k0[i] ^ 0x36;
    sha256_init(&c);
    sha256_update(&c, pad, sizeof(pad));
    sha256_update(&c, data, n);
    sha256_final(&c, inner);

    for (int i = 0; i < 64; i++) pad[i] = k0[i] ^ 0x5c;
    sha256_init(&c);
    sha256_update(&c, pad, sizeof(pad));
    sha256_update(&c, inner, sizeof(inner));
    sha256_final(&c, out);

    wipe(k0, sizeof(k0));
    wipe(pad, sizeof(pad));
    wipe(inner, sizeof(inner));
    wipe(&c, sizeof(c));
    return 0;
}

/* Constant time in the contents: every byte is read, no early exit. */
bool crypto_equal(const void *a, const void *b, size_t n)
{
    const volatile unsigned char *x = a, *y = b;
    unsigned char d = 0;
    for (size_t i = 0; i < n; i++) d |= x[i] ^ y[i];
    return d == 0;
}

crypto_sha256_ctx *crypto_sha256_begin(void)
{
    crypto_sha256_ctx *c = malloc(sizeof(*c));
    if (c) sha256_init(c);
    return c;
}

int crypto_sha256_update(crypto_sha256_ctx *c, const void *data, size_t n)
{
    if (!c) return -EINVAL;
    sha256_update(c, data, n);
    return 0;
}

int crypto_sha256_end(crypto_sha256_ctx *c, unsigned char out[SHA256_LEN])
{
    if (!c) return -EINVAL;
    sha256_final(c, out);
    wipe(c, sizeof(*c));
    free(c);
    return 0;
}
