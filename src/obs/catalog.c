/* The metric catalogue: every metric shed exports, registered in one place
 * so names, labels and buckets match docs/operations.md and the alert rules
 * in deploy/prometheus/alerts.yml. Must never declare a label that could
 * carry a session id, work id, path or other unbounded value. */
#include "obs/obs.h"

#include "base/clock.h"
#include "base/json.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <pthread.h>

#ifndef SHED_VERSION
#define SHED_VERSION "unknown"
#endif

obs_metrics obs_m;

/* Sandbox setup and teardown: milliseconds to tens of seconds. */
static const double SANDBOX_BOUNDS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                        0.5,   1,    2.5,   5,    10,  30};
/* Tool calls: a cat in a millisecond to a build at the 120 s default timeout and beyond. */
static const double TOOL_BOUNDS[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1,
                                     2.5,   5,     10,   30,   60,  120,  300, 600};
/* HTTP requests to shed serve (long polls hold up to 1 s). */
static const double HTTP_BOUNDS[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

#define NB(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* The process metrics every Prometheus client exports, read at scrape time. */
static void collect_process(void *arg)
{
    (void)arg;
    FILE *f = fopen("/proc/self/stat", "re");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* fields after "(comm)": state is field 3; utime 14, stime 15, rss 24 */
        char *p = strrchr(buf, ')');
        unsigned long utime, stime;
        long rss;
        if (p && sscanf(p + 2,
                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d "
                        "%*d %*d %*d %*u %*u %ld",
                        &utime, &stime, &rss) == 3) {
            double tck = (double)sysconf(_SC_CLK_TCK);
            metrics_set(obs_m.cpu_seconds, NULL, (double)(utime + stime) / tck);
            metrics_set(obs_m.resident_memory, NULL, (double)rss * (double)sysconf(_SC_PAGESIZE));
        }
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') n++;
        closedir(d);
        metrics_set(obs_m.open_fds, NULL, n - 1); /* not counting d itself */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        metrics_set(obs_m.max_fds, NULL,
                    rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
}

static void catalog_register(void)
{
    obs_metrics m = {0};
    m.queue_depth = metrics_gauge("shed_queue_depth",
                                  "Work items waiting in the queue (stats: depth).", "environment");
    m.queue_pending = metrics_gauge(
        "shed_queue_pending", "Work items polled but not acked (stats: pending).", "environment");
    m.queue_oldest_age =
        metrics_gauge("shed_queue_oldest_age_seconds",
                      "Age of the oldest queued work item; 0 when none waits.", "environment");
    m.workers_polling = metrics_gauge(
        "shed_workers_polling", "Workers that polled the queue in the last 30 s.", "environment");

    m.polls = metrics_counter("shed_polls_total", "Work polls by outcome.", "outcome");
    m.work_claimed =
        metrics_counter("shed_work_claimed_total", "Work items claimed (acked).", NULL);
    m.acks = metrics_counter("shed_acks_total", "Work acks by outcome.", "outcome");
    m.stops = metrics_counter("shed_stops_total", "Work stops sent by outcome.", "outcome");
    m.heartbeats =
        metrics_counter("shed_heartbeats_total", "Lease heartbeats by outcome.", "outcome");
    m.leases_lost = metrics_counter("shed_leases_lost_total",
                                    "Leases lost (expired or taken over) while held.", NULL);
    m.sessions_active =
        metrics_gauge("shed_sessions_active", "Sessions with a live sandbox on this worker.", NULL);
    m.sandbox_create_seconds =
        metrics_histogram("shed_sandbox_create_seconds", "Time to create a sandbox.", NULL,
                          SANDBOX_BOUNDS, NB(SANDBOX_BOUNDS));
    m.sandbox_destroy_seconds =
        metrics_histogram("shed_sandbox_destroy_seconds", "Time to tear a sandbox down.", NULL,
                          SANDBOX_BOUNDS, NB(SANDBOX_BOUNDS));
    m.sandbox_failures = metrics_counter(
        "shed_sandbox_failures_total", "Sandbox creations that failed, by failing layer.", "layer");
    m.tool_calls =
        metrics_counter("shed_tool_calls_total", "Tool calls by tool and outcome.", "tool,outcome");
    m.tool_call_seconds = metrics_histogram("shed_tool_call_seconds", "Tool call duration.", "tool",
                                            TOOL_BOUNDS, NB(TOOL_BOUNDS));
    m.kills = metrics_counter("shed_kills_total", "Sandbox processes killed, by reason.", "reason");
    m.egress_decisions =
        metrics_counter("shed_egress_decisions_total",
                        "Egress proxy decisions by protocol and verdict.", "proto,verdict");
    m.audit_records = metrics_counter("shed_audit_records_total", "Audit records written.", NULL);
    m.audit_records_dropped = metrics_counter("shed_audit_records_dropped_total",
                                              "Audit records that could not be written.", NULL);
    m.http_requests =
        metrics_counter("shed_http_requests_total",
                        "HTTP requests served, by route pattern and status code.", "route,code");
    m.http_request_seconds =
        metrics_histogram("shed_http_request_seconds", "HTTP request duration by route pattern.",
                          "route", HTTP_BOUNDS, NB(HTTP_BOUNDS));
    /* 0 by default (in every process: a worker exports 0 too, never 1) */
    m.store_failed = metrics_gauge("shed_serve_store_failed",
                                   "1 once a flush of shed serve's database to disk failed: it "
                                   "refuses writes until restarted.",
                                   NULL);
    m.build_info = metrics_gauge("shed_build_info", "shed's version; always 1.", "version");
    m.start_time = metrics_gauge("process_start_time_seconds",
                                 "When this process started, in unix seconds.", NULL);
    m.cpu_seconds = metrics_counter("process_cpu_seconds_total",
                                    "User and system CPU time spent, in seconds.", NULL);
    m.resident_memory =
        metrics_gauge("process_resident_memory_bytes", "Resident memory size, in bytes.", NULL);
    m.open_fds = metrics_gauge("process_open_fds", "Open file descriptors.", NULL);
    m.max_fds = metrics_gauge("process_max_fds", "Limit on open file descriptors.", NULL);

    /* Tool names come from the agent: a hostile agent may invent many. */
    metrics_set_max_series(m.tool_calls, 64);
    metrics_set_max_series(m.tool_call_seconds, 16);
    metrics_set(m.build_info, LV(SHED_VERSION), 1);
    metrics_set(m.start_time, NULL, (double)clock_wall_ms() / 1000.0);
    obs_m = m;
    metrics_add_collector(collect_process, NULL);
}

void obs_catalog_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, catalog_register);
}

void obs_catalog_worker(void)
{
    obs_catalog_init();
    /* Series the alerts use with rate(): present at 0 from the start, and
     * only in worker processes (shed serve does not poll). */
    static const char *const POLLS[] = {"work", "empty", "error"};
    static const char *const BEATS[] = {"ok", "error"};
    for (size_t i = 0; i < 3; i++) metrics_touch(obs_m.polls, LV(POLLS[i]));
    for (size_t i = 0; i < 2; i++) metrics_touch(obs_m.heartbeats, LV(BEATS[i]));
    /* increase() needs a sample before the first failure to see it */
    static const char *const LAYERS[] = {"userns", "mount",  "pid",   "net",  "seccomp",
                                         "cgroup", "limits", "spawn", "init", "other"};
    for (size_t i = 0; i < sizeof(LAYERS) / sizeof(LAYERS[0]); i++)
        metrics_touch(obs_m.sandbox_failures, LV(LAYERS[i]));
}

static void collect_queue_age(void *arg);
static void register_queue_collector(void)
{
    metrics_add_collector(collect_queue_age, NULL);
}

/* oldest_queued_at per environment, so the age is computed at scrape time
 * (stats are refreshed every 15-30 s; an age frozen between refreshes would
 * lag by as much). */
#define MAX_QUEUE_ENVS 64
static pthread_mutex_t g_q_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char env[METRICS_LABEL_VALUE_MAX + 1];
    int64_t oldest_us; /* 0: queue empty */
} g_q[MAX_QUEUE_ENVS];
static int g_nq;

static void collect_queue_age(void *arg)
{
    (void)arg;
    int64_t now = clock_wall_us();
    pthread_mutex_lock(&g_q_mu);
    for (int i = 0; i < g_nq; i++) {
        double age = g_q[i].oldest_us ? (double)(now - g_q[i].oldest_us) / 1e6 : 0;
        metrics_set(obs_m.queue_oldest_age, LV(g_q[i].env), age < 0 ? 0 : age);
    }
    pthread_mutex_unlock(&g_q_mu);
}

static void remember_oldest(const char *env, int64_t oldest_us)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_queue_collector);
    pthread_mutex_lock(&g_q_mu);
    int i = 0;
    while (i < g_nq && strcmp(g_q[i].env, env)) i++;
    if (i == g_nq && g_nq < MAX_QUEUE_ENVS)
        snprintf(g_q[g_nq++].env, sizeof(g_q[0].env), "%s", env);
    if (i < g_nq) g_q[i].oldest_us = oldest_us;
    pthread_mutex_unlock(&g_q_mu);
}

int obs_queue_stats_update(const char *environment, json_t *stats, shed_err *err)
{
    obs_catalog_init();
    if (!environment || !*environment)
        return err_msg(err, EINVAL, "queue stats: no environment id");
    if (!json_is_object(stats)) return err_msg(err, EINVAL, "queue stats: not a JSON object");
    int64_t depth = 0, pending = 0, polling = -1;
    const char *oldest = NULL;
    if (json_get_int(stats, "depth", true, &depth, err) < 0 ||
        json_get_int(stats, "pending", true, &pending, err) < 0 ||
        json_get_int(stats, "workers_polling", false, &polling, err) < 0 ||
        json_get_str(stats, "oldest_queued_at", false, &oldest, err) < 0)
        return -EINVAL;
    if (depth < 0 || pending < 0)
        return err_msg(err, EINVAL, "queue stats: negative depth or pending");
    double age = 0;
    int64_t us = 0;
    if (oldest) {
        if (clock_parse_rfc3339(oldest, &us) < 0)
            return err_msg(err, EINVAL,
                           "queue stats: field 'oldest_queued_at' is not RFC 3339: '%.64s'",
                           oldest);
        if (us == 0) us = 1; /* the epoch itself still means "an item waits" */
        age = (double)(clock_wall_us() - us) / 1e6;
        if (age < 0) age = 0; /* clocks of two hosts */
    }
    remember_oldest(environment, us);
    metrics_set(obs_m.queue_depth, LV(environment), (double)depth);
    metrics_set(obs_m.queue_pending, LV(environment), (double)pending);
    metrics_set(obs_m.queue_oldest_age, LV(environment), age);
    /* null = the server could not tell (no worker id): leave the gauge as it was */
    if (polling >= 0) metrics_set(obs_m.workers_polling, LV(environment), (double)polling);
    return 0;
}
