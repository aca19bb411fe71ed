#!/usr/bin/env bash
# A failed fsync at --sync full (fdatasync made to fail with EIO by an
# LD_PRELOAD shim built here): the POST whose flush failed is answered 500,
# every later write 503 naming the fix, reads still answer, /readyz says
# why, and a restart on a healthy disk takes writes again (tests in
# serve_syncfail.py).
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"
command -v python3 >/dev/null || skip "python3 is not installed"
command -v cc >/dev/null || fail "cc is not installed (scripts/install-deps installs gcc)"
cat > "$T/failsync.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
/* fsync and fdatasync fail with EIO while $FAILSYNC_FILE exists. */
static int real_or_eio(const char *name, int fd)
{
    const char *f = getenv("FAILSYNC_FILE");
    if (f && access(f, F_OK) == 0) {
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, name);
    return real(fd);
}
int fdatasync(int fd)
{
    return real_or_eio("fdatasync", fd);
}
int fsync(int fd)
{
    return real_or_eio("fsync", fd);
}
C
cc -shared -fPIC -O1 -o "$T/failsync.so" "$T/failsync.c" -ldl || fail "building the fsync shim"
export T SHED
python3 "$(dirname "$0")/serve_syncfail.py"
