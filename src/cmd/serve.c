/* shed serve: the local control plane (src/server/). Resolves the admin key
 * and state directory, starts the server, prints one ready line naming the
 * URL, and exits cleanly on SIGTERM/SIGINT.
 * Never prints or logs the admin key (only the path of its file). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "client/client.h"
#include "cmd/cmd.h"
#include "server/server.h"

static const char USAGE[] =
    "usage: shed serve [--listen 127.0.0.1:8790] [--db sqlite:PATH] [--state-dir DIR]\n"
    "                  [--admin-key-file FILE] [--lease-ttl SECONDS] [--sync full|normal|strict]\n"
    "Serve the Managed Agents work API (environments, work queue, sessions, events)\n"
    "locally from SQLite, so workers and SDKs run with no Anthropic account.\n"
    "  --listen ADDR:PORT     where to listen (port 0: any free port)\n"
    "  --db sqlite:PATH       database (default sqlite:$STATE_DIR/shed.db)\n"
    "  --state-dir DIR        default /var/lib/shed as root, else ~/.local/state/shed\n"
    "  --admin-key-file FILE  admin key (else SHED_ADMIN_KEY, else $STATE_DIR/admin.key,\n"
    "                         generated 0600 on first start)\n"
    "  --lease-ttl SECONDS    work-item lease TTL a heartbeat extends by (default 60)\n"
    "  --sync full|normal|strict\n"
    "                         full (default): every answer follows the fsync of what it\n"
    "                         reports, so nothing acknowledged is lost even on power loss;\n"
    "                         new events reach waiting streams while the fsync runs.\n"
    "                         strict: streams too only after the fsync. normal: no fsync\n"
    "                         (survives a killed server, not a host crash; faster)\n"
    "  --log-level LEVEL      error|warn|info|debug (default info)\n"
    "Prints one line when ready: 'shed serve: listening on http://HOST:PORT'.\n";

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -errno;
    return 0;
}

/* The admin key: SHED_ADMIN_KEY, --admin-key-file, or $STATE_DIR/admin.key (made if absent). */
static int resolve_admin_key(const char *key_file, const char *state_dir, char *out, size_t n)
{
    const char *env = getenv("SHED_ADMIN_KEY");
    shed_err err = {0};
    if (env && *env) {
        if (strlen(env) < 16 || strlen(env) >= n) {
            fprintf(stderr, "shed serve: SHED_ADMIN_KEY must be 16 to %zu characters\n", n - 1);
            return -1;
        }
        snprintf(out, n, "%s", env);
        return 0;
    }
    if (key_file) {
        if (client_read_key_file(key_file, out, n, &err) < 0) {
            fprintf(stderr, "shed serve: %s\n", err.msg);
            return -1;
        }
        if (strlen(out) < 16) {
            fprintf(stderr, "shed serve: the key in %s is shorter than 16 characters\n", key_file);
            return -1;
        }
        return 0;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/admin.key", state_dir);
    if (access(path, F_OK) == 0) {
        if (client_read_key_file(path, out, n, &err) < 0) {
            fprintf(stderr, "shed serve: %s\n", err.msg);
            return -1;
        }
        log_info("admin key: %s", path);
        return 0;
    }
    if (server_new_secret(SERVER_ADMIN_KEY_PREFIX, out, n) < 0) {
        fprintf(stderr, "shed serve: could not generate an admin key\n");
        return -1;
    }
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        fprintf(stderr, "shed serve: create %s: %s (check --state-dir is writable)\n", path,
                strerror(errno));
        return -1;
    }
    size_t len = strlen(out);
    if (write(fd, out, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd) < 0) {
        fprintf(stderr, "shed serve: write %s: %s\n", path, strerror(errno));
        unlink(path);
        return -1;
    }
    log_info("generated an admin key into %s (mode 0600)", path);
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    enum {
        OPT_LEASE = 256,
        OPT_PING,
        OPT_RECLAIM,
        OPT_LOG,
        OPT_KEYFILE,
        OPT_STATE,
        OPT_MAXBODY,
        OPT_SYNC
    };
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"listen", required_argument, NULL, 'l'},
        {"db", required_argument, NULL, 'd'},
        {"state-dir", required_argument, NULL, OPT_STATE},
        {"admin-key-file", required_argument, NULL, OPT_KEYFILE},
        {"lease-ttl", required_argument, NULL, OPT_LEASE},
        {"log-level", required_argument, NULL, OPT_LOG},
        {"sync", required_argument, NULL, OPT_SYNC},
        /* Hidden, for tests and benchmarks (docs/protocol.md). */
        {"sse-ping-ms", required_argument, NULL, OPT_PING},
        {"reclaim-ms", required_argument, NULL, OPT_RECLAIM},
        {"max-body", required_argument, NULL, OPT_MAXBODY},
        {0, 0, 0, 0},
    };
    server_config_t cfg;
    server_config_defaults(&cfg);
    const char *state_dir = NULL, *key_file = NULL, *db = NULL;
    int level = LOG_INFO;
    optind = 1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        char *end = NULL;
        switch (o) {
        case 'h':
            fputs(USAGE, stdout);
            return 0;
        case 'l':
            cfg.listen = optarg;
            break;
        case 'd':
            db = optarg;
            break;
        case OPT_STATE:
            state_dir = optarg;
            break;
        case OPT_KEYFILE:
            key_file = optarg;
            break;
        case OPT_LEASE:
            cfg.lease_ttl_s = strtoll(optarg, &end, 10);
            if (*end || cfg.lease_ttl_s < 1 || cfg.lease_ttl_s > 3600)
                return cmd_usage_error("serve", USAGE, "--lease-ttl must be 1..3600 seconds");
            break;
        case OPT_PING:
            cfg.sse_ping_ms = strtoll(optarg, &end, 10);
            if (*end || cfg.sse_ping_ms < 10 || cfg.sse_ping_ms > 15000)
                return cmd_usage_error("serve", USAGE, "--sse-ping-ms must be 10..15000");
            break;
        case OPT_RECLAIM:
            cfg.reclaim_ms = strtoll(optarg, &end, 10);
            if (*end || cfg.reclaim_ms < 1)
                return cmd_usage_error("serve", USAGE, "--reclaim-ms must be >= 1");
            break;
        case OPT_MAXBODY: {
            unsigned long long v;
            if (cmd_parse_size(optarg, &v) < 0 || v < 1024 || v > (1ull << 30))
                return cmd_usage_error("serve", USAGE, "--max-body must be 1K..1G");
            cfg.max_body = (size_t)v;
            break;
        }
        case OPT_SYNC:
            if (!strcmp(optarg, "normal"))
                cfg.sync_normal = true;
            else if (!strcmp(optarg, "strict"))
                cfg.sync_strict = true;
            else if (strcmp(optarg, "full"))
                return cmd_usage_error("serve", USAGE,
                                       "--sync must be 'full', 'normal' or 'strict'");
            break;
        case OPT_LOG:
            if ((level = log_parse_level(optarg)) < 0)
                return cmd_usage_error("serve", USAGE, "--log-level: unknown level '%s'", optarg);
            break;
        case ':':
            return cmd_usage_error("serve", USAGE, "option '%s' needs a value", argv[optind - 1]);
        default:
            return cmd_usage_error("serve", USAGE, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cmd_usage_error("serve", USAGE, "unexpected argument '%s'", argv[optind]);
    log_setup(level, LOG_TEXT);
    /* The database holds session content (tool inputs and outputs): owner only. */
    umask(077);

    char sd[4000];
    if (state_dir)
        snprintf(sd, sizeof(sd), "%s", state_dir);
    else if (client_default_state_dir(sd, sizeof(sd)) < 0)
        return cmd_usage_error("serve", USAGE, "state directory path too long");
    if (mkdir_p(sd, 0700) < 0) {
        fprintf(stderr, "shed serve: create state directory %s: %s (pass --state-dir)\n", sd,
                strerror(errno));
        return EXIT_SETUP;
    }
    char dburl[4200];
    if (db)
        snprintf(dburl, sizeof(dburl), "%s", db);
    else
        snprintf(dburl, sizeof(dburl), "sqlite:%s/shed.db", sd);
    cfg.db_url = dburl;

    char key[256];
    if (resolve_admin_key(key_file, sd, key, sizeof(key)) < 0) return EXIT_SETUP;
    cfg.admin_key = key;

    /* Many idle long-polls and streams are many sockets. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 128) {
        rlim_t maxc = rl.rlim_cur - 64;
        cfg.max_connections = maxc > 16384 ? 16384 : (unsigned)maxc;
    }

    /* Signals: blocked in every thread, taken here by sigwait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    server_t *srv = NULL;
    shed_err err = {0};
    int rc = server_start(&cfg, &srv, &err);
    explicit_bzero(key, sizeof(key));
    if (rc < 0) {
        fprintf(stderr, "shed serve: %s\n", err.msg);
        return EXIT_SETUP;
    }
    const char *host_end = strrchr(cfg.listen, ':');
    int hlen = (int)(host_end - cfg.listen);
    if (hlen == 9 && !strncmp(cfg.listen, "localhost", 9))
        printf("shed serve: listening on http://127.0.0.1:%d\n", server_port(srv));
    else
        printf("shed serve: listening on http://%.*s:%d\n", hlen, cfg.listen, server_port(srv));
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    log_info("signal %d: shutting down", sig);
    server_stop(srv);
    log_info("stopped");
    return 0;
}
