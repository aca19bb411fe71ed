/* shed serve — built in issue #5. Until then it says so and exits 2. */
#include "cmd/cmd.h"

static const char USAGE[] = "usage: shed serve [--help]\n"
                            "  (not built yet: issue #5)\n";

int cmd_serve(int argc, char **argv)
{
    return cmd_not_built("serve", USAGE, "#5", argc, argv);
}
