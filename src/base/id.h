/* Random ids: prefix + "_" + 26 base32 characters (130 bits from getrandom). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define ID_RAND_CHARS 26
#define ID_MAX        64

/* Writes "<prefix>_<26 chars>" into out; returns 0 or -errno. */
int id_new(const char *prefix, char *out, size_t outlen);
/* True if s is "<prefix>_" followed by exactly 26 id characters. */
bool id_valid(const char *s, const char *prefix);
/* Fill buf with n random bytes (getrandom, retried); 0 or -errno. */
int id_random(void *buf, size_t n);
