/* A string-keyed map for the sync engine's {rel path -> sha} tables:
 * linear probing, backward-shift deletion, sorted key listing. Holds only
 * what the engine puts in; bounded by the caller (a store folder is capped
 * at MEMORY_MAX_LOCAL_FILES). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "memory/internal.h"

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void entry_free(memory_map_entry_t *e)
{
    free(e->key);
    free(e->id);
    memset(e, 0, sizeof *e);
}

void memory_map_clear(memory_map_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key) entry_free(&m->slots[i]);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static size_t find_slot(const memory_map_t *m, const char *key, int *found)
{
    size_t mask = m->cap - 1, i = (size_t)hash_str(key) & mask;
    for (;; i = (i + 1) & mask) {
        if (!m->slots[i].key) {
            *found = 0;
            return i;
        }
        if (!strcmp(m->slots[i].key, key)) {
            *found = 1;
            return i;
        }
    }
}

memory_map_entry_t *memory_map_get(const memory_map_t *m, const char *key)
{
    if (!m->cap) return NULL;
    int found;
    size_t i = find_slot(m, key, &found);
    return found ? &m->slots[i] : NULL;
}

static int grow(memory_map_t *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    memory_map_entry_t *ns = calloc(ncap, sizeof *ns);
    if (!ns) return -ENOMEM;
    memory_map_t n = {.slots = ns, .cap = ncap, .len = m->len};
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key) continue;
        int found;
        size_t j = find_slot(&n, m->slots[i].key, &found);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    *m = n;
    return 0;
}

memory_map_entry_t *memory_map_put(memory_map_t *m, const char *key)
{
    if ((m->len + 1) * 4 > m->cap * 3 && grow(m) < 0) return NULL;
    int found;
    size_t i = find_slot(m, key, &found);
    if (found) return &m->slots[i];
    char *k = strdup(key);
    if (!k) return NULL;
    memset(&m->slots[i], 0, sizeof m->slots[i]);
    m->slots[i].key = k;
    m->len++;
    return &m->slots[i];
}

int memory_map_set_sha(memory_map_t *m, const char *key, const char *sha)
{
    memory_map_entry_t *e = memory_map_put(m, key);
    if (!e) return -ENOMEM;
    memcpy(e->sha, sha, SHA256_HEX_LEN - 1);
    e->sha[SHA256_HEX_LEN - 1] = 0;
    return 0;
}

void memory_map_del(memory_map_t *m, const char *key)
{
    if (!m->cap) return;
    int found;
    size_t i = find_slot(m, key, &found);
    if (!found) return;
    entry_free(&m->slots[i]);
    m->len--;
    size_t mask = m->cap - 1;
    /* backward shift: pull later members of the run into the hole */
    for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        size_t home = (size_t)hash_str(m->slots[j].key) & mask;
        /* j's entry may move to i only if i lies cyclically in [home, j) */
        int movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            m->slots[i] = m->slots[j];
            memset(&m->slots[j], 0, sizeof m->slots[j]);
            i = j;
        }
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char **memory_map_keys(const memory_map_t *m, size_t *n)
{
    const char **keys = malloc((m->len ? m->len : 1) * sizeof *keys);
    if (!keys) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key) keys[k++] = m->slots[i].key;
    qsort(keys, k, sizeof *keys, cmp_str);
    *n = k;
    return keys;
}
