/* Microbenchmarks of src/obs, built and run by bench/obs.sh: the cost the
 * worker's event loop pays per metric update and per audit record, and the
 * throughput of the audit writer and verifier, each beside an anchor
 * measured in the same run (a bare increment under a mutex; write() +
 * SHA-256 of the same line). Prints figures; never fails on a slow machine. */
#include "base/clock.h"
#include "base/crypto.h"
#include "base/log.h"
#include "obs/obs.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RUNS 7

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    return v[n / 2];
}

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static volatile double g_plain;

static double anchor_mutex_ns(int n)
{
    int64_t t0 = clock_mono_ns();
    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(&g_mu);
        g_plain += 1;
        pthread_mutex_unlock(&g_mu);
    }
    return (double)(clock_mono_ns() - t0) / n;
}

static double inc_ns(int n)
{
    int64_t t0 = clock_mono_ns();
    for (int i = 0; i < n; i++) metrics_inc(obs_m.tool_calls, LV("bash", "ok"), 1);
    return (double)(clock_mono_ns() - t0) / n;
}

static double observe_ns(int n)
{
    int64_t t0 = clock_mono_ns();
    for (int i = 0; i < n; i++) metrics_observe(obs_m.tool_call_seconds, LV("bash"), 0.02);
    return (double)(clock_mono_ns() - t0) / n;
}

static double render_us(void)
{
    buf_t b;
    buf_init(&b, 0);
    int64_t t0 = clock_mono_ns();
    metrics_render(&b);
    double us = (double)(clock_mono_ns() - t0) / 1000.0;
    buf_free(&b);
    return us;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    log_setup(LOG_ERROR, LOG_TEXT);
    obs_catalog_worker();
    const int N = 200000;
    double a[RUNS], m[RUNS], o[RUNS], r[RUNS];
    for (int k = 0; k < RUNS; k++) {
        a[k] = anchor_mutex_ns(N);
        m[k] = inc_ns(N);
        o[k] = observe_ns(N);
        r[k] = render_us();
    }
    double am = median(a, RUNS), mm = median(m, RUNS);
    printf("metrics_inc (2 labels)          %8.1f ns/op   anchor mutex+add %6.1f ns  ratio %.1fx\n",
           mm, am, mm / am);
    printf("metrics_observe (histogram)     %8.1f ns/op\n", median(o, RUNS));
    printf("metrics_render (catalogue)      %8.1f us/page\n", median(r, RUNS));

    /* audit: caller-side cost, end-to-end throughput, anchor write()+sha256 */
    json_t *f =
        json_pack("{s:s,s:s,s:s,s:{s:s},s:i,s:f,s:i}", "session_id",
                  "sesn_01HZXYZABCDEFGHJKMNPQRSTVW", "work_id", "work_01HZXYZABCDEFGHJKMNPQRSTVW",
                  "tool", "bash", "input", "command", "cd /workspace && make -j4 test",
                  "exit_status", 0, "duration_s", 1.25, "output_bytes", 4096);
    const int R = 20000;
    double call[RUNS], e2e[RUNS], anc[RUNS], ver[RUNS];
    char path[512];
    for (int k = 0; k < RUNS; k++) {
        snprintf(path, sizeof(path), "%s/bench-audit-%d.log", dir, k);
        unlink(path);
        audit_opts opts = {.path = path};
        audit_t *au;
        shed_err err;
        if (audit_open(&opts, &au, &err) < 0) {
            fprintf(stderr, "audit_open: %s\n", err.msg);
            return 1;
        }
        /* caller side: a burst the queue holds; end to end: bursts of 1000, flushed */
        int64_t t0 = clock_mono_ns();
        for (int i = 0; i < 1000; i++) audit_write(au, "tool.call", f);
        call[k] = (double)(clock_mono_ns() - t0) / 1000 / 1000.0;
        audit_flush(au, 60000);
        t0 = clock_mono_ns();
        for (int i = 0; i < R; i++) {
            audit_write(au, "tool.call", f);
            if (i % 1000 == 999) audit_flush(au, 60000);
        }
        audit_flush(au, 60000);
        int64_t t2 = clock_mono_ns();
        audit_close(au);
        e2e[k] = R / ((double)(t2 - t0) / 1e9);
        const char *ps[] = {path};
        int64_t v0 = clock_mono_ns();
        audit_verifier v;
        audit_verify(ps, 1, &v, &err);
        ver[k] = v.records / ((double)(clock_mono_ns() - v0) / 1e9);
        /* anchor: the same number of lines of the same size, write() + sha256 each */
        char *line = json_dumps(f, JSON_COMPACT);
        size_t len = strlen(line) + 100; /* + ts, seq, event, prev */
        char *buf = calloc(1, len + 1);
        memcpy(buf, line, strlen(line));
        buf[len - 1] = '\n';
        free(line);
        snprintf(path, sizeof(path), "%s/bench-anchor-%d.log", dir, k);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
        char hex[65];
        int64_t w0 = clock_mono_ns();
        for (int i = 0; i < R; i++) {
            crypto_sha256_hex(buf, len, hex);
            if (write(fd, buf, len) < 0) break;
        }
        anc[k] = R / ((double)(clock_mono_ns() - w0) / 1e9);
        close(fd);
        unlink(path);
        free(buf);
        snprintf(path, sizeof(path), "%s/bench-audit-%d.log", dir, k);
        unlink(path);
    }
    double e = median(e2e, RUNS), an = median(anc, RUNS);
    printf("audit_write, caller side        %8.2f us/record (the event loop's cost)\n",
           median(call, RUNS));
    printf("audit end to end                %8.0f records/s   anchor write()+sha256 %8.0f/s  ratio "
           "%.2f\n",
           e, an, e / an);
    printf("audit verify                    %8.0f records/s\n", median(ver, RUNS));
    printf("audit records dropped           %8.0f (expected 0)\n",
           metrics_value(obs_m.audit_records_dropped, NULL));
    json_decref(f);
    return 0;
}
