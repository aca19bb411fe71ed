/* Digest helpers over OpenSSL's EVP API; see crypto.h. */
#include "base/crypto.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

int crypto_sha256(const void *data, size_t n, unsigned char out[SHA256_LEN])
{
    unsigned int len = 0;
    if (!EVP_Digest(data, n, out, &len, EVP_sha256(), NULL)) return -EIO;
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

int crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t n,
                       unsigned char out[SHA256_LEN])
{
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, data, n, out, &len)) return -EIO;
    return 0;
}

bool crypto_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

crypto_sha256_ctx *crypto_sha256_begin(void)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c && !EVP_DigestInit_ex(c, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(c);
        return NULL;
    }
    return (crypto_sha256_ctx *)c;
}

int crypto_sha256_update(crypto_sha256_ctx *c, const void *data, size_t n)
{
    return EVP_DigestUpdate((EVP_MD_CTX *)c, data, n) ? 0 : -EIO;
}

int crypto_sha256_end(crypto_sha256_ctx *c, unsigned char out[SHA256_LEN])
{
    unsigned int len = 0;
    int ok = EVP_DigestFinal_ex((EVP_MD_CTX *)c, out, &len);
    EVP_MD_CTX_free((EVP_MD_CTX *)c);
    return ok ? 0 : -EIO;
}
