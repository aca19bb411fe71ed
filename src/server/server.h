/* `shed serve`: the local control plane. Serves the public Managed Agents
 * HTTP API a self-hosted worker touches (environments, the work queue,
 * sessions and their events), plus the LOCAL endpoints of
 * shared/design/local-control-plane.md, from a store (store.h).
 *
 * Never logs or prints a credential; never trusts a request body beyond its
 * size, depth and field checks; never answers one principal with another
 * environment's or session's data. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct server_config {
    const char *listen;    /* "127.0.0.1:8790", "[::1]:8790"; port 0 = any free port */
    const char *db_url;    /* "sqlite:PATH" */
    const char *admin_key; /* kept only as its SHA-256 digest after start */
    int64_t lease_ttl_s;   /* default lease TTL (60) */
    int64_t reclaim_ms;    /* default reclaim_older_than_ms (5000) */
    bool sync_normal;      /* --sync normal: survive kill -9, not power loss */
    bool sync_strict;      /* --sync strict: no event reaches a stream before its fsync */
    int64_t sse_ping_ms;   /* SSE keep-alive interval (15000; tests use less) */
    size_t max_body;       /* request body limit in bytes (4 MiB) */
    unsigned max_connections;
} server_config_t;

typedef struct server server_t;

void server_config_defaults(server_config_t *cfg);
int server_start(const server_config_t *cfg, server_t **out, shed_err *err);
/* The port actually bound (useful with port 0). */
int server_port(const server_t *srv);
/* Wakes every long-poll and stream, stops accepting, closes the store. */
void server_stop(server_t *srv);

/* Credential formats (exposed for the CLI client and tests). */
#define SERVER_ENV_KEY_PREFIX   "sk-shed-env-"
#define SERVER_TOKEN_PREFIX     "sk-shed-req-"
#define SERVER_ADMIN_KEY_PREFIX "sk-shed-admin-"
/* A new random credential "<prefix><43 base64url chars>" (256 bits); out >= 96 bytes. */
int server_new_secret(const char *prefix, char *out, size_t outlen);
