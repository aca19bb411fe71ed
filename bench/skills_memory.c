/* Benchmark driver for bench/skills_memory.sh (not part of shed):
 *   skills_memory extract ARCHIVE PARENT_DIR NAME   extract once, print ms
 *   skills_memory sync DIR N                        mount a store of N memories against an
 *                                                   in-process remote, then time a sync with
 *                                                   nothing changed and one with N/10 edits
 * Prints "name ms" lines. */
#include "base/clock.h"
#include "base/crypto.h"
#include "base/log.h"
#include "base/tree.h"
#include "memory/memory.h"
#include "skills/skills.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int do_extract(const char *archive, const char *parent, const char *name)
{
    int afd = open(archive, O_RDONLY | O_CLOEXEC);
    int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (afd < 0 || pfd < 0) return perror("open"), 1;
    shed_err err;
    skills_extract_stats_t st;
    int64_t t0 = clock_mono_ns();
    if (skills_extract_fd(afd, pfd, name, NULL, &st, &err) < 0)
        return fprintf(stderr, "%s\n", err.msg), 1;
    printf("extract_ms %.1f files %u bytes %llu\n", (clock_mono_ns() - t0) / 1e6, st.files,
           (unsigned long long)st.bytes);
    return 0;
}

/* A remote holding N memories "/m<i>.md" = "memory <i>" that accepts every
 * write; enough to time the engine's own work. */
static int g_n;
static char (*g_sha)[SHA256_HEX_LEN];

static int r_list(void *ctx, memory_req_t *r)
{
    (void)ctx;
    int full = !strcmp(r->view, "full");
    int off = r->page ? atoi(r->page) : 0, end = off + r->limit;
    if (end > g_n) end = g_n;
    for (int i = off; i < end; i++) {
        char id[32], path[32], content[32];
        snprintf(id, sizeof id, "mem_%d", i);
        snprintf(path, sizeof path, "/m%d.md", i);
        int n = snprintf(content, sizeof content, "memory %d", i);
        memory_req_add_item(r, id, path, g_sha[i], full ? content : NULL, full ? (size_t)n : 0, 0);
    }
    if (end < g_n) {
        char cur[16];
        snprintf(cur, sizeof cur, "%d", end);
        memory_req_set_next_page(r, cur);
    }
    r->status = 200;
    memory_req_done(r);
    return 0;
}

static int r_write(void *ctx, memory_req_t *r)
{
    (void)ctx;
    char sha[SHA256_HEX_LEN];
    crypto_sha256_hex(r->content, r->content_len, sha);
    int i = r->memory_id ? atoi(r->memory_id + 4) : 0;
    if (r->memory_id && i >= 0 && i < g_n) memcpy(g_sha[i], sha, SHA256_HEX_LEN);
    memory_req_set_item(r, r->memory_id ? r->memory_id : "mem_new", "/x", sha, NULL, 0);
    r->status = 200;
    memory_req_done(r);
    return 0;
}

static int do_sync(const char *dir, int n)
{
    log_setup(LOG_ERROR, LOG_TEXT);
    g_n = n;
    g_sha = calloc((size_t)n, sizeof *g_sha);
    for (int i = 0; i < n; i++) {
        char c[32];
        int k = snprintf(c, sizeof c, "memory %d", i);
        crypto_sha256_hex(c, (size_t)k, g_sha[i]);
    }
    memory_remote_t remote = {
        .list = r_list, .get = r_write, .create = r_write, .update = r_write, .del = r_write};
    memory_store_config_t cfg = {
        .memory_store_id = "memstore_bench", .owner_uid = (uid_t)-1, .owner_gid = (gid_t)-1};
    int pfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    memory_store_t *s;
    shed_err err;
    int64_t t0 = clock_mono_ns();
    if (memory_store_mount(&s, &cfg, &remote, pfd, "store", 0, &err) < 0)
        return fprintf(stderr, "%s\n", err.msg), 1;
    while (memory_store_run(s, 0)) {
    }
    if (memory_store_mount_result(s, &err) < 0) return fprintf(stderr, "%s\n", err.msg), 1;
    printf("mount_pull_ms %.1f memories %d\n", (clock_mono_ns() - t0) / 1e6, n);
    /* let the 2 s hash-cache margin pass so the cache is trusted */
    sleep(3);
    for (int pass = 0; pass < 2; pass++) {
        t0 = clock_mono_ns();
        memory_store_sync_start(s, 0, 1000);
        while (memory_store_run(s, 1000)) {
        }
        printf("%s %.1f\n", pass ? "sync_nochange_cached_ms" : "sync_nochange_first_ms",
               (clock_mono_ns() - t0) / 1e6);
    }
    int sfd = openat(pfd, "store", O_RDONLY | O_DIRECTORY);
    for (int i = 0; i < n; i += 10) {
        char p[32];
        snprintf(p, sizeof p, "m%d.md", i);
        int fd = openat(sfd, p, O_WRONLY | O_TRUNC);
        if (fd < 0 || write(fd, "edited", 6) != 6) return perror("edit"), 1;
        close(fd);
    }
    t0 = clock_mono_ns();
    memory_store_sync_start(s, 0, 2000);
    while (memory_store_run(s, 2000)) {
    }
    memory_store_stats_t st;
    memory_store_get_stats(s, &st);
    printf("sync_tenth_edited_ms %.1f pushed %u\n", (clock_mono_ns() - t0) / 1e6, st.pushed);
    close(sfd);
    memory_store_dispose(s, &err);
    memory_store_free(s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "extract")) return do_extract(argv[2], argv[3], argv[4]);
    if (argc == 4 && !strcmp(argv[1], "sync")) return do_sync(argv[2], atoi(argv[3]));
    fprintf(stderr, "usage: skills_memory extract ARCHIVE PARENT NAME | sync DIR N\n");
    return 2;
}
