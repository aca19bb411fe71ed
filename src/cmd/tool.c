/* shed tool — built in issue #4. Until then it says so and exits 2. */
#include "cmd/cmd.h"

static const char USAGE[] = "usage: shed tool [--help]\n"
                            "  (not built yet: issue #4)\n";

int cmd_tool(int argc, char **argv)
{
    return cmd_not_built("tool", USAGE, "#4", argc, argv);
}
