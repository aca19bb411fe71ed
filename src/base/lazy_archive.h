/* libarchive (read side for skill extraction, write side for shed serve's
 * skill content), loaded at first use.
 * Include this instead of the library's header (see base/lazy.h); the
 * library (libarchive.so.13, Debian package libarchive13) is dlopen()ed at the first call.
 * Must never be included by code that needs the real symbols at link time. */
#pragma once
#include <archive.h>
#include <archive_entry.h>
#include "base/lazy.h"

#define LAZY_ARCHIVE_FNS(X) \
    X(archive_entry_filetype) \
    X(archive_entry_hardlink) \
    X(archive_entry_pathname) \
    X(archive_entry_pathname_utf8) \
    X(archive_entry_perm) \
    X(archive_entry_size) \
    X(archive_entry_size_is_set) \
    X(archive_error_string) \
    X(archive_read_data) \
    X(archive_read_free) \
    X(archive_read_new) \
    X(archive_read_next_header) \
    X(archive_read_open_fd) \
    X(archive_read_open_memory) \
    X(archive_read_support_filter_bzip2) \
    X(archive_read_support_filter_gzip) \
    X(archive_read_support_filter_xz) \
    X(archive_read_support_format_tar) \
    X(archive_read_support_format_zip_seekable) \
    X(archive_entry_free) \
    X(archive_entry_new) \
    X(archive_entry_set_filetype) \
    X(archive_entry_set_mtime) \
    X(archive_entry_set_pathname) \
    X(archive_entry_set_perm) \
    X(archive_entry_set_size) \
    X(archive_errno) \
    X(archive_set_error) \
    X(archive_write_close) \
    X(archive_write_data) \
    X(archive_write_free) \
    X(archive_write_header) \
    X(archive_write_new) \
    X(archive_write_open2) \
    X(archive_write_set_bytes_in_last_block) \
    X(archive_write_set_format_zip) \

struct lazy_archive {
    LAZY_ARCHIVE_FNS(LAZY_MEMBER)
};

/* The loaded table; on the first call loads libarchive.so.13 or exits with a message. */
const struct lazy_archive *lazy_archive(void);

#ifndef LAZY_NO_DEFINES
#undef archive_entry_filetype
#define archive_entry_filetype (lazy_archive()->archive_entry_filetype)
#undef archive_entry_hardlink
#define archive_entry_hardlink (lazy_archive()->archive_entry_hardlink)
#undef archive_entry_pathname
#define archive_entry_pathname (lazy_archive()->archive_entry_pathname)
#undef archive_entry_pathname_utf8
#define archive_entry_pathname_utf8 (lazy_archive()->archive_entry_pathname_utf8)
#undef archive_entry_perm
#define archive_entry_perm (lazy_archive()->archive_entry_perm)
#undef archive_entry_size
#define archive_entry_size (lazy_archive()->archive_entry_size)
#undef archive_entry_size_is_set
#define archive_entry_size_is_set (lazy_archive()->archive_entry_size_is_set)
#undef archive_error_string
#define archive_error_string (lazy_archive()->archive_error_string)
#undef archive_read_data
#define archive_read_data (lazy_archive()->archive_read_data)
#undef archive_read_free
#define archive_read_free (lazy_archive()->archive_read_free)
#undef archive_read_new
#define archive_read_new (lazy_archive()->archive_read_new)
#undef archive_read_next_header
#define archive_read_next_header (lazy_archive()->archive_read_next_header)
#undef archive_read_open_fd
#define archive_read_open_fd (lazy_archive()->archive_read_open_fd)
#undef archive_read_open_memory
#define archive_read_open_memory (lazy_archive()->archive_read_open_memory)
#undef archive_read_support_filter_bzip2
#define archive_read_support_filter_bzip2 (lazy_archive()->archive_read_support_filter_bzip2)
#undef archive_read_support_filter_gzip
#define archive_read_support_filter_gzip (lazy_archive()->archive_read_support_filter_gzip)
#undef archive_read_support_filter_xz
#define archive_read_support_filter_xz (lazy_archive()->archive_read_support_filter_xz)
#undef archive_read_support_format_tar
#define archive_read_support_format_tar (lazy_archive()->archive_read_support_format_tar)
#undef archive_read_support_format_zip_seekable
#define archive_read_support_format_zip_seekable (lazy_archive()->archive_read_support_format_zip_seekable)
#undef archive_entry_free
#define archive_entry_free (lazy_archive()->archive_entry_free)
#undef archive_entry_new
#define archive_entry_new (lazy_archive()->archive_entry_new)
#undef archive_entry_set_filetype
#define archive_entry_set_filetype (lazy_archive()->archive_entry_set_filetype)
#undef archive_entry_set_mtime
#define archive_entry_set_mtime (lazy_archive()->archive_entry_set_mtime)
#undef archive_entry_set_pathname
#define archive_entry_set_pathname (lazy_archive()->archive_entry_set_pathname)
#undef archive_entry_set_perm
#define archive_entry_set_perm (lazy_archive()->archive_entry_set_perm)
#undef archive_entry_set_size
#define archive_entry_set_size (lazy_archive()->archive_entry_set_size)
#undef archive_errno
#define archive_errno (lazy_archive()->archive_errno)
#undef archive_set_error
#define archive_set_error (lazy_archive()->archive_set_error)
#undef archive_write_close
#define archive_write_close (lazy_archive()->archive_write_close)
#undef archive_write_data
#define archive_write_data (lazy_archive()->archive_write_data)
#undef archive_write_free
#define archive_write_free (lazy_archive()->archive_write_free)
#undef archive_write_header
#define archive_write_header (lazy_archive()->archive_write_header)
#undef archive_write_new
#define archive_write_new (lazy_archive()->archive_write_new)
#undef archive_write_open2
#define archive_write_open2 (lazy_archive()->archive_write_open2)
#undef archive_write_set_bytes_in_last_block
#define archive_write_set_bytes_in_last_block (lazy_archive()->archive_write_set_bytes_in_last_block)
#undef archive_write_set_format_zip
#define archive_write_set_format_zip (lazy_archive()->archive_write_set_format_zip)
#endif
