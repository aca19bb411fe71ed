/* The worker's skills/memory wiring (src/worker/session_files.c): what
 * session metadata may and may not choose. The end-to-end behaviour is in
 * tests/integration/skills_worker.sh, memory_worker.sh, memory_killed.sh. */
#include "test.h"

#include <errno.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "worker/session_files.h"

static char *tmpdir(void)
{
    static char t[] = "/tmp/shed-sfiles-XXXXXX";
    char *d = mkdtemp(t);
    ASSERT_TRUE(d != NULL);
    return d;
}

TEST(sfiles_mount_path_rules)
{
    shed_err err = {0};
    ASSERT_EQ_INT(sfiles_mount_path_check("/mnt/memory/notes", "/workspace", &err), 0);
    ASSERT_EQ_INT(sfiles_mount_path_check("/data/x", "/workspace", &err), 0);
    ASSERT_EQ_INT(sfiles_mount_path_check("/workspaces/x", "/workspace", &err), 0);
    const char *bad[] = {"relative", "/", "/mnt/../etc", "/mnt//x", "/mnt/./x", "/mnt/x/", "/mnt/x/.",
                         "/etc", "/etc/cron.d", "/usr/lib/x", "/proc/1", "/tmp/m", "/dev/shm/x",
                         "/workspace", "/workspace/memory/x", "/lib64", "/mnt\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = (shed_err){0};
        if (sfiles_mount_path_check(bad[i], "/workspace", &err) != -EINVAL)
            test_fail(__FILE__, __LINE__, "mount path '%s' accepted", bad[i]);
        ASSERT_CONTAINS(err.msg, "mount_path");
    }
    /* a parent of the workdir would hide it */
    ASSERT_EQ_INT(sfiles_mount_path_check("/work", "/work/space", &err), -EINVAL);
}

static json_t *session_with(json_t *resources)
{
    return json_pack("{s:s,s:{s:[]},s:o}", "id", "sesn_x", "agent", "skills", "resources", resources);
}

static int plan(const char *state, json_t *sess, bool token, sfiles_t **out, shed_err *err)
{
    sfiles_env env = {.state_dir = state, .workdir = "/workspace"};
    return sfiles_new(&env, "sesn_x", "work_x", sess, (api_cred){.token = token ? "tok" : NULL}, token, out,
                      err);
}

TEST(sfiles_memory_needs_the_sessions_token)
{
    char *d = tmpdir();
    char p[256];
    snprintf(p, sizeof p, "%s/sessions/sesn_x", d);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", p);
    ASSERT_EQ_INT(system(cmd), 0);
    json_t *s = session_with(json_pack("[{s:s,s:s,s:s}]", "type", "memory_store", "memory_store_id", "memstore_1",
                                       "mount_path", "/mnt/memory/a"));
    sfiles_t *f = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(plan(d, s, false, &f, &err), -EACCES);
    ASSERT_CONTAINS(err.msg, "sessions token");
    ASSERT_TRUE(f == NULL);
    json_decref(s);
    /* nothing attached: nothing to do, whatever the credential */
    s = session_with(json_array());
    ASSERT_EQ_INT(plan(d, s, false, &f, &err), 0);
    ASSERT_TRUE(f == NULL);
    json_decref(s);
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    system(cmd);
}

TEST(sfiles_host_folders_never_chosen_by_metadata)
{
    char *d = tmpdir();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/sessions/sesn_x/memory/stale && touch %s/sessions/sesn_x/memory/stale/f", d, d);
    ASSERT_EQ_INT(system(cmd), 0);
    json_t *s = session_with(json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s,s:s},{s:s,s:s,s:s}]",
                                       "type", "memory_store", "memory_store_id", "../../evil/id", "mount_path",
                                       "/mnt/memory/a",
                                       "type", "memory_store", "memory_store_id", "memstore_2", "access", "read_only",
                                       "mount_path", "/mnt/memory/b",
                                       "type", "memory_store", "memory_store_id", "memstore_3", "name", "../x y"));
    sfiles_t *f = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(plan(d, s, true, &f, &err), 0);
    ASSERT_TRUE(f != NULL);
    const char *const *rw = sfiles_binds(f, true), *const *ro = sfiles_binds(f, false);
    char want[512];
    snprintf(want, sizeof want, "%s/sessions/sesn_x/memory/0-------evil-id:/mnt/memory/a", d);
    ASSERT_EQ_STR(rw[0], want);
    /* no mount_path: a sanitized name under /mnt/memory */
    snprintf(want, sizeof want, "%s/sessions/sesn_x/memory/2-memstore_3:/mnt/memory/---x-y", d);
    ASSERT_EQ_STR(rw[1], want);
    ASSERT_TRUE(rw[2] == NULL);
    snprintf(want, sizeof want, "%s/sessions/sesn_x/memory/1-memstore_2:/mnt/memory/b", d);
    ASSERT_EQ_STR(ro[0], want);
    ASSERT_TRUE(ro[1] == NULL);
    /* the folders exist, empty; the stale one of a dead run is gone */
    struct stat st;
    snprintf(want, sizeof want, "%s/sessions/sesn_x/memory/0-------evil-id", d);
    ASSERT_EQ_INT(stat(want, &st), 0);
    ASSERT_EQ_INT(st.st_mode & 0777, 0700);
    snprintf(want, sizeof want, "%s/sessions/sesn_x/memory/stale", d);
    ASSERT_TRUE(stat(want, &st) < 0);
    snprintf(want, sizeof want, "%s/evil", d);
    ASSERT_TRUE(stat(want, &st) < 0);
    sfiles_free(f);
    /* never mounted: the empty folders go with it */
    snprintf(want, sizeof want, "%s/sessions/sesn_x/memory", d);
    ASSERT_TRUE(stat(want, &st) < 0);
    json_decref(s);
    /* overlapping or reserved mount paths refuse the item */
    s = session_with(json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s}]", "type", "memory_store", "memory_store_id", "m1",
                               "mount_path", "/mnt/memory/a", "type", "memory_store", "memory_store_id", "m2",
                               "mount_path", "/mnt/memory/a/b"));
    ASSERT_EQ_INT(plan(d, s, true, &f, &err), -EINVAL);
    ASSERT_CONTAINS(err.msg, "overlapping");
    json_decref(s);
    s = session_with(json_pack("[{s:s,s:s,s:s}]", "type", "memory_store", "memory_store_id", "m1", "mount_path",
                               "/etc/cron.d"));
    ASSERT_EQ_INT(plan(d, s, true, &f, &err), -EINVAL);
    json_decref(s);
    /* the start-up sweep */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/sessions/sesn_y/memory/0-m && touch %s/sessions/sesn_y/memory/0-m/f", d, d);
    ASSERT_EQ_INT(system(cmd), 0);
    ASSERT_EQ_INT(sfiles_sweep(d), 1);
    snprintf(want, sizeof want, "%s/sessions/sesn_y/memory", d);
    ASSERT_TRUE(stat(want, &st) < 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    system(cmd);
}
