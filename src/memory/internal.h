/* Private to src/memory: a small string map and the confined local file
 * store (local.c). Not for other modules. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/crypto.h"
#include "base/err.h"

/* rel path -> {sha, optional id string, three integers}. Open addressing. */
typedef struct memory_map_entry {
    char *key; /* NULL = free slot */
    char sha[SHA256_HEX_LEN];
    char *id;
    int64_t a, b, c;
} memory_map_entry_t;

typedef struct memory_map {
    memory_map_entry_t *slots;
    size_t cap, len;
} memory_map_t;

void memory_map_clear(memory_map_t *m);
memory_map_entry_t *memory_map_get(const memory_map_t *m, const char *key);
/* Get or insert (zeroed); NULL only on ENOMEM. */
memory_map_entry_t *memory_map_put(memory_map_t *m, const char *key);
int memory_map_set_sha(memory_map_t *m, const char *key, const char *sha);
void memory_map_del(memory_map_t *m, const char *key);
/* Sorted array of the keys (pointers into the map; caller frees the array). */
const char **memory_map_keys(const memory_map_t *m, size_t *n);

/* The local folder of one store. Every path is relative to root_fd, split
 * into components, never followed through a link. */
typedef struct memory_local {
    int root_fd;
    uid_t uid;
    gid_t gid;
    memory_map_t hash_cache; /* rel -> sha, a=mtime ns, b=ctime ns, c=size */
} memory_local_t;

/* hashtree(): every regular file under the root (links and specials
 * skipped, linked directories not descended), the marker taken out and
 * compared with `marker_sha`. */
int memory_local_scan(memory_local_t *l, const char *marker_sha, memory_map_t *files,
                      int *marker_ok, shed_err *err);
/* hashFile(): 1 and the sha, 0 when absent; a link or non-file is -ELOOP /
 * -EINVAL (FileStoreError in the reference). */
int memory_local_hash(memory_local_t *l, const char *rel, char sha[SHA256_HEX_LEN], shed_err *err);
/* put(): write atomically (temp + rename), creating directories below the
 * root (never the root). */
int memory_local_put(memory_local_t *l, const char *rel, const char *data, size_t len,
                     shed_err *err);
/* get(): 1 with the bytes (malloc'ed, NUL-terminated), 0 when absent;
 * -EFBIG past max. */
int memory_local_get(memory_local_t *l, const char *rel, size_t max, char **data, size_t *len,
                     shed_err *err);
/* remove(): a file or a subtree; absent is fine. */
int memory_local_remove(memory_local_t *l, const char *rel, shed_err *err);
/* Valid UTF-8 (no overlongs, no surrogates). */
int memory_utf8_valid(const char *s, size_t n);
