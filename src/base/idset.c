/* Open-addressing set of 64-bit id digests; see idset.h. */
#include "base/idset.h"

#include "base/crypto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t digest(const char *id)
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

bool idset_has(const idset_t *s, const char *id)
{
    if (!id || !s->cap) return false;
    bool found;
    find(s, digest(id), &found);
    return found;
}

static int grow(idset_t *s)
{
    size_t cap = s->cap ? s->cap * 2 : 16;
    if (s->n * 4 < s->cap) cap = s->cap; /* mostly tombstones: rehash in place */
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

int idset_add(idset_t *s, const char *id)
{
    if (!id) return 0;
    if ((s->used + 1) * 2 > s->cap) {
        int rc = grow(s);
        if (rc < 0) return rc;
    }
    bool found;
    uint64_t h = digest(id);
    size_t i = find(s, h, &found);
    if (found) return 0;
    if (s->slots[i] == 0) s->used++;
    s->slots[i] = h;
    s->n++;
    return 0;
}

void idset_del(idset_t *s, const char *id)
{
    if (!id || !s->cap) return;
    bool found;
    size_t i = find(s, digest(id), &found);
    if (!found) return;
    s->slots[i] = 1;
    s->n--;
}
