/* shed: a self-hosted sandbox for Claude Managed Agents.
 * This file only dispatches to one function per subcommand (src/cmd/). */
#include "cmd/cmd.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
    int hidden;
} COMMANDS[] = {
    {"worker", cmd_worker, "claim work from an environment and run each session in a sandbox", 0},
    {"run", cmd_run, "run one command in a fresh sandbox", 0},
    {"tool", cmd_tool, "run agent tool calls (bash, read, write, ...) in a fresh sandbox", 0},
    {"serve", cmd_serve, "serve the Managed Agents work API locally from SQLite", 0},
    {"env", cmd_env, "manage environments and their keys on a local control plane", 0},
    {"session", cmd_session, "create sessions, send tool calls, read events", 0},
    {"demo", cmd_demo, "local control plane + worker + a demo session, end to end", 0},
    {"audit", cmd_audit, "verify hash-chained audit logs", 0},
    {"init", cmd_init, "(internal) pid 1 of a sandbox", 1},
};

static void usage(FILE *f)
{
    fputs("usage: shed [--help] [--version] <command> [args]\n\ncommands:\n", f);
    for (size_t i = 0; i < sizeof(COMMANDS) / sizeof(COMMANDS[0]); i++)
        if (!COMMANDS[i].hidden) fprintf(f, "  %-8s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fputs("\n'shed <command> --help' describes each command.\n", f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("shed %s\n", SHED_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(COMMANDS) / sizeof(COMMANDS[0]); i++)
        if (!strcmp(cmd, COMMANDS[i].name)) return COMMANDS[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "shed: unknown command '%s'\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
