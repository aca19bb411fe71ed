/* Forward-proxy settings for the worker's HTTP client (http.c), read from
 * the worker's own environment exactly where libcurl reads them:
 *   https:// URLs: https_proxy, else HTTPS_PROXY, else all_proxy, else ALL_PROXY;
 *   http://  URLs: http_proxy (lowercase only, as curl: HTTP_PROXY can be set
 *                  by a CGI request's "Proxy:" header), else all_proxy, else ALL_PROXY;
 *   exemptions:    no_proxy, else NO_PROXY (curl >= 7.86 matching).
 * An empty variable counts as unset (as curl). Only http:// proxies (or a
 * bare host[:port], default port 1080 as curl) are supported; https:// (TLS
 * to the proxy) and socks4/4a/5/5h:// are refused with a message naming the
 * variable. The user information of a proxy URL becomes a Proxy-Authorization
 * (Basic) value, kept apart from the URL shown in messages and logs.
 * Never reads session metadata or agent input: the environment only; never
 * puts the user information (or the whole variable's value) into a message.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

typedef struct http_proxy {
    bool set;
    const char *var;     /* the variable it came from ("HTTPS_PROXY", ...): a static string */
    char host[256];      /* brackets removed */
    int port;
    bool numeric;        /* host is an IP address */
    char hostport[270];  /* host:port, an IPv6 address in brackets */
    char shown[300];     /* "http://host:port": what messages and logs show (no user information) */
    char *auth;          /* "Basic <base64(user:password)>" or NULL; never in a message */
} http_proxy;

typedef struct http_proxy_env {
    http_proxy http, https; /* for http:// and https:// URLs */
    char *no_proxy;         /* NULL: none */
    const char *no_proxy_var;
} http_proxy_env;

/* Reads a variable (NULL when unset); the test seam for http_proxy_env_load. */
typedef const char *(*http_getenv_fn)(const char *name, void *arg);

/* Fill pe from the variables get() returns (getenv when get is NULL). An
 * unsupported or malformed proxy URL in a variable that would be used is an
 * error naming the variable and the fix. Free with http_proxy_env_free. */
int http_proxy_env_load(http_proxy_env *pe, http_getenv_fn get, void *arg, shed_err *err);
void http_proxy_env_free(http_proxy_env *pe);

/* The host[:port] of a URL's authority, the part between p and end (the
 * worker's URL parser and http_proxy_parse share it): "[v6]" or a name,
 * then optionally ":" and the port. host gets the name without brackets,
 * NUL-terminated (at most hostsz - 1 bytes); *portp points after the ':'
 * (NULL: no port given). 0, or what is wrong: */
enum { HTTP_HOST_UNCLOSED = -1, /* a '[' without its ']' */
       HTTP_HOST_BAD = -2,      /* empty, too long, or junk after ']' */
       HTTP_HOST_BAD_CHAR = -3  /* a control character, space, DEL or above, '%' or '\\' */ };
int http_hostport_split(const char *p, const char *end, char *host, size_t hostsz, const char **portp);
/* The decimal port between p and end: 1..65535, else -1 (empty included). */
int http_port_parse(const char *p, const char *end);

/* Parse one proxy URL ([http://][user[:password]@]host[:port][/]); var names
 * the variable in messages. */
int http_proxy_parse(const char *value, const char *var, http_proxy *out, shed_err *err);
void http_proxy_clear(http_proxy *p);

/* Does NO_PROXY exempt host (brackets of an IPv6 address optional)? curl's
 * rules: comma- or blank-separated entries; "*" alone matches every host; a
 * host name entry matches that name and every name under it (a leading dot
 * is optional, trailing dots ignored, case ignored); an IP address entry
 * matches that address, with "/bits" a CIDR range (IPv4 or IPv6), and never a
 * host name. A ":port" after an entry is ignored (a port never decides). */
bool http_noproxy_match(const char *no_proxy, const char *host);

/* The proxy a URL of that scheme and host goes through, or NULL (direct). */
const http_proxy *http_proxy_for(const http_proxy_env *pe, bool tls, const char *host);
