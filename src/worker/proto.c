/* Protocol rules without I/O; see proto.h. */
#include "worker/proto.h"

#include "base/b64.h"
#include "base/cleanup.h"
#include "base/id.h"
#include "base/json.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool proto_is_success(long status)
{
    return status >= 200 && status < 300;
}

bool proto_is_fatal(long status)
{
    if (status < 400 || status >= 500) return false;
    return status != 408 && status != 409 && status != 429;
}

int64_t proto_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms)
{
    if (attempt < 0) attempt = 0;
    int64_t v = base_ms;
    for (int i = 0; i < attempt && v < cap_ms; i++) v *= 2;
    return v < cap_ms ? v : cap_ms;
}

static double unit_random(void)
{
    uint64_t r = 0;
    if (id_random(&r, sizeof(r)) < 0) r = (uint64_t)rand();
    return (double)(r >> 11) / (double)(1ULL << 53);
}

int64_t proto_apply_jitter(int64_t ms)
{
    return (int64_t)((double)ms * (1.0 - unit_random() * 0.25));
}

int64_t proto_jitter(int64_t lo_ms, int64_t hi_ms)
{
    if (hi_ms <= lo_ms) return lo_ms;
    return lo_ms + (int64_t)(unit_random() * (double)(hi_ms - lo_ms));
}

int64_t proto_retry_after_header(const char *line, size_t len, int64_t now_epoch_s, bool *is_ms)
{
    static const char ms_name[] = "retry-after-ms:", s_name[] = "retry-after:";
    size_t skip;
    bool ms;
    if (len >= sizeof(ms_name) - 1 && !strncasecmp(line, ms_name, sizeof(ms_name) - 1)) {
        skip = sizeof(ms_name) - 1;
        ms = true;
    } else if (len >= sizeof(s_name) - 1 && !strncasecmp(line, s_name, sizeof(s_name) - 1)) {
        skip = sizeof(s_name) - 1;
        ms = false;
    } else {
        return -1;
    }
    char v[64];
    size_t n = 0;
    for (size_t i = skip; i < len && n < sizeof(v) - 1; i++) {
        if (line[i] == '\r' || line[i] == '\n') break;
        v[n++] = line[i];
    }
    v[n] = 0;
    char *b = v;
    while (*b == ' ' || *b == '\t') b++;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) v[--n] = 0;
    if (!*b) return -1;
    double d;
    char *end = NULL;
    if (isdigit((unsigned char)*b) || *b == '.') {
        d = strtod(b, &end);
        if (end == b || *end || !isfinite(d)) return -1;
        if (!ms) d *= 1000.0;
    } else {
        if (ms) return -1;
        struct tm tm = {0};
        const char *e = strptime(b, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        if (!e || *e) return -1;
        d = ((double)timegm(&tm) - (double)now_epoch_s) * 1000.0;
    }
    if (!(d > 0)) return -1;
    if (is_ms) *is_ms = ms;
    return d > PROTO_RETRY_AFTER_MAX_MS ? PROTO_RETRY_AFTER_MAX_MS : (int64_t)d + ((double)(int64_t)d < d);
}

int64_t proto_retry_wait(int64_t computed_ms, int64_t retry_after_ms)
{
    if (retry_after_ms > PROTO_RETRY_AFTER_MAX_MS) retry_after_ms = PROTO_RETRY_AFTER_MAX_MS;
    return retry_after_ms > computed_ms ? retry_after_ms : computed_ms;
}

json_t *proto_result_content(json_t *content)
{
    json_t *out = json_array();
    if (!out) return NULL;
    size_t i;
    json_t *b;
    json_array_foreach(json_is_array(content) ? content : NULL, i, b)
    {
        json_t *t = json_object_get(b, "type");
        const char *ty = json_is_string(t) ? json_string_value(t) : "";
        json_t *nb;
        if (!strcmp(ty, "text")) {
            json_t *tx = json_object_get(b, "text");
            if (json_is_string(tx) && json_string_length(tx) > 0)
                nb = json_incref(b);
            else
                nb = json_pack("{s:s,s:s}", "type", "text", "text", "(no output)");
        } else if (!strcmp(ty, "image") || !strcmp(ty, "document") || !strcmp(ty, "search_result")) {
            nb = json_incref(b);
        } else {
            char *d = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
            nb = d ? json_pack("{s:s,s:s}", "type", "text", "text", d) : NULL;
            free(d);
        }
        if (!nb || json_array_append_new(out, nb) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    if (json_array_size(out) == 0 &&
        json_array_append_new(out, json_pack("{s:s,s:s}", "type", "text", "text", "(no output)")) < 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

int proto_secret_decode(const char *secret, char **token, char **api_base_url, shed_err *err)
{
    *token = NULL;
    if (api_base_url) *api_base_url = NULL;
    if (!secret || !*secret) return err_msg(err, EINVAL, "work item carried no secret");
    size_t n = strlen(secret);
    if (n > PROTO_SECRET_MAX)
        return err_msg(err, EINVAL, "work secret is %zu bytes, over the %d-byte limit", n,
                       PROTO_SECRET_MAX);
    /* Normalize: url alphabet to standard, drop padding (b64 accepts none). */
    _cleanup_free_ char *norm = malloc(n + 1);
    if (!norm) return err_set(err, ENOMEM, "decode work secret");
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        char c = secret[i];
        if (c == '-') c = '+';
        else if (c == '_') c = '/';
        else if (c == '=') break;
        norm[m++] = c;
    }
    norm[m] = 0;
    size_t outlen = 0;
    _cleanup_free_ char *raw = b64_decode_alloc(norm, m, false, &outlen);
    if (!raw) return err_msg(err, EINVAL, "work secret is not base64");
    shed_err jerr = {0};
    _cleanup_json_ json_t *j = json_parse(raw, outlen, PROTO_SECRET_MAX, 8, &jerr);
    if (!j || !json_is_object(j)) return err_msg(err, EINVAL, "work secret is not a JSON object");
    json_t *t = json_object_get(j, "sessions_token");
    if (!json_is_string(t) || json_string_length(t) == 0)
        return err_msg(err, EINVAL, "work secret carries no sessions_token");
    const char *tv = json_string_value(t);
    if (strlen(tv) != json_string_length(t))
        return err_msg(err, EINVAL, "work secret's sessions_token contains a NUL byte");
    for (const char *c = tv; *c; c++)
        if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e)
            return err_msg(err, EINVAL, "work secret's sessions_token has a non-printable character");
    *token = strdup(tv);
    if (!*token) return err_set(err, ENOMEM, "decode work secret");
    json_t *u = json_object_get(j, "api_base_url");
    if (api_base_url && json_is_string(u) && json_string_length(u) > 0)
        *api_base_url = strdup(json_string_value(u));
    return 0;
}

void lease_init(lease_t *l, int64_t now_ms)
{
    memset(l, 0, sizeof(*l));
    l->interval_ms = PROTO_HEARTBEAT_DEFAULT_MS;
    l->ttl_ms = PROTO_HEARTBEAT_TTL_DEFAULT_MS;
    l->last_success_ms = now_ms;
    strcpy(l->last, PROTO_NO_HEARTBEAT);
}

const char *lease_expected(const lease_t *l)
{
    return l->last;
}

void lease_finish(lease_t *l, lease_end why)
{
    if (l->end == LEASE_HELD) l->end = why;
}

bool lease_is_lost(const lease_t *l)
{
    return l->end == LEASE_END_LOST || l->end == LEASE_END_ASSUMED_LOST;
}

lease_end lease_on_response(lease_t *l, int64_t now_ms, json_t *resp)
{
    l->last_success_ms = now_ms;
    l->beats++;
    json_t *lh = json_object_get(resp, "last_heartbeat");
    if (json_is_string(lh) && json_string_length(lh) < sizeof(l->last) &&
        json_string_length(lh) > 0)
        strcpy(l->last, json_string_value(lh));
    json_t *ttl = json_object_get(resp, "ttl_seconds");
    if (json_is_integer(ttl) && json_integer_value(ttl) > 0 &&
        json_integer_value(ttl) < 365LL * 86400) {
        l->ttl_ms = json_integer_value(ttl) * 1000;
        int64_t iv = l->ttl_ms / 2;
        if (iv > PROTO_HEARTBEAT_DEFAULT_MS) iv = PROTO_HEARTBEAT_DEFAULT_MS;
        if (iv < 1000) iv = 1000;
        l->interval_ms = iv;
    }
    json_t *st = json_object_get(resp, "state");
    if (json_is_string(st) && json_string_length(st) < sizeof(l->state)) {
        strcpy(l->state, json_string_value(st));
        if (!strcmp(l->state, "stopping") || !strcmp(l->state, "stopped"))
            lease_finish(l, LEASE_END_STOP);
    }
    json_t *ext = json_object_get(resp, "lease_extended");
    /* Absent is read as extended (tolerant); an explicit false ends the session. */
    if (json_is_false(ext)) lease_finish(l, LEASE_END_STOP);
    return l->end;
}

lease_end lease_on_failure(lease_t *l, int64_t now_ms, long status)
{
    if (status == 412) {
        lease_finish(l, LEASE_END_LOST);
    } else if (proto_is_fatal(status)) {
        lease_finish(l, LEASE_END_REJECTED);
    } else if (now_ms - l->last_success_ms > l->ttl_ms) {
        lease_finish(l, LEASE_END_ASSUMED_LOST);
    }
    return l->end;
}

const char *lease_end_name(lease_end e)
{
    switch (e) {
    case LEASE_HELD: return "held";
    case LEASE_END_STOP: return "stop requested";
    case LEASE_END_LOST: return "lost (412)";
    case LEASE_END_ASSUMED_LOST: return "assumed lost (no heartbeat within ttl)";
    case LEASE_END_REJECTED: return "heartbeat rejected";
    case LEASE_END_DONE: return "done";
    }
    return "?";
}
