/* shed init: pid 1 of each sandbox (hidden; started by the sandbox library
 * from an fd, never by people). `--seccomp-table` prints the shipped
 * seccomp rules for the table-driven test. Must never run outside a sandbox
 * as pid 1 of anything else. */
#include "cmd/cmd.h"

#include "sandbox/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char USAGE[] = "usage: shed init [--help] [--seccomp-table [--policy FILE]]\n"
                            "  (internal) pid 1 of a sandbox, started by shed itself.\n"
                            "  --seccomp-table  print the seccomp rules: NAME NR ARG MASK VALUE VERDICT\n";

static int seccomp_table(const char *policy)
{
    sandbox_policy *p = NULL;
    shed_err err;
    if (sandbox_policy_load(policy, &p, &err) < 0) {
        fprintf(stderr, "shed init: %s\n", err.msg);
        return EXIT_SETUP;
    }
    size_t n;
    const sandbox_seccomp_rule *r = sandbox_seccomp_rules(&n);
    for (size_t i = 0; i < n; i++) {
        int nr = sandbox_seccomp_nr(r[i].syscall);
        if (nr < 0) continue;
        char verdict[32];
        if (r[i].action == SANDBOX_SC_KILL)
            snprintf(verdict, sizeof(verdict), "kill");
        else
            snprintf(verdict, sizeof(verdict), "errno:%d",
                     r[i].action == SANDBOX_SC_ENOSYS ? ENOSYS : p->deny_errno);
        printf("%s %d %d %#llx %#llx %s\n", r[i].syscall, nr, r[i].arg,
               (unsigned long long)r[i].mask, (unsigned long long)r[i].value, verdict);
    }
    /* architecture checks done by the filter's header, not by a rule */
    printf("x32:getpid %d -1 0 0 kill\n", 0x40000000 | 39);
    printf("i386:getpid 20 -1 0 0 kill\n");
    sandbox_policy_free(p);
    return 0;
}

int cmd_init(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "--seccomp-table")) {
        if (argc == 4 && !strcmp(argv[2], "--policy")) return seccomp_table(argv[3]);
        if (argc == 2) return seccomp_table(NULL);
        return cmd_usage_error("init", USAGE, "bad arguments to --seccomp-table");
    }
    if (argc == 2 && !strcmp(argv[1], "--zygote")) return sandbox_zygote_main();
    if (argc > 1) return cmd_usage_error("init", USAGE, "unknown argument '%s'", argv[1]);
    return sandbox_init_main(argc, argv);
}
