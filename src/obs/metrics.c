/* The process-wide metrics registry and its Prometheus text rendering
 * (exposition format 0.0.4). Must never grow without bound: metrics and
 * label combinations are capped, and a refused combination is counted in
 * shed_metrics_label_overflow_total. Thread-safe: the registry has one lock,
 * each metric its own; the only nesting is registry -> metric. */
#include "obs/obs.h"

#include "obs/internal.h"

#include "base/cleanup.h"
#include "base/log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } mtype;
static const char *const TYPE_NAMES[] = {"counter", "gauge", "histogram"};

typedef struct series {
    char *values[METRICS_MAX_LABELS];
    double value;      /* counter/gauge */
    uint64_t *buckets; /* histogram: per-bucket (not cumulative) counts, nbounds+1 */
    double sum;
    uint64_t count;
} series_t;

struct metric {
    char *name;
    char *help;
    mtype type;
    int nlabels;
    char *labels[METRICS_MAX_LABELS];
    double bounds[METRICS_MAX_BUCKETS];
    int nbounds;
    int max_series;
    pthread_mutex_t mu;
    series_t **series;
    int nseries;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static metric_t *g_metrics[METRICS_MAX_METRICS];
static int g_nmetrics;
static metric_t *g_overflow;

static bool valid_name(const char *s, bool colon)
{
    if (!s || !*s) return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static void metric_free(metric_t *m)
{
    if (!m) return;
    free(m->name);
    free(m->help);
    for (int i = 0; i < m->nlabels; i++) free(m->labels[i]);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static int parse_labels(metric_t *m, const char *labels)
{
    if (!labels || !*labels) return 0;
    _cleanup_free_ char *copy = strdup(labels);
    if (!copy) return -ENOMEM;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        char *end = tok + strlen(tok);
        while (end > tok && end[-1] == ' ') *--end = '\0';
        if (m->nlabels == METRICS_MAX_LABELS || !valid_name(tok, false) || !strncmp(tok, "__", 2))
            return -EINVAL;
        if (m->type == M_HISTOGRAM && !strcmp(tok, "le")) return -EINVAL;
        for (int i = 0; i < m->nlabels; i++)
            if (!strcmp(m->labels[i], tok)) return -EINVAL;
        if (!(m->labels[m->nlabels++] = strdup(tok))) return -ENOMEM;
    }
    return 0;
}

static bool same_shape(const metric_t *a, const metric_t *b)
{
    if (a->type != b->type || a->nlabels != b->nlabels || a->nbounds != b->nbounds) return false;
    for (int i = 0; i < a->nlabels; i++)
        if (strcmp(a->labels[i], b->labels[i])) return false;
    for (int i = 0; i < a->nbounds; i++)
        if (a->bounds[i] != b->bounds[i]) return false;
    return true;
}

static series_t *series_new(const metric_t *m, char **values)
{
    series_t *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    if (m->type == M_HISTOGRAM &&
        !(s->buckets = calloc((size_t)m->nbounds + 1, sizeof(uint64_t)))) {
        free(s);
        return NULL;
    }
    for (int i = 0; i < m->nlabels; i++) s->values[i] = values[i];
    return s;
}

static metric_t *metric_register(mtype type, const char *name, const char *help, const char *labels,
                                 const double *bounds, int nbounds)
{
    if (!valid_name(name, true)) {
        log_error("metrics: invalid metric name '%s'", name ? name : "(null)");
        return NULL;
    }
    if (type == M_COUNTER && !ends_with(name, "_total")) {
        log_error("metrics: counter '%s' must end in _total", name);
        return NULL;
    }
    if (type != M_COUNTER && ends_with(name, "_total")) {
        log_error("metrics: only counters may end in _total ('%s')", name);
        return NULL;
    }
    metric_t *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    m->type = type;
    m->max_series = METRICS_DEFAULT_MAX_SERIES;
    m->name = strdup(name);
    m->help = strdup(help ? help : "");
    if (!m->name || !m->help || parse_labels(m, labels) < 0) {
        log_error("metrics: invalid label names '%s' for '%s'", labels ? labels : "", name);
        metric_free(m);
        return NULL;
    }
    if (type == M_HISTOGRAM) {
        if (!bounds || nbounds < 1 || nbounds > METRICS_MAX_BUCKETS) {
            log_error("metrics: histogram '%s' needs 1..%d bounds", name, METRICS_MAX_BUCKETS);
            metric_free(m);
            return NULL;
        }
        for (int i = 0; i < nbounds; i++) {
            if (!isfinite(bounds[i]) || (i && bounds[i] <= bounds[i - 1])) {
                log_error("metrics: histogram '%s' bounds must be finite and ascending", name);
                metric_free(m);
                return NULL;
            }
            m->bounds[i] = bounds[i];
        }
        m->nbounds = nbounds;
    }

    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < g_nmetrics; i++) {
        if (strcmp(g_metrics[i]->name, name)) continue;
        metric_t *found = g_metrics[i];
        pthread_mutex_unlock(&g_mu);
        bool same = same_shape(found, m);
        metric_free(m);
        if (!same) {
            log_error("metrics: '%s' is already registered with another type or labels", name);
            return NULL;
        }
        return found;
    }
    if (g_nmetrics == METRICS_MAX_METRICS) {
        pthread_mutex_unlock(&g_mu);
        log_error("metrics: registry full (%d metrics); '%s' not registered", METRICS_MAX_METRICS,
                  name);
        metric_free(m);
        return NULL;
    }
    /* A metric without labels has its one series from the start: it renders as 0. */
    if (m->nlabels == 0) {
        m->series = calloc(1, sizeof(series_t *));
        series_t *s = m->series ? series_new(m, NULL) : NULL;
        if (!s) {
            pthread_mutex_unlock(&g_mu);
            free(m->series);
            metric_free(m);
            return NULL;
        }
        m->series[0] = s;
        m->nseries = 1;
    }
    g_metrics[g_nmetrics++] = m;
    pthread_mutex_unlock(&g_mu);
    return m;
}

metric_t *metrics_counter(const char *name, const char *help, const char *labels)
{
    return metric_register(M_COUNTER, name, help, labels, NULL, 0);
}

metric_t *metrics_gauge(const char *name, const char *help, const char *labels)
{
    return metric_register(M_GAUGE, name, help, labels, NULL, 0);
}

metric_t *metrics_histogram(const char *name, const char *help, const char *labels,
                            const double *bounds, int nbounds)
{
    return metric_register(M_HISTOGRAM, name, help, labels, bounds, nbounds);
}

void metrics_set_max_series(metric_t *m, int max_series)
{
    if (!m || max_series < 1) return;
    pthread_mutex_lock(&m->mu);
    m->max_series = max_series;
    pthread_mutex_unlock(&m->mu);
}

/* Copy a label value: cut at METRICS_LABEL_VALUE_MAX bytes (on a character
 * boundary), invalid UTF-8 bytes replaced by '?'. */
static void clean_value(const char *in, char out[METRICS_LABEL_VALUE_MAX + 1])
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)(in ? in : "");
    while (*p) {
        size_t n = 1;
        if (*p >= 0x80) {
            if ((*p & 0xe0) == 0xc0 && *p >= 0xc2)
                n = 2;
            else if ((*p & 0xf0) == 0xe0)
                n = 3;
            else if ((*p & 0xf8) == 0xf0 && *p <= 0xf4)
                n = 4;
            else
                n = 0;
            for (size_t k = 1; n && k < n; k++)
                if ((p[k] & 0xc0) != 0x80) n = 0;
            /* overlong 3-byte forms, surrogates, and > U+10FFFF */
            if (n == 3 && ((*p == 0xe0 && p[1] < 0xa0) || (*p == 0xed && p[1] >= 0xa0))) n = 0;
            if (n == 4 && ((*p == 0xf0 && p[1] < 0x90) || (*p == 0xf4 && p[1] >= 0x90))) n = 0;
        }
        if (n == 0) {
            if (o + 1 > METRICS_LABEL_VALUE_MAX) break;
            out[o++] = '?';
            p++;
            continue;
        }
        if (o + n > METRICS_LABEL_VALUE_MAX) break;
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    out[o] = '\0';
    /* A label is an enum, never a credential: but if a caller passes an
     * error text by mistake, no key reaches the page. */
    if (obs_may_hold_credential(out)) {
        char red[METRICS_LABEL_VALUE_MAX * 2 + 32];
        log_redact(out, red, sizeof(red));
        snprintf(out, METRICS_LABEL_VALUE_MAX + 1, "%s", red);
    }
}

static void overflow(const metric_t *m)
{
    if (m == g_overflow) return;
    pthread_mutex_lock(&g_mu);
    metric_t *ov = g_overflow;
    pthread_mutex_unlock(&g_mu);
    if (!ov) {
        ov = metrics_counter("shed_metrics_label_overflow_total",
                             "Label combinations refused by the cardinality guard, by metric.",
                             "metric");
        if (!ov) return;
        metrics_set_max_series(ov, METRICS_MAX_METRICS);
        pthread_mutex_lock(&g_mu);
        g_overflow = ov;
        pthread_mutex_unlock(&g_mu);
    }
    metrics_inc(ov, LV(m->name), 1);
}

/* Find (or create) the series; called with m->mu held. *refused is set when
 * the cardinality guard said no. */
static series_t *series_get(metric_t *m, const char *const *label_values, bool create,
                            bool *refused)
{
    if (m->nlabels == 0) return m->series[0];
    char vals[METRICS_MAX_LABELS][METRICS_LABEL_VALUE_MAX + 1];
    for (int i = 0; i < m->nlabels; i++)
        clean_value(label_values ? label_values[i] : NULL, vals[i]);
    for (int s = 0; s < m->nseries; s++) {
        int i = 0;
        while (i < m->nlabels && !strcmp(m->series[s]->values[i], vals[i])) i++;
        if (i == m->nlabels) return m->series[s];
    }
    if (!create) return NULL;
    if (m->nseries >= m->max_series) {
        *refused = true;
        return NULL;
    }
    series_t **grown = realloc(m->series, sizeof(series_t *) * (size_t)(m->nseries + 1));
    if (!grown) return NULL;
    m->series = grown;
    char *copies[METRICS_MAX_LABELS] = {0};
    for (int i = 0; i < m->nlabels; i++) {
        if (!(copies[i] = strdup(vals[i]))) {
            for (int k = 0; k < i; k++) free(copies[k]);
            return NULL;
        }
    }
    series_t *s = series_new(m, copies);
    if (!s) {
        for (int k = 0; k < m->nlabels; k++) free(copies[k]);
        return NULL;
    }
    m->series[m->nseries++] = s;
    return s;
}

typedef enum { OP_INC, OP_SET, OP_OBSERVE, OP_TOUCH } op_t;

static void update(metric_t *m, const char *const *label_values, op_t op, double v)
{
    if (!m) return;
    if (op == OP_SET && m->type == M_HISTOGRAM) return;
    if (op == OP_INC && m->type == M_HISTOGRAM) return;
    if (op == OP_OBSERVE && m->type != M_HISTOGRAM) return;
    if (op == OP_INC && m->type == M_COUNTER && !(v >= 0)) return; /* also refuses NaN */
    bool refused = false;
    pthread_mutex_lock(&m->mu);
    series_t *s = series_get(m, label_values, true, &refused);
    if (s) {
        switch (op) {
        case OP_INC:
            s->value += v;
            break;
        case OP_SET:
            if (m->type == M_GAUGE || v > s->value) s->value = v; /* counters never go down */
            break;
        case OP_OBSERVE: {
            int b = 0;
            while (b < m->nbounds && !(v <= m->bounds[b])) b++;
            s->buckets[b]++;
            s->count++;
            s->sum += v;
            break;
        }
        case OP_TOUCH:
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (refused) overflow(m);
}

void metrics_inc(metric_t *m, const char *const *label_values, double v)
{
    update(m, label_values, OP_INC, v);
}

void metrics_set(metric_t *m, const char *const *label_values, double v)
{
    update(m, label_values, OP_SET, v);
}

void metrics_observe(metric_t *m, const char *const *label_values, double v)
{
    update(m, label_values, OP_OBSERVE, v);
}

void metrics_touch(metric_t *m, const char *const *label_values)
{
    update(m, label_values, OP_TOUCH, 0);
}

double metrics_value(metric_t *m, const char *const *label_values)
{
    if (!m) return NAN;
    bool refused = false;
    pthread_mutex_lock(&m->mu);
    series_t *s = series_get(m, label_values, false, &refused);
    double v = !s ? NAN : m->type == M_HISTOGRAM ? (double)s->count : s->value;
    pthread_mutex_unlock(&m->mu);
    return v;
}

/* ------------------------------------------------------------ rendering */

/* Shortest text that reads back as the same double; Prometheus spellings of
 * the special values. */
static void fmt_double(double v, char out[40])
{
    if (isnan(v)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) { /* counts read as counts, not 2e+04 */
        snprintf(out, 40, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, 40, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return;
    }
}

static int put_escaped(buf_t *out, const char *s, bool quote)
{
    for (; *s; s++) {
        int rc;
        if (*s == '\\')
            rc = buf_puts(out, "\\\\");
        else if (*s == '\n')
            rc = buf_puts(out, "\\n");
        else if (quote && *s == '"')
            rc = buf_puts(out, "\\\"");
        else
            rc = buf_putc(out, *s);
        if (rc < 0) return rc;
    }
    return 0;
}

/* {a="x",b="y"[,le="..."]} or nothing */
static int put_labels(buf_t *out, const metric_t *m, const series_t *s, const char *le)
{
    int rc = 0;
    if (m->nlabels == 0 && !le) return 0;
    if ((rc = buf_putc(out, '{')) < 0) return rc;
    for (int i = 0; i < m->nlabels; i++) {
        if ((rc = buf_printf(out, "%s%s=\"", i ? "," : "", m->labels[i])) < 0) return rc;
        if ((rc = put_escaped(out, s->values[i], true)) < 0) return rc;
        if ((rc = buf_putc(out, '"')) < 0) return rc;
    }
    if (le && (rc = buf_printf(out, "%sle=\"%s\"", m->nlabels ? "," : "", le)) < 0) return rc;
    return buf_putc(out, '}');
}

static int put_sample(buf_t *out, const metric_t *m, const char *suffix, const series_t *s,
                      const char *le, double v)
{
    char num[40];
    fmt_double(v, num);
    int rc;
    if ((rc = buf_printf(out, "%s%s", m->name, suffix)) < 0) return rc;
    if ((rc = put_labels(out, m, s, le)) < 0) return rc;
    return buf_printf(out, " %s\n", num);
}

static int cmp_series(const void *a, const void *b, void *arg)
{
    const metric_t *m = arg;
    const series_t *x = *(series_t *const *)a, *y = *(series_t *const *)b;
    for (int i = 0; i < m->nlabels; i++) {
        int c = strcmp(x->values[i], y->values[i]);
        if (c) return c;
    }
    return 0;
}

static int cmp_metric(const void *a, const void *b)
{
    return strcmp((*(metric_t *const *)a)->name, (*(metric_t *const *)b)->name);
}

static int render_metric(buf_t *out, metric_t *m)
{
    int rc;
    if ((rc = buf_printf(out, "# HELP %s ", m->name)) < 0) return rc;
    if ((rc = put_escaped(out, m->help, false)) < 0) return rc;
    if ((rc = buf_printf(out, "\n# TYPE %s %s\n", m->name, TYPE_NAMES[m->type])) < 0) return rc;
    /* series in label order, so the page is stable from scrape to scrape */
    if (m->nseries > 1) qsort_r(m->series, (size_t)m->nseries, sizeof(series_t *), cmp_series, m);
    for (int i = 0; i < m->nseries; i++) {
        const series_t *s = m->series[i];
        if (m->type != M_HISTOGRAM) {
            if ((rc = put_sample(out, m, "", s, NULL, s->value)) < 0) return rc;
            continue;
        }
        uint64_t cum = 0;
        for (int b = 0; b <= m->nbounds; b++) {
            char le[40];
            if (b < m->nbounds)
                fmt_double(m->bounds[b], le);
            else
                strcpy(le, "+Inf");
            cum += s->buckets[b];
            if ((rc = put_sample(out, m, "_bucket", s, le, (double)cum)) < 0) return rc;
        }
        if ((rc = put_sample(out, m, "_sum", s, NULL, s->sum)) < 0) return rc;
        if ((rc = put_sample(out, m, "_count", s, NULL, (double)s->count)) < 0) return rc;
    }
    return 0;
}

#define MAX_COLLECTORS 8
static pthread_mutex_t g_coll_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    void (*fn)(void *);
    void *arg;
} g_coll[MAX_COLLECTORS];
static int g_ncoll;

int metrics_add_collector(void (*fn)(void *arg), void *arg)
{
    if (!fn) return -EINVAL;
    pthread_mutex_lock(&g_coll_mu);
    int rc = g_ncoll < MAX_COLLECTORS ? 0 : -ENOSPC;
    if (rc == 0) {
        g_coll[g_ncoll].fn = fn;
        g_coll[g_ncoll++].arg = arg;
    }
    pthread_mutex_unlock(&g_coll_mu);
    return rc;
}

int metrics_render(buf_t *out)
{
    /* Collectors run outside g_mu: they update metrics, which may register. */
    pthread_mutex_lock(&g_coll_mu);
    int nc = g_ncoll;
    pthread_mutex_unlock(&g_coll_mu);
    for (int i = 0; i < nc; i++) g_coll[i].fn(g_coll[i].arg);

    /* g_mu is held for the whole render: a metric cannot appear half way. */
    pthread_mutex_lock(&g_mu);
    metric_t *sorted[METRICS_MAX_METRICS];
    int n = g_nmetrics;
    memcpy(sorted, g_metrics, sizeof(metric_t *) * (size_t)n);
    qsort(sorted, (size_t)n, sizeof(metric_t *), cmp_metric);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        pthread_mutex_lock(&sorted[i]->mu);
        rc = render_metric(out, sorted[i]);
        pthread_mutex_unlock(&sorted[i]->mu);
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}
