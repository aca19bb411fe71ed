/* Unit-test harness: TEST(name) registers a test; the runner runs each test
 * in its own process with a timeout (tests/run). Assertions print both sides. */
#pragma once
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
/* Exit code 77 = skipped, with the reason on stdout. */
void test_skip(const char *reason) __attribute__((noreturn));
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define TEST(name)                                                                              \
    static void test_##name(void);                                                             \
    __attribute__((constructor)) static void register_##name(void)                              \
    {                                                                                           \
        test_register(#name, test_##name);                                                     \
    }                                                                                           \
    static void test_##name(void)

#define ASSERT_TRUE(x)                                                                          \
    do {                                                                                        \
        if (!(x)) test_fail(__FILE__, __LINE__, "expected true: %s", #x);                       \
    } while (0)
#define ASSERT_FALSE(x) ASSERT_TRUE(!(x))

#define ASSERT_EQ_INT(a, b)                                                                     \
    do {                                                                                        \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                   \
        if (va_ != vb_)                                                                         \
            test_fail(__FILE__, __LINE__, "%s == %s: got %lld, expected %lld", #a, #b, va_, vb_); \
    } while (0)

#define ASSERT_GE_INT(a, b)                                                                     \
    do {                                                                                        \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                   \
        if (va_ < vb_)                                                                          \
            test_fail(__FILE__, __LINE__, "%s >= %s: got %lld < %lld", #a, #b, va_, vb_);        \
    } while (0)

#define ASSERT_EQ_STR(a, b)                                                                     \
    do {                                                                                        \
        const char *sa_ = (a), *sb_ = (b);                                                      \
        if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0)                                              \
            test_fail(__FILE__, __LINE__, "%s == %s:\n  got      \"%s\"\n  expected \"%s\"", #a, \
                      #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");                          \
    } while (0)

#define ASSERT_CONTAINS(hay, needle)                                                            \
    do {                                                                                        \
        const char *h_ = (hay), *n_ = (needle);                                                 \
        if (!h_ || !strstr(h_, n_))                                                             \
            test_fail(__FILE__, __LINE__, "%s contains %s:\n  got \"%s\"\n  missing \"%s\"", #hay, \
                      #needle, h_ ? h_ : "(null)", n_);                                         \
    } while (0)

#define ASSERT_NOT_CONTAINS(hay, needle)                                                        \
    do {                                                                                        \
        const char *h_ = (hay), *n_ = (needle);                                                 \
        if (h_ && strstr(h_, n_))                                                               \
            test_fail(__FILE__, __LINE__, "%s must not contain %s:\n  got \"%s\"", #hay,         \
                      #needle, h_);                                                             \
    } while (0)

#define ASSERT_MEM_EQ(a, b, n)                                                                  \
    do {                                                                                        \
        if (memcmp((a), (b), (n)) != 0)                                                         \
            test_fail(__FILE__, __LINE__, "%s and %s differ in their first %zu bytes", #a, #b,   \
                      (size_t)(n));                                                             \
    } while (0)
