/* Unit tests for the control channel's JSON codec (src/sandbox/ctl.c):
 * what it encodes, jansson reads back equal (the worker and shed tool keep
 * using jansson objects); what jansson writes, it decodes equal; it rejects
 * every malformed text jansson rejects (a hostile init sends these), with a
 * message; long strings and many messages through a real socket pair. */
#include "test.h"

#include "base/buf.h"
#include "sandbox/ctl.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

static json_t *sample(void)
{
    /* every byte 1..0x7f, U+0000, 2/3/4-byte UTF-8, escapes, numbers, nesting */
    char all[128];
    for (int i = 1; i < 128; i++) all[i - 1] = (char)i;
    json_t *j = json_pack("{s:s,s:I,s:b,s:[{s:s,s:s%},{s:o,s:n,s:f,s:f,s:I,s:I}]}", "type", "result", "id",
                          (json_int_t)42, "is_error", 0, "content", "type", "text", "text", all, (size_t)127, "k",
                          json_stringn("a\0b\xc3\xa9\xe6\x97\xa5\xf0\x9f\x8e\x89\"\\/\n\t\r\b\f", 21), "null", "pi",
                          3.141592653589793, "big", 1e300, "min", (json_int_t)INT64_MIN, "max",
                          (json_int_t)INT64_MAX);
    return j;
}

TEST(ctl_codec_roundtrips_and_agrees_with_jansson)
{
    json_t *j = sample();
    ASSERT_TRUE(j != NULL);
    buf_t b;
    buf_init(&b, 0);
    ASSERT_EQ_INT(ctl_encode(&b, j), 0);
    shed_err err;
    json_t *back = ctl_decode(b.data, b.len, &err);
    ASSERT_TRUE(back != NULL);
    ASSERT_TRUE(json_equal(j, back));
    json_error_t je;
    json_t *jj = json_loadb(b.data, b.len, JSON_ALLOW_NUL, &je);
    ASSERT_TRUE(jj != NULL);
    ASSERT_TRUE(json_equal(j, jj));
    /* jansson's own text, pretty or compact, decodes equal */
    char *t = json_dumps(j, JSON_INDENT(2));
    json_t *fromj = ctl_decode(t, strlen(t), &err);
    ASSERT_TRUE(fromj != NULL);
    ASSERT_TRUE(json_equal(j, fromj));
    free(t);
    t = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(fromj);
    fromj = ctl_decode(t, strlen(t), &err);
    ASSERT_TRUE(fromj != NULL);
    ASSERT_TRUE(json_equal(j, fromj));
    free(t);
    json_decref(fromj);
    json_decref(jj);
    json_decref(back);
    json_decref(j);
    buf_free(&b);
}

TEST(ctl_decode_rejects_what_jansson_rejects)
{
    static const char *const bad[] = {
        "", "{", "}", "[1]", "\"s\"", "1", "{\"a\":}", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{\"a\":1} x",
        "{\"a\":1}{}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":-}", "{\"a\":1e}", "{\"a\":1e+}",
        "{\"a\":+1}", "{\"a\":tru}", "{\"a\":nul}", "{\"a\":True}", "{\"a\":\"\x01\"}", "{\"a\":\"\n\"}",
        "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}", "{\"a\":\"\\ud800\\u0041\"}", "{\"a\":\"\xc0\x80\"}",
        "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf4\x90\x80\x80\"}", "{\"a\":\"\xff\"}", "{\"a\":\"\xc3\"}",
        "{\"a\":\"\\x\"}", "{\"a\":\"\\u12G4\"}", "{\"a\":\"\\u12\"}", "{\"a\":\"abc", "{\"a\":\"abc\\",
        "{\"a\\u0000b\":1}", "{\"a\":99999999999999999999}", "{\"a\":-99999999999999999999}",
        "{\"a\":1e400}", "{\"a\":[1,2}", "{\"a\":[1,,2]}", "{\"a\":[,]}", "{\"a\":{\"b\":1]}", "\xef\xbb\xbf{}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        shed_err err = {0};
        json_t *v = ctl_decode(bad[i], strlen(bad[i]), &err);
        if (v) test_fail(__FILE__, __LINE__, "accepted: %s", bad[i]);
        ASSERT_TRUE(strstr(err.msg, "control message: ") != NULL);
        json_error_t je;
        json_t *jv = json_loadb(bad[i], strlen(bad[i]), JSON_ALLOW_NUL, &je);
        if (jv && json_is_object(jv)) test_fail(__FILE__, __LINE__, "jansson accepts %s", bad[i]);
        json_decref(jv);
    }
    /* nesting: 64 levels pass, 65 do not */
    char deep[200];
    for (int lim = 64; lim <= 65; lim++) {
        size_t n = 0;
        for (int i = 0; i < lim; i++) n += (size_t)sprintf(deep + n, i ? "[" : "{\"a\":");
        for (int i = 1; i < lim; i++) deep[n++] = ']';
        deep[n++] = '}';
        shed_err err;
        json_t *v = ctl_decode(deep, n, &err);
        ASSERT_EQ_INT(v != NULL, lim == 64);
        json_decref(v);
    }
    /* accepted: whitespace, NUL in a value, escapes, duplicate keys (the last wins, as jansson) */
    const char *ok = " \t\r\n{ \"a\" : \"x\\u0000y\\u00e9\\ud83c\\udf89\\/\" , \"n\" : -0.5e-3 , \"a2\" : [ ] ,"
                     " \"o\" : { } , \"d\" : 1 , \"d\" : 2 } \n";
    shed_err err;
    json_t *v = ctl_decode(ok, strlen(ok), &err);
    ASSERT_TRUE(v != NULL);
    ASSERT_EQ_INT(json_string_length(json_object_get(v, "a")), 10);
    ASSERT_TRUE(!memcmp(json_string_value(json_object_get(v, "a")), "x\0y\xc3\xa9\xf0\x9f\x8e\x89/", 10));
    ASSERT_EQ_INT(json_integer_value(json_object_get(v, "d")), 2);
    ASSERT_TRUE(json_real_value(json_object_get(v, "n")) == -0.5e-3);
    json_decref(v);
}

TEST(ctl_long_results_and_many_messages_through_a_socket)
{
    int sv[2];
    ASSERT_EQ_INT(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    /* 200 messages of growing size, each a text with every kind of byte run */
    for (int i = 0; i < 200; i++) {
        size_t n = (size_t)i * 97 + 1;
        char *s = malloc(n);
        for (size_t k = 0; k < n; k++) s[k] = "ab\"\\\n\x01z\xc3\xa9"[(k * 7 + (size_t)i) % 9];
        /* keep it valid UTF-8: a lone lead or continuation byte becomes '.' */
        for (size_t k = 0; k < n; k++) {
            unsigned char c = (unsigned char)s[k];
            if (c == 0xC3 && (k + 1 >= n || (unsigned char)s[k + 1] != 0xA9)) s[k] = '.';
            if (c == 0xA9 && (k == 0 || (unsigned char)s[k - 1] != 0xC3)) s[k] = '.';
        }
        json_t *m = json_pack("{s:s,s:i,s:s%}", "type", "result", "id", i, "text", s, n);
        ASSERT_TRUE(m != NULL);
        shed_err err;
        ASSERT_EQ_INT(ctl_send(sv[0], m, NULL, 0, &err), 0);
        json_t *got = NULL;
        ASSERT_EQ_INT(ctl_recv(sv[1], &got, NULL, NULL, &err), 0);
        ASSERT_TRUE(json_equal(m, got));
        json_decref(got);
        json_decref(m);
        free(s);
    }
    close(sv[0]);
    close(sv[1]);
}

/* A thread that used the channel frees its buffers when it ends (LSan, under
 * `make asan`, reports them otherwise). */
static void *thread_roundtrip(void *arg)
{
    int *sv = arg;
    json_t *m = json_pack("{s:s,s:s}", "type", "result", "text", "through a thread");
    shed_err err;
    json_t *got = NULL;
    if (ctl_send(sv[0], m, NULL, 0, &err) < 0 || ctl_recv(sv[1], &got, NULL, NULL, &err) < 0 || !json_equal(m, got))
        abort();
    json_decref(got);
    json_decref(m);
    return NULL;
}

TEST(ctl_thread_buffers_are_freed_at_thread_exit)
{
    int sv[2];
    ASSERT_EQ_INT(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    for (int i = 0; i < 4; i++) {
        pthread_t th;
        ASSERT_EQ_INT(pthread_create(&th, NULL, thread_roundtrip, sv), 0);
        ASSERT_EQ_INT(pthread_join(th, NULL), 0);
    }
    close(sv[0]);
    close(sv[1]);
}
