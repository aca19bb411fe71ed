/* Sandbox policy: a JSON file parsed and fully validated into a struct
 * before anything is created. Unknown keys and wrong types are errors that
 * name the key. Only the operator's policy file chooses mounts, limits and
 * network; session metadata and agent input never reach this parser.
 * Format: docs/policy.md. */
#include "base/cleanup.h"
#include "base/crypto.h"
#include "base/json.h"
#include "sandbox/internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLICY_MAX_BYTES (1 << 20)
#define POLICY_MAX_LIST  256

int sandbox_parse_size(const char *s, uint64_t *out)
{
    if (!s || !*s || !isdigit((unsigned char)s[0])) return -EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return -EINVAL;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: return -EINVAL;
    }
    if (shift && (*end == 'i' || *end == 'I')) end++;
    if (shift && (*end == 'b' || *end == 'B')) end++;
    if (*end) return -EINVAL;
    if (shift && v > (~0ULL >> shift)) return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

/* Checks obj's keys against a NULL-terminated list; the error names the key. */
static int only_keys(json_t *obj, const char *where, const char *const *allowed, shed_err *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(key, *a)) ok = 1;
        if (!ok)
            return err_msg(err, EINVAL, "policy: unknown key '%s%s%s'", where, *where ? "." : "",
                           key);
    }
    return 0;
}

static int get_size(json_t *obj, const char *where, const char *key, uint64_t *out, shed_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v) && sandbox_parse_size(json_string_value(v), out) == 0) return 0;
    return err_msg(err, EINVAL,
                   "policy: '%s.%s' must be a byte count (integer, or a string like \"512M\")",
                   where, key);
}

static int get_uint(json_t *obj, const char *where, const char *key, uint64_t *out, shed_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return err_msg(err, EINVAL, "policy: '%s.%s' must be a non-negative integer", where, key);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_seconds(json_t *obj, const char *where, const char *key, int64_t *ms, shed_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1e9)
        return err_msg(err, EINVAL, "policy: '%s.%s' must be a number of seconds (>= 0)", where,
                       key);
    *ms = (int64_t)llround(json_number_value(v) * 1000.0);
    return 0;
}

static bool path_ok(const char *p)
{
    if (!p || p[0] != '/' || strlen(p) >= 4096) return false;
    /* no "..", no ".", no empty components, no glob characters */
    for (const char *c = p; *c; c++)
        if (*c == '*' || *c == '?' || *c == '[' || *c == '\n') return false;
    const char *s = p;
    while (*s) {
        while (*s == '/') s++;
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return false;
        s += n;
    }
    return true;
}

/* Paths inside the sandbox that the policy may not mount over. */
static bool reserved_target(const char *t)
{
    static const char *const R[] = {"/", "/proc", "/dev", "/etc", "/usr", "/tmp", NULL};
    size_t n = strlen(t);
    while (n > 1 && t[n - 1] == '/') n--;
    for (int i = 0; R[i]; i++)
        if (strlen(R[i]) == n && !strncmp(t, R[i], n)) return true;
    return !strncmp(t, "/proc/", 6) || !strncmp(t, "/dev/", 5);
}

static int str_list(json_t *obj, const char *where, const char *key, bool paths, char ***out,
                    shed_err *err)
{
    json_t *arr = json_object_get(obj, key);
    if (!arr || json_is_null(arr)) return 0;
    if (!json_is_array(arr))
        return err_msg(err, EINVAL, "policy: '%s.%s' must be an array of strings", where, key);
    size_t n = json_array_size(arr);
    if (n > POLICY_MAX_LIST)
        return err_msg(err, EINVAL, "policy: '%s.%s' has %zu entries, at most %d", where, key, n,
                       POLICY_MAX_LIST);
    char **l = calloc(n + 1, sizeof(char *));
    if (!l) return err_set(err, ENOMEM, "policy");
    *out = l;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, i);
        if (!json_is_string(e))
            return err_msg(err, EINVAL, "policy: '%s.%s[%zu]' must be a string", where, key, i);
        const char *s = json_string_value(e);
        if (paths && !path_ok(s))
            return err_msg(err, EINVAL,
                           "policy: '%s.%s[%zu]' (\"%s\") must be an absolute path without '.', "
                           "'..' or glob characters (globs are not supported)",
                           where, key, i, s);
        l[i] = strdup(s);
        if (!l[i]) return err_set(err, ENOMEM, "policy");
    }
    return 0;
}

static void free_list(char **l)
{
    if (!l) return;
    for (char **p = l; *p; p++) free(*p);
    free(l);
}

void sandbox_policy_free(sandbox_policy *p)
{
    if (!p) return;
    json_decref(p->doc);
    for (size_t i = 0; i < p->nmounts; i++) {
        free(p->mounts[i].source);
        free(p->mounts[i].target);
    }
    free(p->mounts);
    free(p->rootfs);
    free_list(p->env);
    free_list(p->deny_read);
    free_list(p->deny_write);
    free(p->bpf);
    free(p);
}

static void cleanup_policyp(sandbox_policy **p)
{
    sandbox_policy_free(*p);
}

static int add_mount(sandbox_policy *p, const char *src, const char *dst, bool rw, shed_err *err)
{
    sandbox_mount *m = realloc(p->mounts, (p->nmounts + 1) * sizeof(*m));
    if (!m) return err_set(err, ENOMEM, "policy");
    p->mounts = m;
    m[p->nmounts].source = strdup(src);
    m[p->nmounts].target = strdup(dst);
    m[p->nmounts].writable = rw;
    p->nmounts++;
    if (!m[p->nmounts - 1].source || !m[p->nmounts - 1].target)
        return err_set(err, ENOMEM, "policy");
    return 0;
}

int sandbox_policy_network_check(json_t *net, shed_err *err)
{
    if (!json_is_object(net)) return err_msg(err, EINVAL, "policy: 'network' must be an object");
    static const char *const K[] = {"allowedDomains", "deniedDomains", "staticHosts",
                                    "allowCidrs", NULL};
    int rc = only_keys(net, "network", K, err);
    if (rc < 0) return rc;
    static const char *const LISTS[] = {"allowedDomains", "deniedDomains", "allowCidrs"};
    for (size_t i = 0; i < ARRAY_SIZE(LISTS); i++) {
        json_t *a = json_object_get(net, LISTS[i]);
        if (!a || json_is_null(a)) continue;
        if (!json_is_array(a))
            return err_msg(err, EINVAL, "policy: 'network.%s' must be an array of strings",
                           LISTS[i]);
        size_t j;
        json_t *e;
        json_array_foreach(a, j, e) {
            if (!json_is_string(e) || !json_string_length(e))
                return err_msg(err, EINVAL, "policy: 'network.%s[%zu]' must be a non-empty string",
                               LISTS[i], j);
        }
    }
    json_t *sh = json_object_get(net, "staticHosts");
    if (sh && !json_is_null(sh)) {
        if (!json_is_object(sh))
            return err_msg(err, EINVAL, "policy: 'network.staticHosts' must be an object");
        const char *k;
        json_t *v;
        json_object_foreach(sh, k, v) {
            if (!json_is_string(v))
                return err_msg(err, EINVAL, "policy: 'network.staticHosts.%s' must be a string", k);
        }
    }
    return 0;
}

static int parse_limits(sandbox_policy *p, json_t *l, shed_err *err)
{
    if (!json_is_object(l)) return err_msg(err, EINVAL, "policy: 'limits' must be an object");
    static const char *const K[] = {"memoryMax",  "pidsMax",       "cpus",
                                    "nofile",     "fileSizeMax",   "tmpSize",
                                    "workspaceMax", "workspaceFilesMax", "timeoutSeconds",
                                    "commandTimeoutSeconds", NULL};
    int rc = only_keys(l, "limits", K, err);
    if (rc < 0) return rc;
    if ((rc = get_size(l, "limits", "memoryMax", &p->memory_max, err)) < 0) return rc;
    if ((rc = get_uint(l, "limits", "pidsMax", &p->pids_max, err)) < 0) return rc;
    if ((rc = get_uint(l, "limits", "nofile", &p->nofile, err)) < 0) return rc;
    if ((rc = get_size(l, "limits", "fileSizeMax", &p->fsize_max, err)) < 0) return rc;
    if ((rc = get_size(l, "limits", "tmpSize", &p->tmp_size, err)) < 0) return rc;
    if ((rc = get_size(l, "limits", "workspaceMax", &p->workspace_max, err)) < 0) return rc;
    if ((rc = get_uint(l, "limits", "workspaceFilesMax", &p->workspace_files_max, err)) < 0) return rc;
    if ((rc = get_seconds(l, "limits", "timeoutSeconds", &p->timeout_ms, err)) < 0) return rc;
    if ((rc = get_seconds(l, "limits", "commandTimeoutSeconds", &p->command_timeout_ms, err)) < 0)
        return rc;
    json_t *c = json_object_get(l, "cpus");
    if (c && !json_is_null(c)) {
        if (!json_is_number(c) || json_number_value(c) < 0 || json_number_value(c) > 4096)
            return err_msg(err, EINVAL, "policy: 'limits.cpus' must be a number of CPUs (e.g. 1.5)");
        p->cpus = json_number_value(c);
    }
    if (p->memory_max && p->memory_max < (8u << 20))
        return err_msg(err, EINVAL, "policy: 'limits.memoryMax' must be at least 8M");
    if (p->pids_max && p->pids_max < 8)
        return err_msg(err, EINVAL, "policy: 'limits.pidsMax' must be at least 8");
    if (p->nofile < 16 || p->nofile > (1 << 20))
        return err_msg(err, EINVAL, "policy: 'limits.nofile' must be between 16 and 1048576");
    if (p->workspace_files_max < 100 || p->workspace_files_max > (1ull << 32))
        return err_msg(err, EINVAL,
                       "policy: 'limits.workspaceFilesMax' must be between 100 and 4294967296 "
                       "(files, directories and links in the workspace)");
    return 0;
}

static int parse_mounts(sandbox_policy *p, json_t *arr, shed_err *err)
{
    if (!json_is_array(arr)) return err_msg(err, EINVAL, "policy: 'mounts' must be an array");
    if (json_array_size(arr) > POLICY_MAX_LIST)
        return err_msg(err, EINVAL, "policy: 'mounts' has too many entries");
    size_t i;
    json_t *m;
    json_array_foreach(arr, i, m) {
        char where[32];
        snprintf(where, sizeof(where), "mounts[%zu]", i);
        if (!json_is_object(m)) return err_msg(err, EINVAL, "policy: '%s' must be an object", where);
        static const char *const K[] = {"source", "target", "writable", NULL};
        int rc = only_keys(m, where, K, err);
        if (rc < 0) return rc;
        json_t *s = json_object_get(m, "source"), *t = json_object_get(m, "target"),
               *w = json_object_get(m, "writable");
        if (!json_is_string(s) || !path_ok(json_string_value(s)))
            return err_msg(err, EINVAL, "policy: '%s.source' must be an absolute host path", where);
        if (t && !json_is_null(t) && (!json_is_string(t) || !path_ok(json_string_value(t))))
            return err_msg(err, EINVAL, "policy: '%s.target' must be an absolute path", where);
        if (w && !json_is_null(w) && !json_is_boolean(w))
            return err_msg(err, EINVAL, "policy: '%s.writable' must be a boolean", where);
        const char *tgt = t && json_is_string(t) ? json_string_value(t) : json_string_value(s);
        if (reserved_target(tgt))
            return err_msg(err, EINVAL, "policy: '%s.target' (\"%s\") is reserved by shed", where,
                           tgt);
        rc = add_mount(p, json_string_value(s), tgt, w && json_is_true(w), err);
        if (rc < 0) return rc;
    }
    return 0;
}

static int parse_filesystem(sandbox_policy *p, json_t *fs, shed_err *err)
{
    if (!json_is_object(fs)) return err_msg(err, EINVAL, "policy: 'filesystem' must be an object");
    static const char *const K[] = {"allowWrite", "denyRead", "denyWrite", NULL};
    int rc = only_keys(fs, "filesystem", K, err);
    if (rc < 0) return rc;
    char **allow = NULL;
    rc = str_list(fs, "filesystem", "allowWrite", true, &allow, err);
    for (char **a = allow; rc == 0 && a && *a; a++) {
        if (reserved_target(*a))
            rc = err_msg(err, EINVAL, "policy: 'filesystem.allowWrite' entry \"%s\" is reserved", *a);
        else
            rc = add_mount(p, *a, *a, true, err);
    }
    free_list(allow);
    if (rc < 0) return rc;
    if ((rc = str_list(fs, "filesystem", "denyRead", true, &p->deny_read, err)) < 0) return rc;
    if ((rc = str_list(fs, "filesystem", "denyWrite", true, &p->deny_write, err)) < 0) return rc;
    return 0;
}

static int parse_env(sandbox_policy *p, json_t *env, shed_err *err)
{
    if (!json_is_object(env))
        return err_msg(err, EINVAL, "policy: 'environment' must be an object of strings");
    size_t n = json_object_size(env), i = 0;
    if (n > POLICY_MAX_LIST) return err_msg(err, EINVAL, "policy: 'environment' is too large");
    p->env = calloc(n + 1, sizeof(char *));
    if (!p->env) return err_set(err, ENOMEM, "policy");
    const char *k;
    json_t *v;
    json_object_foreach(env, k, v) {
        bool ok = k[0] && !isdigit((unsigned char)k[0]);
        for (const char *c = k; *c; c++)
            if (!isalnum((unsigned char)*c) && *c != '_') ok = false;
        if (!ok) return err_msg(err, EINVAL, "policy: 'environment.%s' is not a valid name", k);
        if (!json_is_string(v))
            return err_msg(err, EINVAL, "policy: 'environment.%s' must be a string", k);
        if (asprintf(&p->env[i++], "%s=%s", k, json_string_value(v)) < 0)
            return err_set(err, ENOMEM, "policy");
    }
    return 0;
}

static int parse_errno(const char *s)
{
    static const struct {
        const char *n;
        int e;
    } E[] = {{"EPERM", EPERM}, {"EACCES", EACCES}, {"ENOSYS", ENOSYS},
             {"ENOTRECOVERABLE", ENOTRECOVERABLE}, {"EOWNERDEAD", EOWNERDEAD}};
    for (size_t i = 0; i < ARRAY_SIZE(E); i++)
        if (!strcmp(s, E[i].n)) return E[i].e;
    return -1;
}

int sandbox_policy_parse(json_t *doc, sandbox_policy **out, shed_err *err)
{
    if (!json_is_object(doc)) return err_msg(err, EINVAL, "policy: the document must be an object");
    __attribute__((cleanup(cleanup_policyp))) sandbox_policy *p = calloc(1, sizeof(*p));
    if (!p) return err_set(err, ENOMEM, "policy");
    p->doc = json_incref(doc);
    /* Defaults: every layer on; see docs/policy.md. */
    p->memory_max = 1ull << 30;
    p->pids_max = 512;
    p->cpus = 0;
    p->nofile = 1024;
    p->fsize_max = 1ull << 30;
    p->tmp_size = 256ull << 20;
    p->workspace_max = 1ull << 30;
    p->workspace_files_max = 1000000;
    p->deny_errno = EPERM;

    static const char *const K[] = {"network",     "filesystem", "limits", "mounts", "rootfs",
                                    "environment", "seccomp",    "waive",  "comment", NULL};
    int rc = only_keys(doc, "", K, err);
    if (rc < 0) return rc;
    json_t *v;
    if ((v = json_object_get(doc, "comment")) && !json_is_string(v))
        return err_msg(err, EINVAL, "policy: 'comment' must be a string");
    if ((v = json_object_get(doc, "network")) && !json_is_null(v)) {
        if ((rc = sandbox_policy_network_check(v, err)) < 0) return rc;
        p->network = v;
    }
    if ((v = json_object_get(doc, "limits")) && (rc = parse_limits(p, v, err)) < 0) return rc;
    if ((v = json_object_get(doc, "mounts")) && (rc = parse_mounts(p, v, err)) < 0) return rc;
    if ((v = json_object_get(doc, "filesystem")) && (rc = parse_filesystem(p, v, err)) < 0)
        return rc;
    if ((v = json_object_get(doc, "environment")) && (rc = parse_env(p, v, err)) < 0) return rc;
    if ((v = json_object_get(doc, "rootfs")) && !json_is_null(v)) {
        if (!json_is_string(v) || !path_ok(json_string_value(v)))
            return err_msg(err, EINVAL, "policy: 'rootfs' must be an absolute host path");
        if (!(p->rootfs = strdup(json_string_value(v)))) return err_set(err, ENOMEM, "policy");
    }
    if ((v = json_object_get(doc, "seccomp")) && !json_is_null(v)) {
        if (!json_is_object(v)) return err_msg(err, EINVAL, "policy: 'seccomp' must be an object");
        static const char *const SK[] = {"denyErrno", NULL};
        if ((rc = only_keys(v, "seccomp", SK, err)) < 0) return rc;
        json_t *e = json_object_get(v, "denyErrno");
        if (e && !json_is_null(e)) {
            if (!json_is_string(e) || (p->deny_errno = parse_errno(json_string_value(e))) < 0)
                return err_msg(err, EINVAL,
                               "policy: 'seccomp.denyErrno' must be one of EPERM, EACCES, ENOSYS, "
                               "ENOTRECOVERABLE, EOWNERDEAD");
        }
    }
    if ((v = json_object_get(doc, "waive")) && !json_is_null(v)) {
        if (!json_is_array(v)) return err_msg(err, EINVAL, "policy: 'waive' must be an array");
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            const char *s = json_is_string(e) ? json_string_value(e) : "";
            if (!strcmp(s, "cgroup"))
                p->waived |= SANDBOX_WAIVE_CGROUP;
            else if (!strcmp(s, "seccomp"))
                p->waived |= SANDBOX_WAIVE_SECCOMP;
            else
                return err_msg(err, EINVAL,
                               "policy: 'waive[%zu]' must be \"cgroup\" or \"seccomp\"", i);
        }
    }
    if (!(p->waived & SANDBOX_WAIVE_SECCOMP) && (rc = sandbox_seccomp_compile(p, err)) < 0)
        return rc;
    *out = steal_pointer(&p);
    return 0;
}

int sandbox_policy_load(const char *path, sandbox_policy **out, shed_err *err)
{
    if (!path) {
        _cleanup_json_ json_t *empty = json_object();
        return sandbox_policy_parse(empty, out, err);
    }
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f) return err_set(err, errno, "open policy %s", path);
    _cleanup_free_ char *data = malloc(POLICY_MAX_BYTES + 1);
    if (!data) return err_set(err, ENOMEM, "policy");
    size_t n = fread(data, 1, POLICY_MAX_BYTES + 1, f);
    if (ferror(f)) return err_set(err, EIO, "read policy %s", path);
    if (n > POLICY_MAX_BYTES)
        return err_msg(err, EFBIG, "policy %s: over the %d-byte limit", path, POLICY_MAX_BYTES);
    shed_err perr;
    _cleanup_json_ json_t *doc = json_parse(data, n, POLICY_MAX_BYTES, 32, &perr);
    if (!doc) return err_msg(err, EINVAL, "policy %s: %s", path, perr.msg);
    int rc = sandbox_policy_parse(doc, out, err);
    if (rc < 0) err_wrap(err, "%s", path);
    return rc;
}

/* Computed on first use: creating a sandbox does not need it. */
const char *sandbox_policy_digest(const sandbox_policy *cp)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    sandbox_policy *p = (sandbox_policy *)cp;
    pthread_mutex_lock(&lock);
    if (!p->digest[0]) {
        _cleanup_free_ char *canon = json_dumps(p->doc, JSON_COMPACT | JSON_SORT_KEYS);
        if (!canon || crypto_sha256_hex(canon, strlen(canon), p->digest) < 0) p->digest[0] = 0;
    }
    pthread_mutex_unlock(&lock);
    return p->digest;
}

json_t *sandbox_policy_network(const sandbox_policy *p)
{
    return p->network;
}
