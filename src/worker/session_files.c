/* Skills and memory stores of one work item, wired into the worker; see
 * session_files.h. Everything runs on the worker's loop except the
 * extraction and the removal of skill trees (pool threads, on fds this file
 * opened). Never joins a path from session metadata into a host path: a
 * skill's directory is one component checked by skills_dir_name() and used
 * relative to the skills/ fd; a store's host folder is "<n>-<sanitized id>"
 * under <state>/sessions/<sid>/memory. Never logs a credential.
 */
#include "worker/session_files.h"

#include "base/cleanup.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/tree.h"
#include "obs/obs.h"
#include "skills/skills.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SKILLS_BETA       "skills-2025-10-02"
#define MEMORY_BETA       "agent-memory-2026-07-22"
#define CALL_MS           30000
#define DOWNLOAD_MS       120000
#define MOUNT_MS          300000       /* bound on mounting every store */
#define MAX_SKILLS        64
#define MAX_ARCHIVE_BYTES (64u << 20)  /* a downloaded skill archive */
#define MAX_VERSION_PAGES 50
#define MAX_STORES        8
#define MAX_INSIDE_PATH   1024

typedef struct mop mop_t;

struct mop { /* one memory API call in flight */
    sfiles_t *f;
    memory_req_t *req;
    api_call_t *call;
    mop_t *next;
};

typedef struct skill {
    char *skill_id, *requested, *version, *name;
    char dir[256];
    bool created;
    int pages;
} skill_t;

typedef struct skill_job skill_job_t;

enum mem_state { MEM_NONE, MEM_MOUNTING, MEM_IDLE, MEM_SYNCING, MEM_FINISHING, MEM_FLUSHING, MEM_DONE };

typedef struct store_plan {
    char *id, *access, *inside;
    char host_name[96];
    bool read_only;
    memory_store_t *store; /* while mounting */
} store_plan_t;

struct sfiles {
    sfiles_env env;
    char session_id[160], work_id[160];
    api_cred cred;
    char *cred_copy;
    uid_t uid;
    gid_t gid;
    /* skills */
    skill_t *skills;
    size_t nskills, cur;
    int skills_fd;
    api_call_t *skill_call;
    json_t *versions; /* versions listed so far for the current skill */
    skill_job_t *job;  /* extraction on the pool */
    bool skills_done;
    int skills_loaded, skills_failed;
    /* memory */
    store_plan_t stores[MAX_STORES];
    size_t nstores;
    char *mem_dir; /* <state>/sessions/<sid>/memory */
    int mem_fd;
    memory_session_t *msess;
    enum mem_state mstate;
    mop_t *mops;
    uint64_t run_timer, bound_timer, cb_timer;
    bool clean;
    int mount_rc;
    char mount_msg[400];
    /* binds */
    char **ro, **rw;
    size_t nro, nrw;
    /* phases */
    bool started, ready_sent, ending, ended_sent;
    skill_job_t *rm_job; /* removal of the skills on the pool */
};

struct skill_job {
    sfiles_t *f; /* NULL once abandoned */
    int parent_fd;
    char *data;
    size_t len;
    char dir[256];
    char **remove; /* removal job: names to remove */
    size_t nremove;
    skills_opts_t opts;
    skills_extract_stats_t stats;
    int rc;
    shed_err err;
};

static void skills_next(sfiles_t *f);
static void remove_skills(sfiles_t *f);
static void mem_run(sfiles_t *f);
static void maybe_ready(sfiles_t *f);
static void end_continue(sfiles_t *f);

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void audit_ev(sfiles_t *f, const char *event, json_t *fields)
{
    if (f->env.audit && fields) audit_write(f->env.audit, event, fields);
    json_decref(fields);
}

static char *path_fmt(const char *fmt, const char *a, const char *b, const char *c)
{
    _cleanup_free_ char *ea = api_escape(a), *eb = b ? api_escape(b) : NULL,
                        *ec = c ? api_escape(c) : NULL;
    char *p = NULL;
    if (!ea || (b && !eb) || (c && !ec)) return NULL;
    int rc = c ? asprintf(&p, fmt, ea, eb, ec) : b ? asprintf(&p, fmt, ea, eb) : asprintf(&p, fmt, ea);
    return rc < 0 ? NULL : p;
}

/* ---------- inside paths and host names ---------- */

/* Where the sandbox's own layout lives: a store may not be bound over it. */
static bool reserved_inside(const char *p)
{
    static const char *const R[] = {"/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/lib",
                                    "/lib32", "/lib64", "/libx32", "/tmp", "/run", "/var", "/root"};
    for (size_t i = 0; i < ARRAY_SIZE(R); i++) {
        size_t n = strlen(R[i]);
        if (!strncmp(p, R[i], n) && (p[n] == 0 || p[n] == '/')) return true;
    }
    return false;
}

/* a is b or an ancestor of b (both clean absolute paths). */
static bool path_within(const char *a, const char *b)
{
    size_t n = strlen(a);
    return !strncmp(a, b, n) && (b[n] == 0 || b[n] == '/');
}

int sfiles_mount_path_check(const char *p, const char *workdir, shed_err *err)
{
    size_t n = strlen(p);
    if (!memory_mount_path_legal(p) || n < 2 || n > MAX_INSIDE_PATH || p[n - 1] == '/' ||
        strstr(p, "//") || strstr(p, "/./") || (n >= 2 && !strcmp(p + n - 2, "/.")))
        return err_msg(err, EINVAL, "memory store mount_path is not a clean absolute path: \"%.200s\"", p);
    for (const char *c = p; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return err_msg(err, EINVAL, "memory store mount_path holds a control character");
    if (reserved_inside(p))
        return err_msg(err, EINVAL,
                       "memory store mount_path %.200s is inside a directory of the sandbox's own "
                       "layout; use a path like /mnt/memory/<name>",
                       p);
    if (path_within(p, workdir))
        return err_msg(err, EINVAL, "memory store mount_path %.200s would cover the workdir %s", p,
                       workdir);
    /* The workdir is the agent's to write: a link it planted on the way to
     * a mount point would decide where the store lands. */
    if (path_within(workdir, p))
        return err_msg(err, EINVAL,
                       "memory store mount_path %.200s is inside the workdir %s, which the agent can "
                       "write; use a path like /mnt/memory/<name>",
                       p, workdir);
    return 0;
}

/* [A-Za-z0-9_-], at most 64 characters; other bytes become '-'. */
static void sanitize(const char *in, char *out, size_t n)
{
    size_t o = 0;
    for (; in && *in && o + 1 < n && o < 64; in++) {
        unsigned char c = (unsigned char)*in;
        out[o++] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-')
                       ? (char)c
                       : '-';
    }
    out[o] = 0;
}

/* ---------- set-up ---------- */

static int add_bind(char ***list, size_t *n, const char *host, const char *inside)
{
    char **l = realloc(*list, (*n + 2) * sizeof(*l));
    if (!l) return -ENOMEM;
    *list = l;
    if (asprintf(&l[*n], "%s:%s", host, inside) < 0) {
        l[*n] = NULL;
        return -ENOMEM;
    }
    (*n)++;
    l[*n] = NULL;
    return 0;
}

static int plan_memory(sfiles_t *f, json_t *resources, shed_err *err)
{
    size_t i;
    json_t *r;
    json_array_foreach(resources, i, r)
    {
        if (!json_is_object(r) || !jstr(r, "type") || strcmp(jstr(r, "type"), "memory_store")) continue;
        const char *id = jstr(r, "memory_store_id");
        if (!id || !*id) return err_msg(err, EINVAL, "a memory_store resource has no memory_store_id");
        if (f->nstores >= MAX_STORES)
            return err_msg(err, E2BIG, "a session has at most %d memory stores", MAX_STORES);
        store_plan_t *sp = &f->stores[f->nstores];
        const char *mp = jstr(r, "mount_path");
        char fallback[MAX_INSIDE_PATH + 64];
        if (!mp || !*mp) {
            /* The reference: <workdir>/memory/<name|id>; one sanitized component here. */
            char nm[80];
            sanitize(jstr(r, "name") && *jstr(r, "name") ? jstr(r, "name") : id, nm, sizeof(nm));
            snprintf(fallback, sizeof(fallback), "/mnt/memory/%s", nm[0] ? nm : "store");
            mp = fallback;
        }
        int rc = sfiles_mount_path_check(mp, f->env.workdir, err);
        if (rc < 0) {
            err_wrap(err, "memory_store_id=%s", id);
            return rc;
        }
        for (size_t k = 0; k < f->nstores; k++)
            if (path_within(f->stores[k].inside, mp) || path_within(mp, f->stores[k].inside))
                return err_msg(err, EINVAL, "memory stores %s and %s have overlapping mount paths (%s, %s)",
                               f->stores[k].id, id, f->stores[k].inside, mp);
        char san[80];
        sanitize(id, san, sizeof(san));
        snprintf(sp->host_name, sizeof(sp->host_name), "%zu-%s", f->nstores, san);
        sp->id = strdup(id);
        sp->inside = strdup(mp);
        const char *acc = jstr(r, "access");
        sp->read_only = acc && !strcmp(acc, "read_only");
        sp->access = strdup(sp->read_only ? "read_only" : "read_write");
        if (!sp->id || !sp->inside || !sp->access) return err_set(err, ENOMEM, "memory store");
        f->nstores++;
    }
    if (!f->nstores) return 0;
    /* The host folders: <state>/sessions/<sid>/memory/<n>-<id>, made empty
     * now so the sandbox can bind them; mounted (pulled) once it exists. */
    if (asprintf(&f->mem_dir, "%s/sessions/%s/memory", f->env.state_dir, f->session_id) < 0) {
        f->mem_dir = NULL;
        return err_set(err, ENOMEM, "memory");
    }
    char sdir[4200];
    snprintf(sdir, sizeof(sdir), "%s/sessions/%s", f->env.state_dir, f->session_id);
    _cleanup_close_ int sfd = open(sdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd < 0) return err_set(err, errno, "open %s", sdir);
    int rc = tree_remove_at(sfd, "memory", err);
    if (rc < 0) {
        err_wrap(err, "remove the memory folders a previous worker left in %s", sdir);
        return rc;
    }
    if (mkdirat(sfd, "memory", 0711) < 0) return err_set(err, errno, "mkdir %s", f->mem_dir);
    fchmodat(sfd, "memory", 0711, 0);
    f->mem_fd = openat(sfd, "memory", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (f->mem_fd < 0) return err_set(err, errno, "open %s", f->mem_dir);
    for (size_t k = 0; k < f->nstores; k++) {
        store_plan_t *sp = &f->stores[k];
        if (mkdirat(f->mem_fd, sp->host_name, 0700) < 0)
            return err_set(err, errno, "mkdir %s/%s", f->mem_dir, sp->host_name);
        char host[4400];
        snprintf(host, sizeof(host), "%s/%s", f->mem_dir, sp->host_name);
        if (strchr(host, ':')) return err_msg(err, EINVAL, "state directory %s holds a ':'", f->env.state_dir);
        rc = sp->read_only ? add_bind(&f->ro, &f->nro, host, sp->inside)
                           : add_bind(&f->rw, &f->nrw, host, sp->inside);
        if (rc < 0) return err_set(err, -rc, "memory binds");
    }
    return 0;
}

static int plan_skills(sfiles_t *f, json_t *skills, shed_err *err)
{
    size_t n = json_array_size(skills);
    if (!n) return 0;
    if (n > MAX_SKILLS) {
        slog(LOG_WARN, f->session_id, f->work_id, "agent has %zu skills; only the first %d are loaded", n,
             MAX_SKILLS);
        n = MAX_SKILLS;
    }
    f->skills = calloc(n, sizeof(*f->skills));
    if (!f->skills) return err_set(err, ENOMEM, "skills");
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(skills, i);
        const char *id = jstr(s, "skill_id");
        const char *v = jstr(s, "version");
        if (!id || !*id) {
            slog(LOG_WARN, f->session_id, f->work_id, "skill %zu has no skill_id; skipping it", i);
            continue;
        }
        skill_t *sk = &f->skills[f->nskills++];
        sk->skill_id = strdup(id);
        sk->requested = strdup(v && *v ? v : "latest");
        if (!sk->skill_id || !sk->requested) return err_set(err, ENOMEM, "skills");
    }
    return 0;
}

int sfiles_new(const sfiles_env *env, const char *session_id, const char *work_id, json_t *session,
               api_cred cred, bool have_token, sfiles_t **out, shed_err *err)
{
    *out = NULL;
    json_t *agent = json_object_get(session, "agent");
    json_t *skills = json_is_object(agent) ? json_object_get(agent, "skills") : NULL;
    json_t *resources = json_object_get(session, "resources");
    bool has_mem = false;
    size_t i;
    json_t *r;
    json_array_foreach(resources, i, r)
    if (json_is_object(r) && jstr(r, "type") && !strcmp(jstr(r, "type"), "memory_store")) has_mem = true;
    if (!json_array_size(skills) && !has_mem) return 0;
    if (has_mem && !have_token)
        return err_msg(err, EACCES,
                       "cannot mount the session's memories: the work item carried no sessions token; the "
                       "memory endpoints reject the environment key, so the server must issue a per-item "
                       "secret carrying sessions_token");
    sfiles_t *f = calloc(1, sizeof(*f));
    if (!f) return err_set(err, ENOMEM, "session files");
    f->env = *env;
    f->skills_fd = f->mem_fd = -1;
    f->uid = (uid_t)-1;
    f->gid = (gid_t)-1;
    snprintf(f->session_id, sizeof(f->session_id), "%s", session_id);
    snprintf(f->work_id, sizeof(f->work_id), "%s", work_id);
    if (cred.token && !(f->cred_copy = strdup(cred.token))) {
        free(f);
        return err_set(err, ENOMEM, "session files");
    }
    f->cred.token = f->cred_copy;
    int rc = plan_skills(f, json_is_array(skills) ? skills : NULL, err);
    if (rc == 0) rc = plan_memory(f, json_is_array(resources) ? resources : NULL, err);
    if (rc < 0) {
        sfiles_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

const char *const *sfiles_binds(const sfiles_t *f, bool rw)
{
    if (!f) return NULL;
    return (const char *const *)(rw ? f->rw : f->ro);
}

/* ---------- callbacks, always from a fresh loop turn ---------- */

static void cb_fire(loop_t *l, void *arg)
{
    (void)l;
    sfiles_t *f = arg;
    f->cb_timer = 0;
    if (f->started && !f->ready_sent && !f->ending && f->skills_done && f->mstate != MEM_MOUNTING) {
        f->ready_sent = true;
        f->env.ready(f->env.arg, f->mount_rc, f->mount_msg);
        return; /* f may be freed by the callback's owner later, not now */
    }
    if (f->ending && !f->ended_sent && f->mstate == MEM_DONE && !f->job && !f->rm_job) {
        f->ended_sent = true;
        f->env.ended(f->env.arg);
        return;
    }
    if (f->ready_sent && !f->ending && f->mstate == MEM_IDLE) f->env.idle(f->env.arg);
}

static void cb_later(sfiles_t *f)
{
    if (!f->cb_timer) f->cb_timer = loop_timer(f->env.loop, 0, cb_fire, f);
}

static void maybe_ready(sfiles_t *f)
{
    if (f->started && !f->ready_sent && f->skills_done && f->mstate != MEM_MOUNTING) cb_later(f);
}

/* ---------- skills ---------- */

static void skill_failed(sfiles_t *f, skill_t *sk, const char *why)
{
    f->skills_failed++;
    slog(LOG_WARN, f->session_id, f->work_id, "failed to load skill %s (version %s): %s", sk->skill_id,
         sk->version ? sk->version : sk->requested, why);
    audit_ev(f, "skill.failed",
             json_pack("{s:s,s:s,s:s,s:s,s:s}", "session_id", f->session_id, "work_id", f->work_id,
                       "skill_id", sk->skill_id, "version", sk->version ? sk->version : sk->requested,
                       "error", why));
    f->cur++;
    skills_next(f);
}

static void job_work(void *arg)
{
    skill_job_t *j = arg;
    if (j->remove) {
        for (size_t i = 0; i < j->nremove; i++) {
            shed_err e = {0};
            if (tree_remove_at(j->parent_fd, j->remove[i], &e) < 0 && !j->rc) {
                j->rc = -e.code;
                j->err = e;
            }
        }
        return;
    }
    j->rc = skills_extract_mem(j->data, j->len, j->parent_fd, j->dir, &j->opts, &j->stats, &j->err);
}

static void job_free(skill_job_t *j)
{
    if (j->parent_fd >= 0) close(j->parent_fd);
    free(j->data);
    for (size_t i = 0; i < j->nremove; i++) free(j->remove[i]);
    free(j->remove);
    free(j);
}

static void extract_done(void *arg)
{
    skill_job_t *j = arg;
    sfiles_t *f = j->f;
    if (!f) {
        job_free(j);
        return;
    }
    f->job = NULL;
    skill_t *sk = &f->skills[f->cur];
    if (f->ending) {
        /* the item ended meanwhile: what landed goes with the others */
        if (j->rc == 0) sk->created = true;
        job_free(j);
        remove_skills(f);
        end_continue(f);
        return;
    }
    if (j->rc < 0) {
        char why[400];
        snprintf(why, sizeof(why), "%s", j->err.msg[0] ? j->err.msg : strerror(-j->rc));
        job_free(j);
        skill_failed(f, sk, why);
        return;
    }
    sk->created = true;
    f->skills_loaded++;
    slog(LOG_INFO, f->session_id, f->work_id,
         "skill %s version %s loaded into skills/%s (%u files, %u dirs, %llu bytes%s%s)", sk->skill_id,
         sk->version, sk->dir, j->stats.files, j->stats.dirs, (unsigned long long)j->stats.bytes,
         j->stats.skipped ? ", links/devices skipped: " : "", j->stats.skipped ? "yes" : "");
    audit_ev(f, "skill.loaded",
             json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:I,s:i}", "session_id", f->session_id, "work_id", f->work_id,
                       "skill_id", sk->skill_id, "version", sk->version, "dir", sk->dir, "files",
                       (int)j->stats.files, "bytes", (json_int_t)j->stats.bytes, "skipped", (int)j->stats.skipped));
    job_free(j);
    f->cur++;
    skills_next(f);
}

static void on_content(const api_result *r, void *arg)
{
    sfiles_t *f = arg;
    f->skill_call = NULL;
    skill_t *sk = &f->skills[f->cur];
    if (!r->ok) {
        skill_failed(f, sk, r->msg);
        return;
    }
    if (!r->body || !r->body_len) {
        skill_failed(f, sk, "the skill's content is empty");
        return;
    }
    skill_job_t *j = calloc(1, sizeof(*j));
    if (!j || !(j->data = malloc(r->body_len))) {
        free(j);
        skill_failed(f, sk, "out of memory");
        return;
    }
    memcpy(j->data, r->body, r->body_len);
    j->len = r->body_len;
    j->f = f;
    snprintf(j->dir, sizeof(j->dir), "%s", sk->dir);
    skills_opts_default(&j->opts);
    j->opts.owner_uid = f->uid;
    j->opts.owner_gid = f->gid;
    j->parent_fd = fcntl(f->skills_fd, F_DUPFD_CLOEXEC, 0);
    if (j->parent_fd < 0 || pool_submit(f->env.pool, job_work, extract_done, j) < 0) {
        job_free(j);
        skill_failed(f, sk, "could not start the extraction");
        return;
    }
    f->job = j;
}

static void on_version(const api_result *r, void *arg)
{
    sfiles_t *f = arg;
    f->skill_call = NULL;
    skill_t *sk = &f->skills[f->cur];
    if (!r->ok || !json_is_object(r->json)) {
        skill_failed(f, sk, r->ok ? "malformed skill version" : r->msg);
        return;
    }
    const char *name = jstr(r->json, "name");
    shed_err err = {0};
    if (skills_dir_name(name ? name : "", sk->skill_id, sk->dir, sizeof(sk->dir), &err) < 0) {
        skill_failed(f, sk, err.msg);
        return;
    }
    for (size_t i = 0; i < f->cur; i++)
        if (f->skills[i].created && !strcmp(f->skills[i].dir, sk->dir)) {
            /* The reference extracts over it (the later skill wins); it is
             * then removed once, at teardown. */
            slog(LOG_WARN, f->session_id, f->work_id, "skill %s replaces skill %s in skills/%s",
                 sk->skill_id, f->skills[i].skill_id, sk->dir);
            f->skills[i].created = false;
        }
    _cleanup_free_ char *path =
        path_fmt("/v1/skills/%s/versions/%s/content", sk->skill_id, sk->version, NULL);
    api_req_opts o = {.accept = "application/binary", .beta = SKILLS_BETA, .max_body = MAX_ARCHIVE_BYTES};
    if (path)
        f->skill_call = api_request_ex(f->env.api, "GET", path, NULL, NULL, f->cred, &o, DOWNLOAD_MS,
                                       on_content, f, &err);
    if (!f->skill_call) skill_failed(f, sk, err.msg[0] ? err.msg : "out of memory");
}

static void get_version(sfiles_t *f)
{
    skill_t *sk = &f->skills[f->cur];
    shed_err err = {0};
    _cleanup_free_ char *path = path_fmt("/v1/skills/%s/versions/%s", sk->skill_id, sk->version, NULL);
    api_req_opts o = {.beta = SKILLS_BETA};
    if (path)
        f->skill_call =
            api_request_ex(f->env.api, "GET", path, NULL, NULL, f->cred, &o, CALL_MS, on_version, f, &err);
    if (!f->skill_call) skill_failed(f, sk, err.msg[0] ? err.msg : "out of memory");
}

static void list_versions(sfiles_t *f, const char *page);

static void on_versions(const api_result *r, void *arg)
{
    sfiles_t *f = arg;
    f->skill_call = NULL;
    skill_t *sk = &f->skills[f->cur];
    json_t *data = json_is_object(r->json) ? json_object_get(r->json, "data") : NULL;
    if (!r->ok || !json_is_array(data)) {
        skill_failed(f, sk, r->ok ? "malformed version list" : r->msg);
        return;
    }
    size_t i;
    json_t *v;
    json_array_foreach(data, i, v)
    {
        const char *ver = jstr(v, "version");
        if (!ver) ver = jstr(v, "id");
        if (ver) json_array_append_new(f->versions, json_string(ver));
    }
    const char *next = jstr(r->json, "next_page");
    if (next && *next && json_array_size(f->versions) < 20000 && ++sk->pages < MAX_VERSION_PAGES) {
        list_versions(f, next);
        return;
    }
    size_t n = json_array_size(f->versions);
    const char **vs = calloc(n ? n : 1, sizeof(*vs));
    if (!vs) {
        skill_failed(f, sk, "out of memory");
        return;
    }
    for (i = 0; i < n; i++) vs[i] = json_string_value(json_array_get(f->versions, i));
    char out[128];
    shed_err err = {0};
    int rc = skills_resolve_version(sk->requested, vs, n, out, sizeof(out), &err);
    free(vs);
    if (rc < 0) {
        skill_failed(f, sk, err.msg);
        return;
    }
    sk->version = strdup(out);
    if (!sk->version) {
        skill_failed(f, sk, "out of memory");
        return;
    }
    get_version(f);
}

static void list_versions(sfiles_t *f, const char *page)
{
    skill_t *sk = &f->skills[f->cur];
    shed_err err = {0};
    _cleanup_free_ char *path = path_fmt("/v1/skills/%s/versions", sk->skill_id, NULL, NULL);
    _cleanup_free_ char *q = NULL;
    _cleanup_free_ char *ep = page ? api_escape(page) : NULL;
    if (asprintf(&q, "limit=100%s%s", page ? "&page=" : "", ep ? ep : "") < 0) q = NULL;
    api_req_opts o = {.beta = SKILLS_BETA};
    if (path && q)
        f->skill_call =
            api_request_ex(f->env.api, "GET", path, q, NULL, f->cred, &o, CALL_MS, on_versions, f, &err);
    if (!f->skill_call) skill_failed(f, sk, err.msg[0] ? err.msg : "out of memory");
}

static void skills_next(sfiles_t *f)
{
    if (f->ending) return;
    if (f->cur >= f->nskills) {
        if (!f->skills_done && f->nskills)
            slog(LOG_INFO, f->session_id, f->work_id, "skills: %d loaded, %d failed", f->skills_loaded,
                 f->skills_failed);
        f->skills_done = true;
        maybe_ready(f);
        return;
    }
    skill_t *sk = &f->skills[f->cur];
    if (f->skills_fd < 0) {
        skill_failed(f, sk, "the workspace's skills/ directory could not be opened");
        return;
    }
    json_decref(f->versions);
    f->versions = json_array();
    if (skills_version_is_numeric(sk->requested)) {
        sk->version = strdup(sk->requested);
        if (!sk->version) {
            skill_failed(f, sk, "out of memory");
            return;
        }
        get_version(f);
        return;
    }
    list_versions(f, NULL);
}

/* <workspace>/skills, made (or opened, never through a link) and owned by the
 * sandbox user. */
static int open_skills_dir(sfiles_t *f, const char *workspace)
{
    _cleanup_close_ int ws = open(workspace, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (ws < 0) return -errno;
    if (mkdirat(ws, "skills", 0755) < 0 && errno != EEXIST) return -errno;
    int fd = openat(ws, "skills", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -errno;
    if ((f->uid != (uid_t)-1 || f->gid != (gid_t)-1) && fchown(fd, f->uid, f->gid) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    fchmod(fd, 0755);
    return fd;
}

/* ---------- memory: the remote over the worker's HTTP client ---------- */

static void mop_unlink(sfiles_t *f, mop_t *m)
{
    for (mop_t **pp = &f->mops; *pp; pp = &(*pp)->next)
        if (*pp == m) {
            *pp = m->next;
            return;
        }
}

static void on_mop(const api_result *r, void *arg)
{
    mop_t *m = arg;
    sfiles_t *f = m->f;
    memory_req_t *req = m->req;
    mop_unlink(f, m);
    free(m);
    if (r->status == 0 || (!r->ok && !r->json)) {
        req->status = (int)r->status;
        snprintf(req->error, sizeof(req->error), "%s", r->msg);
    } else {
        memory_req_set_json(req, (int)r->status, r->json);
        if (!r->ok && !req->error[0]) snprintf(req->error, sizeof(req->error), "%s", r->msg);
    }
    memory_req_done(req);
}

static int mop_start(sfiles_t *f, memory_req_t *req, const char *method, const char *path, const char *query,
                     json_t *body)
{
    mop_t *m = calloc(1, sizeof(*m));
    if (!m) return -ENOMEM;
    m->f = f;
    m->req = req;
    api_req_opts o = {.beta = MEMORY_BETA};
    shed_err err = {0};
    m->call = api_request_ex(f->env.api, method, path, query, body, f->cred, &o, CALL_MS, on_mop, m, &err);
    if (!m->call) {
        free(m);
        return -EIO;
    }
    m->next = f->mops;
    f->mops = m;
    return 0;
}

static int rem_list(void *ctx, memory_req_t *req)
{
    sfiles_t *f = ctx;
    _cleanup_free_ char *path = path_fmt("/v1/memory_stores/%s/memories", req->store_id, NULL, NULL);
    _cleanup_free_ char *pg = req->page ? api_escape(req->page) : NULL;
    _cleanup_free_ char *pp = req->path_prefix ? api_escape(req->path_prefix) : NULL;
    _cleanup_free_ char *q = NULL;
    if (asprintf(&q, "view=%s&limit=%d%s%s%s%s", req->view ? req->view : "basic", req->limit,
                 pg ? "&page=" : "", pg ? pg : "", pp ? "&path_prefix=" : "", pp ? pp : "") < 0)
        q = NULL;
    if (!path || !q) return -ENOMEM;
    return mop_start(f, req, "GET", path, q, NULL);
}

static int rem_get(void *ctx, memory_req_t *req)
{
    sfiles_t *f = ctx;
    _cleanup_free_ char *path = path_fmt("/v1/memory_stores/%s/memories/%s", req->store_id, req->memory_id, NULL);
    if (!path) return -ENOMEM;
    return mop_start(f, req, "GET", path, "view=full", NULL);
}

static json_t *content_json(const memory_req_t *req)
{
    return json_stringn_nocheck(req->content ? req->content : "", req->content ? req->content_len : 0);
}

static int rem_create(void *ctx, memory_req_t *req)
{
    sfiles_t *f = ctx;
    _cleanup_free_ char *path = path_fmt("/v1/memory_stores/%s/memories", req->store_id, NULL, NULL);
    _cleanup_json_ json_t *body = json_pack("{s:s,s:o}", "path", req->path ? req->path : "", "content",
                                            content_json(req));
    if (!path || !body) return -ENOMEM;
    return mop_start(f, req, "POST", path, NULL, body);
}

static int rem_update(void *ctx, memory_req_t *req)
{
    sfiles_t *f = ctx;
    _cleanup_free_ char *path = path_fmt("/v1/memory_stores/%s/memories/%s", req->store_id, req->memory_id, NULL);
    _cleanup_json_ json_t *body = json_pack("{s:o}", "content", content_json(req));
    if (body && req->sha)
        json_object_set_new(body, "precondition",
                            json_pack("{s:s,s:s}", "type", "content_sha256", "content_sha256", req->sha));
    if (!path || !body) return -ENOMEM;
    return mop_start(f, req, "POST", path, NULL, body);
}

static int rem_del(void *ctx, memory_req_t *req)
{
    sfiles_t *f = ctx;
    _cleanup_free_ char *path = path_fmt("/v1/memory_stores/%s/memories/%s", req->store_id, req->memory_id, NULL);
    _cleanup_free_ char *q = NULL;
    if (req->sha && asprintf(&q, "expected_content_sha256=%s", req->sha) < 0) q = NULL;
    if (!path || (req->sha && !q)) return -ENOMEM;
    return mop_start(f, req, "DELETE", path, q, NULL);
}

static void rem_cancel(void *ctx, memory_req_t *req)
{
    sfiles_t *f = ctx;
    for (mop_t *m = f->mops; m; m = m->next)
        if (m->req == req) {
            mop_unlink(f, m);
            api_cancel(m->call);
            free(m);
            return;
        }
}

/* ---------- memory: driving the engine ---------- */

static void run_fire(loop_t *l, void *arg)
{
    (void)l;
    sfiles_t *f = arg;
    f->run_timer = 0;
    mem_run(f);
}

static void wake(void *ctx)
{
    sfiles_t *f = ctx;
    if (!f->run_timer) f->run_timer = loop_timer(f->env.loop, 0, run_fire, f);
}

static void bound_clear(sfiles_t *f)
{
    if (f->bound_timer) loop_timer_cancel(f->env.loop, f->bound_timer);
    f->bound_timer = 0;
}

static void mount_finished(sfiles_t *f)
{
    bound_clear(f);
    int64_t now = clock_mono_ms();
    for (size_t k = 0; k < f->nstores; k++) {
        store_plan_t *sp = &f->stores[k];
        if (!sp->store) continue;
        shed_err err = {0};
        int rc = memory_store_mount_result(sp->store, &err);
        if (rc == 0) rc = memory_session_add(f->msess, sp->store, &err);
        if (rc == 0) {
            memory_store_stats_t st;
            memory_store_get_stats(sp->store, &st);
            slog(LOG_INFO, f->session_id, f->work_id, "memory store %s mounted at %s (%s, %u memories)",
                 sp->id, sp->inside, sp->access, st.pulled);
            audit_ev(f, "memory.mounted",
                     json_pack("{s:s,s:s,s:s,s:s,s:s,s:i}", "session_id", f->session_id, "work_id", f->work_id,
                               "memory_store_id", sp->id, "mount_path", sp->inside, "access", sp->access,
                               "memories", (int)st.pulled));
            sp->store = NULL; /* the session owns it now */
            continue;
        }
        slog(LOG_ERROR, f->session_id, f->work_id, "memory store %s: %s", sp->id, err.msg);
        audit_ev(f, "memory.failed", json_pack("{s:s,s:s,s:s,s:s}", "session_id", f->session_id, "work_id",
                                               f->work_id, "memory_store_id", sp->id, "error", err.msg));
        if (!f->mount_rc) {
            f->mount_rc = rc < 0 ? rc : -EIO;
            snprintf(f->mount_msg, sizeof(f->mount_msg), "%s", err.msg);
        }
        /* A half-downloaded folder is removed; never synced or flushed. */
        shed_err derr = {0};
        memory_store_dispose(sp->store, &derr);
        memory_store_free(sp->store);
        sp->store = NULL;
    }
    memory_session_mounted(f->msess, now);
    f->mstate = MEM_IDLE;
    maybe_ready(f);
}

/* Store folders never mounted (the item ended first) or emptied: removed;
 * one the engine kept (a tampered marker with files in it) stays for the
 * operator, until the session's directory goes or the worker restarts. */
static void remove_empty_folders(sfiles_t *f)
{
    if (f->mem_fd < 0) return;
    for (size_t k = 0; k < f->nstores; k++) unlinkat(f->mem_fd, f->stores[k].host_name, AT_REMOVEDIR);
    char sdir[4200];
    snprintf(sdir, sizeof(sdir), "%s/sessions/%s", f->env.state_dir, f->session_id);
    _cleanup_close_ int sfd = open(sdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd >= 0) unlinkat(sfd, "memory", AT_REMOVEDIR);
}

static void dispose_all(sfiles_t *f)
{
    for (size_t k = 0; k < f->nstores; k++)
        if (f->stores[k].store) {
            shed_err err = {0};
            memory_store_dispose(f->stores[k].store, &err);
            memory_store_free(f->stores[k].store);
            f->stores[k].store = NULL;
        }
    if (f->msess) memory_session_dispose_free(f->msess);
    f->msess = NULL;
    remove_empty_folders(f);
}

static void log_store_stats(sfiles_t *f, const char *what)
{
    for (size_t i = 0; f->msess && i < memory_session_count(f->msess); i++) {
        memory_store_t *s = memory_session_store(f->msess, i);
        memory_store_stats_t st;
        memory_store_get_stats(s, &st);
        slog(LOG_INFO, f->session_id, f->work_id,
             "memory store %s after %s: pulled %u, pushed %u, created %u, deleted remotely %u, deleted "
             "locally %u, conflicts %u, refused %u, unsent %u",
             memory_store_id(s), what, st.pulled, st.pushed, st.created, st.deleted_remote, st.deleted_local,
             st.conflicts, st.refused, st.unsent);
    }
}

static void end_step(sfiles_t *f);

static void mem_run(sfiles_t *f)
{
    int64_t now = clock_mono_ms();
    switch (f->mstate) {
    case MEM_MOUNTING: {
        int busy = 0;
        for (size_t k = 0; k < f->nstores; k++)
            if (f->stores[k].store) busy |= memory_store_run(f->stores[k].store, now);
        if (!busy) mount_finished(f);
        return;
    }
    case MEM_SYNCING:
        if (memory_session_run(f->msess, now)) return;
        f->mstate = MEM_IDLE;
        slog(LOG_DEBUG, f->session_id, f->work_id, "memory sync done");
        cb_later(f);
        return;
    case MEM_FINISHING:
    case MEM_FLUSHING:
        if (memory_session_run(f->msess, now)) return;
        end_step(f);
        return;
    default:
        if (f->msess) memory_session_run(f->msess, now);
        return;
    }
}

static void on_bound(loop_t *l, void *arg)
{
    (void)l;
    sfiles_t *f = arg;
    f->bound_timer = 0;
    if (f->mstate == MEM_MOUNTING) {
        slog(LOG_ERROR, f->session_id, f->work_id, "mounting the memory stores took more than %d s; cut off",
             MOUNT_MS / 1000);
        for (size_t k = 0; k < f->nstores; k++)
            if (f->stores[k].store) memory_store_abort(f->stores[k].store);
        mount_finished(f);
        return;
    }
    if (f->mstate == MEM_FINISHING || f->mstate == MEM_FLUSHING) {
        slog(LOG_WARN, f->session_id, f->work_id,
             f->mstate == MEM_FINISHING
                 ? "final memory sync cut off after %d ms; the flush that follows still uploads changed files"
                 : "memory flush cut off after %d ms; changed files it had not uploaded yet are not saved",
             MEMORY_FLUSH_TIMEOUT_MS);
        memory_session_abort(f->msess);
        end_step(f);
    }
}

void sfiles_start(sfiles_t *f, const char *workspace, uid_t uid, gid_t gid)
{
    f->started = true;
    f->uid = uid;
    f->gid = gid;
    /* skills */
    if (f->nskills) {
        int fd = open_skills_dir(f, workspace);
        if (fd < 0)
            slog(LOG_WARN, f->session_id, f->work_id, "skills: cannot use the workspace's skills/ directory: %s",
                 strerror(-fd));
        f->skills_fd = fd;
    }
    /* memory */
    if (f->nstores) {
        shed_err err = {0};
        int64_t now = clock_mono_ms();
        int64_t iv = f->env.sync_interval_ms ? f->env.sync_interval_ms : MEMORY_DEFAULT_SYNC_INTERVAL_MS;
        if (memory_session_new(&f->msess, iv, now, &err) < 0) {
            f->mount_rc = err.code ? -err.code : -EINVAL;
            snprintf(f->mount_msg, sizeof(f->mount_msg), "%s", err.msg);
        } else {
            memory_remote_t remote = {.ctx = f,
                                      .list = rem_list,
                                      .get = rem_get,
                                      .create = rem_create,
                                      .update = rem_update,
                                      .del = rem_del,
                                      .cancel = rem_cancel};
            f->mstate = MEM_MOUNTING;
            for (size_t k = 0; k < f->nstores; k++) {
                store_plan_t *sp = &f->stores[k];
                memory_store_config_t cfg = {.memory_store_id = sp->id,
                                             .read_only = sp->read_only,
                                             .delete_mode = f->env.delete_mode,
                                             .owner_uid = uid,
                                             .owner_gid = gid,
                                             .session_id = f->session_id,
                                             .adopt_empty_dir = 1};
                shed_err merr = {0};
                if (memory_store_mount(&sp->store, &cfg, &remote, f->mem_fd, sp->host_name, now, &merr) < 0) {
                    slog(LOG_ERROR, f->session_id, f->work_id, "memory store %s: %s", sp->id, merr.msg);
                    if (!f->mount_rc) {
                        f->mount_rc = merr.code ? -merr.code : -EIO;
                        snprintf(f->mount_msg, sizeof(f->mount_msg), "%s", merr.msg);
                    }
                    sp->store = NULL;
                    continue;
                }
                memory_store_set_wake(sp->store, wake, f);
            }
            f->bound_timer = loop_timer(f->env.loop, MOUNT_MS, on_bound, f);
            wake(f);
        }
    }
    skills_next(f);
}

bool sfiles_busy(const sfiles_t *f)
{
    if (!f || !f->started) return false; /* never started: no sandbox, nothing to wait for */
    if (!f->ready_sent) return true;
    return f->mstate == MEM_SYNCING;
}

bool sfiles_after_call(sfiles_t *f)
{
    if (!f || !f->msess || f->mstate != MEM_IDLE || f->ending) return false;
    if (!memory_session_sync_if_due(f->msess, clock_mono_ms())) return false;
    f->mstate = MEM_SYNCING;
    wake(f);
    return true;
}

/* ---------- the end ---------- */

static void removal_done(void *arg)
{
    skill_job_t *j = arg;
    sfiles_t *f = j->f;
    if (f) {
        f->rm_job = NULL;
        if (j->rc < 0)
            slog(LOG_WARN, f->session_id, f->work_id, "failed to clean up a skill: %s", j->err.msg);
        else
            slog(LOG_INFO, f->session_id, f->work_id, "skills removed");
        end_continue(f);
    }
    job_free(j);
}

static void remove_skills(sfiles_t *f)
{
    if (f->skills_fd < 0 || f->rm_job || f->job) return;
    skill_job_t *j = calloc(1, sizeof(*j));
    if (!j) return;
    j->parent_fd = -1;
    j->remove = calloc(f->nskills ? f->nskills : 1, sizeof(char *));
    for (size_t i = 0; j->remove && i < f->nskills; i++)
        if (f->skills[i].created && (j->remove[j->nremove] = strdup(f->skills[i].dir))) {
            j->nremove++;
            f->skills[i].created = false;
        }
    if (!j->remove || !j->nremove || (j->parent_fd = fcntl(f->skills_fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        job_free(j);
        return;
    }
    j->f = f;
    if (pool_submit(f->env.pool, job_work, removal_done, j) < 0) {
        job_free(j);
        return;
    }
    f->rm_job = j;
}

/* finish (when clean) -> flush -> dispose. */
static void end_step(sfiles_t *f)
{
    bound_clear(f);
    int64_t now = clock_mono_ms();
    if (f->mstate == MEM_FINISHING) log_store_stats(f, "the final sync");
    if (f->mstate == MEM_IDLE && f->clean) {
        shed_err err = {0};
        if (memory_session_finish(f->msess, now, &err) == 0) {
            f->mstate = MEM_FINISHING;
            f->bound_timer = loop_timer(f->env.loop, MEMORY_FLUSH_TIMEOUT_MS, on_bound, f);
            wake(f);
            return;
        }
    }
    if (f->mstate == MEM_IDLE || f->mstate == MEM_FINISHING) {
        memory_session_flush(f->msess, now);
        f->mstate = MEM_FLUSHING;
        f->bound_timer = loop_timer(f->env.loop, MEMORY_FLUSH_TIMEOUT_MS, on_bound, f);
        wake(f);
        return;
    }
    /* flushed (or cut off): remove the folders */
    if (f->mstate == MEM_FLUSHING) log_store_stats(f, "the flush");
    dispose_all(f);
    f->mstate = MEM_DONE;
    end_continue(f);
}

static void end_continue(sfiles_t *f)
{
    if (f->ending && f->mstate == MEM_DONE && !f->job && !f->rm_job) cb_later(f);
}

void sfiles_end(sfiles_t *f, bool clean)
{
    if (f->ending) return;
    f->ending = true;
    f->clean = clean;
    /* set-up still running: stop it (a skill being extracted finishes on its
     * own thread and is then removed with the others) */
    if (f->skill_call) {
        api_cancel(f->skill_call);
        f->skill_call = NULL;
    }
    remove_skills(f); /* after a running extraction, if any (extract_done) */
    switch (f->mstate) {
    case MEM_MOUNTING:
        bound_clear(f);
        for (size_t k = 0; k < f->nstores; k++)
            if (f->stores[k].store) memory_store_abort(f->stores[k].store);
        dispose_all(f);
        f->mstate = MEM_DONE;
        break;
    case MEM_SYNCING:
        memory_session_abort(f->msess);
        f->mstate = MEM_IDLE;
        /* fall through */
    case MEM_IDLE:
        end_step(f);
        return;
    default:
        dispose_all(f);
        f->mstate = MEM_DONE;
        break;
    }
    end_continue(f);
}

void sfiles_free(sfiles_t *f)
{
    if (!f) return;
    if (f->skill_call) api_cancel(f->skill_call);
    if (f->job) f->job->f = NULL;
    if (f->run_timer) loop_timer_cancel(f->env.loop, f->run_timer);
    if (f->cb_timer) loop_timer_cancel(f->env.loop, f->cb_timer);
    bound_clear(f);
    /* pool jobs still running finish on their own and then forget f */
    if (f->rm_job) f->rm_job->f = NULL;
    if (f->msess) memory_session_abort(f->msess);
    while (f->mops) {
        mop_t *m = f->mops;
        f->mops = m->next;
        api_cancel(m->call);
        free(m);
    }
    dispose_all(f);
    for (size_t i = 0; i < f->nskills; i++) {
        free(f->skills[i].skill_id);
        free(f->skills[i].requested);
        free(f->skills[i].version);
        free(f->skills[i].name);
    }
    free(f->skills);
    json_decref(f->versions);
    for (size_t k = 0; k < f->nstores; k++) {
        free(f->stores[k].id);
        free(f->stores[k].access);
        free(f->stores[k].inside);
    }
    for (size_t i = 0; i < f->nro; i++) free(f->ro[i]);
    for (size_t i = 0; i < f->nrw; i++) free(f->rw[i]);
    free(f->ro);
    free(f->rw);
    if (f->skills_fd >= 0) close(f->skills_fd);
    if (f->mem_fd >= 0) close(f->mem_fd);
    free(f->mem_dir);
    if (f->cred_copy) explicit_bzero(f->cred_copy, strlen(f->cred_copy));
    free(f->cred_copy);
    free(f);
}

int sfiles_sweep(const char *state_dir)
{
    char sdir[4200];
    snprintf(sdir, sizeof(sdir), "%s/sessions", state_dir);
    _cleanup_close_ int sfd = open(sdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd < 0) return 0;
    int dfd = fcntl(sfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0) close(dfd);
        return 0;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        _cleanup_close_ int one = openat(sfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (one < 0 || fstatat(one, "memory", &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
        shed_err err = {0};
        if (tree_remove_at(one, "memory", &err) < 0)
            slog(LOG_WARN, e->d_name, NULL, "remove the memory folders a previous worker left: %s", err.msg);
        else
            n++;
    }
    closedir(d);
    return n;
}
