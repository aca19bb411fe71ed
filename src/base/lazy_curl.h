/* libcurl, loaded at first use.
 * Include this instead of the library's header (see base/lazy.h); the
 * library (libcurl.so.4, Debian package libcurl4) is dlopen()ed at the first call.
 * Must never be included by code that needs the real symbols at link time. */
#pragma once
/* typecheck-gcc.h would define curl_easy_setopt as a macro over the real symbol. */
#ifndef CURL_DISABLE_TYPECHECK
#define CURL_DISABLE_TYPECHECK 1
#endif
#include <curl/curl.h>
#include "base/lazy.h"

#define LAZY_CURL_FNS(X) \
    X(curl_easy_cleanup) \
    X(curl_easy_getinfo) \
    X(curl_easy_init) \
    X(curl_easy_perform) \
    X(curl_easy_setopt) \
    X(curl_easy_strerror) \
    X(curl_global_init) \
    X(curl_multi_add_handle) \
    X(curl_multi_cleanup) \
    X(curl_multi_info_read) \
    X(curl_multi_init) \
    X(curl_multi_remove_handle) \
    X(curl_multi_setopt) \
    X(curl_multi_socket_action) \
    X(curl_multi_strerror) \
    X(curl_slist_append) \
    X(curl_slist_free_all) \

struct lazy_curl {
    LAZY_CURL_FNS(LAZY_MEMBER)
};

/* The loaded table; on the first call loads libcurl.so.4 or exits with a message. */
const struct lazy_curl *lazy_curl(void);

#ifndef LAZY_NO_DEFINES
#undef curl_easy_cleanup
#define curl_easy_cleanup (lazy_curl()->curl_easy_cleanup)
#undef curl_easy_getinfo
#define curl_easy_getinfo (lazy_curl()->curl_easy_getinfo)
#undef curl_easy_init
#define curl_easy_init (lazy_curl()->curl_easy_init)
#undef curl_easy_perform
#define curl_easy_perform (lazy_curl()->curl_easy_perform)
#undef curl_easy_setopt
#define curl_easy_setopt (lazy_curl()->curl_easy_setopt)
#undef curl_easy_strerror
#define curl_easy_strerror (lazy_curl()->curl_easy_strerror)
#undef curl_global_init
#define curl_global_init (lazy_curl()->curl_global_init)
#undef curl_multi_add_handle
#define curl_multi_add_handle (lazy_curl()->curl_multi_add_handle)
#undef curl_multi_cleanup
#define curl_multi_cleanup (lazy_curl()->curl_multi_cleanup)
#undef curl_multi_info_read
#define curl_multi_info_read (lazy_curl()->curl_multi_info_read)
#undef curl_multi_init
#define curl_multi_init (lazy_curl()->curl_multi_init)
#undef curl_multi_remove_handle
#define curl_multi_remove_handle (lazy_curl()->curl_multi_remove_handle)
#undef curl_multi_setopt
#define curl_multi_setopt (lazy_curl()->curl_multi_setopt)
#undef curl_multi_socket_action
#define curl_multi_socket_action (lazy_curl()->curl_multi_socket_action)
#undef curl_multi_strerror
#define curl_multi_strerror (lazy_curl()->curl_multi_strerror)
#undef curl_slist_append
#define curl_slist_append (lazy_curl()->curl_slist_append)
#undef curl_slist_free_all
#define curl_slist_free_all (lazy_curl()->curl_slist_free_all)
#endif
