/* shed audit — built in issue #8. Until then it says so and exits 2. */
#include "cmd/cmd.h"

static const char USAGE[] = "usage: shed audit [--help]\n"
                            "  (not built yet: issue #8)\n";

int cmd_audit(int argc, char **argv)
{
    return cmd_not_built("audit", USAGE, "#8", argc, argv);
}
