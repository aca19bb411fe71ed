/* libmicrohttpd, loaded at first use.
 * Include this instead of the library's header (see base/lazy.h); the
 * library (libmicrohttpd.so.12, Debian package libmicrohttpd12) is dlopen()ed at the first call.
 * Must never be included by code that needs the real symbols at link time. */
#pragma once
#include <microhttpd.h>
#include "base/lazy.h"

#define LAZY_MHD_FNS(X) \
    X(MHD_add_response_header) \
    X(MHD_create_response_from_buffer) \
    X(MHD_create_response_from_callback) \
    X(MHD_destroy_response) \
    X(MHD_get_connection_values) \
    X(MHD_get_daemon_info) \
    X(MHD_get_connection_info) \
    X(MHD_lookup_connection_value) \
    X(MHD_queue_response) \
    X(MHD_quiesce_daemon) \
    X(MHD_resume_connection) \
    X(MHD_set_response_options) \
    X(MHD_start_daemon) \
    X(MHD_stop_daemon) \
    X(MHD_suspend_connection) \

struct lazy_mhd {
    LAZY_MHD_FNS(LAZY_MEMBER)
};

/* The loaded table; on the first call loads libmicrohttpd.so.12 or exits with a message. */
const struct lazy_mhd *lazy_mhd(void);

#ifndef LAZY_NO_DEFINES
#undef MHD_add_response_header
#define MHD_add_response_header (lazy_mhd()->MHD_add_response_header)
#undef MHD_create_response_from_buffer
#define MHD_create_response_from_buffer (lazy_mhd()->MHD_create_response_from_buffer)
#undef MHD_create_response_from_callback
#define MHD_create_response_from_callback (lazy_mhd()->MHD_create_response_from_callback)
#undef MHD_destroy_response
#define MHD_destroy_response (lazy_mhd()->MHD_destroy_response)
#undef MHD_get_connection_values
#define MHD_get_connection_values (lazy_mhd()->MHD_get_connection_values)
#undef MHD_get_daemon_info
#define MHD_get_daemon_info (lazy_mhd()->MHD_get_daemon_info)
#undef MHD_get_connection_info
#define MHD_get_connection_info (lazy_mhd()->MHD_get_connection_info)
#undef MHD_lookup_connection_value
#define MHD_lookup_connection_value (lazy_mhd()->MHD_lookup_connection_value)
#undef MHD_queue_response
#define MHD_queue_response (lazy_mhd()->MHD_queue_response)
#undef MHD_quiesce_daemon
#define MHD_quiesce_daemon (lazy_mhd()->MHD_quiesce_daemon)
#undef MHD_resume_connection
#define MHD_resume_connection (lazy_mhd()->MHD_resume_connection)
#undef MHD_set_response_options
#define MHD_set_response_options (lazy_mhd()->MHD_set_response_options)
#undef MHD_start_daemon
#define MHD_start_daemon (lazy_mhd()->MHD_start_daemon)
#undef MHD_stop_daemon
#define MHD_stop_daemon (lazy_mhd()->MHD_stop_daemon)
#undef MHD_suspend_connection
#define MHD_suspend_connection (lazy_mhd()->MHD_suspend_connection)
#endif
