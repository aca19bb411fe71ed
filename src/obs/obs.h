/* Observability: Prometheus metrics and the hash-chained audit log.
 *
 * Metrics: a process-wide registry; counters, gauges and histograms with a
 * bounded label set (never a session or work id as a label). Thread-safe
 * increments (atomics). metrics_render() writes the Prometheus text format.
 *
 * Audit: one JSON line per event, each carrying the SHA-256 of the previous
 * line ("prev"), so an edit, deletion, insertion or reordering is detected by
 * `shed audit verify`. Rotation by size keeps the chain across files.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"

typedef struct metric metric_t;

/* Register (or find) a metric. name must follow Prometheus naming (units in
 * the name, counters end in _total). labels: comma-separated label names, or NULL. */
metric_t *metrics_counter(const char *name, const char *help, const char *labels);
metric_t *metrics_gauge(const char *name, const char *help, const char *labels);
/* Histogram with explicit upper bounds (seconds, ascending, +Inf implied). */
metric_t *metrics_histogram(const char *name, const char *help, const char *labels,
                            const double *bounds, int nbounds);
/* label values in the order declared; NULL when the metric has no labels. */
void metrics_inc(metric_t *m, const char *const *label_values, double v);
void metrics_set(metric_t *m, const char *const *label_values, double v);
void metrics_observe(metric_t *m, const char *const *label_values, double v);
int metrics_render(buf_t *out);

typedef struct audit audit_t;
typedef enum { AUDIT_CONTENT_NONE, AUDIT_CONTENT_METADATA, AUDIT_CONTENT_FULL } audit_content;
typedef struct audit_opts {
    const char *path;
    uint64_t rotate_bytes; /* 0 = never */
    bool fsync_each;       /* fsync after every record (else on rotation/close) */
    audit_content content;
} audit_opts;

int audit_open(const audit_opts *opts, audit_t **out, shed_err *err);
/* Append one record: {"ts","seq","event":type, ...fields, "prev":sha}. fields is borrowed.
 * Secrets in string values are redacted. Thread-safe. */
int audit_write(audit_t *a, const char *event, json_t *fields);
void audit_close(audit_t *a);
/* Verify one or more files (in rotation order); returns 0 if intact, else
 * -EBADMSG with err naming the file and line of the first bad record. */
int audit_verify(const char *const *paths, int n, shed_err *err);
