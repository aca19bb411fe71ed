/* SQLite, loaded at first use.
 * Include this instead of the library's header (see base/lazy.h); the
 * library (libsqlite3.so.0, Debian package libsqlite3-0) is dlopen()ed at the first call.
 * Must never be included by code that needs the real symbols at link time. */
#pragma once
#include <sqlite3.h>
#include "base/lazy.h"

#define LAZY_SQLITE_FNS(X) \
    X(sqlite3_bind_int) \
    X(sqlite3_bind_int64) \
    X(sqlite3_bind_null) \
    X(sqlite3_bind_text) \
    X(sqlite3_busy_timeout) \
    X(sqlite3_changes) \
    X(sqlite3_clear_bindings) \
    X(sqlite3_close) \
    X(sqlite3_column_int64) \
    X(sqlite3_column_text) \
    X(sqlite3_column_type) \
    X(sqlite3_errmsg) \
    X(sqlite3_exec) \
    X(sqlite3_file_control) \
    X(sqlite3_extended_errcode) \
    X(sqlite3_finalize) \
    X(sqlite3_free) \
    X(sqlite3_get_autocommit) \
    X(sqlite3_last_insert_rowid) \
    X(sqlite3_open_v2) \
    X(sqlite3_prepare_v2) \
    X(sqlite3_prepare_v3) \
    X(sqlite3_reset) \
    X(sqlite3_step) \
    X(sqlite3_bind_blob64) \
    X(sqlite3_bind_text64) \
    X(sqlite3_column_blob) \
    X(sqlite3_column_bytes) \

struct lazy_sqlite {
    LAZY_SQLITE_FNS(LAZY_MEMBER)
};

/* The loaded table; on the first call loads libsqlite3.so.0 or exits with a message. */
const struct lazy_sqlite *lazy_sqlite(void);

#ifndef LAZY_NO_DEFINES
#undef sqlite3_bind_int
#define sqlite3_bind_int (lazy_sqlite()->sqlite3_bind_int)
#undef sqlite3_bind_int64
#define sqlite3_bind_int64 (lazy_sqlite()->sqlite3_bind_int64)
#undef sqlite3_bind_null
#define sqlite3_bind_null (lazy_sqlite()->sqlite3_bind_null)
#undef sqlite3_bind_text
#define sqlite3_bind_text (lazy_sqlite()->sqlite3_bind_text)
#undef sqlite3_busy_timeout
#define sqlite3_busy_timeout (lazy_sqlite()->sqlite3_busy_timeout)
#undef sqlite3_changes
#define sqlite3_changes (lazy_sqlite()->sqlite3_changes)
#undef sqlite3_clear_bindings
#define sqlite3_clear_bindings (lazy_sqlite()->sqlite3_clear_bindings)
#undef sqlite3_close
#define sqlite3_close (lazy_sqlite()->sqlite3_close)
#undef sqlite3_column_int64
#define sqlite3_column_int64 (lazy_sqlite()->sqlite3_column_int64)
#undef sqlite3_column_text
#define sqlite3_column_text (lazy_sqlite()->sqlite3_column_text)
#undef sqlite3_column_type
#define sqlite3_column_type (lazy_sqlite()->sqlite3_column_type)
#undef sqlite3_errmsg
#define sqlite3_errmsg (lazy_sqlite()->sqlite3_errmsg)
#undef sqlite3_exec
#define sqlite3_exec (lazy_sqlite()->sqlite3_exec)
#undef sqlite3_file_control
#define sqlite3_file_control (lazy_sqlite()->sqlite3_file_control)
#undef sqlite3_extended_errcode
#define sqlite3_extended_errcode (lazy_sqlite()->sqlite3_extended_errcode)
#undef sqlite3_finalize
#define sqlite3_finalize (lazy_sqlite()->sqlite3_finalize)
#undef sqlite3_free
#define sqlite3_free (lazy_sqlite()->sqlite3_free)
#undef sqlite3_get_autocommit
#define sqlite3_get_autocommit (lazy_sqlite()->sqlite3_get_autocommit)
#undef sqlite3_last_insert_rowid
#define sqlite3_last_insert_rowid (lazy_sqlite()->sqlite3_last_insert_rowid)
#undef sqlite3_open_v2
#define sqlite3_open_v2 (lazy_sqlite()->sqlite3_open_v2)
#undef sqlite3_prepare_v2
#define sqlite3_prepare_v2 (lazy_sqlite()->sqlite3_prepare_v2)
#undef sqlite3_prepare_v3
#define sqlite3_prepare_v3 (lazy_sqlite()->sqlite3_prepare_v3)
#undef sqlite3_reset
#define sqlite3_reset (lazy_sqlite()->sqlite3_reset)
#undef sqlite3_step
#define sqlite3_step (lazy_sqlite()->sqlite3_step)
#undef sqlite3_bind_blob64
#define sqlite3_bind_blob64 (lazy_sqlite()->sqlite3_bind_blob64)
#undef sqlite3_bind_text64
#define sqlite3_bind_text64 (lazy_sqlite()->sqlite3_bind_text64)
#undef sqlite3_column_blob
#define sqlite3_column_blob (lazy_sqlite()->sqlite3_column_blob)
#undef sqlite3_column_bytes
#define sqlite3_column_bytes (lazy_sqlite()->sqlite3_column_bytes)
#endif
