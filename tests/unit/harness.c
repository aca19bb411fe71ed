/* main() for every unit-test binary: `--list` names the tests, `NAME` runs
 * one (the runner gives each its own process and timeout), no argument runs
 * all of them in turn, each forked. */
#include "test.h"

#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TESTS 512
static struct {
    const char *name;
    test_fn fn;
} g_tests[MAX_TESTS];
static int g_ntests;

void test_register(const char *name, test_fn fn)
{
    if (g_ntests < MAX_TESTS) {
        g_tests[g_ntests].name = name;
        g_tests[g_ntests].fn = fn;
        g_ntests++;
    }
}

void test_skip(const char *reason)
{
    printf("skip: %s\n", reason);
    fflush(stdout);
    _exit(77);
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(1);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        for (int i = 0; i < g_ntests; i++) printf("%s\n", g_tests[i].name);
        return 0;
    }
    if (argc > 1) {
        for (int i = 0; i < g_ntests; i++) {
            if (!strcmp(argv[1], g_tests[i].name)) {
                g_tests[i].fn();
                return 0;
            }
        }
        fprintf(stderr, "no test named '%s'\n", argv[1]);
        return 2;
    }
    int failed = 0;
    for (int i = 0; i < g_ntests; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            g_tests[i].fn();
            _exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        int ok = WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 77);
        printf("%s %s\n", ok ? "ok  " : "FAIL", g_tests[i].name);
        failed += !ok;
    }
    return failed ? 1 : 0;
}
