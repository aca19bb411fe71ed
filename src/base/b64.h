/* Base64 (RFC 4648 §4) and base64url (§5), with and without padding. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* Encoded length including the NUL. */
size_t b64_encoded_size(size_t n, bool pad);
/* Encode n bytes into out (b64_encoded_size() bytes); returns the string length. */
size_t b64_encode(const void *in, size_t n, char *out, bool url, bool pad);
/* Heap-allocated encode; NULL on allocation failure. */
char *b64_encode_alloc(const void *in, size_t n, bool url, bool pad);
/* Decode: accepts both alphabets when url==true is not required; padding optional.
 * Rejects invalid characters, bad padding and non-zero trailing bits.
 * out must hold n*3/4+3 bytes; returns the decoded length or -EINVAL. */
long b64_decode(const char *in, size_t n, void *out, bool url);
/* Heap-allocated decode (NUL-terminated for convenience); NULL on error. */
void *b64_decode_alloc(const char *in, size_t n, bool url, size_t *outlen);
