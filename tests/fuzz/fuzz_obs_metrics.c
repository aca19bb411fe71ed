/* Fuzz the metrics registry with hostile label values (tool names come from
 * the agent): whatever the bytes, the rendered page must stay well-formed
 * Prometheus text — every label value a quoted string with only \\ \" \n
 * escapes and valid UTF-8, every line a comment or "name{...} value" — and
 * the number of series must stay under the cardinality guard. */
#include "obs/obs.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static metric_t *g_c, *g_h;

static bool utf8_ok(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t k = c < 0x80             ? 1
                   : (c & 0xe0) == 0xc0 ? 2
                   : (c & 0xf0) == 0xe0 ? 3
                   : (c & 0xf8) == 0xf0 ? 4
                                        : 0;
        if (!k || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if ((p[i + j] & 0xc0) != 0x80) return false;
        i += k;
    }
    return true;
}

/* Check one sample line: name, optional {l="v",...}, space, value. */
static void check_line(const char *l, size_t n)
{
    size_t i = 0;
    while (i < n && (l[i] == '_' || l[i] == ':' || (l[i] >= 'a' && l[i] <= 'z') ||
                     (l[i] >= 'A' && l[i] <= 'Z') || (l[i] >= '0' && l[i] <= '9')))
        i++;
    if (i == 0) abort();
    if (i < n && l[i] == '{') {
        i++;
        for (;;) {
            size_t s = i;
            while (i < n && l[i] != '=') i++;
            if (i == s || i + 1 >= n || l[i + 1] != '"') abort();
            i += 2;
            size_t vs = i;
            while (i < n && l[i] != '"') {
                if (l[i] == '\n') abort();
                if (l[i] == '\\') {
                    if (i + 1 >= n || (l[i + 1] != '\\' && l[i + 1] != '"' && l[i + 1] != 'n'))
                        abort();
                    i++;
                }
                i++;
            }
            if (i >= n) abort();
            if (!utf8_ok((const unsigned char *)l + vs, i - vs)) abort();
            i++;
            if (i < n && l[i] == ',') {
                i++;
                continue;
            }
            if (i >= n || l[i] != '}') abort();
            i++;
            break;
        }
    }
    if (i >= n || l[i] != ' ') abort();
    char *end;
    const char *v = l + i + 1;
    if (!strncmp(v, "+Inf", 4) || !strncmp(v, "-Inf", 4) || !strncmp(v, "NaN", 3)) return;
    strtod(v, &end);
    if (end == v || (size_t)(end - l) != n) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_c) {
        static const double b[] = {0.1, 1};
        g_c = metrics_counter("fuzz_calls_total", "Fuzzed \\ help\nline.", "tool,outcome");
        g_h = metrics_histogram("fuzz_call_seconds", "H.", "tool", b, 2);
        metrics_set_max_series(g_c, 16);
    }
    /* input: NUL-separated label values, taken in pairs */
    char *copy = malloc(size + 2);
    memcpy(copy, data, size);
    copy[size] = copy[size + 1] = '\0';
    size_t off = 0;
    while (off < size) {
        const char *a = copy + off;
        off += strlen(a) + 1;
        const char *b = off <= size ? copy + off : "";
        if (off <= size) off += strlen(b) + 1;
        metrics_inc(g_c, LV(a, b), 1);
        metrics_observe(g_h, LV(a), (double)strlen(b) / 10.0);
    }
    free(copy);
    buf_t out;
    buf_init(&out, 1 << 22);
    if (metrics_render(&out) < 0) abort();
    size_t series = 0;
    for (char *l = out.data; l && *l;) {
        char *nl = strchr(l, '\n');
        if (!nl) abort(); /* every line ends with a newline */
        if (*l != '#') {
            check_line(l, (size_t)(nl - l));
            if (!strncmp(l, "fuzz_calls_total{", 17)) series++;
        }
        l = nl + 1;
    }
    if (series > 16) abort();
    buf_free(&out);
    return 0;
}
