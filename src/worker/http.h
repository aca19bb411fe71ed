/* The worker's HTTP/1.1 client, on the event loop (base/loop.h): every
 * socket non-blocking, many requests at once on one thread, keep-alive
 * connections reused per origin (scheme, host, port). http:// and https://
 * (OpenSSL's libssl, loaded only for an https origin: certificate and host
 * name verified against the default trust store, which SSL_CERT_FILE /
 * SSL_CERT_DIR override; SNI; TLS 1.2 or later). A host name is resolved on a
 * short-lived thread (never on the loop), cached for a minute and resolved
 * again after a failed connect. A forward proxy from the worker's own
 * environment, as libcurl honoured it (http_proxy.h: https_proxy/HTTPS_PROXY,
 * http_proxy, ALL_PROXY, NO_PROXY): an https:// origin through a CONNECT
 * tunnel (TLS, SNI and verification against the origin, the request's headers
 * only inside TLS), an http:// origin in absolute form; kept connections are
 * keyed by (proxy, origin). No redirects, no compression.
 * A request either buffers its body (bounded by max_body) or streams it to a
 * data callback (SSE). Each request has a total timeout (0 = none, for
 * streams) and a connect timeout; a stream has a stall timeout instead.
 * Knows nothing of the protocol; never puts a header (nor a proxy's user
 * information) into an error message. Logs only one line per origin when a
 * proxy variable applies to its scheme: through which proxy (user information
 * removed), or that NO_PROXY exempts it.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/loop.h"

typedef struct http http_t;
typedef struct http_req http_req_t;

typedef struct http_result {
    long status;        /* HTTP status; 0 when no response (see net_err) */
    int net_err;        /* 0 on a completed exchange, else -errno: -ETIMEDOUT, -ECONNREFUSED,
                           -ECONNRESET, -EPIPE (closed early), -EPROTO (bad response or TLS),
                           -EMSGSIZE (over a bound), -ECANCELED (a callback stopped it), ... */
    const char *error;  /* what failed when net_err != 0 (names the host, never a header) */
    bool fatal;         /* retrying cannot help: the server's TLS certificate failed verification */
    buf_t *body;        /* buffered body (not for streams) */
    int64_t elapsed_ms;
    int64_t retry_after_ms; /* the final response's retry-after-ms / retry-after, in ms; 0 = none */
    int should_retry;       /* its x-should-retry: 1 true, 0 false, -1 absent */
} http_result;

/* Called once per request when it ends (never after http_cancel). */
typedef void (*http_done_cb)(const http_result *res, void *arg);
/* Streaming body chunks (only 2xx bodies are streamed; others are buffered
 * for the error message). Return non-zero to abort the transfer (it then
 * ends with net_err -ECANCELED, unless the request was cancelled). */
typedef int (*http_data_cb)(const char *data, size_t len, void *arg);

/* The response headers are complete (final response, not 1xx). Return
 * non-zero to abort the transfer. */
typedef int (*http_headers_cb)(long status, void *arg);

typedef struct http_opts {
    const char *method;          /* "GET", "POST", ... */
    const char *url;             /* http://host[:port]/path?query or https://...; no user info */
    const char *const *headers;  /* "Name: value", NULL-terminated; no CR or LF */
    const char *body;            /* copied; a POST always sends Content-Length */
    size_t body_len;
    int64_t timeout_ms;          /* whole request; 0 = none */
    int64_t connect_timeout_ms;  /* name resolution + TCP + TLS handshake; 0 = 10 s */
    int64_t stall_timeout_ms;    /* streams: abort when no byte for this long; 0 = none */
    size_t max_body;             /* buffered body limit; 0 = 16 MiB */
    http_data_cb on_data;        /* non-NULL: stream 2xx bodies here */
    http_headers_cb on_headers;  /* optional */
    http_done_cb on_done;
    void *arg;
} http_opts;

/* Reads the proxy variables of the environment (never anything else): an
 * unsupported proxy (https://, socks*://) or a malformed one fails here,
 * naming the variable. */
int http_new(loop_t *loop, http_t **out, shed_err *err);
/* Cancels every request (no callbacks) and frees. */
void http_free(http_t *h);
/* Start a request; NULL with err set on failure to start (a bad URL or
 * header). It never calls back before returning: even an immediate failure is
 * reported from the loop. A request sent on a reused connection that the
 * server had closed (no byte of a response came) is sent once more on a new
 * connection, as curl and browsers do. */
http_req_t *http_start(http_t *h, const http_opts *o, shed_err *err);
/* Abort a request; its callback is never called. Safe from inside its own callbacks. */
void http_cancel(http_req_t *r);
int http_active(const http_t *h);
