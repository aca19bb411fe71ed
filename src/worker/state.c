/* State directory; see state.h. Writes are atomic (temp file + rename);
 * names come from validated ids only, so no agent-chosen path is ever used. */
#include "worker/state.h"

#include "base/cleanup.h"
#include "base/json.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WSTATE_MAX_RECORD (64u << 20)

struct wstate {
    char *dir;
};

bool wstate_id_ok(const char *id)
{
    if (!id || !*id) return false;
    size_t n = 0;
    for (const char *c = id; *c; c++, n++) {
        if (n >= 128) return false;
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '-'))
            return false;
    }
    return true;
}

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[4096];
    if (strlen(path) >= sizeof(tmp)) return -ENAMETOOLONG;
    strcpy(tmp, path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -errno;
    return 0;
}

int wstate_open(const char *dir, wstate_t **out, shed_err *err)
{
    /* 0711 down to each workspace: the sandbox (another uid, in its user
     * namespace) must traverse to bind-mount it; nothing here is listable. */
    int rc = mkdir_p(dir, 0711);
    if (rc < 0) return err_set(err, -rc, "create state directory %s", dir);
    if (chmod(dir, 0711) < 0) return err_set(err, errno, "chmod 0711 %s", dir);
    char sub[4096];
    snprintf(sub, sizeof(sub), "%s/sessions", dir);
    rc = mkdir_p(sub, 0711);
    if (rc < 0) return err_set(err, -rc, "create %s", sub);
    wstate_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->dir = realpath(dir, NULL))) {
        free(s);
        return err_set(err, errno ? errno : ENOMEM, "open state directory %s", dir);
    }
    *out = s;
    return 0;
}

void wstate_close(wstate_t *s)
{
    if (!s) return;
    free(s->dir);
    free(s);
}

const char *wstate_dir(const wstate_t *s)
{
    return s->dir;
}

int wstate_session_workspace(wstate_t *s, const char *sid, char **path, shed_err *err)
{
    if (!wstate_id_ok(sid)) return err_msg(err, EINVAL, "session id is not a safe name");
    char *p = NULL;
    if (asprintf(&p, "%s/sessions/%s/workspace", s->dir, sid) < 0)
        return err_set(err, ENOMEM, "workspace path");
    char calls[4096], sdir[4096];
    snprintf(calls, sizeof(calls), "%s/sessions/%s/calls", s->dir, sid);
    snprintf(sdir, sizeof(sdir), "%s/sessions/%s", s->dir, sid);
    int rc = mkdir_p(sdir, 0711);
    if (rc == 0 && chmod(sdir, 0711) < 0) rc = -errno;
    if (rc == 0) rc = mkdir_p(p, 0700);
    if (rc == 0) rc = mkdir_p(calls, 0700);
    if (rc < 0) {
        err_set(err, -rc, "create %s", p);
        free(p);
        return rc;
    }
    *path = p;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP || flag == FTW_D)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

int wstate_session_remove(wstate_t *s, const char *sid, shed_err *err)
{
    if (!wstate_id_ok(sid)) return err_msg(err, EINVAL, "session id is not a safe name");
    char p[4096];
    snprintf(p, sizeof(p), "%s/sessions/%s", s->dir, sid);
    /* FTW_PHYS: never follow a symlink the agent left in its workspace. */
    if (nftw(p, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 && errno != ENOENT)
        return err_set(err, errno, "remove %s", p);
    struct stat st;
    if (lstat(p, &st) == 0) return err_msg(err, ENOTEMPTY, "remove %s: not everything could be removed", p);
    return 0;
}

json_t *wstate_sessions(wstate_t *s)
{
    json_t *a = json_array();
    char p[4096];
    snprintf(p, sizeof(p), "%s/sessions", s->dir);
    DIR *d = opendir(p);
    if (!d) return a;
    struct dirent *de;
    while ((de = readdir(d)))
        if (wstate_id_ok(de->d_name)) json_array_append_new(a, json_string(de->d_name));
    closedir(d);
    return a;
}

static int call_path(wstate_t *s, const char *sid, const char *cid, char *out, size_t n)
{
    if (!wstate_id_ok(sid) || !wstate_id_ok(cid)) return -EINVAL;
    snprintf(out, n, "%s/sessions/%s/calls/%s", s->dir, sid, cid);
    return 0;
}

static int write_atomic(const char *path, const char *data, size_t len, shed_err *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return err_set(err, errno, "write %s", tmp);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            unlink(tmp);
            return err_set(err, e, "write %s", tmp);
        }
        off += (size_t)w;
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return err_set(err, e, "rename %s", tmp);
    }
    return 0;
}

int wstate_call_started(wstate_t *s, const char *sid, const char *cid, shed_err *err)
{
    char p[4096];
    if (call_path(s, sid, cid, p, sizeof(p)) < 0)
        return err_msg(err, EINVAL, "tool_use id is not a safe name");
    return write_atomic(p, "started\n", 8, err);
}

int wstate_call_result(wstate_t *s, const char *sid, const char *cid, json_t *result,
                       shed_err *err)
{
    char p[4096];
    if (call_path(s, sid, cid, p, sizeof(p)) < 0)
        return err_msg(err, EINVAL, "tool_use id is not a safe name");
    _cleanup_free_ char *txt = json_dumps(result, JSON_COMPACT);
    if (!txt) return err_set(err, ENOMEM, "serialize result");
    return write_atomic(p, txt, strlen(txt), err);
}

int wstate_call_clear(wstate_t *s, const char *sid, const char *cid)
{
    char p[4096];
    if (call_path(s, sid, cid, p, sizeof(p)) < 0) return -EINVAL;
    return unlink(p) < 0 && errno != ENOENT ? -errno : 0;
}

static char *read_file(const char *path, size_t max, size_t *len)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) return NULL;
    char *b = malloc((size_t)st.st_size + 1);
    if (!b) return NULL;
    size_t off = 0;
    while (off < (size_t)st.st_size) {
        ssize_t r = read(fd, b + off, (size_t)st.st_size - off);
        if (r <= 0) break;
        off += (size_t)r;
    }
    b[off] = 0;
    *len = off;
    return b;
}

enum wstate_call wstate_call_get(wstate_t *s, const char *sid, const char *cid, json_t **result)
{
    *result = NULL;
    char p[4096];
    if (call_path(s, sid, cid, p, sizeof(p)) < 0) return WSTATE_CALL_NONE;
    size_t len = 0;
    _cleanup_free_ char *b = read_file(p, WSTATE_MAX_RECORD, &len);
    if (!b) return WSTATE_CALL_NONE;
    if (len >= 7 && !memcmp(b, "started", 7)) return WSTATE_CALL_STARTED;
    shed_err e = {0};
    json_t *j = json_parse(b, len, WSTATE_MAX_RECORD, JSON_DEFAULT_DEPTH, &e);
    if (!j || !json_is_object(j) || !json_is_array(json_object_get(j, "content"))) {
        json_decref(j);
        return WSTATE_CALL_STARTED; /* a damaged record: treat as "may have run" */
    }
    *result = j;
    return WSTATE_CALL_RESULT;
}

int wstate_write_items(wstate_t *s, const char *worker_id, json_t *items, shed_err *err)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/worker.json", s->dir);
    _cleanup_json_ json_t *doc =
        json_pack("{s:i,s:s,s:O}", "pid", (int)getpid(), "worker_id", worker_id, "items", items);
    if (!doc) return err_set(err, ENOMEM, "worker.json");
    _cleanup_free_ char *txt = json_dumps(doc, JSON_INDENT(1));
    if (!txt) return err_set(err, ENOMEM, "worker.json");
    return write_atomic(p, txt, strlen(txt), err);
}

json_t *wstate_read_items(wstate_t *s)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/worker.json", s->dir);
    size_t len = 0;
    _cleanup_free_ char *b = read_file(p, 1 << 20, &len);
    if (!b) return NULL;
    shed_err e = {0};
    return json_parse(b, len, 1 << 20, 16, &e);
}

int wstate_sweep_tmp(wstate_t *s)
{
    int n = 0;
    _cleanup_json_ json_t *sids = wstate_sessions(s);
    size_t i;
    json_t *v;
    json_array_foreach(sids, i, v)
    {
        char p[4096];
        snprintf(p, sizeof(p), "%s/sessions/%s/calls", s->dir, json_string_value(v));
        DIR *d = opendir(p);
        if (!d) continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l > 4 && !strcmp(de->d_name + l - 4, ".tmp") && unlinkat(dirfd(d), de->d_name, 0) == 0) n++;
        }
        closedir(d);
    }
    return n;
}
