/* One entry point per subcommand; src/shed.c dispatches to these. Each
 * returns the process exit status. Exit 2 = usage error, 125 = shed itself
 * failed before running anything (same convention as `shed run`). */
#pragma once

#define EXIT_USAGE 2
#define EXIT_SETUP 125

int cmd_run(int argc, char **argv);
int cmd_tool(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_env(int argc, char **argv);
int cmd_session(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_audit(int argc, char **argv);
/* Hidden: the sandbox's pid 1 (started by the sandbox library, not by people). */
int cmd_init(int argc, char **argv);

/* Shared helpers for subcommands. */
/* Print "shed NAME: MESSAGE" and the usage to stderr; returns EXIT_USAGE. */
int cmd_usage_error(const char *name, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* True if argv has -h/--help before any "--". */
int cmd_wants_help(int argc, char **argv);
/* For subcommands that another issue builds: says so and exits 2. */
int cmd_not_built(const char *name, const char *usage, const char *issue, int argc, char **argv);
/* Block SIGINT, SIGTERM and SIGHUP (to be read from the returned signalfd,
 * non-blocking and close-on-exec; -1 if it cannot be made) and ignore
 * SIGPIPE: for commands that must tear a sandbox down on any of them. */
int cmd_block_signals(void);
/* Parse "123", "64K", "512M", "2G" (powers of 1024) into bytes; -EINVAL on junk or overflow. */
int cmd_parse_size(const char *s, unsigned long long *out);
