/* Egress: a sandbox's only way out. Init creates, inside the sandbox's
 * network namespace, listening TCP sockets on 127.0.0.1:3128 (HTTP proxy:
 * CONNECT and absolute-URI plain HTTP) and 127.0.0.1:1080 (SOCKS5), and a
 * UDP socket on 127.0.0.1:53 (DNS stub), and passes the three fds to the
 * creator in its "ready" control message (ctl.h). The creator attaches them
 * here: the proxy runs on the creator's event loop, decides each destination
 * by the policy, resolves names itself (or through staticHosts), connects
 * from the host's namespace and splices bytes. Deny by default.
 * Design, policy keys and matching rules: docs/egress.md.
 *
 * Threading: everything below except the policy functions runs on the
 * loop's thread (the egress has a private resolver pool that posts back to
 * the loop). Events are delivered on the loop's thread.
 *
 * Worker use: egress_new() once on the worker's loop; per sandbox,
 * egress_policy_parse(sandbox_policy_network(pol)) (once per policy file),
 * egress_attach() with the fds from sandbox_take_listeners(), and
 * egress_detach() before sandbox_destroy(). */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "base/loop.h"

typedef struct egress_policy egress_policy;
typedef struct egress egress_t;

/* Parse and validate the policy's "network" object (NULL = deny all).
 * Errors name the key: "network.allowedDomains[2]: ...". */
int egress_policy_parse(json_t *network, egress_policy **out, shed_err *err);
/* Policies are reference-counted: egress_attach/egress_set_policy take a
 * reference, so the caller may free its own right after. */
void egress_policy_free(egress_policy *p);

/* A decision, for the audit log and metrics: one per connection, sent when
 * it ends (a denial at once), and one per DNS question decided. Strings are
 * valid during the callback only. */
typedef struct egress_event {
    const char *label;      /* sandbox label (session id) */
    const char *proto;      /* "connect", "http", "socks5", "dns" */
    const char *host;       /* normalized name or address; "(invalid)" for a bad name */
    int port;               /* 53 for dns */
    const char *address;    /* connected (or refused) address, or NULL */
    bool allowed;
    const char *rule;       /* which rule decided */
    const char *error;      /* NULL, or why an allowed connection failed or ended early */
    uint64_t bytes_up, bytes_down; /* from the sandbox / to the sandbox */
    int64_t duration_ms;
} egress_event;
typedef void (*egress_event_cb)(const egress_event *ev, void *arg);

int egress_new(loop_t *loop, egress_event_cb cb, void *cb_arg, egress_t **out, shed_err *err);
void egress_free(egress_t *e);

/* Serve one sandbox's listeners under `pol` (the egress takes a reference).
 * Any of the fds may be -1. The egress owns the fds, even on failure.
 * -EEXIST if the label is attached already. */
int egress_attach(egress_t *e, const char *label, const egress_policy *pol, int http_fd,
                  int socks_fd, int dns_fd, shed_err *err);
/* Replace a running sandbox's policy (runtime change; audited by the
 * caller). Open connections the new policy would not allow are closed at
 * once. -ENOENT for an unknown label. */
int egress_set_policy(egress_t *e, const char *label, const egress_policy *pol);
/* Close the sandbox's listeners and all its connections. */
void egress_detach(egress_t *e, const char *label);

/* For a creator without an event loop of its own (`shed run`): serve one
 * sandbox on a private loop in one thread; decisions go to the log (denials
 * at info). Owns the fds (even on failure); keeps a reference to pol. */
typedef struct egress_runner egress_runner;
int egress_runner_start(const char *label, const egress_policy *pol, int http_fd, int socks_fd,
                        int dns_fd, egress_runner **out, shed_err *err);
/* Stop the thread, close every listener and connection. NULL is a no-op. */
void egress_runner_stop(egress_runner *r);
