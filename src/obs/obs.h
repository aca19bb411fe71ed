/* Observability: Prometheus metrics, the /metrics /healthz /readyz endpoint,
 * and the hash-chained audit log. Must never let a session or work id become
 * a metric label, never write a credential to the audit log, and never block
 * the worker's event loop.
 *
 * How to use it (worker, server, egress):
 *
 *   obs_catalog_init();        // once, at start (the worker: obs_catalog_worker())
 *   metrics_inc(obs_m.tool_calls, LV("bash", "ok"), 1);
 *   metrics_observe(obs_m.tool_call_seconds, LV("bash"), 0.012);
 *   metrics_set(obs_m.sessions_active, NULL, 3);
 *
 *   obs_ready_set("poll", false, "no successful poll yet");  // from any thread
 *   obs_http_t *h;
 *   if (obs_http_start("127.0.0.1:9464", NULL, NULL, &h, &err) < 0) ...;
 *   ...
 *   obs_http_stop(h);
 *
 *   audit_t *a;  // NULL is accepted by audit_write/audit_close (auditing off)
 *   audit_opts o = {.path = "/var/log/shed/audit.log", .rotate_bytes = 64 << 20};
 *   if (audit_open(&o, &a, &err) < 0) ...;     // fail closed: refuse to start
 *   json_t *f = json_pack("{s:s,s:s,s:O,s:i,s:f,s:i}", "session_id", sid, "tool", "bash",
 *                         "input", input, "exit_status", 0, "duration_s", 0.2,
 *                         "output_bytes", 1234);
 *   audit_write(a, "tool.call", f);  // queued, never waits for the disk; f is copied
 *   json_decref(f);
 *   ...
 *   audit_close(a);                  // at exit: drains (at most 10 s), logs the chain head
 *
 * Worker flags that map onto this (docs/operations.md): --metrics-listen ADDR
 * -> obs_http_start; --audit-log FILE, --audit-content none|metadata|full,
 * --audit-rotate-size SIZE (default 64M), --audit-fsync -> audit_opts.
 * Event names and their fields: docs/operations.md, "The audit trail".
 * shed serve, with its own HTTP server: obs_http_answer() in its router, and
 * metrics_add_collector() + obs_queue_stats_update() for the queue gauges.
 *
 * The metric names are THE catalogue in docs/operations.md; add a metric
 * there and in catalog.c, not ad hoc, so alerts and dashboards stay right.
 *
 * Threads: everything here is thread-safe. The HTTP endpoint runs on its own
 * libmicrohttpd thread; the readiness callback is called on that thread.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"

/* ---------------------------------------------------------------- metrics */

typedef struct metric metric_t;

#define METRICS_MAX_LABELS         4
#define METRICS_DEFAULT_MAX_SERIES 64  /* label combinations per metric (cardinality guard) */
#define METRICS_LABEL_VALUE_MAX    128 /* longer label values are cut */
#define METRICS_MAX_METRICS        256
#define METRICS_MAX_BUCKETS        32

/* Label values for a call: metrics_inc(m, LV("bash", "ok"), 1). */
#define LV(...) ((const char *const[]){__VA_ARGS__})

/* Register (or find, if already registered with the same type and labels)
 * a metric. name follows Prometheus naming (units in the name; counters end
 * in _total); labels: comma-separated label names ("tool,outcome") or NULL.
 * Returns NULL (and logs why) on a bad name or a clash. Every metrics_* call
 * accepts a NULL metric and does nothing, so unregistered code paths work. */
metric_t *metrics_counter(const char *name, const char *help, const char *labels);
metric_t *metrics_gauge(const char *name, const char *help, const char *labels);
/* Histogram with explicit upper bounds (ascending, at most METRICS_MAX_BUCKETS; +Inf implied). */
metric_t *metrics_histogram(const char *name, const char *help, const char *labels,
                            const double *bounds, int nbounds);
/* Change the cardinality guard of one metric (default METRICS_DEFAULT_MAX_SERIES).
 * A new label combination past the limit is refused and counted in
 * shed_metrics_label_overflow_total{metric="<name>"}. */
void metrics_set_max_series(metric_t *m, int max_series);

/* label_values: one per declared label, in order; NULL when there are none.
 * A NULL value counts as "". Values are cut at METRICS_LABEL_VALUE_MAX bytes
 * and invalid UTF-8 is replaced by '?'. */
/* Counter: add v (v < 0 is ignored). Gauge: add v (may be negative). */
void metrics_inc(metric_t *m, const char *const *label_values, double v);
/* Gauge; or a counter mirrored from elsewhere (CPU seconds): a counter is
 * only ever set upwards. */
void metrics_set(metric_t *m, const char *const *label_values, double v);
/* Histogram only. */
void metrics_observe(metric_t *m, const char *const *label_values, double v);
/* Make the series exist at 0 (so rate() and alerts see it before the first event). */
void metrics_touch(metric_t *m, const char *const *label_values);
/* Current value (counter/gauge) or observation count (histogram); NAN when the
 * series does not exist. For tests and for the code that renders summaries. */
double metrics_value(metric_t *m, const char *const *label_values);
/* Append the whole registry in the Prometheus text format 0.0.4; 0 or -errno
 * (-EMSGSIZE when out's limit is reached). */
int metrics_render(buf_t *out);
/* Call fn(arg) at the start of every metrics_render (before the page is
 * built), e.g. to refresh queue gauges from a database at scrape time. Runs
 * on the rendering (HTTP) thread: fn must be thread-safe and quick. At most
 * 8 collectors; -ENOSPC past that. */
int metrics_add_collector(void (*fn)(void *arg), void *arg);
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* --------------------------------------------------------------- catalogue */

/* The metrics every part of shed uses (docs/operations.md, "Metric catalogue").
 * Label values in comments are the ones to use; anything else is counted but
 * bounded by the guard. */
typedef struct obs_metrics {
    /* queue (from GET /work/stats; the worker refreshes it, shed serve computes it) */
    metric_t *queue_depth;      /* gauge {environment} */
    metric_t *queue_pending;    /* gauge {environment} */
    metric_t *queue_oldest_age; /* gauge {environment} seconds; 0 when empty */
    metric_t *workers_polling;  /* gauge {environment} */
    /* worker */
    metric_t *polls;                   /* counter {outcome=work|empty|error|unauthorized} */
    metric_t *work_claimed;            /* counter */
    metric_t *acks;                    /* counter {outcome=ok|error} */
    metric_t *stops;                   /* counter {outcome=ok|error|conflict} */
    metric_t *heartbeats;              /* counter {outcome=ok|error|lease_lost|stopping} */
    metric_t *leases_lost;             /* counter */
    metric_t *sessions_active;         /* gauge */
    metric_t *sandbox_create_seconds;  /* histogram */
    metric_t *sandbox_destroy_seconds; /* histogram */
    metric_t
        *sandbox_failures;       /* counter
                                    {layer=userns|mount|pid|net|seccomp|cgroup|limits|spawn|init|other} */
    metric_t *tool_calls;        /* counter {tool,outcome=ok|error|timeout|killed} */
    metric_t *tool_call_seconds; /* histogram {tool} */
    metric_t
        *kills; /* counter {reason=timeout|oom|pids|stop_request|shutdown|admin|max_session|idle} */
    metric_t *egress_decisions; /* counter {proto=http|connect|socks5|dns,verdict=allow|deny} */
    /* audit (maintained by audit.c itself) */
    metric_t *audit_records;         /* counter */
    metric_t *audit_records_dropped; /* counter */
    /* shed serve */
    metric_t *http_requests;        /* counter {route,code}; route is the pattern, never a path */
    metric_t *http_request_seconds; /* histogram {route} */
    metric_t *store_failed; /* gauge: 0, or 1 once a flush to disk failed (serve refuses writes) */
    /* process */
    metric_t *build_info;      /* gauge {version} = 1 */
    metric_t *start_time;      /* process_start_time_seconds */
    metric_t *cpu_seconds;     /* process_cpu_seconds_total (read at scrape time) */
    metric_t *resident_memory; /* process_resident_memory_bytes */
    metric_t *open_fds;        /* process_open_fds */
    metric_t *max_fds;         /* process_max_fds */
} obs_metrics;

extern obs_metrics obs_m;

/* Set the four queue gauges of `environment` from a GET .../work/stats body
 * (work-api.md: depth, pending, oldest_queued_at|null, workers_polling|null).
 * 0, or -EINVAL with err naming the bad field (the gauges are then untouched). */
int obs_queue_stats_update(const char *environment, json_t *stats, shed_err *err);

/* Registers the catalogue once (idempotent, thread-safe) and sets
 * shed_build_info{version=SHED_VERSION} 1 and the start time. */
void obs_catalog_init(void);
/* The worker calls this at start (after obs_catalog_init is implied): the
 * poll and heartbeat series the alerts rate() exist at 0 from the start. */
void obs_catalog_worker(void);

/* ------------------------------------------------------- health endpoint */

/* Readiness checks by name ("poll", "sandbox_probe", "db"), set from any
 * thread. /readyz answers 200 when every check set so far is ok and at least
 * one was set, else 503 naming the first failing check and its reason. */
void obs_ready_set(const char *check, bool ok, const char *why);
/* The same, but the report goes stale after valid_ms: a check its owner
 * stops refreshing (a wedged event loop) then fails /readyz by itself. The
 * worker: obs_ready_set_for("poll", true, NULL, 60000) after each good poll. */
void obs_ready_set_for(const char *check, bool ok, const char *why, int64_t valid_ms);
/* The default readiness callback (uses the checks above). */
int obs_ready_checks(void *arg, char *why, size_t n);

typedef struct obs_http obs_http_t;
/* Readiness callback: return 0 when ready, else non-zero and a reason in why.
 * Called on the HTTP thread: it must be thread-safe and must not block. */
typedef int (*obs_ready_fn)(void *arg, char *why, size_t n);

/* Serve GET /metrics, /healthz (always 200 while the process runs) and
 * /readyz on listen_addr ("127.0.0.1:9464", "[::1]:9464", ":9464" = all
 * addresses; port 0 = any free port, see obs_http_port). ready NULL = use
 * obs_ready_checks. Runs on a libmicrohttpd thread; never touches the
 * caller's event loop. */
int obs_http_start(const char *listen_addr, obs_ready_fn ready, void *arg, obs_http_t **out,
                   shed_err *err);
int obs_http_port(const obs_http_t *h);
void obs_http_stop(obs_http_t *h);
/* For a process with its own HTTP server (shed serve): the same answers, to
 * mount in its router. Returns 1 when path is /metrics, /healthz or /readyz
 * and fills status, content type and body (malloc'd: free it, or hand it to
 * MHD_RESPMEM_MUST_FREE); 0 for any other path. ready NULL = obs_ready_checks. */
int obs_http_answer(const char *path, obs_ready_fn ready, void *arg, int *status,
                    const char **ctype, char **body, size_t *len);
/* Parse "host:port" / "[v6]:port" / ":port"; host may be empty (any). 0 or -EINVAL. */
int obs_parse_listen(const char *s, char *host, size_t hostlen, int *port);

/* -------------------------------------------------------------- audit log */

typedef struct audit audit_t;
/* METADATA is 0: a zero-initialized audit_opts gets the default. */
typedef enum { AUDIT_CONTENT_METADATA = 0, AUDIT_CONTENT_NONE, AUDIT_CONTENT_FULL } audit_content;

#define AUDIT_GENESIS   "0000000000000000000000000000000000000000000000000000000000000000"
#define AUDIT_MAX_LINE  (1 << 20) /* a record is at most 1 MiB; bigger content is cut */
#define AUDIT_META_CAP  256       /* metadata mode: bytes kept of each input string */
#define AUDIT_FULL_CAP  65536     /* full mode: bytes kept of each input/output string */
#define AUDIT_FIELD_CAP 1024      /* any other string field */

typedef struct audit_opts {
    const char *path;      /* the live file; rotated files are path.000001, path.000002, ... */
    uint64_t rotate_bytes; /* rotate before a record would take the file past this; 0 = never */
    bool fsync_each;       /* fdatasync after every record (else on rotation and close) */
    audit_content content; /* what of the session's content is kept (default metadata) */
} audit_opts;

/* Parse "none" | "metadata" | "full"; -EINVAL otherwise. */
int audit_parse_content(const char *s, audit_content *out);

/* Open (or continue) the chain at opts->path. An existing file continues its
 * chain; a missing file after rotated ones continues from the newest rotated
 * file; an incomplete last line (a crash mid-write) is cut and the cut is
 * recorded. Takes an exclusive flock: two processes never share one chain.
 * Fails (the caller should refuse to start) when the file cannot be opened or
 * its last record is not a valid audit record. Writes an "audit.opened" record. */
int audit_open(const audit_opts *opts, audit_t **out, shed_err *err);

/* Append one record, one JSON line:
 *   {"ts":RFC3339,"seq":N,"event":EVENT, ...fields..., "prev":SHA256-hex of the previous line}
 * fields (an object, or NULL) is borrowed: it is copied before the call
 * returns. Reserved keys (ts, seq, event, prev, prev_file) in fields are
 * ignored. Session content lives under the top-level keys "input", "output"
 * and "content": with content mode none they are replaced by <key>_bytes;
 * metadata keeps "input" with each string cut at AUDIT_META_CAP and replaces
 * output/content by their sizes; full keeps all, strings cut at
 * AUDIT_FULL_CAP. Every string is passed through log_redact, and values
 * under keys that name a credential (secret, token, key, password,
 * authorization, cookie, credential...) become "[REDACTED]".
 *
 * Never blocks on the disk: the record (ts taken now) is queued and a writer
 * thread chains and writes it, so the worker's event loop can call this. A
 * record that cannot be written (queue full, disk full, write error) is
 * dropped, counted in shed_audit_records_dropped_total, logged at most once a
 * minute, and reported in the chain by an "audit.records_dropped" record as
 * soon as writing works again. Thread-safe. Returns 0 when queued, -ENOBUFS
 * when the queue is full (dropped). a == NULL: does nothing, returns 0. */
int audit_write(audit_t *a, const char *event, json_t *fields);
/* Wait (at most timeout_ms) until every queued record is written. 0; the
 * -errno of the last record dropped since the previous flush; or -ETIMEDOUT. */
int audit_flush(audit_t *a, int timeout_ms);
/* The chain head: hash of the last record and its seq. */
void audit_head(audit_t *a, char hex[65], uint64_t *seq);
/* Drains the queue (waiting at most 10 s for a hung disk), writes
 * "audit.closed", fsyncs, closes, and logs the chain head (an anchor outside
 * the file: truncating the live file's tail is otherwise invisible). */
void audit_close(audit_t *a);

/* One parsed audit line (what verify needs). */
typedef struct audit_record {
    int64_t seq;
    char prev[65];
    char event[64];
    char prev_file[256]; /* "" when absent */
} audit_record;
/* Parse one line (without its newline). 0, or -EBADMSG with err saying what is wrong. */
int audit_parse_line(const char *line, size_t n, audit_record *out, shed_err *err);

/* Streaming verifier: feed files in rotation order, and each file's lines.
 * The first error sticks; its message is "FILE:LINE: what is wrong". */
typedef struct audit_verifier {
    char file[256];
    char prev_file[256]; /* basename of the file before this one */
    uint64_t line;       /* line number in the current file */
    uint64_t records;    /* records checked in total */
    int64_t seq;         /* seq of the last good record */
    char head[65];       /* hash of the last good record */
    bool started;
    bool file_empty;
    char continued_from[256]; /* the chain started in a file not given */
    int rc;
    shed_err err;
} audit_verifier;
void audit_verifier_init(audit_verifier *v);
void audit_verifier_file(audit_verifier *v, const char *name);
/* complete = the line ended with a newline. Returns v->rc. */
int audit_verifier_line(audit_verifier *v, const char *line, size_t n, bool complete);
/* Verify files (in rotation order); 0 if intact, else -EBADMSG (or -errno
 * when a file cannot be read) with err naming the file and line. v (optional)
 * receives the totals and the chain head. */
int audit_verify(const char *const *paths, int n, audit_verifier *v, shed_err *err);
