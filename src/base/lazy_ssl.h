/* OpenSSL's libssl (TLS for the worker's https:// base URLs), loaded at
 * first use. Include this instead of <openssl/ssl.h> (see base/lazy.h): the
 * library (libssl.so.3, Debian package libssl3) is dlopen()ed at the first
 * call, so a worker talking plain http:// to a local server never maps it.
 * The few libcrypto functions listed are found through libssl's handle (it
 * depends on libcrypto.so.3). Must never be included by code that needs the
 * real symbols at link time. */
#pragma once
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "base/lazy.h"

#define LAZY_SSL_FNS(X) \
    X(ERR_clear_error) \
    X(ERR_error_string_n) \
    X(ERR_get_error) \
    X(ERR_peek_last_error) \
    X(SSL_CTX_ctrl) \
    X(SSL_CTX_free) \
    X(SSL_CTX_new) \
    X(SSL_CTX_set_default_verify_paths) \
    X(SSL_CTX_set_verify) \
    X(SSL_connect) \
    X(SSL_ctrl) \
    X(SSL_free) \
    X(SSL_get0_param) \
    X(SSL_get_error) \
    X(SSL_get_verify_result) \
    X(SSL_new) \
    X(SSL_pending) \
    X(SSL_read) \
    X(SSL_set1_host) \
    X(SSL_set_fd) \
    X(SSL_write) \
    X(TLS_client_method) \
    X(X509_VERIFY_PARAM_set1_ip_asc) \
    X(X509_verify_cert_error_string) \

struct lazy_ssl {
    LAZY_SSL_FNS(LAZY_MEMBER)
};

/* The loaded table; on the first call loads libssl.so.3 or exits with a message. */
const struct lazy_ssl *lazy_ssl(void);

#ifndef LAZY_NO_DEFINES
#undef ERR_clear_error
#define ERR_clear_error (lazy_ssl()->ERR_clear_error)
#undef ERR_error_string_n
#define ERR_error_string_n (lazy_ssl()->ERR_error_string_n)
#undef ERR_get_error
#define ERR_get_error (lazy_ssl()->ERR_get_error)
#undef SSL_CTX_ctrl
#define SSL_CTX_ctrl (lazy_ssl()->SSL_CTX_ctrl)
#undef SSL_CTX_free
#define SSL_CTX_free (lazy_ssl()->SSL_CTX_free)
#undef SSL_CTX_new
#define SSL_CTX_new (lazy_ssl()->SSL_CTX_new)
#undef SSL_CTX_set_default_verify_paths
#define SSL_CTX_set_default_verify_paths (lazy_ssl()->SSL_CTX_set_default_verify_paths)
#undef SSL_CTX_set_verify
#define SSL_CTX_set_verify (lazy_ssl()->SSL_CTX_set_verify)
#undef SSL_connect
#define SSL_connect (lazy_ssl()->SSL_connect)
#undef SSL_ctrl
#define SSL_ctrl (lazy_ssl()->SSL_ctrl)
#undef SSL_free
#define SSL_free (lazy_ssl()->SSL_free)
#undef SSL_get0_param
#define SSL_get0_param (lazy_ssl()->SSL_get0_param)
#undef SSL_get_error
#define SSL_get_error (lazy_ssl()->SSL_get_error)
#undef SSL_get_verify_result
#define SSL_get_verify_result (lazy_ssl()->SSL_get_verify_result)
#undef SSL_new
#define SSL_new (lazy_ssl()->SSL_new)
#undef SSL_read
#define SSL_read (lazy_ssl()->SSL_read)
#undef SSL_set1_host
#define SSL_set1_host (lazy_ssl()->SSL_set1_host)
#undef SSL_set_fd
#define SSL_set_fd (lazy_ssl()->SSL_set_fd)
#undef SSL_write
#define SSL_write (lazy_ssl()->SSL_write)
#undef TLS_client_method
#define TLS_client_method (lazy_ssl()->TLS_client_method)
#undef X509_VERIFY_PARAM_set1_ip_asc
#define X509_VERIFY_PARAM_set1_ip_asc (lazy_ssl()->X509_VERIFY_PARAM_set1_ip_asc)
#undef X509_verify_cert_error_string
#define X509_verify_cert_error_string (lazy_ssl()->X509_verify_cert_error_string)
#undef ERR_peek_last_error
#define ERR_peek_last_error (lazy_ssl()->ERR_peek_last_error)
#undef SSL_pending
#define SSL_pending (lazy_ssl()->SSL_pending)
#endif
