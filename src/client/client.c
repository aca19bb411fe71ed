/* The command-line client of the local control plane; see client.h.
 * Never prints the admin key; bounded response sizes. */
#include "client/client.h"

#include "base/lazy_curl.h"
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/json.h"

#define RESP_LIMIT (64u << 20)

int client_default_state_dir(char *out, size_t n)
{
    if (geteuid() == 0) return snprintf(out, n, "/var/lib/shed") < (int)n ? 0 : -ENAMETOOLONG;
    const char *x = getenv("XDG_STATE_HOME");
    if (x && *x) return snprintf(out, n, "%s/shed", x) < (int)n ? 0 : -ENAMETOOLONG;
    const char *home = getenv("HOME");
    if (!home || !*home) {
        struct passwd *pw = getpwuid(geteuid());
        home = pw ? pw->pw_dir : "/tmp";
    }
    return snprintf(out, n, "%s/.local/state/shed", home) < (int)n ? 0 : -ENAMETOOLONG;
}

int client_read_key_file(const char *path, char *out, size_t n, shed_err *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return err_set(err, errno, "open key file %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) return err_set(err, errno, "stat %s", path);
    if (!S_ISREG(st.st_mode))
        return err_msg(err, EINVAL, "key file %s is not a regular file", path);
    if (st.st_mode & 077)
        return err_msg(err, EPERM, "key file %s is readable by others; run: chmod 600 %s", path,
                       path);
    char buf[512];
    ssize_t r = read(fd, buf, sizeof(buf) - 1);
    if (r < 0) return err_set(err, errno, "read %s", path);
    buf[r] = '\0';
    char *nl = strpbrk(buf, "\r\n");
    if (nl) *nl = '\0';
    size_t len = strlen(buf);
    while (len && (buf[len - 1] == ' ' || buf[len - 1] == '\t')) buf[--len] = '\0';
    if (!len) return err_msg(err, EINVAL, "key file %s is empty", path);
    if (len >= n) return err_msg(err, EINVAL, "key in %s is too long", path);
    memcpy(out, buf, len + 1);
    explicit_bzero(buf, sizeof(buf));
    return 0;
}

int client_init(client_t *c, const char *base_url, const char *key_file, const char *state_dir,
                shed_err *err)
{
    memset(c, 0, sizeof(*c));
    c->timeout_ms = 30000;
    const char *url = base_url ? base_url : getenv("SHED_BASE_URL");
    if (!url || !*url) url = "http://127.0.0.1:8790";
    if (strlen(url) >= sizeof(c->base_url)) return err_msg(err, EINVAL, "base URL too long");
    snprintf(c->base_url, sizeof(c->base_url), "%s", url);
    size_t l = strlen(c->base_url);
    while (l && c->base_url[l - 1] == '/') c->base_url[--l] = '\0';
    const char *env = getenv("SHED_ADMIN_KEY");
    if (env && *env) {
        if (strlen(env) >= sizeof(c->admin_key))
            return err_msg(err, EINVAL, "SHED_ADMIN_KEY too long");
        snprintf(c->admin_key, sizeof(c->admin_key), "%s", env);
        return 0;
    }
    char path[4096];
    if (key_file) {
        snprintf(path, sizeof(path), "%s", key_file);
    } else {
        char sd[4000];
        if (state_dir)
            snprintf(sd, sizeof(sd), "%s", state_dir);
        else if (client_default_state_dir(sd, sizeof(sd)) < 0)
            return err_msg(err, ENAMETOOLONG, "state directory path too long");
        snprintf(path, sizeof(path), "%s/admin.key", sd);
    }
    int rc = client_read_key_file(path, c->admin_key, sizeof(c->admin_key), err);
    if (rc < 0) err_wrap(err, "admin key (set SHED_ADMIN_KEY, --admin-key-file or --state-dir)");
    return rc;
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    buf_t *b = arg;
    return buf_append(b, p, sz * n) == 0 ? sz * n : 0;
}

static struct curl_slist *headers(client_t *c, bool json)
{
    struct curl_slist *h = NULL;
    char line[300];
    snprintf(line, sizeof(line), "x-api-key: %s", c->admin_key);
    h = curl_slist_append(h, line);
    explicit_bzero(line, sizeof(line));
    h = curl_slist_append(h, "anthropic-version: 2023-06-01");
    h = curl_slist_append(h, "anthropic-beta: managed-agents-2026-04-01");
    if (json) h = curl_slist_append(h, "Content-Type: application/json");
    return h;
}

int client_request(client_t *c, const char *method, const char *path, json_t *body, long *status,
                   json_t **resp, shed_err *err)
{
    *resp = NULL;
    CURL *h = curl_easy_init();
    if (!h) return err_msg(err, ENOMEM, "curl_easy_init");
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", c->base_url, path);
    _cleanup_free_ char *data = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct curl_slist *hd = headers(c, body != NULL);
    _cleanup_buf_ buf_t out;
    buf_init(&out, RESP_LIMIT);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    if (data) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, data);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(data));
    } else if (!strcmp(method, "POST")) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    }
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(hd);
    if (cc != CURLE_OK) {
        curl_easy_cleanup(h);
        return err_msg(err, ECONNREFUSED, "%s %s: %s (is `shed serve` running there?)", method, url,
                       curl_easy_strerror(cc));
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(h);
    if (out.len) {
        shed_err je = {0};
        *resp = json_parse(out.data, out.len, RESP_LIMIT, 256, &je);
        if (!*resp)
            return err_msg(err, EPROTO, "%s %s: answer is not JSON: %s", method, url, je.msg);
    }
    return 0;
}

const char *client_error_message(json_t *resp)
{
    const char *m = json_string_value(json_object_get(json_object_get(resp, "error"), "message"));
    return m ? m : "(no error message)";
}

int client_call(client_t *c, const char *cmd, const char *method, const char *path, json_t *body,
                long want, json_t **out)
{
    long status = 0;
    shed_err err = {0};
    if (client_request(c, method, path, body, &status, out, &err) < 0) {
        fprintf(stderr, "shed %s: %s\n", cmd, err.msg);
        return 1;
    }
    if (status != want) {
        fprintf(stderr, "shed %s: %s %s: HTTP %ld: %s\n", cmd, method, path, status,
                client_error_message(*out));
        json_decref(*out);
        *out = NULL;
        return 1;
    }
    return 0;
}

typedef struct sse_state {
    buf_t line;
    char event[128];
    buf_t data;
    int (*cb)(const char *, const char *, void *);
    int (*on_open)(void *);
    void *arg;
    int stop;
} sse_state_t;

static void sse_line(sse_state_t *s, const char *l)
{
    if (!*l) {
        if (s->data.len || s->event[0]) {
            if (strcmp(s->event, "ping") &&
                s->cb(s->event[0] ? s->event : "message", s->data.data ? s->data.data : "", s->arg))
                s->stop = 1;
        }
        s->event[0] = '\0';
        buf_reset(&s->data);
        return;
    }
    if (!strncmp(l, "event:", 6)) {
        l += 6;
        while (*l == ' ') l++;
        snprintf(s->event, sizeof(s->event), "%s", l);
    } else if (!strncmp(l, "data:", 5)) {
        l += 5;
        if (*l == ' ') l++;
        if (s->data.len) buf_putc(&s->data, '\n');
        buf_puts(&s->data, l);
    }
}

static size_t on_sse(char *p, size_t sz, size_t n, void *arg)
{
    sse_state_t *s = arg;
    size_t len = sz * n;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\n') {
            if (s->line.len && s->line.data[s->line.len - 1] == '\r')
                s->line.data[--s->line.len] = '\0';
            sse_line(s, s->line.data ? s->line.data : "");
            buf_reset(&s->line);
            if (s->stop) return 0;
        } else if (buf_putc(&s->line, p[i]) < 0) {
            return 0;
        }
    }
    return len;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    sse_state_t *s = arg;
    size_t len = sz * n;
    if ((len == 2 && p[0] == '\r' && p[1] == '\n') || (len == 1 && p[0] == '\n')) {
        if (s->on_open && s->on_open(s->arg)) {
            s->stop = 1;
            return 0;
        }
    }
    return len;
}

int client_stream(client_t *c, const char *path, int (*on_open)(void *),
                  int (*on_event)(const char *, const char *, void *), void *arg, shed_err *err)
{
    CURL *h = curl_easy_init();
    if (!h) return err_msg(err, ENOMEM, "curl_easy_init");
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", c->base_url, path);
    struct curl_slist *hd = headers(c, false);
    sse_state_t s = {.cb = on_event, .on_open = on_open, .arg = arg};
    buf_init(&s.line, 8u << 20);
    buf_init(&s.data, 8u << 20);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_sse);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &s);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    buf_free(&s.line);
    buf_free(&s.data);
    if (cc != CURLE_OK && !((cc == CURLE_WRITE_ERROR || cc == CURLE_ABORTED_BY_CALLBACK) && s.stop))
        return err_msg(err, ECONNREFUSED, "GET %s: %s", url, curl_easy_strerror(cc));
    return 0;
}
