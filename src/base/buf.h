/* Growable byte buffers with a hard limit: every buffer that holds outside
 * input says how large it may grow, and an append past that fails with
 * -EMSGSIZE instead of growing. The data is always NUL-terminated. */
#pragma once
#include <stdarg.h>
#include <stddef.h>

typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t limit; /* maximum len; 0 = unlimited */
} buf_t;

void buf_init(buf_t *b, size_t limit);
void buf_free(buf_t *b);
void buf_reset(buf_t *b);
int buf_reserve(buf_t *b, size_t extra);
int buf_append(buf_t *b, const void *data, size_t len);
int buf_puts(buf_t *b, const char *s);
int buf_putc(buf_t *b, char c);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf_t *b, const char *fmt, va_list ap);
/* Drop the first n bytes (a consumed prefix). */
void buf_consume(buf_t *b, size_t n);
/* Hand the data out (caller frees); the buffer is left empty. */
char *buf_steal(buf_t *b);

static inline void cleanup_bufp(buf_t *b)
{
    buf_free(b);
}
#define _cleanup_buf_ __attribute__((cleanup(cleanup_bufp)))
