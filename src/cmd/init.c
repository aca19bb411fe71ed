/* shed init — built in issue #3. Until then it says so and exits 2. */
#include "cmd/cmd.h"

static const char USAGE[] = "usage: shed init [--help]\n"
                            "  (not built yet: issue #3)\n";

int cmd_init(int argc, char **argv)
{
    return cmd_not_built("init", USAGE, "#3", argc, argv);
}
