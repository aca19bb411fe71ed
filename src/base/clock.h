/* Monotonic and wall time, RFC 3339 formatting and parsing. */
#pragma once
#include <stddef.h>
#include <stdint.h>

int64_t clock_mono_ns(void);
int64_t clock_mono_ms(void);
int64_t clock_wall_ms(void);
/* "2026-11-27T00:14:06.123456Z" (microseconds, UTC); out needs RFC3339_LEN bytes. */
#define RFC3339_LEN 64
void clock_rfc3339_us(int64_t wall_us, char out[RFC3339_LEN]);
void clock_rfc3339(int64_t wall_ms, char out[RFC3339_LEN]);
/* Parses RFC 3339 (fraction optional, Z or ±hh:mm) into microseconds since the epoch. */
int clock_parse_rfc3339(const char *s, int64_t *wall_us);
int64_t clock_wall_us(void);
