/* A set of ids (strings) kept as 64-bit digests: 16 bytes an entry instead
 * of a string and a hash-table node, for sets that live as long as a
 * session and grow with every event (the worker's seen/answered ids). The
 * digest is the first 8 bytes of SHA-256, so colliding ids cannot be
 * crafted; two ids colliding by chance among 2^20 has odds ~2^-24. The
 * table shrinks again when most entries are deleted, so a set whose owner
 * forgets ids costs memory for its live entries only. */
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
void idset_free(idset_t *s); /* also empties it: the set can be used again */
bool idset_has(const idset_t *s, const char *id);
/* 0, or -ENOMEM (the set is unchanged). */
int idset_add(idset_t *s, const char *id);
void idset_del(idset_t *s, const char *id);

/* The digest an id is kept as (never 0 or 1), and the same operations on
 * digests, for moving entries between sets without their strings. */
uint64_t idset_digest(const char *id);
bool idset_has_digest(const idset_t *s, uint64_t h);
int idset_add_digest(idset_t *s, uint64_t h);
void idset_del_digest(idset_t *s, uint64_t h);
/* Iteration: `size_t pos = 0; uint64_t h; while (idset_next(s, &pos, &h)) ...`
 * The set must not change during it (other sets may). */
bool idset_next(const idset_t *s, size_t *pos, uint64_t *h);
/* Bytes the set holds on the heap. */
size_t idset_bytes(const idset_t *s);
