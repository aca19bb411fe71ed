/* The loader behind the lazy_*.h shims (see lazy.h): dlopen of the exact
 * soname the headers were written against, dlsym of every function, once per
 * library (pthread_once). Must never hand out a table with a NULL member: a
 * missing library or symbol is a fatal error naming the package to install. */
#define LAZY_NO_DEFINES 1
#include "base/lazy.h"
#include "base/lazy_archive.h"
#include "base/lazy_curl.h"
#include "base/lazy_mhd.h"
#include "base/lazy_sqlite.h"
#include "base/lazy_ssl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

/* Exits rather than returning: the callers are plain library calls with no
 * way to report "the library is not installed". _exit, because other threads
 * may be running and the process must not run atexit handlers under them. */
__attribute__((noreturn)) static void lazy_fatal(const char *soname, const char *pkg,
                                                 const char *what)
{
    fprintf(stderr,
            "shed: cannot load %s (%s)\n"
            "shed: install the Debian package %s (scripts/install-deps does it)\n",
            soname, what ? what : "unknown error", pkg);
    _exit(127);
}

static void *lazy_open(const char *soname, const char *pkg)
{
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!h) lazy_fatal(soname, pkg, dlerror());
    return h;
}

static void *lazy_sym(void *h, const char *name, const char *soname, const char *pkg)
{
    dlerror();
    void *p = dlsym(h, name);
    if (!p) {
        char what[256];
        const char *e = dlerror();
        snprintf(what, sizeof(what), "symbol %s missing: %s", name, e ? e : "NULL");
        lazy_fatal(soname, pkg, what);
    }
    return p;
}

#define LAZY_FILL(fn) t->fn = (__typeof__(t->fn))lazy_sym(h, #fn, so, pkg);

#define LAZY_LIBRARY(name, UP, soname, package)                                                  \
    static struct lazy_##name lazy_##name##_table;                                               \
    static pthread_once_t lazy_##name##_once = PTHREAD_ONCE_INIT;                                \
    static void lazy_##name##_load(void)                                                         \
    {                                                                                            \
        const char *so = soname, *pkg = package;                                                 \
        struct lazy_##name *t = &lazy_##name##_table;                                            \
        void *h = lazy_open(so, pkg);                                                            \
        LAZY_##UP##_FNS(LAZY_FILL)                                                               \
    }                                                                                            \
    const struct lazy_##name *lazy_##name(void)                                                  \
    {                                                                                            \
        pthread_once(&lazy_##name##_once, lazy_##name##_load);                                   \
        return &lazy_##name##_table;                                                             \
    }

LAZY_LIBRARY(curl, CURL, "libcurl.so.4", "libcurl4")
LAZY_LIBRARY(mhd, MHD, "libmicrohttpd.so.12", "libmicrohttpd12")
LAZY_LIBRARY(sqlite, SQLITE, "libsqlite3.so.0", "libsqlite3-0")
LAZY_LIBRARY(archive, ARCHIVE, "libarchive.so.13", "libarchive13")
LAZY_LIBRARY(ssl, SSL, "libssl.so.3", "libssl3")
