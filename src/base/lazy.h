/* Loading optional shared libraries at first use (dlopen), so that the shed
 * binary links only what `shed run` and the sandbox init need and starts as
 * fast as a small C program. The per-library shims (lazy_curl.h, lazy_mhd.h,
 * lazy_sqlite.h, lazy_archive.h, lazy_ssl.h) include the real header for its types and
 * turn every function shed calls into a call through a table filled once by
 * dlsym. Must never return a partly filled table: a missing library or symbol
 * ends the process with a message naming the Debian package to install. */
#pragma once

/* X-macro helpers shared by the shims: one table member per function, typed
 * from the real prototype. */
#define LAZY_MEMBER(fn) __typeof__(fn) *fn;
