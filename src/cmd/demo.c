/* shed demo: an embedded `shed serve` (child process, temporary state),
 * a worker, an environment, two sessions, each in its own sandbox, end to
 * end. Never pretends: when a part it needs is not built in, it says which
 * and exits non-zero.
 */
#include "cmd/cmd.h"

#include "base/err.h"
#include "worker/sbx.h"

#include <stdio.h>
#include <string.h>

static const char USAGE[] =
    "usage: shed demo [--help]\n"
    "\n"
    "Start a local control plane (shed serve, temporary SQLite) and a worker,\n"
    "create an environment and two sessions, and run them for real, each in its\n"
    "own sandbox: session one writes report.txt and reads it back; session two\n"
    "runs python3. Prints what happened, then removes everything it made.\n";

int cmd_demo(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (argc > 1) return cmd_usage_error("demo", USAGE, "unexpected argument '%s'", argv[1]);
    int missing = 0;
    shed_err err = {0};
    if (sbx_available(&err) < 0) {
        fprintf(stderr, "shed demo: cannot run: %s\n", err.msg);
        missing++;
    }
    fprintf(stderr, "shed demo: cannot run: the local control plane (shed serve, src/server) is "
                    "not built into this binary yet\n");
    missing++;
    return missing ? 1 : 0;
}
