/* Protocol calls over http.c (the worker's own HTTP/1.1 client); see api.h. Credentials go only into the
 * Authorization header; error messages carry the method, path and the
 * server's error type/message, never a header. */
#include "worker/api.h"

#include "base/cleanup.h"
#include "base/json.h"
#include "base/log.h"
#include "worker/proto.h"
#include "worker/sse.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define API_MAX_BODY (64u << 20)

struct api {
    loop_t *loop;
    http_t *http;
    char *base_url;
    char *env_id;
    char *worker_id;
    api_keyring *keys;
};

/* ---- keys ---- */

int api_key_file_check(const char *path, shed_err *err)
{
    struct stat st;
    if (stat(path, &st) < 0) return err_set(err, errno, "environment key file %s", path);
    if (!S_ISREG(st.st_mode))
        return err_msg(err, EINVAL, "environment key file %s is not a regular file", path);
    if (st.st_mode & 077)
        return err_msg(err, EPERM,
                       "environment key file %s is readable by group or others (mode %04o); "
                       "run: chmod 600 %s",
                       path, (unsigned)(st.st_mode & 07777), path);
    return 0;
}

static int read_key_file(const char *path, char **out, shed_err *err)
{
    int rc = api_key_file_check(path, err);
    if (rc < 0) return rc;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return err_set(err, errno, "open environment key file %s", path);
    char buf[API_MAX_KEY + 2];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n < 0) return err_set(err, errno, "read environment key file %s", path);
    if (n > API_MAX_KEY)
        return err_msg(err, EINVAL, "environment key file %s is larger than %d bytes", path,
                       API_MAX_KEY);
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) buf[--n] = 0;
    if (n == 0) return err_msg(err, EINVAL, "environment key file %s is empty", path);
    for (ssize_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] > 0x7e)
            return err_msg(err, EINVAL,
                           "environment key file %s holds a non-printable character", path);
    *out = strdup(buf);
    explicit_bzero(buf, sizeof(buf));
    return *out ? 0 : err_set(err, ENOMEM, "read environment key");
}

int api_keyring_set(api_keyring *k, const char *key, shed_err *err)
{
    if (!key || !*key) return err_msg(err, EINVAL, "environment key is empty");
    for (const char *c = key; *c; c++)
        if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e)
            return err_msg(err, EINVAL, "environment key holds a non-printable character");
    char *d = strdup(key);
    if (!d) return err_set(err, ENOMEM, "environment key");
    free(k->key);
    k->key = d;
    k->generation++;
    return 0;
}

int api_keyring_load_file(api_keyring *k, const char *path, shed_err *err)
{
    char *key = NULL;
    int rc = read_key_file(path, &key, err);
    if (rc < 0) return rc;
    free(k->key);
    k->key = key;
    free(k->file);
    k->file = strdup(path);
    k->generation++;
    return 0;
}

int api_keyring_reload(api_keyring *k, shed_err *err)
{
    if (!k->file) return 0;
    char *key = NULL;
    int rc = read_key_file(k->file, &key, err);
    if (rc < 0) return rc;
    if (k->key && !strcmp(k->key, key)) {
        free(key);
        return 0;
    }
    if (k->key) explicit_bzero(k->key, strlen(k->key));
    free(k->key);
    k->key = key;
    k->generation++;
    return 1;
}

void api_keyring_free(api_keyring *k)
{
    if (k->key) explicit_bzero(k->key, strlen(k->key));
    free(k->key);
    free(k->file);
    k->key = k->file = NULL;
}

/* ---- client ---- */

int api_new(const api_config *cfg, api_t **out, shed_err *err)
{
    api_t *a = calloc(1, sizeof(*a));
    if (!a) return err_set(err, ENOMEM, "api");
    a->loop = cfg->loop;
    a->http = cfg->http;
    a->base_url = strdup(cfg->base_url);
    a->env_id = strdup(cfg->environment_id ? cfg->environment_id : "");
    a->worker_id = strdup(cfg->worker_id ? cfg->worker_id : "");
    a->keys = cfg->keys;
    if (!a->base_url || !a->env_id || !a->worker_id) {
        api_free(a);
        return err_set(err, ENOMEM, "api");
    }
    size_t n = strlen(a->base_url);
    while (n > 0 && a->base_url[n - 1] == '/') a->base_url[--n] = 0;
    *out = a;
    return 0;
}

void api_free(api_t *a)
{
    if (!a) return;
    free(a->base_url);
    free(a->env_id);
    free(a->worker_id);
    free(a);
}

const char *api_base_url(const api_t *a)
{
    return a->base_url;
}

const char *api_environment_id(const api_t *a)
{
    return a->env_id;
}

char *api_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *o = malloc(3 * n + 1), *p = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    *p = 0;
    return o;
}

struct api_call {
    api_t *a;
    http_req_t *req;
    char *method, *path, *query, *body;
    size_t body_len;
    const char *token; /* borrowed sessions token or NULL */
    bool worker_header;
    char *accept, *beta; /* extra header values or NULL */
    size_t max_body;
    int64_t timeout_ms;
    int64_t key_gen; /* generation of the env key used */
    bool retried_401;
    api_cb cb;
    void *arg;
    /* streams */
    bool stream;
    int64_t stall_ms;
    sse_parser sse;
    api_open_cb on_open;
    api_event_cb on_event;
    bool opened;
    bool ended;
    bool in_feed; /* inside our own data callback: free deferred */
    bool free_after_feed;
};

static void call_free(api_call_t *c)
{
    if (!c) return;
    if (c->stream) sse_free(&c->sse);
    free(c->method);
    free(c->path);
    free(c->query);
    free(c->body);
    free(c->accept);
    free(c->beta);
    free(c);
}

static void describe_error(api_call_t *c, const http_result *hr, json_t *j, api_result *res)
{
    if (hr->status == 0) {
        snprintf(res->msg, sizeof(res->msg), "%s %s: %s", c->method, c->path,
                 hr->error ? hr->error : "no response");
        return;
    }
    const char *etype = NULL, *emsg = NULL;
    json_t *e = json_is_object(j) ? json_object_get(j, "error") : NULL;
    if (json_is_object(e)) {
        json_t *t = json_object_get(e, "type"), *m = json_object_get(e, "message");
        etype = json_is_string(t) ? json_string_value(t) : NULL;
        emsg = json_is_string(m) ? json_string_value(m) : NULL;
    }
    snprintf(res->msg, sizeof(res->msg), "%s %s: HTTP %ld%s%s%s%.160s", c->method, c->path,
             hr->status, etype ? " " : "", etype ? etype : "", emsg ? ": " : "", emsg ? emsg : "");
}

static int send_call(api_call_t *c, shed_err *err);

/* What the API sends is valid JSON however the agent shaped a tool's input:
 * a string holding U+0000 (a write of binary-looking content) or an input
 * nested deeper than our usual 64. Refusing it would drop the event from the
 * stream and make its whole history page unreadable: the call would never
 * be answered. Such inputs reach the tool, which answers them (init's channel
 * takes NUL, and refuses nesting past its own bound with an error result). */

static int on_stream_event(const sse_event *ev, void *arg)
{
    api_call_t *c = arg;
    if (!strcmp(ev->type, "ping")) return 0;
    shed_err perr = {0};
    json_t *j = json_parse_flags(ev->data, ev->data_len, SSE_MAX_EVENT, JSON_TOOL_INPUT_DEPTH, JSON_ALLOW_NUL, &perr);
    if (!strcmp(ev->type, "error")) {
        json_decref(j);
        return 1; /* abort the transfer; on_end reports it */
    }
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return 0; /* not an event we understand: ignore, like the SDK */
    }
    if (!json_object_get(j, "type") && strcmp(ev->type, "message"))
        json_object_set_new(j, "type", json_string(ev->type));
    c->on_event(j, c->arg);
    json_decref(j);
    return c->ended ? 1 : 0;
}

static int on_http_headers(long status, void *arg)
{
    api_call_t *c = arg;
    if (status < 200 || status >= 300 || c->opened) return 0;
    c->in_feed = true;
    c->opened = true;
    if (c->on_open) c->on_open(c->arg);
    c->in_feed = false;
    if (c->free_after_feed) {
        call_free(c);
        return 1;
    }
    return c->ended ? 1 : 0;
}

static int on_http_data(const char *data, size_t len, void *arg)
{
    api_call_t *c = arg;
    c->in_feed = true;
    int rc = 0;
    if (!c->opened) {
        c->opened = true;
        if (c->on_open) c->on_open(c->arg);
    }
    if (!c->ended) rc = sse_feed(&c->sse, data, len);
    c->in_feed = false;
    if (c->free_after_feed) {
        call_free(c);
        return 1;
    }
    return (rc || c->ended) ? 1 : 0;
}

static void on_http_done(const http_result *hr, void *arg)
{
    api_call_t *c = arg;
    c->req = NULL;
    api_result res = {0};
    res.status = hr->status;
    res.elapsed_ms = hr->elapsed_ms;
    res.retry_after_ms = hr->retry_after_ms;
    res.should_retry = hr->status ? hr->should_retry : -1;
    _cleanup_json_ json_t *j = NULL;
    if (hr->body && hr->body->len > 0) {
        shed_err perr = {0};
        res.body = hr->body->data;
        res.body_len = hr->body->len;
        if (!c->accept || !proto_is_success(hr->status))
            j = json_parse_flags(hr->body->data, hr->body->len, API_MAX_BODY, JSON_TOOL_INPUT_DEPTH, JSON_ALLOW_NUL, &perr);
    }
    res.ok = hr->net_err == 0 && proto_is_success(hr->status);
    if (c->stream && hr->status >= 200 && hr->status < 300 && hr->net_err != 0) {
        /* A stream that broke mid-way: transient. */
        res.ok = false;
        res.status = 0;
    }
    /* A TLS certificate that fails verification will fail every retry too. */
    res.fatal = !res.ok && (proto_is_fatal(res.status) || hr->fatal);
    res.json = j;
    if (!res.ok) describe_error(c, hr, j, &res);
    /* 401 on the environment key: the key may have rotated. Re-read the key
     * file (if any) and retry once with the new key. */
    if (hr->status == 401 && !c->token && !c->retried_401 && c->a->keys) {
        shed_err kerr = {0};
        api_keyring *k = c->a->keys;
        int rc = api_keyring_reload(k, &kerr);
        if (rc < 0) log_warn("re-reading the environment key file after a 401: %s", kerr.msg);
        if (k->generation != c->key_gen) {
            log_info("environment key changed on disk; retrying %s %s with the new key",
                     c->method, c->path);
            c->retried_401 = true;
            if (c->stream) {
                sse_reset(&c->sse);
                c->opened = false;
            }
            shed_err serr = {0};
            if (send_call(c, &serr) == 0) return;
            snprintf(res.msg, sizeof(res.msg), "%s %s: %s", c->method, c->path, serr.msg);
        }
    }
    c->ended = true;
    if (c->cb) c->cb(&res, c->arg);
    call_free(c);
}

static int send_call(api_call_t *c, shed_err *err)
{
    api_t *a = c->a;
    _cleanup_buf_ buf_t url;
    buf_init(&url, 64 * 1024);
    if (buf_printf(&url, "%s%s?beta=true%s%s", a->base_url, c->path, c->query ? "&" : "",
                   c->query ? c->query : "") < 0)
        return err_msg(err, EMSGSIZE, "URL too long for %s", c->path);
    const char *cred = c->token;
    if (!cred) {
        cred = a->keys ? a->keys->key : NULL;
        c->key_gen = a->keys ? a->keys->generation : 0;
    }
    if (!cred || !*cred) return err_msg(err, EINVAL, "no credential for %s %s", c->method, c->path);
    _cleanup_free_ char *auth = NULL, *wid = NULL, *beta = NULL, *accept = NULL;
    if (asprintf(&auth, "Authorization: Bearer %s", cred) < 0) return err_set(err, ENOMEM, "auth");
    const char *hdrs[8];
    int nh = 0;
    hdrs[nh++] = "anthropic-version: " API_VERSION;
    if (c->beta) {
        if (asprintf(&beta, "anthropic-beta: " API_BETA ",%s", c->beta) < 0)
            return err_set(err, ENOMEM, "header");
        hdrs[nh++] = beta;
    } else {
        hdrs[nh++] = "anthropic-beta: " API_BETA;
    }
    hdrs[nh++] = auth;
    if (c->accept) {
        if (asprintf(&accept, "Accept: %s", c->accept) < 0) return err_set(err, ENOMEM, "header");
        hdrs[nh++] = accept;
    } else {
        hdrs[nh++] = c->stream ? "Accept: text/event-stream" : "Accept: application/json";
    }
    if (c->body) hdrs[nh++] = "Content-Type: application/json";
    if (c->worker_header && a->worker_id[0]) {
        if (asprintf(&wid, "Anthropic-Worker-ID: %s", a->worker_id) < 0)
            return err_set(err, ENOMEM, "header");
        hdrs[nh++] = wid;
    }
    hdrs[nh] = NULL;
    http_opts o = {
        .method = c->method,
        .url = url.data,
        .headers = hdrs,
        .body = c->body,
        .body_len = c->body_len,
        .timeout_ms = c->stream ? 0 : c->timeout_ms,
        .stall_timeout_ms = c->stream ? c->stall_ms : 0,
        .max_body = c->max_body ? c->max_body : API_MAX_BODY,
        .on_data = c->stream ? on_http_data : NULL,
        .on_headers = c->stream ? on_http_headers : NULL,
        .on_done = on_http_done,
        .arg = c,
    };
    c->req = http_start(a->http, &o, err);
    explicit_bzero(auth, strlen(auth));
    return c->req ? 0 : -EIO;
}

static api_call_t *call_new(api_t *a, const char *method, const char *path, const char *query,
                            json_t *body, api_cred cred, api_cb cb, void *arg, shed_err *err)
{
    api_call_t *c = calloc(1, sizeof(*c));
    if (!c) {
        err_set(err, ENOMEM, "api call");
        return NULL;
    }
    c->a = a;
    c->method = strdup(method);
    c->path = strdup(path);
    c->query = query ? strdup(query) : NULL;
    c->token = cred.token;
    c->cb = cb;
    c->arg = arg;
    if (body) {
        c->body = json_dumps(body, JSON_COMPACT);
        if (c->body) c->body_len = strlen(c->body);
    } else if (!strcmp(method, "POST")) {
        c->body = NULL;
    }
    if (!c->method || !c->path || (query && !c->query) || (body && !c->body)) {
        call_free(c);
        err_set(err, ENOMEM, "api call");
        return NULL;
    }
    return c;
}

api_call_t *api_request(api_t *a, const char *method, const char *path, const char *query,
                        json_t *body, api_cred cred, bool worker_header, int64_t timeout_ms,
                        api_cb cb, void *arg, shed_err *err)
{
    api_call_t *c = call_new(a, method, path, query, body, cred, cb, arg, err);
    if (!c) return NULL;
    c->worker_header = worker_header;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 60000;
    if (send_call(c, err) < 0) {
        call_free(c);
        return NULL;
    }
    return c;
}

api_call_t *api_request_ex(api_t *a, const char *method, const char *path, const char *query,
                           json_t *body, api_cred cred, const api_req_opts *opts,
                           int64_t timeout_ms, api_cb cb, void *arg, shed_err *err)
{
    api_call_t *c = call_new(a, method, path, query, body, cred, cb, arg, err);
    if (!c) return NULL;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 60000;
    if (opts) {
        c->accept = opts->accept ? strdup(opts->accept) : NULL;
        c->beta = opts->beta ? strdup(opts->beta) : NULL;
        c->max_body = opts->max_body;
        if ((opts->accept && !c->accept) || (opts->beta && !c->beta)) {
            call_free(c);
            err_set(err, ENOMEM, "api call");
            return NULL;
        }
    }
    if (send_call(c, err) < 0) {
        call_free(c);
        return NULL;
    }
    return c;
}

api_call_t *api_stream(api_t *a, const char *session_id, api_cred cred, int64_t stall_ms,
                       api_open_cb on_open, api_event_cb on_event, api_cb on_end, void *arg,
                       shed_err *err)
{
    _cleanup_free_ char *sid = api_escape(session_id);
    _cleanup_free_ char *path = NULL;
    if (!sid || asprintf(&path, "/v1/sessions/%s/events/stream", sid) < 0) {
        err_set(err, ENOMEM, "stream");
        return NULL;
    }
    api_call_t *c = call_new(a, "GET", path, NULL, NULL, cred, on_end, arg, err);
    if (!c) return NULL;
    c->stream = true;
    c->stall_ms = stall_ms;
    c->on_open = on_open;
    c->on_event = on_event;
    sse_init(&c->sse, on_stream_event, c);
    if (send_call(c, err) < 0) {
        call_free(c);
        return NULL;
    }
    return c;
}

void api_cancel(api_call_t *c)
{
    if (!c || c->ended) return;
    c->ended = true;
    if (c->req) http_cancel(c->req);
    /* The http request will never call back; free now unless we are inside
     * our own data callback (then on_http_data returns 1 and http frees its
     * part; we free ours here as nothing refers to it afterwards except the
     * request's arg, which is no longer used once cancelled). */
    c->req = NULL;
    if (c->in_feed)
        c->free_after_feed = true;
    else
        call_free(c);
}
