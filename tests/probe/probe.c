/* The probe: a static binary with adversarial verbs, run inside sandboxes.
 * Each verb tries one thing and prints a verdict; the tests compare verdicts
 * with the policy. Built out in issue #3 (sandbox) and #10 (escape campaign). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        printf("usage: probe VERB [ARGS]\n  uid  print the real uid\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "uid")) {
        printf("%d\n", (int)getuid());
        return 0;
    }
    fprintf(stderr, "probe: unknown verb '%s'\n", argv[1]);
    return 2;
}
