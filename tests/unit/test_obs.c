/* Unit tests for src/obs metrics and the HTTP endpoint: the exact Prometheus
 * text format (escaping, histograms, +Inf), the cardinality guard, counts
 * under concurrent increments, the catalogue, /metrics /healthz /readyz. */
#include "test.h"

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/clock.h"
#include "obs/obs.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <unistd.h>

static char *render(void)
{
    buf_t b;
    buf_init(&b, 0);
    ASSERT_EQ_INT(metrics_render(&b), 0);
    return buf_steal(&b);
}

TEST(exposition_counter_gauge_exact)
{
    metric_t *c = metrics_counter("t_requests_total", "Requests.", "method,code");
    metric_t *g = metrics_gauge("t_temperature_celsius", "Temp.", NULL);
    ASSERT_TRUE(c && g);
    metrics_inc(c, LV("GET", "200"), 1);
    metrics_inc(c, LV("GET", "200"), 2);
    metrics_inc(c, LV("POST", "500"), 0.5);
    metrics_inc(c, LV("POST", "500"), -3); /* counters never go down */
    metrics_set(g, NULL, -1.25);
    _cleanup_free_ char *s = render();
    ASSERT_EQ_STR(s, "# HELP t_requests_total Requests.\n"
                     "# TYPE t_requests_total counter\n"
                     "t_requests_total{method=\"GET\",code=\"200\"} 3\n"
                     "t_requests_total{method=\"POST\",code=\"500\"} 0.5\n"
                     "# HELP t_temperature_celsius Temp.\n"
                     "# TYPE t_temperature_celsius gauge\n"
                     "t_temperature_celsius -1.25\n");
}

TEST(exposition_escaping)
{
    metric_t *c = metrics_counter("t_esc_total", "Back\\slash and\nnewline \"quotes\" kept.", "v");
    ASSERT_TRUE(c != NULL);
    metrics_inc(c, LV("a\"b\\c\nd"), 1);
    metrics_inc(c, LV("caf\xc3\xa9 \xff"), 1); /* valid UTF-8 kept, an invalid byte replaced */
    _cleanup_free_ char *s = render();
    ASSERT_CONTAINS(s, "# HELP t_esc_total Back\\\\slash and\\nnewline \"quotes\" kept.\n");
    ASSERT_CONTAINS(s, "t_esc_total{v=\"a\\\"b\\\\c\\nd\"} 1\n");
    ASSERT_CONTAINS(s, "t_esc_total{v=\"caf\xc3\xa9 ?\"} 1\n");
    /* a credential passed as a label by mistake never reaches the page */
    metrics_inc(c, LV("auth failed: Bearer sk-ant-api03-SECRETSECRET"), 1);
    free(s);
    s = render();
    ASSERT_NOT_CONTAINS(s, "SECRETSECRET");
    ASSERT_CONTAINS(s, "Bearer [REDACTED]");
}

TEST(exposition_histogram_exact)
{
    const double b[] = {0.1, 1, 2.5};
    metric_t *h = metrics_histogram("t_call_seconds", "Calls.", "tool", b, 3);
    ASSERT_TRUE(h != NULL);
    metrics_observe(h, LV("bash"), 0.05);
    metrics_observe(h, LV("bash"), 0.1); /* le is inclusive */
    metrics_observe(h, LV("bash"), 2);
    metrics_observe(h, LV("bash"), 100);
    metrics_observe(h, LV("read"), 0.5);
    ASSERT_EQ_INT((long long)metrics_value(h, LV("bash")), 4);
    _cleanup_free_ char *s = render();
    ASSERT_EQ_STR(s, "# HELP t_call_seconds Calls.\n"
                     "# TYPE t_call_seconds histogram\n"
                     "t_call_seconds_bucket{tool=\"bash\",le=\"0.1\"} 2\n"
                     "t_call_seconds_bucket{tool=\"bash\",le=\"1\"} 2\n"
                     "t_call_seconds_bucket{tool=\"bash\",le=\"2.5\"} 3\n"
                     "t_call_seconds_bucket{tool=\"bash\",le=\"+Inf\"} 4\n"
                     "t_call_seconds_sum{tool=\"bash\"} 102.15\n"
                     "t_call_seconds_count{tool=\"bash\"} 4\n"
                     "t_call_seconds_bucket{tool=\"read\",le=\"0.1\"} 0\n"
                     "t_call_seconds_bucket{tool=\"read\",le=\"1\"} 1\n"
                     "t_call_seconds_bucket{tool=\"read\",le=\"2.5\"} 1\n"
                     "t_call_seconds_bucket{tool=\"read\",le=\"+Inf\"} 1\n"
                     "t_call_seconds_sum{tool=\"read\"} 0.5\n"
                     "t_call_seconds_count{tool=\"read\"} 1\n");
}

TEST(histogram_without_labels_and_special_values)
{
    const double b[] = {1};
    metric_t *h = metrics_histogram("t_plain_seconds", "P.", NULL, b, 1);
    metric_t *g = metrics_gauge("t_special", "S.", "k");
    metrics_set(g, LV("inf"), INFINITY);
    metrics_set(g, LV("nan"), NAN);
    metrics_set(g, LV("big"), 1e300);
    metrics_set(g, LV("small"), 1.5e-7);
    _cleanup_free_ char *s = render();
    /* an unlabelled histogram is rendered, at zero, before any observation */
    ASSERT_CONTAINS(s, "t_plain_seconds_bucket{le=\"1\"} 0\nt_plain_seconds_bucket{le=\"+Inf\"} 0\n"
                       "t_plain_seconds_sum 0\nt_plain_seconds_count 0\n");
    ASSERT_CONTAINS(s, "t_special{k=\"inf\"} +Inf\n");
    ASSERT_CONTAINS(s, "t_special{k=\"nan\"} NaN\n");
    ASSERT_CONTAINS(s, "t_special{k=\"big\"} 1e+300\n");
    ASSERT_CONTAINS(s, "t_special{k=\"small\"} 1.5e-07\n");
    (void)h;
}

TEST(registration_rules)
{
    ASSERT_TRUE(metrics_counter("t_bad", "counter without _total", NULL) == NULL);
    ASSERT_TRUE(metrics_gauge("t_bad_total", "gauge with _total", NULL) == NULL);
    ASSERT_TRUE(metrics_counter("9starts_with_digit_total", "", NULL) == NULL);
    ASSERT_TRUE(metrics_counter("t_dash-name_total", "", NULL) == NULL);
    ASSERT_TRUE(metrics_counter("t_lbl_total", "", "bad-label") == NULL);
    ASSERT_TRUE(metrics_counter("t_lbl_total", "", "__reserved") == NULL);
    ASSERT_TRUE(metrics_counter("t_lbl_total", "", "a,a") == NULL);
    ASSERT_TRUE(metrics_counter("t_lbl_total", "", "a,b,c,d,e") == NULL);
    const double up[] = {1, 0.5};
    ASSERT_TRUE(metrics_histogram("t_h_seconds", "", NULL, up, 2) == NULL);
    ASSERT_TRUE(metrics_histogram("t_h_seconds", "", "le", up, 1) == NULL);
    metric_t *a = metrics_counter("t_same_total", "x", "a");
    ASSERT_TRUE(a != NULL);
    ASSERT_TRUE(metrics_counter("t_same_total", "x", "a") == a); /* found again */
    ASSERT_TRUE(metrics_counter("t_same_total", "x", "b") == NULL);
    ASSERT_TRUE(metrics_gauge("t_same_total", "x", "a") == NULL);
    /* NULL metrics and wrong operations are harmless no-ops */
    metrics_inc(NULL, NULL, 1);
    metrics_observe(a, LV("x"), 1);
    ASSERT_TRUE(isnan(metrics_value(a, LV("x"))));
    metrics_set(a, LV("x"), 5); /* a counter may be set, upwards only */
    metrics_set(a, LV("x"), 2);
    ASSERT_EQ_INT((long long)metrics_value(a, LV("x")), 5);
    ASSERT_TRUE(isnan(metrics_value(NULL, NULL)));
}

TEST(cardinality_guard_refuses_and_counts)
{
    metric_t *c = metrics_counter("t_guarded_total", "G.", "id");
    metrics_set_max_series(c, 3);
    char id[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "v%d", i);
        metrics_inc(c, LV(id), 1);
    }
    metrics_inc(c, LV("v1"), 1); /* existing combinations still count */
    ASSERT_EQ_INT((long long)metrics_value(c, LV("v1")), 2);
    ASSERT_TRUE(isnan(metrics_value(c, LV("v5"))));
    _cleanup_free_ char *s = render();
    ASSERT_CONTAINS(s, "shed_metrics_label_overflow_total{metric=\"t_guarded_total\"} 7\n");
    ASSERT_NOT_CONTAINS(s, "v3");
    /* a long value is cut, so one huge label cannot blow the page up */
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    metric_t *g = metrics_gauge("t_long", "L.", "v");
    metrics_set(g, LV(big), 1);
    free(s);
    s = render();
    char want[METRICS_LABEL_VALUE_MAX + 20];
    snprintf(want, sizeof(want), "t_long{v=\"%.*s\"} 1\n", METRICS_LABEL_VALUE_MAX, big);
    ASSERT_CONTAINS(s, want);
}

#define THREADS 4
#define ITERS   20000

static metric_t *g_cc, *g_ch;

static void *hammer(void *arg)
{
    const char *tool = arg;
    for (int i = 0; i < ITERS; i++) {
        metrics_inc(g_cc, LV(tool, "ok"), 1);
        metrics_inc(g_cc, LV("shared", "ok"), 1);
        metrics_observe(g_ch, LV(tool), 0.001 * (i % 10));
        if (i % 1000 == 0) {
            buf_t b;
            buf_init(&b, 0);
            metrics_render(&b);
            buf_free(&b);
        }
    }
    return NULL;
}

TEST(concurrent_increments_from_threads)
{
    const double b[] = {0.004, 0.008};
    g_cc = metrics_counter("t_conc_total", "C.", "tool,outcome");
    g_ch = metrics_histogram("t_conc_seconds", "C.", "tool", b, 2);
    static const char *const TOOLS[THREADS] = {"bash", "read", "write", "edit"};
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, hammer, (void *)TOOLS[i]);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    ASSERT_EQ_INT((long long)metrics_value(g_cc, LV("shared", "ok")), THREADS * ITERS);
    for (int i = 0; i < THREADS; i++) {
        ASSERT_EQ_INT((long long)metrics_value(g_cc, LV(TOOLS[i], "ok")), ITERS);
        ASSERT_EQ_INT((long long)metrics_value(g_ch, LV(TOOLS[i])), ITERS);
    }
    _cleanup_free_ char *s = render();
    /* i%10 in 0..4 -> <=0.004: half of them */
    char want[128];
    snprintf(want, sizeof(want), "t_conc_seconds_bucket{tool=\"bash\",le=\"0.004\"} %d\n",
             ITERS / 2);
    ASSERT_CONTAINS(s, want);
}

TEST(catalogue_registers_every_metric_once)
{
    obs_catalog_init();
    obs_catalog_init();
    obs_catalog_worker();
    metric_t **all = (metric_t **)&obs_m;
    for (size_t i = 0; i < sizeof(obs_m) / sizeof(metric_t *); i++) ASSERT_TRUE(all[i] != NULL);
    metrics_inc(obs_m.tool_calls, LV("bash", "ok"), 1);
    metrics_observe(obs_m.sandbox_create_seconds, NULL, 0.03);
    _cleanup_free_ char *s = render();
    ASSERT_CONTAINS(s, "shed_build_info{version=\"");
    ASSERT_CONTAINS(s, "\"} 1\n");
    ASSERT_CONTAINS(s, "shed_tool_calls_total{tool=\"bash\",outcome=\"ok\"} 1\n");
    ASSERT_CONTAINS(s, "shed_sandbox_create_seconds_bucket{le=\"0.05\"} 1\n");
    ASSERT_CONTAINS(s, "shed_polls_total{outcome=\"error\"} 0\n");
    ASSERT_CONTAINS(s, "shed_heartbeats_total{outcome=\"ok\"} 0\n");
    ASSERT_CONTAINS(s, "# TYPE shed_queue_depth gauge\n");
    ASSERT_CONTAINS(s, "# TYPE shed_audit_records_dropped_total counter\n");
    ASSERT_CONTAINS(s, "# TYPE process_cpu_seconds_total counter\n");
    ASSERT_TRUE(metrics_value(obs_m.resident_memory, NULL) > 1e5);
    ASSERT_TRUE(metrics_value(obs_m.open_fds, NULL) >= 3);
    ASSERT_TRUE(metrics_value(obs_m.max_fds, NULL) >= metrics_value(obs_m.open_fds, NULL));
    ASSERT_TRUE(metrics_value(obs_m.start_time, NULL) > 1.7e9);
}

TEST(render_respects_buffer_limit)
{
    metric_t *c = metrics_counter("t_limit_total", "L.", NULL);
    metrics_inc(c, NULL, 1);
    buf_t b;
    buf_init(&b, 16);
    ASSERT_EQ_INT(metrics_render(&b), -EMSGSIZE);
    buf_free(&b);
}

TEST(parse_listen_addresses)
{
    char h[64];
    int p;
    ASSERT_EQ_INT(obs_parse_listen("127.0.0.1:9464", h, sizeof(h), &p), 0);
    ASSERT_EQ_STR(h, "127.0.0.1");
    ASSERT_EQ_INT(p, 9464);
    ASSERT_EQ_INT(obs_parse_listen("[::1]:0", h, sizeof(h), &p), 0);
    ASSERT_EQ_STR(h, "::1");
    ASSERT_EQ_INT(p, 0);
    ASSERT_EQ_INT(obs_parse_listen(":80", h, sizeof(h), &p), 0);
    ASSERT_EQ_STR(h, "");
    ASSERT_EQ_INT(obs_parse_listen("::1:80", h, sizeof(h), &p), -EINVAL);
    ASSERT_EQ_INT(obs_parse_listen("host", h, sizeof(h), &p), -EINVAL);
    ASSERT_EQ_INT(obs_parse_listen("h:99999", h, sizeof(h), &p), -EINVAL);
    ASSERT_EQ_INT(obs_parse_listen("h:12x", h, sizeof(h), &p), -EINVAL);
    ASSERT_EQ_INT(obs_parse_listen("[::1:80", h, sizeof(h), &p), -EINVAL);
    ASSERT_EQ_INT(obs_parse_listen("", h, sizeof(h), &p), -EINVAL);
}

/* ------------------------------------------------------------------ HTTP */

static size_t collect(char *p, size_t sz, size_t n, void *arg)
{
    buf_append(arg, p, sz * n);
    return sz * n;
}

static long get(int port, const char *path, buf_t *body, char *ctype, size_t ctlen)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    ASSERT_TRUE(c != NULL);
    buf_reset(body);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) test_fail(__FILE__, __LINE__, "GET %s: %s", url, curl_easy_strerror(rc));
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    if (ctype) snprintf(ctype, ctlen, "%s", ct ? ct : "");
    curl_easy_cleanup(c);
    return code;
}

static int g_ready_calls;
static int my_ready(void *arg, char *why, size_t n)
{
    g_ready_calls++;
    if (*(int *)arg) return 0;
    snprintf(why, n, "sandbox probe failed: Bearer sk-ant-secretvalue");
    return 1;
}

TEST(http_metrics_healthz_readyz)
{
    obs_catalog_init();
    metrics_inc(obs_m.polls, LV("empty"), 5);
    int ready = 0;
    obs_http_t *h;
    shed_err err = {0};
    if (obs_http_start("127.0.0.1:0", my_ready, &ready, &h, &err) < 0)
        test_fail(__FILE__, __LINE__, "obs_http_start: %s", err.msg);
    int port = obs_http_port(h);
    ASSERT_TRUE(port > 0);
    buf_t body;
    buf_init(&body, 1 << 20);
    char ct[128];
    ASSERT_EQ_INT(get(port, "/metrics", &body, ct, sizeof(ct)), 200);
    ASSERT_EQ_STR(ct, "text/plain; version=0.0.4; charset=utf-8");
    ASSERT_CONTAINS(body.data, "shed_polls_total{outcome=\"empty\"} 5\n");
    ASSERT_CONTAINS(body.data, "shed_build_info{");
    ASSERT_EQ_INT(get(port, "/healthz", &body, NULL, 0), 200);
    ASSERT_EQ_STR(body.data, "ok\n");
    ASSERT_EQ_INT(get(port, "/readyz", &body, NULL, 0), 503);
    ASSERT_CONTAINS(body.data, "not ready: sandbox probe failed");
    ASSERT_NOT_CONTAINS(body.data, "secretvalue");
    ready = 1;
    ASSERT_EQ_INT(get(port, "/readyz", &body, NULL, 0), 200);
    ASSERT_EQ_INT(g_ready_calls, 2);
    ASSERT_EQ_INT(get(port, "/nope", &body, NULL, 0), 404);
    /* a second endpoint cannot take the same port: the error names it */
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    obs_http_t *h2;
    ASSERT_TRUE(obs_http_start(addr, NULL, NULL, &h2, &err) < 0);
    ASSERT_CONTAINS(err.msg, "bind metrics listener");
    ASSERT_TRUE(obs_http_start("localhost:1", NULL, NULL, &h2, &err) < 0);
    ASSERT_CONTAINS(err.msg, "not an IP address");
    obs_http_stop(h);
    buf_free(&body);
}

TEST(http_default_readiness_checks)
{
    obs_http_t *h;
    shed_err err = {0};
    if (obs_http_start("[::1]:0", NULL, NULL, &h, &err) < 0) {
        if (strstr(err.msg, "Address family") || strstr(err.msg, "Cannot assign"))
            test_skip("no IPv6 loopback");
        test_fail(__FILE__, __LINE__, "obs_http_start: %s", err.msg);
    }
    obs_http_stop(h);
    /* default checks on 127.0.0.1 */
    ASSERT_EQ_INT(obs_http_start("127.0.0.1:0", NULL, NULL, &h, &err), 0);
    int port = obs_http_port(h);
    buf_t body;
    buf_init(&body, 1 << 20);
    ASSERT_EQ_INT(get(port, "/readyz", &body, NULL, 0), 503);
    ASSERT_CONTAINS(body.data, "no readiness check has reported yet");
    obs_ready_set("poll", true, NULL);
    obs_ready_set("sandbox_probe", false, "user namespaces are disabled");
    ASSERT_EQ_INT(get(port, "/readyz", &body, NULL, 0), 503);
    ASSERT_CONTAINS(body.data, "sandbox_probe: user namespaces are disabled");
    obs_ready_set("sandbox_probe", true, NULL);
    ASSERT_EQ_INT(get(port, "/readyz", &body, NULL, 0), 200);
    obs_ready_set("poll", false, "poll: HTTP 401 (environment key rejected)");
    ASSERT_EQ_INT(get(port, "/readyz", &body, NULL, 0), 503);
    ASSERT_CONTAINS(body.data, "poll: poll: HTTP 401");
    obs_http_stop(h);
    buf_free(&body);
}

static int g_collected;
static void collector(void *arg)
{
    g_collected++;
    metrics_set(arg, NULL, g_collected);
}

TEST(collectors_run_at_each_render)
{
    metric_t *g = metrics_gauge("t_collected", "C.", NULL);
    ASSERT_EQ_INT(metrics_add_collector(collector, g), 0);
    _cleanup_free_ char *a = render();
    ASSERT_CONTAINS(a, "t_collected 1\n");
    _cleanup_free_ char *b = render();
    ASSERT_CONTAINS(b, "t_collected 2\n");
    ASSERT_EQ_INT(metrics_add_collector(NULL, NULL), -EINVAL);
    for (int i = 1; i < 8; i++) ASSERT_EQ_INT(metrics_add_collector(collector, g), 0);
    ASSERT_EQ_INT(metrics_add_collector(collector, g), -ENOSPC);
}

TEST(queue_stats_update_sets_the_gauges)
{
    shed_err err = {0};
    char ts[RFC3339_LEN];
    clock_rfc3339_us(clock_wall_us() - 90 * 1000000LL, ts);
    _cleanup_json_ json_t *st =
        json_pack("{s:s,s:i,s:i,s:s,s:i}", "type", "work_queue_stats", "depth", 7, "pending", 2,
                  "oldest_queued_at", ts, "workers_polling", 3);
    ASSERT_EQ_INT(obs_queue_stats_update("env_a", st, &err), 0);
    ASSERT_EQ_INT((long long)metrics_value(obs_m.queue_depth, LV("env_a")), 7);
    ASSERT_EQ_INT((long long)metrics_value(obs_m.queue_pending, LV("env_a")), 2);
    ASSERT_EQ_INT((long long)metrics_value(obs_m.workers_polling, LV("env_a")), 3);
    double age = metrics_value(obs_m.queue_oldest_age, LV("env_a"));
    ASSERT_TRUE(age >= 89 && age < 150);
    /* the age keeps growing between stats refreshes: computed at scrape time */
    usleep(1100 * 1000);
    free(render());
    double later = metrics_value(obs_m.queue_oldest_age, LV("env_a"));
    ASSERT_TRUE(later >= age + 1);
    /* empty queue: null oldest -> 0; null workers_polling leaves the gauge */
    _cleanup_json_ json_t *empty = json_pack("{s:i,s:i,s:n,s:n}", "depth", 0, "pending", 0,
                                             "oldest_queued_at", "workers_polling");
    ASSERT_EQ_INT(obs_queue_stats_update("env_a", empty, &err), 0);
    ASSERT_EQ_INT((long long)metrics_value(obs_m.queue_depth, LV("env_a")), 0);
    ASSERT_EQ_INT((long long)metrics_value(obs_m.queue_oldest_age, LV("env_a")), 0);
    ASSERT_EQ_INT((long long)metrics_value(obs_m.workers_polling, LV("env_a")), 3);
    /* bad input: an error naming the field, gauges untouched */
    _cleanup_json_ json_t *bad = json_pack("{s:s,s:i}", "depth", "many", "pending", 1);
    ASSERT_EQ_INT(obs_queue_stats_update("env_a", bad, &err), -EINVAL);
    ASSERT_CONTAINS(err.msg, "depth");
    _cleanup_json_ json_t *badts =
        json_pack("{s:i,s:i,s:s}", "depth", 1, "pending", 1, "oldest_queued_at", "yesterday");
    ASSERT_EQ_INT(obs_queue_stats_update("env_a", badts, &err), -EINVAL);
    ASSERT_CONTAINS(err.msg, "oldest_queued_at");
    ASSERT_EQ_INT((long long)metrics_value(obs_m.queue_depth, LV("env_a")), 0);
    ASSERT_EQ_INT(obs_queue_stats_update("env_a", NULL, &err), -EINVAL);
}

TEST(http_answer_for_an_embedding_server)
{
    obs_catalog_init();
    int status;
    const char *ct;
    char *body;
    size_t len;
    ASSERT_EQ_INT(obs_http_answer("/v1/environments", NULL, NULL, &status, &ct, &body, &len), 0);
    ASSERT_EQ_INT(obs_http_answer("/metrics", NULL, NULL, &status, &ct, &body, &len), 1);
    ASSERT_EQ_INT(status, 200);
    ASSERT_EQ_STR(ct, METRICS_CONTENT_TYPE);
    ASSERT_EQ_INT(len, strlen(body));
    ASSERT_CONTAINS(body, "# TYPE shed_build_info gauge\n");
    free(body);
    ASSERT_EQ_INT(obs_http_answer("/healthz", NULL, NULL, &status, &ct, &body, &len), 1);
    ASSERT_EQ_INT(status, 200);
    free(body);
    obs_ready_set("db", true, NULL);
    ASSERT_EQ_INT(obs_http_answer("/readyz", NULL, NULL, &status, &ct, &body, &len), 1);
    ASSERT_EQ_INT(status, 200);
    free(body);
    obs_ready_set("db", false, "sqlite: database is locked");
    ASSERT_EQ_INT(obs_http_answer("/readyz", NULL, NULL, &status, &ct, &body, &len), 1);
    ASSERT_EQ_INT(status, 503);
    ASSERT_EQ_STR(body, "not ready: db: sqlite: database is locked\n");
    free(body);
}

TEST(readiness_reports_go_stale)
{
    char why[256];
    obs_ready_set_for("poll", true, NULL, 50);
    ASSERT_EQ_INT(obs_ready_checks(NULL, why, sizeof(why)), 0);
    usleep(200 * 1000);
    ASSERT_EQ_INT(obs_ready_checks(NULL, why, sizeof(why)), 1);
    ASSERT_CONTAINS(why, "poll: not reported for");
    obs_ready_set_for("poll", true, NULL, 60000); /* refreshed */
    ASSERT_EQ_INT(obs_ready_checks(NULL, why, sizeof(why)), 0);
}

TEST(promtool_accepts_the_whole_page)
{
    /* promtool (Debian's prometheus package, installed by scripts/install-deps)
     * parses and lints the page: format, HELP/TYPE, naming conventions. */
    if (system("command -v promtool >/dev/null 2>&1") != 0)
        test_fail(__FILE__, __LINE__, "promtool missing: run scripts/install-deps");
    obs_catalog_worker();
    metrics_inc(obs_m.tool_calls, LV("bash", "ok"), 3);
    metrics_inc(obs_m.tool_calls, LV("we\"ird\\\ntool", "error"), 1);
    metrics_observe(obs_m.tool_call_seconds, LV("bash"), 0.3);
    metrics_inc(obs_m.egress_decisions, LV("connect", "deny"), 2);
    metrics_set(obs_m.queue_depth, LV("env_01"), 4);
    metrics_inc(obs_m.kills, LV("timeout"), 1);
    metrics_inc(obs_m.http_requests, LV("/v1/sessions", "201"), 1);
    metrics_observe(obs_m.http_request_seconds, LV("/v1/sessions"), 0.002);
    metrics_observe(obs_m.sandbox_destroy_seconds, NULL, 0.04);
    _cleanup_free_ char *page = render();
    char path[] = "/tmp/shed-metrics-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ_INT(write(fd, page, strlen(page)), (long long)strlen(page));
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s > %s.out 2>&1", path, path);
    int rc = system(cmd);
    char out[300];
    snprintf(out, sizeof(out), "%s.out", path);
    FILE *f = fopen(out, "re");
    char msg[4096] = "";
    if (f) {
        size_t n = fread(msg, 1, sizeof(msg) - 1, f);
        msg[n] = '\0';
        fclose(f);
    }
    unlink(path);
    unlink(out);
    if (rc != 0) test_fail(__FILE__, __LINE__, "promtool check metrics: %s\npage:\n%s", msg, page);
}
