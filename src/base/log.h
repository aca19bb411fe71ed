/* Logging: text or JSON lines on stderr, with levels. Every line passes
 * through log_redact(), which masks anything shaped like a credential
 * (sk-ant-…, sk-shed-…, whsec_…, "Bearer …", x-api-key values): a key
 * must never reach a log even when a caller formats one by mistake. */
#pragma once
#include <stdarg.h>
#include <stddef.h>

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
enum { LOG_TEXT = 0, LOG_JSON = 1 };

void log_setup(int level, int format);
int log_level(void);
/* Parse "text"/"json"; -EINVAL otherwise. */
int log_parse_format(const char *s);
int log_parse_level(const char *s);
/* Redirect output (default 2). */
void log_set_fd(int fd);

void log_emit(int level, const char *session_id, const char *work_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void log_vemit(int level, const char *session_id, const char *work_id, const char *fmt,
               va_list ap);

/* Copy in to out (outlen bytes), masking credentials; returns the length written. */
size_t log_redact(const char *in, char *out, size_t outlen);

#define log_error(...) log_emit(LOG_ERROR, NULL, NULL, __VA_ARGS__)
#define log_warn(...)  log_emit(LOG_WARN, NULL, NULL, __VA_ARGS__)
#define log_info(...)  log_emit(LOG_INFO, NULL, NULL, __VA_ARGS__)
#define log_debug(...)                                                                          \
    do {                                                                                        \
        if (log_level() >= LOG_DEBUG) log_emit(LOG_DEBUG, NULL, NULL, __VA_ARGS__);             \
    } while (0)
/* Lines about a session carry its ids. */
#define slog(level, sess, work, ...) log_emit(level, sess, work, __VA_ARGS__)
