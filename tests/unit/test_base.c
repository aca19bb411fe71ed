/* Unit tests for src/base: codecs and digests against their RFC vectors,
 * ids, redaction, bounded JSON, buffers, time, the event loop. */
#include "test.h"

#include "base/b64.h"
#include "base/buf.h"
#include "base/cleanup.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/err.h"
#include "base/id.h"
#include "base/json.h"
#include "base/log.h"
#include "base/loop.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>

static const char *const RFC4648[][2] = {
    {"", ""},          {"f", "Zg=="},         {"fo", "Zm8="},        {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
};

TEST(base64_rfc4648_vectors)
{
    for (size_t i = 0; i < ARRAY_SIZE(RFC4648); i++) {
        char out[64];
        b64_encode(RFC4648[i][0], strlen(RFC4648[i][0]), out, false, true);
        ASSERT_EQ_STR(out, RFC4648[i][1]);
        size_t n;
        _cleanup_free_ char *dec = b64_decode_alloc(out, strlen(out), false, &n);
        ASSERT_TRUE(dec != NULL);
        ASSERT_EQ_INT(n, strlen(RFC4648[i][0]));
        ASSERT_EQ_STR(dec, RFC4648[i][0]);
    }
}

TEST(base64url_with_and_without_padding)
{
    const unsigned char raw[] = {0xfb, 0xff, 0xbf, 0xfe};
    char out[16];
    b64_encode(raw, sizeof(raw), out, true, true);
    ASSERT_EQ_STR(out, "-_-__g==");
    b64_encode(raw, sizeof(raw), out, true, false);
    ASSERT_EQ_STR(out, "-_-__g");
    b64_encode(raw, sizeof(raw), out, false, true);
    ASSERT_EQ_STR(out, "+/+//g==");
    unsigned char dec[16];
    ASSERT_EQ_INT(b64_decode("-_-__g", 6, dec, true), 4);
    ASSERT_MEM_EQ(dec, raw, 4);
    ASSERT_EQ_INT(b64_decode("-_-__g==", 8, dec, true), 4);
    /* the other alphabet's characters are not accepted */
    ASSERT_EQ_INT(b64_decode("+/+//g", 6, dec, true), -EINVAL);
    ASSERT_EQ_INT(b64_decode("-_-__g", 6, dec, false), -EINVAL);
}

TEST(base64_rejects_malformed)
{
    unsigned char dec[32];
    ASSERT_EQ_INT(b64_decode("Zg=", 3, dec, false), -EINVAL);    /* bad padding length */
    ASSERT_EQ_INT(b64_decode("Z", 1, dec, false), -EINVAL);      /* impossible length */
    ASSERT_EQ_INT(b64_decode("Zh==", 4, dec, false), -EINVAL);   /* non-zero trailing bits */
    ASSERT_EQ_INT(b64_decode("Zm9v!", 5, dec, false), -EINVAL);  /* invalid character */
    ASSERT_EQ_INT(b64_decode("Zg===", 5, dec, false), -EINVAL);  /* too much padding */
    ASSERT_EQ_INT(b64_decode("Zm 9v", 5, dec, false), -EINVAL);  /* whitespace */
}

TEST(sha256_vectors)
{
    char hex[SHA256_HEX_LEN];
    crypto_sha256_hex("", 0, hex);
    ASSERT_EQ_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    crypto_sha256_hex("abc", 3, hex);
    ASSERT_EQ_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    crypto_sha256_ctx *c = crypto_sha256_begin();
    crypto_sha256_update(c, "a", 1);
    crypto_sha256_update(c, "bc", 2);
    unsigned char d[SHA256_LEN];
    crypto_sha256_end(c, d);
    crypto_hex(d, SHA256_LEN, hex);
    ASSERT_EQ_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(sha256_nist_long_messages)
{
    char hex[SHA256_HEX_LEN];
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    crypto_sha256_hex(m448, strlen(m448), hex);
    ASSERT_EQ_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    crypto_sha256_hex(m896, strlen(m896), hex);
    ASSERT_EQ_STR(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    /* FIPS 180-2 appendix B.3: one million 'a'. */
    enum { MILLION = 1000000 };
    char *a = malloc(MILLION);
    ASSERT_TRUE(a != NULL);
    memset(a, 'a', MILLION);
    crypto_sha256_hex(a, MILLION, hex);
    ASSERT_EQ_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

TEST(sha256_streaming_odd_chunks)
{
    /* Every split of the same message must give the one-shot digest,
     * including chunks that straddle and exactly fill the 64-byte block. */
    static const size_t chunks[] = {1, 3, 7, 13, 55, 56, 57, 63, 64, 65, 127, 128, 129, 1000};
    enum { N = 3001 };
    unsigned char *msg = malloc(N);
    ASSERT_TRUE(msg != NULL);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        msg[i] = (unsigned char)x;
    }
    for (size_t len = 0; len <= N; len += (len < 200 ? 1 : 97)) {
        unsigned char want[SHA256_LEN], got[SHA256_LEN];
        ASSERT_EQ_INT(crypto_sha256(msg, len, want), 0);
        for (size_t ci = 0; ci < sizeof(chunks) / sizeof(chunks[0]); ci++) {
            crypto_sha256_ctx *c = crypto_sha256_begin();
            ASSERT_TRUE(c != NULL);
            size_t off = 0, step = chunks[ci];
            while (off < len) {
                size_t take = len - off < step ? len - off : step;
                ASSERT_EQ_INT(crypto_sha256_update(c, msg + off, take), 0);
                off += take;
                step = step * 3 % 131 + 1; /* vary the chunk size as we go */
            }
            ASSERT_EQ_INT(crypto_sha256_end(c, got), 0);
            ASSERT_TRUE(crypto_equal(want, got, SHA256_LEN));
        }
    }
    free(msg);
}

TEST(crypto_equal_compares_every_byte)
{
    unsigned char a[40], b[40];
    memset(a, 7, sizeof(a));
    memcpy(b, a, sizeof(b));
    ASSERT_TRUE(crypto_equal(a, b, sizeof(a)));
    ASSERT_TRUE(crypto_equal(a, b, 0));
    b[39] ^= 1;
    ASSERT_TRUE(!crypto_equal(a, b, sizeof(a)));
    b[39] ^= 1;
    b[0] ^= 0x80;
    ASSERT_TRUE(!crypto_equal(a, b, sizeof(a)));
}

static void hmac_case(const unsigned char *key, size_t klen, const char *data, size_t dlen,
                      const char *want)
{
    unsigned char mac[SHA256_LEN];
    char hex[SHA256_HEX_LEN];
    ASSERT_EQ_INT(crypto_hmac_sha256(key, klen, data, dlen, mac), 0);
    crypto_hex(mac, SHA256_LEN, hex);
    ASSERT_EQ_STR(hex, want);
}

TEST(hmac_sha256_rfc4231_vectors)
{
    unsigned char k[131];
    memset(k, 0x0b, 20);
    hmac_case(k, 20, "Hi There", 8,
              "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    hmac_case((const unsigned char *)"Jefe", 4, "what do ya want for nothing?", 28,
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    char data[50];
    memset(k, 0xaa, 20);
    memset(data, 0xdd, 50);
    hmac_case(k, 20, data, 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    for (int i = 0; i < 25; i++) k[i] = (unsigned char)(i + 1);
    memset(data, 0xcd, 50);
    hmac_case(k, 25, data, 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    memset(k, 0xaa, 131);
    const char *d6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    hmac_case(k, 131, d6, strlen(d6),
              "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    const char *d7 = "This is a test using a larger than block-size key and a larger than "
                     "block-size data. The key needs to be hashed before being used by the HMAC "
                     "algorithm.";
    hmac_case(k, 131, d7, strlen(d7),
              "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

TEST(id_format_and_uniqueness)
{
    enum { N = 2000 };
    static char ids[N][ID_MAX];
    for (int i = 0; i < N; i++) {
        ASSERT_EQ_INT(id_new("sesn", ids[i], ID_MAX), 0);
        ASSERT_EQ_INT(strlen(ids[i]), 5 + ID_RAND_CHARS);
        ASSERT_TRUE(id_valid(ids[i], "sesn"));
        ASSERT_FALSE(id_valid(ids[i], "work"));
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++) ASSERT_TRUE(strcmp(ids[i], ids[j]) != 0);
    ASSERT_FALSE(id_valid("sesn_short", "sesn"));
    ASSERT_FALSE(id_valid("sesn_0123456789abcdefghjkmnpqrs!", "sesn"));
    ASSERT_FALSE(id_valid("sesn_0123456789ABCDEFGHJKMNPQRS", "sesn"));
    char small[8];
    ASSERT_EQ_INT(id_new("sesn", small, sizeof(small)), -ENAMETOOLONG);
}

TEST(redaction_masks_credentials)
{
    char out[512];
    log_redact("key sk-ant-oat01-AbC_d-9 end", out, sizeof(out));
    ASSERT_EQ_STR(out, "key sk-ant-[REDACTED] end");
    log_redact("using sk-shed-env-0123456789abcdef and sk-shed-req-zzz", out, sizeof(out));
    ASSERT_EQ_STR(out, "using sk-shed-[REDACTED] and sk-shed-[REDACTED]");
    log_redact("Authorization: Bearer abc.def/ghi+== tail", out, sizeof(out));
    ASSERT_EQ_STR(out, "Authorization: Bearer [REDACTED] tail");
    log_redact("authorization: bearer xyz", out, sizeof(out));
    ASSERT_EQ_STR(out, "authorization: bearer [REDACTED]");
    log_redact("x-api-key: secret123", out, sizeof(out));
    ASSERT_EQ_STR(out, "x-api-key: [REDACTED]");
    log_redact("{\"secret\":\"whsec_MfKQ9r8\"}", out, sizeof(out));
    ASSERT_EQ_STR(out, "{\"secret\":\"whsec_[REDACTED]\"}");
    /* words that merely look similar stay */
    log_redact("sk-ant- alone, Bearer  spaced, task-ant", out, sizeof(out));
    ASSERT_EQ_STR(out, "sk-ant- alone, Bearer  spaced, task-ant");
    /* truncation is safe */
    char tiny[8];
    log_redact("sk-ant-aaaaaaaaaaaaaaaa", tiny, sizeof(tiny));
    ASSERT_EQ_STR(tiny, "sk-ant-");
}

TEST(log_lines_are_redacted_text_and_json)
{
    int p[2];
    ASSERT_EQ_INT(pipe(p), 0);
    log_set_fd(p[1]);
    log_setup(LOG_INFO, LOG_TEXT);
    slog(LOG_INFO, "sesn_1", "work_2", "token %s", "sk-shed-req-SECRET");
    log_setup(LOG_INFO, LOG_JSON);
    slog(LOG_WARN, "sesn_1", NULL, "quote \" and Bearer SECRET2");
    log_debug("not shown %s", "x");
    close(p[1]);
    char buf[4096] = {0};
    ssize_t n = read(p[0], buf, sizeof(buf) - 1);
    ASSERT_TRUE(n > 0);
    ASSERT_NOT_CONTAINS(buf, "SECRET");
    ASSERT_CONTAINS(buf, "info  [session=sesn_1 work=work_2] token sk-shed-[REDACTED]");
    ASSERT_CONTAINS(buf, "\"level\":\"warn\",\"session_id\":\"sesn_1\",\"msg\":\"quote \\\" and Bearer [REDACTED]\"");
    ASSERT_NOT_CONTAINS(buf, "not shown");
}

TEST(json_parse_rejects_malformed_and_deep)
{
    shed_err err = {0};
    const char *bad[] = {"", "{", "{\"a\":}", "[1,2", "nul", "{\"a\" 1}", "\"\\x\""};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        json_t *j = json_parse(bad[i], strlen(bad[i]), 1024, 8, &err);
        ASSERT_TRUE(j == NULL);
        ASSERT_CONTAINS(err.msg, "invalid JSON");
    }
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    ASSERT_TRUE(json_parse(deep, 200, 1024, 64, &err) == NULL);
    ASSERT_CONTAINS(err.msg, "deeper than 64");
    ASSERT_TRUE(json_parse("[1]", 3, 2, 8, &err) == NULL);
    ASSERT_CONTAINS(err.msg, "over the 2-byte limit");
    /* brackets inside strings do not count as depth */
    const char *s = "{\"a\":\"[[[[[[[[[[\\\"[[[[\"}";
    _cleanup_json_ json_t *j = json_parse(s, strlen(s), 1024, 2, &err);
    ASSERT_TRUE(j != NULL);
}

TEST(json_getters_name_the_field)
{
    shed_err err = {0};
    const char *s = "{\"s\":\"x\",\"i\":5,\"f\":2.5,\"b\":true,\"o\":{},\"a\":[],\"n\":null}";
    _cleanup_json_ json_t *j = json_parse(s, strlen(s), 0, 8, &err);
    const char *str;
    int64_t i;
    bool b;
    json_t *o;
    ASSERT_EQ_INT(json_get_str(j, "s", true, &str, &err), 0);
    ASSERT_EQ_STR(str, "x");
    ASSERT_EQ_INT(json_get_int(j, "i", true, &i, &err), 0);
    ASSERT_EQ_INT(i, 5);
    ASSERT_EQ_INT(json_get_int(j, "f", true, &i, &err), -EINVAL);
    ASSERT_EQ_STR(err.msg, "field 'f' must be an integer");
    ASSERT_EQ_INT(json_get_bool(j, "b", true, &b, &err), 0);
    ASSERT_TRUE(b);
    ASSERT_EQ_INT(json_get_obj(j, "o", true, &o, &err), 0);
    ASSERT_EQ_INT(json_get_arr(j, "a", true, &o, &err), 0);
    ASSERT_EQ_INT(json_get_str(j, "i", true, &str, &err), -EINVAL);
    ASSERT_EQ_STR(err.msg, "field 'i' must be a string");
    ASSERT_EQ_INT(json_get_str(j, "n", false, &str, &err), 1);
    ASSERT_EQ_INT(json_get_str(j, "missing", true, &str, &err), -EINVAL);
    ASSERT_EQ_STR(err.msg, "field 'missing' is required (a string)");
    ASSERT_EQ_INT(json_get_bool(j, "s", false, &b, &err), -EINVAL);
}

TEST(buffer_limits_hold)
{
    _cleanup_buf_ buf_t b;
    buf_init(&b, 10);
    ASSERT_EQ_INT(buf_puts(&b, "0123456789"), 0);
    ASSERT_EQ_INT(buf_putc(&b, 'x'), -EMSGSIZE);
    ASSERT_EQ_INT(b.len, 10);
    ASSERT_EQ_STR(b.data, "0123456789");
    buf_consume(&b, 4);
    ASSERT_EQ_STR(b.data, "456789");
    ASSERT_EQ_INT(buf_printf(&b, "%d", 1234), 0);
    ASSERT_EQ_INT(buf_printf(&b, "%d", 5), -EMSGSIZE);
    ASSERT_EQ_STR(b.data, "4567891234");
    _cleanup_free_ char *s = buf_steal(&b);
    ASSERT_EQ_STR(s, "4567891234");
    ASSERT_EQ_INT(b.len, 0);
    buf_t big;
    buf_init(&big, 0);
    for (int i = 0; i < 100000; i++) ASSERT_EQ_INT(buf_putc(&big, 'a'), 0);
    ASSERT_EQ_INT(big.len, 100000);
    ASSERT_EQ_INT(buf_reserve(&big, (size_t)-1), -EMSGSIZE);
    buf_free(&big);
}

TEST(rfc3339_format_and_parse)
{
    char s[RFC3339_LEN];
    clock_rfc3339_us(1795739646123456LL, s);
    ASSERT_EQ_STR(s, "2026-11-27T00:34:06.123456Z");
    int64_t us;
    ASSERT_EQ_INT(clock_parse_rfc3339(s, &us), 0);
    ASSERT_EQ_INT(us, 1795739646123456LL);
    ASSERT_EQ_INT(clock_parse_rfc3339("2026-11-27T01:34:06+01:00", &us), 0);
    ASSERT_EQ_INT(us, 1795739646000000LL);
    ASSERT_EQ_INT(clock_parse_rfc3339("2026-11-27T00:34:06.1Z", &us), 0);
    ASSERT_EQ_INT(us, 1795739646100000LL);
    ASSERT_EQ_INT(clock_parse_rfc3339("2026-13-27T00:34:06Z", &us), -EINVAL);
    ASSERT_EQ_INT(clock_parse_rfc3339("2026-11-27T00:34:06", &us), -EINVAL);
    ASSERT_EQ_INT(clock_parse_rfc3339("2026-11-27T00:34:06Zjunk", &us), -EINVAL);
    ASSERT_EQ_INT(clock_parse_rfc3339("NO_HEARTBEAT", &us), -EINVAL);
}

TEST(err_messages_name_call_and_object)
{
    shed_err err = {0};
    ASSERT_EQ_INT(err_set(&err, EACCES, "mount %s", "/workspace"), -EACCES);
    ASSERT_EQ_STR(err.msg, "mount /workspace: Permission denied");
    err_wrap(&err, "sandbox");
    ASSERT_EQ_STR(err.msg, "sandbox: mount /workspace: Permission denied");
    ASSERT_EQ_INT(err_msg(&err, 0, "bad %s", "policy"), -EINVAL);
    ASSERT_EQ_STR(err.msg, "bad policy");
    ASSERT_EQ_INT(err_set(NULL, ENOENT, "x"), -ENOENT);
}

static int g_order[8], g_n;
static uint64_t g_cancel_me;
static void tick(loop_t *l, void *arg)
{
    (void)l;
    g_order[g_n++] = (int)(intptr_t)arg;
}
static void tick_cancel(loop_t *l, void *arg)
{
    tick(l, arg);
    loop_timer_cancel(l, g_cancel_me);
}
static void tick_stop(loop_t *l, void *arg)
{
    tick(l, arg);
    loop_stop(l);
}
static void on_pipe(loop_t *l, int fd, uint32_t ev, void *arg)
{
    (void)ev;
    char c;
    ASSERT_EQ_INT(read(fd, &c, 1), 1);
    g_order[g_n++] = (int)(intptr_t)arg;
    loop_del(l, fd);
}

TEST(loop_timers_and_fds)
{
    loop_t *l = loop_new();
    int p[2];
    ASSERT_EQ_INT(pipe2(p, O_CLOEXEC), 0);
    ASSERT_EQ_INT(loop_add(l, p[0], EPOLLIN, on_pipe, (void *)(intptr_t)9), 0);
    ASSERT_EQ_INT(loop_add(l, p[0], EPOLLIN, on_pipe, NULL), -EEXIST);
    loop_timer(l, 30, tick, (void *)(intptr_t)3);
    loop_timer(l, 10, tick_cancel, (void *)(intptr_t)1);
    g_cancel_me = loop_timer(l, 20, tick, (void *)(intptr_t)2);
    loop_timer(l, 60, tick_stop, (void *)(intptr_t)4);
    ASSERT_EQ_INT(write(p[1], "x", 1), 1);
    int64_t t0 = clock_mono_ms();
    ASSERT_EQ_INT(loop_run(l), 0);
    ASSERT_GE_INT(clock_mono_ms() - t0, 55);
    ASSERT_EQ_INT(g_n, 4);
    ASSERT_EQ_INT(g_order[0], 9);
    ASSERT_EQ_INT(g_order[1], 1);
    ASSERT_EQ_INT(g_order[2], 3);
    ASSERT_EQ_INT(g_order[3], 4);
    ASSERT_FALSE(loop_has(l, p[0]));
    loop_free(l);
    close(p[0]);
    close(p[1]);
}

#include "base/idset.h"

TEST(idset_add_has_del_grow)
{
    idset_t s;
    idset_init(&s);
    char id[64];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "sevt_%d", i);
        ASSERT_EQ_INT(idset_add(&s, id), 0);
        ASSERT_EQ_INT(idset_add(&s, id), 0); /* twice: still one */
    }
    ASSERT_EQ_INT(s.n, 5000);
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "sevt_%d", i);
        ASSERT_TRUE(idset_has(&s, id));
    }
    ASSERT_FALSE(idset_has(&s, "sevt_5000"));
    ASSERT_FALSE(idset_has(&s, NULL));
    for (int i = 0; i < 5000; i += 2) {
        snprintf(id, sizeof(id), "sevt_%d", i);
        idset_del(&s, id);
    }
    ASSERT_EQ_INT(s.n, 2500);
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "sevt_%d", i);
        ASSERT_EQ_INT(idset_has(&s, id), i % 2 == 1);
    }
    /* churn through tombstones: the table does not grow without bound */
    for (int round = 0; round < 20; round++)
        for (int i = 0; i < 1000; i++) {
            snprintf(id, sizeof(id), "churn_%d_%d", round, i);
            ASSERT_EQ_INT(idset_add(&s, id), 0);
            idset_del(&s, id);
        }
    ASSERT_EQ_INT(s.n, 2500);
    ASSERT_TRUE(s.cap <= 16384);
    idset_free(&s);
    ASSERT_FALSE(idset_has(&s, "sevt_1"));
}

/* Forgetting gives the memory back: the table shrinks with its entries, and
 * iteration and the digest calls see the same set. */
TEST(idset_shrinks_and_iterates)
{
    idset_t s, t;
    idset_init(&s);
    idset_init(&t);
    char id[64];
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof(id), "toolu_%d", i);
        ASSERT_EQ_INT(idset_add(&s, id), 0);
    }
    size_t big = idset_bytes(&s);
    ASSERT_TRUE(big >= 10000 * 8);
    for (int i = 0; i < 9990; i++) {
        snprintf(id, sizeof(id), "toolu_%d", i);
        ASSERT_TRUE(idset_has_digest(&s, idset_digest(id)));
        idset_del_digest(&s, idset_digest(id));
    }
    ASSERT_EQ_INT(s.n, 10);
    ASSERT_TRUE(idset_bytes(&s) <= 128 * 8);
    size_t pos = 0, k = 0;
    uint64_t h;
    while (idset_next(&s, &pos, &h)) {
        ASSERT_EQ_INT(idset_add_digest(&t, h), 0);
        k++;
    }
    ASSERT_EQ_INT(k, 10);
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof(id), "toolu_%d", i);
        ASSERT_EQ_INT(idset_has(&t, id), i >= 9990);
        ASSERT_EQ_INT(idset_has(&s, id), i >= 9990);
    }
    for (int i = 9990; i < 10000; i++) {
        snprintf(id, sizeof(id), "toolu_%d", i);
        idset_del(&s, id);
    }
    ASSERT_EQ_INT(idset_bytes(&s), 0); /* empty: nothing held */
    ASSERT_EQ_INT(idset_add(&s, "again"), 0);
    ASSERT_TRUE(idset_has(&s, "again"));
    idset_free(&s);
    idset_free(&t);
}

/* src/base/fpmath.c stands in for libm in build/shed: the same results as
 * libm's (this test links libm) on ordinary and edge values. */
double shed_trunc(double x);
double shed_fmax(double a, double b);
double shed_fmin(double a, double b);
long long shed_llround(double x);

#include <limits.h>
#include <math.h>

TEST(fpmath_matches_libm)
{
    const double v[] = {0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999999999999994, -0.49999999999999994,
                        1e-300, -1e-300, 123456.789, -123456.789, 4503599627370495.5, -4503599627370495.5,
                        4503599627370496.0, 9007199254740993.0, 1e18, -1e18, 9.2e18, -9.2e18, 1e300, -1e300,
                        INFINITY, -INFINITY, NAN, 0.1 * 3, 2.0 / 3.0, 1000.0 * 0.001};
    size_t n = sizeof(v) / sizeof(v[0]);
    for (size_t i = 0; i < n; i++) {
        double a = v[i], t = shed_trunc(a), u = trunc(a);
        ASSERT_TRUE((isnan(t) && isnan(u)) || (t == u && signbit(t) == signbit(u)));
        if (isfinite(a) && fabs(a) < 9.2e18) ASSERT_TRUE(shed_llround(a) == llround(a));
        for (size_t j = 0; j < n; j++) {
            double b = v[j];
            double x = shed_fmax(a, b), y = fmax(a, b);
            ASSERT_TRUE((isnan(x) && isnan(y)) || x == y);
            x = shed_fmin(a, b), y = fmin(a, b);
            ASSERT_TRUE((isnan(x) && isnan(y)) || x == y);
        }
    }
    ASSERT_TRUE(shed_llround(NAN) == LLONG_MIN);
    ASSERT_TRUE(shed_llround(1e300) == LLONG_MIN);
    ASSERT_FALSE(signbit(shed_fmax(-0.0, 0.0)));
    ASSERT_TRUE(signbit(shed_fmin(0.0, -0.0)));
}
