/* The worker's call records (worker/state.h): the per-session slot, records
 * moved out of it, restarts (a new wstate on the same directory), damaged
 * records, and records written one file per call by an older worker. */
#include "test.h"

#include "base/cleanup.h"
#include "worker/state.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static json_t *res_of(const char *text)
{
    return json_pack("{s:b,s:[{s:s,s:s}]}", "is_error", 0, "content", "type", "text", "text", text);
}

static const char *text_of(json_t *r)
{
    return json_string_value(json_object_get(json_array_get(json_object_get(r, "content"), 0), "text"));
}

static wstate_t *open_state(const char *dir)
{
    wstate_t *s = NULL;
    if (wstate_open(dir, &s, NULL) < 0) return NULL;
    char *ws = NULL;
    if (wstate_session_workspace(s, "sesn_1", &ws, NULL) < 0) {
        wstate_close(s);
        return NULL;
    }
    free(ws);
    return s;
}

static void rm_rf(const char *dir)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

TEST(state_slot_survives_a_restart)
{
    char dir[] = "/tmp/shed-wslot-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    wstate_t *s = open_state(dir);
    ASSERT_TRUE(s != NULL);
    json_t *got = NULL;
    ASSERT_EQ_INT(wstate_call_started(s, "sesn_1", "sevt_a", NULL), 0);
    wstate_close(s); /* the worker died while sevt_a ran */
    s = open_state(dir);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_a", &got), WSTATE_CALL_STARTED);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_b", &got), WSTATE_CALL_NONE);
    _cleanup_json_ json_t *r = res_of("a done");
    ASSERT_EQ_INT(wstate_call_result(s, "sesn_1", "sevt_a", r, NULL), 0);
    wstate_close(s); /* died before posting */
    s = open_state(dir);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_a", &got), WSTATE_CALL_RESULT);
    ASSERT_TRUE(json_equal(got, r));
    json_decref(got);
    ASSERT_EQ_INT(wstate_call_clear(s, "sesn_1", "sevt_a"), 0);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_a", &got), WSTATE_CALL_NONE);
    /* A shorter result after a longer one: only the recorded length counts. */
    _cleanup_json_ json_t *big = res_of("a much longer result than the next one, to leave bytes behind");
    _cleanup_json_ json_t *small = res_of("x");
    ASSERT_EQ_INT(wstate_call_started(s, "sesn_1", "sevt_c", NULL), 0);
    ASSERT_EQ_INT(wstate_call_result(s, "sesn_1", "sevt_c", big, NULL), 0);
    ASSERT_EQ_INT(wstate_call_result(s, "sesn_1", "sevt_c", small, NULL), 0);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_c", &got), WSTATE_CALL_RESULT);
    ASSERT_EQ_STR(text_of(got), "x");
    json_decref(got);
    wstate_close(s);
    rm_rf(dir);
}

/* A result that was never posted is not lost when the next call takes the slot. */
TEST(state_slot_moves_an_unposted_record_out)
{
    char dir[] = "/tmp/shed-wslot-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    wstate_t *s = open_state(dir);
    ASSERT_TRUE(s != NULL);
    json_t *got = NULL;
    _cleanup_json_ json_t *ra = res_of("a");
    ASSERT_EQ_INT(wstate_call_started(s, "sesn_1", "sevt_a", NULL), 0);
    ASSERT_EQ_INT(wstate_call_result(s, "sesn_1", "sevt_a", ra, NULL), 0);
    /* sevt_a's post failed; the session goes on with sevt_b, then sevt_c
     * is only started when the worker dies. */
    ASSERT_EQ_INT(wstate_call_started(s, "sesn_1", "sevt_b", NULL), 0);
    _cleanup_json_ json_t *rb = res_of("b");
    ASSERT_EQ_INT(wstate_call_result(s, "sesn_1", "sevt_b", rb, NULL), 0);
    ASSERT_EQ_INT(wstate_call_clear(s, "sesn_1", "sevt_b"), 0);
    ASSERT_EQ_INT(wstate_call_started(s, "sesn_1", "sevt_c", NULL), 0);
    wstate_close(s);
    s = open_state(dir);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_a", &got), WSTATE_CALL_RESULT);
    ASSERT_EQ_STR(text_of(got), "a");
    json_decref(got);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_b", &got), WSTATE_CALL_NONE);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_c", &got), WSTATE_CALL_STARTED);
    /* A started record displaced by another call stays "started". */
    ASSERT_EQ_INT(wstate_call_started(s, "sesn_1", "sevt_d", NULL), 0);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_c", &got), WSTATE_CALL_STARTED);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_d", &got), WSTATE_CALL_STARTED);
    /* Clearing a moved-out record removes its file. */
    ASSERT_EQ_INT(wstate_call_clear(s, "sesn_1", "sevt_a"), 0);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_a", &got), WSTATE_CALL_NONE);
    char p[600];
    snprintf(p, sizeof(p), "%s/sessions/sesn_1/calls/sevt_a", dir);
    ASSERT_TRUE(access(p, F_OK) < 0);
    wstate_close(s);
    rm_rf(dir);
}

/* A result whose body does not match its header (torn by a host crash) is
 * "may have run", never posted as garbage and never run again. */
TEST(state_slot_damaged_result_is_started)
{
    char dir[] = "/tmp/shed-wslot-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    wstate_t *s = open_state(dir);
    ASSERT_TRUE(s != NULL);
    json_t *got = NULL;
    _cleanup_json_ json_t *r = res_of("intact");
    ASSERT_EQ_INT(wstate_call_started(s, "sesn_1", "sevt_a", NULL), 0);
    ASSERT_EQ_INT(wstate_call_result(s, "sesn_1", "sevt_a", r, NULL), 0);
    wstate_close(s);
    char p[600];
    snprintf(p, sizeof(p), "%s/sessions/sesn_1/calls/slot.rec", dir);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ_INT(pwrite(fd, "X", 1, 4096 + 10), 1);
    close(fd);
    s = open_state(dir);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_a", &got), WSTATE_CALL_STARTED);
    ASSERT_TRUE(got == NULL);
    wstate_close(s);
    rm_rf(dir);
}

/* Records of an older worker (one file per call) are still honoured. */
TEST(state_per_call_files_still_read)
{
    char dir[] = "/tmp/shed-wslot-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    wstate_t *s = open_state(dir);
    ASSERT_TRUE(s != NULL);
    char p[600];
    snprintf(p, sizeof(p), "%s/sessions/sesn_1/calls/sevt_old", dir);
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ_INT(write(fd, "started\n", 8), 8);
    close(fd);
    json_t *got = NULL;
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_old", &got), WSTATE_CALL_STARTED);
    /* also once the slot exists and is cached */
    ASSERT_EQ_INT(wstate_call_started(s, "sesn_1", "sevt_new", NULL), 0);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_old", &got), WSTATE_CALL_STARTED);
    ASSERT_EQ_INT(wstate_session_remove(s, "sesn_1", NULL), 0);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_new", &got), WSTATE_CALL_NONE);
    wstate_close(s);
    rm_rf(dir);
}

/* More sessions than open slots: evicted slots reopen with their records. */
TEST(state_slot_cache_eviction)
{
    char dir[] = "/tmp/shed-wslot-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    wstate_t *s = NULL;
    ASSERT_EQ_INT(wstate_open(dir, &s, NULL), 0);
    char sid[32];
    for (int i = 0; i < 100; i++) {
        snprintf(sid, sizeof(sid), "sesn_%d", i);
        char *ws = NULL;
        ASSERT_EQ_INT(wstate_session_workspace(s, sid, &ws, NULL), 0);
        free(ws);
        ASSERT_EQ_INT(wstate_call_started(s, sid, "sevt_x", NULL), 0);
    }
    json_t *got = NULL;
    for (int i = 0; i < 100; i++) {
        snprintf(sid, sizeof(sid), "sesn_%d", i);
        ASSERT_EQ_INT(wstate_call_get(s, sid, "sevt_x", &got), WSTATE_CALL_STARTED);
    }
    wstate_close(s);
    rm_rf(dir);
}
