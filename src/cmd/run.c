/* shed run — built in issue #3. Until then it says so and exits 2. */
#include "cmd/cmd.h"

static const char USAGE[] = "usage: shed run [--help]\n"
                            "  (not built yet: issue #3)\n";

int cmd_run(int argc, char **argv)
{
    return cmd_not_built("run", USAGE, "#3", argc, argv);
}
