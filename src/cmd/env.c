/* shed env: manage environments and their keys on a local control plane
 * (`shed serve`), with the admin key. A new environment key is printed once
 * (or written 0600 to --key-file) and never logged. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "client/client.h"
#include "cmd/cmd.h"

static const char USAGE[] =
    "usage: shed env create --name NAME [--description TEXT] [--key-file FILE] [--json]\n"
    "       shed env list [--json]\n"
    "       shed env key create ENV_ID [--key-file FILE]\n"
    "       shed env key list ENV_ID\n"
    "       shed env key revoke ENV_ID KEY_ID\n"
    "       shed env archive ENV_ID | delete ENV_ID\n"
    "Common: [--base-url URL] [--admin-key-file FILE] [--state-dir DIR]\n"
    "  (server URL from --base-url or SHED_BASE_URL, default http://127.0.0.1:8790;\n"
    "   admin key from SHED_ADMIN_KEY, --admin-key-file, or $STATE_DIR/admin.key)\n"
    "'env create' prints ANTHROPIC_ENVIRONMENT_ID=... and ANTHROPIC_ENVIRONMENT_KEY=...\n"
    "(with --key-file, the key goes to that file, mode 0600, and is not printed).\n";

typedef struct env_opts {
    const char *base_url, *key_file, *state_dir, *name, *description, *out_key_file;
    bool json;
} env_opts_t;

static int api(client_t *c, const char *method, const char *path, json_t *body, long want,
               json_t **out)
{
    return client_call(c, "env", method, path, body, want, out);
}

static int write_key_file(const char *path, const char *key)
{
    _cleanup_close_ int fd =
        open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || fchmod(fd, 0600) < 0) {
        fprintf(stderr, "shed env: create %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t n = strlen(key);
    if (write(fd, key, n) != (ssize_t)n || write(fd, "\n", 1) != 1) {
        fprintf(stderr, "shed env: write %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

static int mint_key(client_t *c, const char *env_id, const env_opts_t *o)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/environments/%s/keys", env_id);
    _cleanup_json_ json_t *k = NULL;
    if (api(c, "POST", path, NULL, 201, &k)) return 1;
    const char *key = json_string_value(json_object_get(k, "key"));
    if (!key) {
        fprintf(stderr, "shed env: the server returned no key\n");
        return 1;
    }
    if (o->out_key_file) {
        if (write_key_file(o->out_key_file, key)) return 1;
        printf("ANTHROPIC_ENVIRONMENT_KEY_FILE=%s\n", o->out_key_file);
    } else {
        printf("ANTHROPIC_ENVIRONMENT_KEY=%s\n", key);
    }
    return 0;
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2));
    if (s) puts(s);
    free(s);
}

int cmd_env(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"base-url", required_argument, NULL, 'u'},
        {"admin-key-file", required_argument, NULL, 'a'},
        {"state-dir", required_argument, NULL, 's'},
        {"name", required_argument, NULL, 'n'},
        {"description", required_argument, NULL, 'd'},
        {"key-file", required_argument, NULL, 'k'},
        {"json", no_argument, NULL, 'j'},
        {0, 0, 0, 0},
    };
    env_opts_t o = {0};
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            fputs(USAGE, stdout);
            return 0;
        case 'u':
            o.base_url = optarg;
            break;
        case 'a':
            o.key_file = optarg;
            break;
        case 's':
            o.state_dir = optarg;
            break;
        case 'n':
            o.name = optarg;
            break;
        case 'd':
            o.description = optarg;
            break;
        case 'k':
            o.out_key_file = optarg;
            break;
        case 'j':
            o.json = true;
            break;
        case ':':
            return cmd_usage_error("env", USAGE, "option '%s' needs a value", argv[optind - 1]);
        default:
            return cmd_usage_error("env", USAGE, "unknown option '%s'", argv[optind - 1]);
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    if (nargs < 1) return cmd_usage_error("env", USAGE, "missing subcommand");
    const char *sub = args[0];
    client_t c;
    shed_err err = {0};
    if (client_init(&c, o.base_url, o.key_file, o.state_dir, &err) < 0) {
        fprintf(stderr, "shed env: %s\n", err.msg);
        return EXIT_SETUP;
    }
    char path[256];
    if (!strcmp(sub, "create")) {
        if (nargs != 1) return cmd_usage_error("env", USAGE, "unexpected argument '%s'", args[1]);
        if (!o.name) return cmd_usage_error("env", USAGE, "env create needs --name");
        _cleanup_json_ json_t *body =
            json_pack("{s:s,s:{s:s}}", "name", o.name, "config", "type", "self_hosted");
        if (o.description) json_object_set_new(body, "description", json_string(o.description));
        _cleanup_json_ json_t *e = NULL;
        if (api(&c, "POST", "/v1/environments", body, 200, &e)) return 1;
        const char *id = json_string_value(json_object_get(e, "id"));
        if (o.json) print_json(e);
        printf("ANTHROPIC_ENVIRONMENT_ID=%s\n", id);
        return mint_key(&c, id, &o);
    }
    if (!strcmp(sub, "list")) {
        _cleanup_json_ json_t *l = NULL;
        if (api(&c, "GET", "/v1/environments?limit=1000", NULL, 200, &l)) return 1;
        if (o.json) {
            print_json(l);
            return 0;
        }
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(l, "data"), i, e)
            printf("%s\t%s\n", json_string_value(json_object_get(e, "id")),
                   json_string_value(json_object_get(e, "name")));
        return 0;
    }
    if (!strcmp(sub, "archive") || !strcmp(sub, "delete")) {
        if (nargs != 2) return cmd_usage_error("env", USAGE, "env %s needs ENV_ID", sub);
        snprintf(path, sizeof(path), "/v1/environments/%.64s%s", args[1],
                 !strcmp(sub, "archive") ? "/archive" : "");
        _cleanup_json_ json_t *r = NULL;
        if (api(&c, !strcmp(sub, "archive") ? "POST" : "DELETE", path, NULL, 200, &r)) return 1;
        printf("%s\n", json_string_value(json_object_get(r, "id")));
        return 0;
    }
    if (!strcmp(sub, "key")) {
        if (nargs < 3) return cmd_usage_error("env", USAGE, "env key needs an action and ENV_ID");
        const char *act = args[1], *env_id = args[2];
        if (!strcmp(act, "create") && nargs == 3) return mint_key(&c, env_id, &o);
        if (!strcmp(act, "list") && nargs == 3) {
            snprintf(path, sizeof(path), "/v1/environments/%.64s/keys", env_id);
            _cleanup_json_ json_t *l = NULL;
            if (api(&c, "GET", path, NULL, 200, &l)) return 1;
            size_t i;
            json_t *k;
            json_array_foreach(json_object_get(l, "data"), i, k)
            {
                json_t *rv = json_object_get(k, "revoked_at");
                printf("%s\t%s\t%s\n", json_string_value(json_object_get(k, "id")),
                       json_string_value(json_object_get(k, "created_at")),
                       json_is_string(rv) ? "revoked" : "active");
            }
            return 0;
        }
        if (!strcmp(act, "revoke") && nargs == 4) {
            snprintf(path, sizeof(path), "/v1/environments/%.64s/keys/%.64s", env_id, args[3]);
            _cleanup_json_ json_t *r = NULL;
            if (api(&c, "DELETE", path, NULL, 200, &r)) return 1;
            printf("revoked %s\n", args[3]);
            return 0;
        }
        return cmd_usage_error("env", USAGE, "env key: unknown action or wrong arguments");
    }
    return cmd_usage_error("env", USAGE, "unknown subcommand '%s'", sub);
}
