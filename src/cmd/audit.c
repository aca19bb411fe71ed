/* shed audit verify FILE...: check the hash chain of audit logs (in rotation
 * order). Read-only: it must never modify, rotate or "repair" a log — a
 * broken chain is evidence and is reported, file and line. */
#include "cmd/cmd.h"

#include "obs/obs.h"

#include "base/cleanup.h"
#include "base/json.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdlib.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char USAGE[] =
    "usage: shed audit verify [--quiet] [--head HASH] [--with-rotated] FILE...\n"
    "       shed audit append [--rotate-bytes SIZE] [--content MODE] [--fsync] FILE EVENT [JSON]\n"
    "\n"
    "Verify hash-chained audit logs written by `shed worker --audit-log`.\n"
    "Give the files in rotation order, oldest first, the live file last:\n"
    "  shed audit verify /var/log/shed/audit.log.* /var/log/shed/audit.log\n"
    "\n"
    "Exit 0 when every record chains to the one before it; 1 naming the file\n"
    "and line of the first bad record when a record was edited, deleted,\n"
    "inserted or reordered, a file in the middle is missing, or the last line\n"
    "is incomplete; 2 on a usage error.\n"
    "\n"
    "  --head HASH   also require the chain to end at HASH (the chain head the\n"
    "                worker logs at rotation and exit): detects a cut-off tail\n"
    "  -r, --with-rotated\n"
    "                FILE is a live log: verify its rotated files FILE.NNNNNN\n"
    "                first, in order (one FILE only)\n"
    "  -q, --quiet   print nothing on success\n"
    "  -h, --help    this text\n"
    "\n"
    "`append` adds one record (EVENT, fields from the JSON object) to the chain\n"
    "at FILE, as the worker would: for an operator's note while the worker is\n"
    "stopped (it refuses while a worker holds the file), and for tests.\n";

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* FILE.NNNNNN siblings of a live file, oldest first, then FILE; NULL-terminated. */
static char **with_rotated(const char *live, int *n)
{
    _cleanup_free_ char *c1 = strdup(live), *c2 = strdup(live);
    if (!c1 || !c2) return NULL;
    const char *dir = dirname(c1), *base = basename(c2);
    size_t bl = strlen(base);
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **v = NULL;
    int k = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *nm = e->d_name, *dg = nm + bl + 1;
        if (strncmp(nm, base, bl) || nm[bl] != '.' || !*dg ||
            strspn(dg, "0123456789") != strlen(dg))
            continue;
        char **grown = realloc(v, sizeof(char *) * (size_t)(k + 2));
        if (!grown) break;
        v = grown;
        if (asprintf(&v[k], "%s/%s", dir, nm) < 0) break;
        k++;
    }
    closedir(d);
    char **grown = realloc(v, sizeof(char *) * (size_t)(k + 2));
    if (!grown) return v;
    v = grown;
    /* equal-width suffixes: lexical order is rotation order */
    qsort(v, (size_t)k, sizeof(char *), cmp_str);
    v[k++] = strdup(live);
    v[k] = NULL;
    *n = k;
    return v;
}

static int verify(int argc, char **argv)
{
    static const struct option OPTS[] = {{"help", no_argument, NULL, 'h'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"head", required_argument, NULL, 'H'},
                                         {"with-rotated", no_argument, NULL, 'r'},
                                         {NULL, 0, NULL, 0}};
    bool quiet = false, rotated = false;
    const char *head = NULL;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+hqr", OPTS, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(USAGE, stdout);
            return 0;
        case 'q':
            quiet = true;
            break;
        case 'r':
            rotated = true;
            break;
        case 'H':
            head = optarg;
            break;
        default:
            return cmd_usage_error("audit", USAGE, "unknown or incomplete option '%s'",
                                   argv[optind - 1]);
        }
    }
    if (optind >= argc) return cmd_usage_error("audit", USAGE, "verify: no FILE given");
    int nfiles = argc - optind;
    char **files = argv + optind, **found = NULL;
    if (rotated) {
        if (nfiles != 1)
            return cmd_usage_error("audit", USAGE, "--with-rotated takes exactly one FILE");
        if (!(found = with_rotated(argv[optind], &nfiles))) {
            fprintf(stderr, "shed audit verify: list the directory of %s: %s\n", argv[optind],
                    strerror(errno));
            return 1;
        }
        files = found;
    }
    audit_verifier v;
    shed_err err = {0};
    int rc = audit_verify((const char *const *)files, nfiles, &v, &err);
    if (found) {
        for (int i = 0; i < nfiles; i++) free(found[i]);
        free(found);
    }
    if (rc < 0) {
        fprintf(stderr, "shed audit verify: %s\n", err.msg);
        return 1;
    }
    if (head && strcmp(head, v.head)) {
        fprintf(stderr,
                "shed audit verify: %s: the chain ends at %s (seq %" PRId64 "), not at the "
                "expected head %s: records after seq %" PRId64 " were cut off\n",
                v.file, v.head, v.seq, head, v.seq);
        return 1;
    }
    if (!quiet) {
        if (v.continued_from[0])
            printf("note: the chain continues from %s, which was not given (removed by "
                   "retention?)\n",
                   v.continued_from);
        printf("ok: %" PRIu64 " records in %d file%s, chain head %s (seq %" PRId64 ")\n", v.records,
               nfiles, nfiles == 1 ? "" : "s", v.head, v.seq);
    }
    return 0;
}

static int append(int argc, char **argv)
{
    static const struct option OPTS[] = {{"help", no_argument, NULL, 'h'},
                                         {"rotate-bytes", required_argument, NULL, 'r'},
                                         {"content", required_argument, NULL, 'c'},
                                         {"fsync", no_argument, NULL, 'f'},
                                         {NULL, 0, NULL, 0}};
    audit_opts o = {.content = AUDIT_CONTENT_METADATA};
    unsigned long long sz;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+h", OPTS, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(USAGE, stdout);
            return 0;
        case 'r':
            if (cmd_parse_size(optarg, &sz) < 0)
                return cmd_usage_error("audit", USAGE, "--rotate-bytes: '%s' is not a size",
                                       optarg);
            o.rotate_bytes = sz;
            break;
        case 'c':
            if (audit_parse_content(optarg, &o.content) < 0)
                return cmd_usage_error("audit", USAGE,
                                       "--content: '%s' is not none, metadata or full", optarg);
            break;
        case 'f':
            o.fsync_each = true;
            break;
        default:
            return cmd_usage_error("audit", USAGE, "unknown or incomplete option '%s'",
                                   argv[optind - 1]);
        }
    }
    if (argc - optind < 2 || argc - optind > 3)
        return cmd_usage_error("audit", USAGE, "append: expected FILE EVENT [JSON]");
    o.path = argv[optind];
    shed_err err = {0};
    json_t *fields = NULL;
    if (optind + 2 < argc) {
        const char *js = argv[optind + 2];
        shed_err jerr = {0};
        fields = json_parse(js, strlen(js), AUDIT_MAX_LINE, 32, &jerr);
        if (!json_is_object(fields)) {
            json_decref(fields);
            return cmd_usage_error("audit", USAGE, "append: JSON must be an object%s%s",
                                   jerr.msg[0] ? ": " : "", jerr.msg);
        }
    }
    audit_t *a;
    if (audit_open(&o, &a, &err) < 0) {
        json_decref(fields);
        fprintf(stderr, "shed audit append: %s\n", err.msg);
        return 1;
    }
    int rc = audit_write(a, argv[optind + 1], fields);
    json_decref(fields);
    if (rc == 0) rc = audit_flush(a, 10000);
    audit_close(a);
    if (rc < 0) {
        fprintf(stderr, "shed audit append: write to %s: %s\n", o.path, strerror(-rc));
        return 1;
    }
    return 0;
}

int cmd_audit(int argc, char **argv)
{
    if (argc < 2) return cmd_usage_error("audit", USAGE, "missing subcommand (verify)");
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "verify")) return verify(argc - 1, argv + 1);
    if (!strcmp(argv[1], "append")) return append(argc - 1, argv + 1);
    return cmd_usage_error("audit", USAGE, "unknown subcommand or option '%s'", argv[1]);
}
