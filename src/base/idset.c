/* Open-addressing set of 64-bit id digests; see idset.h. Never stores the
 * id strings themselves. */
#include "base/idset.h"

#include "base/crypto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CAP 16

uint64_t idset_digest(const char *id)
{
    unsigned char d[SHA256_LEN];
    crypto_sha256(id, strlen(id), d);
    uint64_t h;
    memcpy(&h, d, sizeof(h));
    return h < 2 ? h + 2 : h;
}

void idset_init(idset_t *s)
{
    memset(s, 0, sizeof(*s));
}

void idset_free(idset_t *s)
{
    free(s->slots);
    idset_init(s);
}

static size_t find(const idset_t *s, uint64_t h, bool *found)
{
    size_t mask = s->cap - 1, i = (size_t)(h >> 7) & mask, tomb = (size_t)-1;
    for (;; i = (i + 1) & mask) {
        uint64_t v = s->slots[i];
        if (v == h) {
            *found = true;
            return i;
        }
        if (v == 1 && tomb == (size_t)-1) tomb = i;
        if (v == 0) {
            *found = false;
            return tomb != (size_t)-1 ? tomb : i;
        }
    }
}

bool idset_has_digest(const idset_t *s, uint64_t h)
{
    if (!s->cap || h < 2) return false;
    bool found;
    find(s, h, &found);
    return found;
}

bool idset_has(const idset_t *s, const char *id)
{
    return id && s->cap && idset_has_digest(s, idset_digest(id));
}

/* Rehash the live entries into a table of cap slots (0: free the table). */
static int resize(idset_t *s, size_t cap)
{
    if (cap == 0) {
        idset_free(s);
        return 0;
    }
    uint64_t *slots = calloc(cap, sizeof(*slots));
    if (!slots) return -ENOMEM;
    idset_t t = {.slots = slots, .cap = cap};
    for (size_t i = 0; i < s->cap; i++) {
        if (s->slots[i] < 2) continue;
        bool found;
        size_t j = find(&t, s->slots[i], &found);
        t.slots[j] = s->slots[i];
        t.used++;
        t.n++;
    }
    free(s->slots);
    *s = t;
    return 0;
}

int idset_add_digest(idset_t *s, uint64_t h)
{
    if (h < 2) return 0;
    if ((s->used + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : MIN_CAP;
        if (s->n * 4 < s->cap) cap = s->cap; /* mostly tombstones: rehash in place */
        int rc = resize(s, cap);
        if (rc < 0) return rc;
    }
    bool found;
    size_t i = find(s, h, &found);
    if (found) return 0;
    if (s->slots[i] == 0) s->used++;
    s->slots[i] = h;
    s->n++;
    return 0;
}

int idset_add(idset_t *s, const char *id)
{
    return id ? idset_add_digest(s, idset_digest(id)) : 0;
}

void idset_del_digest(idset_t *s, uint64_t h)
{
    if (!s->cap || h < 2) return;
    bool found;
    size_t i = find(s, h, &found);
    if (!found) return;
    s->slots[i] = 1;
    s->n--;
    if (s->n == 0) {
        idset_free(s);
    } else if (s->cap > MIN_CAP && s->n * 8 < s->cap) {
        /* Mostly empty: a quarter-full table of half the size or less. On
         * ENOMEM the larger table simply stays. */
        size_t cap = s->cap;
        while (cap > MIN_CAP && s->n * 4 < cap / 2) cap /= 2;
        resize(s, cap);
    }
}

void idset_del(idset_t *s, const char *id)
{
    if (id && s->cap) idset_del_digest(s, idset_digest(id));
}

bool idset_next(const idset_t *s, size_t *pos, uint64_t *h)
{
    for (; *pos < s->cap; (*pos)++) {
        if (s->slots[*pos] >= 2) {
            *h = s->slots[(*pos)++];
            return true;
        }
    }
    return false;
}

size_t idset_bytes(const idset_t *s)
{
    return s->cap * sizeof(*s->slots);
}
