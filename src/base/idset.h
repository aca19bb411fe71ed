/* A set of ids (strings) kept as 64-bit digests: 16 bytes an entry instead
 * of a string and a hash-table node, for sets that live as long as a
 * session and grow with every event (the worker's seen/answered ids). The
 * digest is the first 8 bytes of SHA-256, so colliding ids cannot be
 * crafted; two ids colliding by chance among 2^20 has odds ~2^-24. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct idset {
    uint64_t *slots; /* 0 = empty, 1 = deleted */
    size_t cap;      /* power of two */
    size_t used;     /* live + deleted */
    size_t n;        /* live */
} idset_t;

void idset_init(idset_t *s);
void idset_free(idset_t *s);
bool idset_has(const idset_t *s, const char *id);
/* 0, or -ENOMEM (the set is unchanged). */
int idset_add(idset_t *s, const char *id);
void idset_del(idset_t *s, const char *id);
