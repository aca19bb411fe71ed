/* Pure helpers for skills: the directory name a skill lands in and the
 * version to download. No I/O; never returns a name that could leave the
 * skills directory. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "skills/skills.h"

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* JS String.prototype.trim for ASCII whitespace, then path.posix.basename:
 * trailing slashes dropped, the part after the last '/'. */
static void trimmed_basename(const char *s, const char **start, size_t *len)
{
    const char *b = s, *e = s + strlen(s);
    while (b < e && is_space((unsigned char)*b)) b++;
    while (e > b && is_space((unsigned char)e[-1])) e--;
    while (e > b && e[-1] == '/') e--;
    const char *p = e;
    while (p > b && p[-1] != '/') p--;
    *start = p;
    *len = (size_t)(e - p);
}

static int single_component(const char *s, size_t n)
{
    if (n == 0 || n > 255) return 0;
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return 0;
    return memchr(s, '/', n) == NULL && memchr(s, '\0', n) == NULL;
}

int skills_dir_name(const char *version_name, const char *skill_id, char *out, size_t outlen,
                    shed_err *err)
{
    const char *s = "";
    size_t n = 0;
    if (version_name) trimmed_basename(version_name, &s, &n);
    if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) {
        s = skill_id ? skill_id : "";
        n = strlen(s);
    }
    if (!single_component(s, n))
        return err_msg(err, EINVAL,
                       "skill %s: its name '%s' does not give a directory inside skills/; "
                       "skipping it",
                       skill_id ? skill_id : "?", version_name ? version_name : "");
    if (n + 1 > outlen) return err_msg(err, ENAMETOOLONG, "skill directory name too long");
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

int skills_version_is_numeric(const char *v)
{
    if (!v || !*v) return 0;
    for (; *v; v++)
        if (*v < '0' || *v > '9') return 0;
    return 1;
}

/* Compare two digit strings as unbounded integers. */
static int cmp_numeric(const char *a, const char *b)
{
    while (*a == '0' && a[1]) a++;
    while (*b == '0' && b[1]) b++;
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb) return la < lb ? -1 : 1;
    return strcmp(a, b);
}

int skills_resolve_version(const char *requested, const char *const *versions, size_t n, char *out,
                           size_t outlen, shed_err *err)
{
    const char *best = NULL;
    if (skills_version_is_numeric(requested)) {
        best = requested;
    } else {
        for (size_t i = 0; i < n; i++) {
            if (!skills_version_is_numeric(versions[i])) continue;
            if (!best || cmp_numeric(versions[i], best) > 0) best = versions[i];
        }
        if (!best)
            return err_msg(err, ENOENT,
                           "skill version '%s': the skill lists no numeric version to resolve "
                           "it to",
                           requested ? requested : "");
    }
    if (strlen(best) + 1 > outlen) return err_msg(err, ENAMETOOLONG, "skill version too long");
    snprintf(out, outlen, "%s", best);
    return 0;
}
