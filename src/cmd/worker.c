/* shed worker: claim work items from a self_hosted environment and serve each
 * session in its own sandbox (src/worker/). Flags and variables follow
 * `ant beta:worker poll` / `run`. Never prints a key, token or secret, and
 * refuses a key or secret file that group or others can read.
 */
#include "cmd/cmd.h"

#include "base/cleanup.h"
#include "base/log.h"
#include "memory/memory.h"
#include "obs/obs.h"
#include "worker/api.h"
#include "worker/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char USAGE[] =
    "usage: shed worker [poll] [options]\n"
    "       shed worker run --session-id ID --work-id ID [options]\n"
    "       shed worker admin list | kill SESSION_ID | policy SESSION_ID FILE|--reset\n"
    "\n"
    "Claim work items from a self_hosted environment and run each session's tool\n"
    "calls in its own sandbox, up to --max-sessions at once.\n"
    "\n"
    "  --environment-id ID        environment to poll (ANTHROPIC_ENVIRONMENT_ID)\n"
    "  --environment-key-file F   file holding the environment key (preferred; must not be\n"
    "                             readable by group or others; re-read on SIGHUP and on a 401)\n"
    "  --environment-key KEY      the key itself (ANTHROPIC_ENVIRONMENT_KEY)\n"
    "  --worker-id ID             unique worker id (ANTHROPIC_WORKER_ID; default host-random)\n"
    "  --base-url URL             API base URL (ANTHROPIC_BASE_URL; default https://api.anthropic.com)\n"
    "  --workdir PATH             work directory inside the sandbox (default /workspace)\n"
    "  --max-idle SECONDS         stop serving a session this long after its turn ended\n"
    "                             (default 60; 0 = never)\n"
    "  --max-sessions N           sessions served at once (default sized to this machine)\n"
    "  --policy FILE              sandbox policy (default: the built-in deny-by-default policy)\n"
    "  --state-dir DIR            workspaces and crash-safety records (default /var/lib/shed\n"
    "                             as root, else $XDG_STATE_HOME/shed)\n"
    "  --metrics-listen ADDR      serve /metrics, /healthz, /readyz (e.g. 127.0.0.1:9464)\n"
    "  --audit-log FILE           hash-chained audit log (docs/operations.md); refuse to start\n"
    "                             when it cannot be opened\n"
    "  --audit-content MODE       none, metadata (default) or full\n"
    "  --audit-rotate-size SIZE   rotate the audit log at SIZE (default 64M; 0 = never)\n"
    "  --audit-fsync              fdatasync every audit record\n"
    "  --admin-socket PATH        owner-only admin socket: list sessions, kill one, change\n"
    "                             one's egress policy (default <state dir>/admin.sock;\n"
    "                             '' = none; see shed worker admin --help)\n"
    "  --max-session-seconds N    end a work item this long after its claim, like an admin\n"
    "                             kill (default 0 = no limit)\n"
    "  --memory-sync-interval D   sync memory stores at most this often, after tool calls\n"
    "                             (default 15s, minimum 5s)\n"
    "  --memory-sync-deletions M  enabled (default), log_only or disabled: whether a file\n"
    "                             deleted in the sandbox deletes its memory\n"
    "  --log-format text|json     log format on stderr (default text)\n"
    "  --log-level LEVEL          error, warn, info (default) or debug\n"
    "\n"
    "shed worker run (one already-claimed item, like `ant beta:worker run`):\n"
    "  --session-id ID            (ANTHROPIC_SESSION_ID)\n"
    "  --work-id ID               (ANTHROPIC_WORK_ID)\n"
    "  --work-secret-file FILE    the item's secret (ANTHROPIC_WORK_SECRET_FILE, or the secret\n"
    "                             itself in ANTHROPIC_WORK_SECRET)\n"
    "\n"
    "SIGTERM/SIGINT: stop polling, cancel in-flight calls and post their error results,\n"
    "stop the items, destroy the sandboxes, exit 0. A second signal exits at once.\n";

enum {
    OPT_ENV_ID = 256,
    OPT_ENV_KEY,
    OPT_ENV_KEY_FILE,
    OPT_WORKER_ID,
    OPT_BASE_URL,
    OPT_WORKDIR,
    OPT_MAX_IDLE,
    OPT_MAX_SESSIONS,
    OPT_POLICY,
    OPT_STATE_DIR,
    OPT_LOG_FORMAT,
    OPT_LOG_LEVEL,
    OPT_SESSION_ID,
    OPT_WORK_ID,
    OPT_SECRET_FILE,
    OPT_TOOL_TIMEOUT,
    OPT_METRICS,
    OPT_AUDIT_LOG,
    OPT_AUDIT_CONTENT,
    OPT_AUDIT_ROTATE,
    OPT_AUDIT_FSYNC,
    OPT_ADMIN_SOCKET,
    OPT_MAX_SESSION,
    OPT_MEM_INTERVAL,
    OPT_MEM_DELETIONS,
};

int cmd_worker_admin(int argc, char **argv, const char *default_state_dir); /* worker_admin.c */

static const struct option OPTS[] = {
    {"environment-id", required_argument, NULL, OPT_ENV_ID},
    {"environment-key", required_argument, NULL, OPT_ENV_KEY},
    {"environment-key-file", required_argument, NULL, OPT_ENV_KEY_FILE},
    {"worker-id", required_argument, NULL, OPT_WORKER_ID},
    {"base-url", required_argument, NULL, OPT_BASE_URL},
    {"workdir", required_argument, NULL, OPT_WORKDIR},
    {"max-idle", required_argument, NULL, OPT_MAX_IDLE},
    {"max-sessions", required_argument, NULL, OPT_MAX_SESSIONS},
    {"policy", required_argument, NULL, OPT_POLICY},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"session-id", required_argument, NULL, OPT_SESSION_ID},
    {"work-id", required_argument, NULL, OPT_WORK_ID},
    {"work-secret-file", required_argument, NULL, OPT_SECRET_FILE},
    {"tool-timeout", required_argument, NULL, OPT_TOOL_TIMEOUT},
    {"metrics-listen", required_argument, NULL, OPT_METRICS},
    {"audit-log", required_argument, NULL, OPT_AUDIT_LOG},
    {"audit-content", required_argument, NULL, OPT_AUDIT_CONTENT},
    {"audit-rotate-size", required_argument, NULL, OPT_AUDIT_ROTATE},
    {"audit-fsync", no_argument, NULL, OPT_AUDIT_FSYNC},
    {"admin-socket", required_argument, NULL, OPT_ADMIN_SOCKET},
    {"max-session-seconds", required_argument, NULL, OPT_MAX_SESSION},
    {"memory-sync-interval", required_argument, NULL, OPT_MEM_INTERVAL},
    {"memory-sync-deletions", required_argument, NULL, OPT_MEM_DELETIONS},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const char *env_or(const char *v, const char *name)
{
    if (v) return v;
    const char *e = getenv(name);
    return e && *e ? e : NULL;
}

/* "60", "60s", "2m", "1h", "1.5s" -> ms; -EINVAL on junk. */
static int parse_duration_ms(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0) return -EINVAL;
    double mult = 1000;
    if (!strcmp(end, "") || !strcmp(end, "s")) mult = 1000;
    else if (!strcmp(end, "ms")) mult = 1;
    else if (!strcmp(end, "m")) mult = 60000;
    else if (!strcmp(end, "h")) mult = 3600000;
    else return -EINVAL;
    if (v * mult > 1e15) return -EINVAL;
    *out = (int64_t)(v * mult);
    return 0;
}

static char *default_state_dir(void)
{
    char *p = NULL;
    if (geteuid() == 0) return strdup("/var/lib/shed");
    const char *x = getenv("XDG_STATE_HOME");
    if (x && *x) {
        if (asprintf(&p, "%s/shed", x) < 0) return NULL;
        return p;
    }
    const char *h = getenv("HOME");
    if (asprintf(&p, "%s/.local/state/shed", h && *h ? h : "/tmp") < 0) return NULL;
    return p;
}

static int read_secret_file(const char *path, char **out, shed_err *err)
{
    struct stat st;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return err_set(err, errno, "open work secret file %s", path);
    if (fstat(fd, &st) < 0) return err_set(err, errno, "stat %s", path);
    if (!S_ISREG(st.st_mode)) return err_msg(err, EINVAL, "work secret file %s is not a regular file", path);
    if (st.st_mode & 077)
        return err_msg(err, EPERM,
                       "work secret file %s is readable by group or others (mode %04o); run: chmod 600 %s",
                       path, (unsigned)(st.st_mode & 07777), path);
    if (st.st_size > 16384) return err_msg(err, EINVAL, "work secret file %s is too large", path);
    char buf[16385];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n < 0) return err_set(err, errno, "read %s", path);
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) buf[--n] = 0;
    *out = strdup(buf);
    explicit_bzero(buf, sizeof(buf));
    return *out ? 0 : err_set(err, ENOMEM, "secret");
}

int cmd_worker(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "admin")) {
        _cleanup_free_ char *sd = default_state_dir();
        return cmd_worker_admin(argc - 1, argv + 1, sd ? sd : ".");
    }
    if (cmd_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return 0;
    }
    bool run_mode = false;
    if (argc > 1 && (!strcmp(argv[1], "run") || !strcmp(argv[1], "poll"))) {
        run_mode = !strcmp(argv[1], "run");
        argc--;
        argv++;
    }
    const char *env_id = NULL, *env_key = NULL, *key_file = NULL, *worker_id = NULL,
               *base_url = NULL, *workdir = "/workspace", *policy = NULL, *state_dir = NULL,
               *log_format = "text", *log_level = "info", *session_id = NULL, *work_id = NULL,
               *secret_file = NULL, *metrics_listen = NULL, *audit_log = NULL, *admin_socket = NULL;
    int64_t max_session_ms = 0, mem_interval_ms = 0;
    memory_delete_mode_t mem_deletions = MEMORY_DELETE_ENABLED;
    audit_content audit_mode = AUDIT_CONTENT_METADATA;
    unsigned long long audit_rotate = 64ULL << 20;
    bool audit_fsync = false;
    int64_t max_idle_ms = 60000, tool_timeout_ms = 0;
    long max_sessions = 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", OPTS, NULL)) != -1) {
        switch (c) {
        case OPT_ENV_ID: env_id = optarg; break;
        case OPT_ENV_KEY: env_key = optarg; break;
        case OPT_ENV_KEY_FILE: key_file = optarg; break;
        case OPT_WORKER_ID: worker_id = optarg; break;
        case OPT_BASE_URL: base_url = optarg; break;
        case OPT_WORKDIR: workdir = optarg; break;
        case OPT_MAX_IDLE:
            if (parse_duration_ms(optarg, &max_idle_ms) < 0)
                return cmd_usage_error("worker", USAGE, "--max-idle: '%s' is not a duration in seconds", optarg);
            break;
        case OPT_TOOL_TIMEOUT:
            if (parse_duration_ms(optarg, &tool_timeout_ms) < 0 || tool_timeout_ms <= 0)
                return cmd_usage_error("worker", USAGE, "--tool-timeout: '%s' is not a positive duration", optarg);
            break;
        case OPT_MAX_SESSIONS: {
            char *end;
            max_sessions = strtol(optarg, &end, 10);
            if (*end || max_sessions < 1 || max_sessions > 100000)
                return cmd_usage_error("worker", USAGE, "--max-sessions: '%s' is not a number from 1 to 100000", optarg);
            break;
        }
        case OPT_POLICY: policy = optarg; break;
        case OPT_STATE_DIR: state_dir = optarg; break;
        case OPT_LOG_FORMAT: log_format = optarg; break;
        case OPT_LOG_LEVEL: log_level = optarg; break;
        case OPT_SESSION_ID: session_id = optarg; break;
        case OPT_WORK_ID: work_id = optarg; break;
        case OPT_SECRET_FILE: secret_file = optarg; break;
        case OPT_METRICS: metrics_listen = optarg; break;
        case OPT_AUDIT_LOG: audit_log = optarg; break;
        case OPT_AUDIT_CONTENT:
            if (audit_parse_content(optarg, &audit_mode) < 0)
                return cmd_usage_error("worker", USAGE, "--audit-content must be none, metadata or full");
            break;
        case OPT_AUDIT_ROTATE:
            if (cmd_parse_size(optarg, &audit_rotate) < 0)
                return cmd_usage_error("worker", USAGE, "--audit-rotate-size: '%s' is not a size", optarg);
            break;
        case OPT_AUDIT_FSYNC: audit_fsync = true; break;
        case OPT_ADMIN_SOCKET: admin_socket = optarg; break;
        case OPT_MAX_SESSION:
            if (parse_duration_ms(optarg, &max_session_ms) < 0)
                return cmd_usage_error("worker", USAGE, "--max-session-seconds: '%s' is not a duration in seconds", optarg);
            break;
        case OPT_MEM_INTERVAL: {
            shed_err ierr = {0};
            if (parse_duration_ms(optarg, &mem_interval_ms) < 0 ||
                memory_check_sync_interval(mem_interval_ms, &ierr) < 0)
                return cmd_usage_error("worker", USAGE, "--memory-sync-interval: '%s' is not a duration of at least 5s",
                                       optarg);
            break;
        }
        case OPT_MEM_DELETIONS:
            if (memory_parse_delete_mode(optarg, &mem_deletions) < 0)
                return cmd_usage_error("worker", USAGE, "--memory-sync-deletions must be enabled, log_only or disabled");
            break;
        case ':': return cmd_usage_error("worker", USAGE, "option '%s' needs a value", argv[optind - 1]);
        default: return cmd_usage_error("worker", USAGE, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cmd_usage_error("worker", USAGE, "unexpected argument '%s'", argv[optind]);
    int fmt = log_parse_format(log_format);
    if (fmt < 0) return cmd_usage_error("worker", USAGE, "--log-format must be text or json");
    int lvl = log_parse_level(log_level);
    if (lvl < 0) return cmd_usage_error("worker", USAGE, "--log-level must be error, warn, info or debug");
    log_setup(lvl, fmt);

    env_id = env_or(env_id, "ANTHROPIC_ENVIRONMENT_ID");
    worker_id = env_or(worker_id, "ANTHROPIC_WORKER_ID");
    base_url = env_or(base_url, "ANTHROPIC_BASE_URL");
    if (!base_url) base_url = "https://api.anthropic.com";
    if (!env_id) return cmd_usage_error("worker", USAGE, "--environment-id (or ANTHROPIC_ENVIRONMENT_ID) is required");

    shed_err err = {0};
    api_keyring keys = {0};
    int rc;
    if (key_file) {
        rc = api_keyring_load_file(&keys, key_file, &err);
        if (rc < 0) {
            fprintf(stderr, "shed worker: %s\n", err.msg);
            return EXIT_SETUP;
        }
    } else if ((env_key = env_or(env_key, "ANTHROPIC_ENVIRONMENT_KEY"))) {
        rc = api_keyring_set(&keys, env_key, &err);
        if (rc < 0) {
            fprintf(stderr, "shed worker: %s\n", err.msg);
            return EXIT_SETUP;
        }
    }
    _cleanup_free_ char *secret = NULL;
    worker_config cfg = {
        .environment_id = env_id,
        .keys = &keys,
        .worker_id = worker_id,
        .base_url = base_url,
        .workdir = workdir,
        .max_idle_ms = max_idle_ms,
        .max_sessions = (int)max_sessions,
        .policy_path = policy,
        .tool_timeout_ms = tool_timeout_ms,
        .metrics_listen = metrics_listen,
        .audit_log = audit_log,
        .audit_content = (int)audit_mode,
        .audit_rotate_bytes = audit_rotate,
        .audit_fsync = audit_fsync,
        .admin_socket = admin_socket,
        .max_session_ms = max_session_ms,
        .memory_sync_ms = mem_interval_ms,
        .memory_delete_mode = (int)mem_deletions,
    };
    if (run_mode) {
        session_id = env_or(session_id, "ANTHROPIC_SESSION_ID");
        work_id = env_or(work_id, "ANTHROPIC_WORK_ID");
        secret_file = env_or(secret_file, "ANTHROPIC_WORK_SECRET_FILE");
        if (!session_id) return cmd_usage_error("worker", USAGE, "run: --session-id (or ANTHROPIC_SESSION_ID) is required");
        if (!work_id) return cmd_usage_error("worker", USAGE, "run: --work-id (or ANTHROPIC_WORK_ID) is required");
        if (secret_file) {
            if (read_secret_file(secret_file, &secret, &err) < 0) {
                fprintf(stderr, "shed worker: %s\n", err.msg);
                api_keyring_free(&keys);
                return EXIT_SETUP;
            }
        } else if (getenv("ANTHROPIC_WORK_SECRET") && *getenv("ANTHROPIC_WORK_SECRET")) {
            secret = strdup(getenv("ANTHROPIC_WORK_SECRET"));
        }
        cfg.run_one = true;
        cfg.run_session_id = session_id;
        cfg.run_work_id = work_id;
        cfg.run_secret = secret;
        if (!keys.key && !secret) {
            api_keyring_free(&keys);
            return cmd_usage_error("worker", USAGE,
                                   "run: an environment key is required when there is no work secret");
        }
    } else if (!keys.key) {
        return cmd_usage_error("worker", USAGE,
                               "--environment-key-file (or --environment-key / ANTHROPIC_ENVIRONMENT_KEY) is required");
    }
    /* The tools never see the worker's environment, but scrub our own copy
     * of the credentials anyway so no child can inherit them. */
    unsetenv("ANTHROPIC_ENVIRONMENT_KEY");
    unsetenv("ANTHROPIC_WORK_SECRET");
    _cleanup_free_ char *sd = state_dir ? strdup(state_dir) : default_state_dir();
    cfg.state_dir = sd;
    rc = worker_run(&cfg, &err);
    if (secret) explicit_bzero(secret, strlen(secret));
    api_keyring_free(&keys);
    if (rc < 0) {
        fprintf(stderr, "shed worker: %s\n", err.msg);
        return rc == -ENOSYS || rc == -EPERM ? EXIT_SETUP : 1;
    }
    return 0;
}
