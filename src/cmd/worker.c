/* shed worker — built in issue #6. Until then it says so and exits 2. */
#include "cmd/cmd.h"

static const char USAGE[] = "usage: shed worker [--help]\n"
                            "  (not built yet: issue #6)\n";

int cmd_worker(int argc, char **argv)
{
    return cmd_not_built("worker", USAGE, "#6", argc, argv);
}
