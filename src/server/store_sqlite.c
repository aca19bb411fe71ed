/* The SQLite backend of the control plane store (store.h).
 *
 * One connection, used by one thread at a time (the HTTP event thread).
 * WAL journal with synchronous=FULL by default: every acknowledged state
 * change has been fsynced to the WAL before the HTTP answer leaves, so neither
 * `kill -9` of the server (which NORMAL would already survive: the WAL write
 * is in the kernel before COMMIT returns) nor a host crash or power loss
 * (which NORMAL would not) loses it. The cost is one fsync per write
 * transaction; reads never write, and empty polls are reads. `--sync normal`
 * trades the power-loss guarantee for throughput (laptops, CI).
 *
 * One exception to "fsync inside COMMIT": an events append asked for early
 * (STORE_APPEND_EARLY, the POST route) commits at synchronous=NORMAL, so the
 * route can send the new events to the session's waiting streams before the
 * disk has them, and then calls sq_sync, which fsyncs the WAL exactly as
 * COMMIT at FULL would have, before the POST is answered. Nothing else runs
 * on the connection in between (one thread), so only those stream sends
 * leave before the fsync (`--sync strict` keeps them behind it too;
 * docs/protocol.md, "Durability").
 *
 * Every state change is one BEGIN IMMEDIATE ... COMMIT: a poll's select and
 * claim happen in the same transaction, so no two polls can take the same
 * item. Only prepared statements with bound parameters; never SQL built from
 * input. Never stores a credential: only SHA-256 digests. */
#include "server/store.h"

#include <errno.h>
#include <inttypes.h>
#include "base/lazy_sqlite.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/id.h"
#include "base/json.h"

#define STMT_CACHE 192

typedef struct sq_store {
    store_t base;
    sqlite3 *db;
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } cache[STMT_CACHE];
    buf_t answer;      /* events_append's answer, reused (store_append_result_t.answer) */
    bool sync_pending; /* an early append committed without its fsync (sq_sync) */
    char failed[256];  /* a flush failed: every later write is refused with this */
    bool in_memory;    /* ":memory:" (tests, fuzzing): no WAL, nothing to flush */
} sq_store_t;

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS environments(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT UNIQUE NOT NULL, name TEXT NOT NULL, description TEXT, config TEXT NOT NULL,"
    " metadata TEXT NOT NULL, scope TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    " archived_at INTEGER);"
    "CREATE TABLE IF NOT EXISTS env_keys(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT UNIQUE NOT NULL, env_id TEXT NOT NULL, key_hash TEXT UNIQUE NOT NULL,"
    " created_at INTEGER NOT NULL, revoked_at INTEGER);"
    "CREATE TABLE IF NOT EXISTS sessions(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT UNIQUE NOT NULL, env_id TEXT NOT NULL, status TEXT NOT NULL, agent TEXT NOT NULL,"
    " metadata TEXT NOT NULL, title TEXT, resources TEXT NOT NULL, created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL, archived_at INTEGER);"
    "CREATE INDEX IF NOT EXISTS sessions_env ON sessions(env_id, seq);"
    "CREATE TABLE IF NOT EXISTS work(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT UNIQUE NOT NULL, env_id TEXT NOT NULL, data_type TEXT NOT NULL,"
    " data_id TEXT NOT NULL, state TEXT NOT NULL, metadata TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, queued_at INTEGER NOT NULL, claimed_at INTEGER,"
    " claimed_by TEXT, gen INTEGER NOT NULL DEFAULT 0, acknowledged_at INTEGER,"
    " started_at INTEGER, latest_heartbeat_at INTEGER, stop_requested_at INTEGER,"
    " stopped_at INTEGER, lease_expires_at INTEGER, ttl_seconds INTEGER NOT NULL,"
    " deliveries INTEGER NOT NULL DEFAULT 0, acked_gen INTEGER);"
    "CREATE INDEX IF NOT EXISTS work_queue ON work(env_id, state, seq);"
    "CREATE INDEX IF NOT EXISTS work_data ON work(data_id, state);"
    "CREATE TABLE IF NOT EXISTS work_tokens(token_hash TEXT PRIMARY KEY, work_id TEXT NOT NULL,"
    " gen INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS work_tokens_work ON work_tokens(work_id);"
    "CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT UNIQUE NOT NULL, session_id TEXT NOT NULL, type TEXT NOT NULL, answers TEXT,"
    " body TEXT NOT NULL, processed_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS events_session ON events(session_id, seq);"
    "CREATE UNIQUE INDEX IF NOT EXISTS events_answers ON events(session_id, answers)"
    " WHERE answers IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS objects(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT UNIQUE NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS objects_kind ON objects(kind, seq);"
    "CREATE TABLE IF NOT EXISTS skill_versions(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT NOT NULL, skill_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,"
    " directory TEXT NOT NULL, archive BLOB NOT NULL, created_at INTEGER NOT NULL,"
    " UNIQUE(skill_id, id));"
    "CREATE TABLE IF NOT EXISTS memories(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT UNIQUE NOT NULL, store_id TEXT NOT NULL, path TEXT NOT NULL, content TEXT NOT NULL,"
    " sha TEXT NOT NULL, size INTEGER NOT NULL, version_id TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, UNIQUE(store_id, path));";

/* ---------------------------------------------------------------- helpers */

static sq_store_t *SQ(store_t *s)
{
    return (sq_store_t *)s;
}

static int db_err(sq_store_t *q, shed_err *err, const char *what)
{
    int code = sqlite3_extended_errcode(q->db);
    int rc = (code & 0xff) == SQLITE_FULL ? ENOSPC : EIO;
    return err_msg(err, rc, "sqlite %s: %s", what, sqlite3_errmsg(q->db));
}

/* Prepared once per SQL literal and reused (keyed by the literal's address). */
static sqlite3_stmt *prep(sq_store_t *q, const char *sql, shed_err *err)
{
    for (int i = 0; i < STMT_CACHE; i++) {
        if (q->cache[i].sql == sql) {
            sqlite3_reset(q->cache[i].st);
            sqlite3_clear_bindings(q->cache[i].st);
            return q->cache[i].st;
        }
        if (!q->cache[i].sql) {
            sqlite3_stmt *st = NULL;
            if (sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) !=
                SQLITE_OK) {
                db_err(q, err, "prepare");
                return NULL;
            }
            q->cache[i].sql = sql;
            q->cache[i].st = st;
            return st;
        }
    }
    err_msg(err, ENOMEM, "sqlite: statement cache full");
    return NULL;
}

static int exec_simple(sq_store_t *q, const char *sql, shed_err *err)
{
    sqlite3_stmt *st = prep(q, sql, err);
    if (!st) return -EIO;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return db_err(q, err, sql);
    return 0;
}

static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";

static int tx_begin(sq_store_t *q, shed_err *err)
{
    if (q->failed[0])
        return err_msg(err, EROFS,
                       "the database refuses writes since a flush to disk failed (%s); check the "
                       "disk, then restart shed serve",
                       q->failed);
    return exec_simple(q, SQL_BEGIN, err);
}

/* Commit if rc >= 0, else roll back; returns rc (or the commit's error). */
static int tx_end(sq_store_t *q, int rc, shed_err *err)
{
    if (rc >= 0) {
        int c = exec_simple(q, SQL_COMMIT, err);
        if (c < 0) {
            /* An I/O error inside COMMIT (its WAL write or fsync) leaves it
             * unknown whether the commit frame is on disk: recovery after a
             * restart could bring back what is answered as failed now. The
             * store refuses writes from here on, as after a failed sq_sync. */
            if ((sqlite3_extended_errcode(q->db) & 0xff) == SQLITE_IOERR)
                snprintf(q->failed, sizeof(q->failed), "commit: %s", sqlite3_errmsg(q->db));
            exec_simple(q, SQL_ROLLBACK, NULL);
            return c;
        }
        return rc;
    }
    if (sqlite3_get_autocommit(q->db) == 0) exec_simple(q, SQL_ROLLBACK, NULL);
    return rc;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* Steps a statement that returns no rows to its end and resets it: 0, or the
 * database's error naming `what`. */
static int step_done(sq_store_t *q, sqlite3_stmt *st, const char *what, shed_err *err)
{
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(q, err, what);
    sqlite3_reset(st);
    return rc;
}

/* Steps a statement once: 1 with its row readable (the caller resets it), 0
 * when there is no row, or the database's error naming `what` (both reset). */
static int step_row(sq_store_t *q, sqlite3_stmt *st, const char *what, shed_err *err)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) return 1;
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_err(q, err, what);
}

/* step_row, the row made JSON by `row` into *out and the statement reset. */
static int step_json_row(sq_store_t *q, sqlite3_stmt *st, json_t *(*row)(sqlite3_stmt *),
                         json_t **out, const char *what, shed_err *err)
{
    int rc = step_row(q, st, what, err);
    if (rc == 1) {
        *out = row(st);
        sqlite3_reset(st);
    }
    return rc;
}

static json_t *ts_json(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL) return json_null();
    char b[RFC3339_LEN];
    clock_rfc3339_us(sqlite3_column_int64(st, col), b);
    return json_string(b);
}

static json_t *text_json(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? json_string((const char *)t) : json_null();
}

/* A stored JSON column, parsed back (our own output: trusted, but still bounded). */
static json_t *stored_json(sqlite3_stmt *st, int col, json_t *fallback)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    json_t *j = t ? json_loads(t, JSON_DECODE_ANY, NULL) : NULL;
    if (!j) return fallback;
    json_decref(fallback);
    return j;
}

static const char *col_text(sqlite3_stmt *st, int col)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    return t ? t : "";
}

static char *dump(json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* Cursors are "pg_<seq>": opaque to clients, validated here. */
static int cursor_decode(const store_page_t *pg, int64_t *seq, shed_err *err)
{
    if (!pg->cursor) {
        *seq = pg->desc ? INT64_MAX : 0;
        return 0;
    }
    const char *c = pg->cursor;
    if (strncmp(c, "pg_", 3) || !c[3] || strlen(c) > 3 + 18) /* 18 digits: no overflow */
        return err_msg(err, EINVAL, "query parameter 'page' is not a cursor this server issued");
    int64_t v = 0;
    for (const char *p = c + 3; *p; p++) {
        if (*p < '0' || *p > '9')
            return err_msg(err, EINVAL,
                           "query parameter 'page' is not a cursor this server issued");
        v = v * 10 + (*p - '0');
    }
    *seq = v;
    return 0;
}

static json_t *page_json(json_t *data, bool more, int64_t last_seq)
{
    json_t *p = json_object();
    json_object_set_new(p, "data", data);
    if (more) {
        char c[32];
        snprintf(c, sizeof(c), "pg_%" PRId64, last_seq);
        json_object_set_new(p, "next_page", json_string(c));
    } else {
        json_object_set_new(p, "next_page", json_null());
    }
    json_object_set_new(p, "prev_page", json_null());
    return p;
}

/* Run a page query whose first two parameters are (cursor seq, limit+1) and
 * whose last column is seq; rows become JSON through `row`. Extra text
 * parameters follow as ?3, ?4. */
static int run_page(sq_store_t *q, const char *sql, const store_page_t *pg, const char *p3,
                    const char *p4, json_t *(*row)(sqlite3_stmt *), int seqcol, json_t **out,
                    shed_err *err)
{
    int64_t cur = 0;
    int rc = cursor_decode(pg, &cur, err);
    if (rc < 0) return rc;
    sqlite3_stmt *st = prep(q, sql, err);
    if (!st) return -EIO;
    sqlite3_bind_int64(st, 1, cur);
    sqlite3_bind_int(st, 2, pg->limit + 1);
    if (p3) bind_text(st, 3, p3);
    if (p4) bind_text(st, 4, p4);
    for (int i = 0; i < pg->ntypes && i < STORE_MAX_TYPES; i++) bind_text(st, 4 + i, pg->types[i]);
    json_t *data = json_array();
    int n = 0;
    int64_t last = 0;
    bool more = false;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == pg->limit) {
            more = true;
            break;
        }
        json_array_append_new(data, row(st));
        last = sqlite3_column_int64(st, seqcol);
        n++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        json_decref(data);
        sqlite3_reset(st);
        return db_err(q, err, "page");
    }
    sqlite3_reset(st);
    *out = page_json(data, more, last);
    return 0;
}

/* ----------------------------------------------------------- environments */

#define ENV_COLS "id,name,description,config,metadata,scope,created_at,updated_at,archived_at,seq"

static json_t *env_row(sqlite3_stmt *st)
{
    json_t *e = json_object();
    json_object_set_new(e, "id", text_json(st, 0));
    json_object_set_new(e, "type", json_string("environment"));
    json_object_set_new(e, "name", text_json(st, 1));
    json_object_set_new(e, "description", text_json(st, 2));
    json_object_set_new(e, "config", stored_json(st, 3, json_object()));
    json_object_set_new(e, "metadata", stored_json(st, 4, json_object()));
    if (sqlite3_column_type(st, 5) != SQLITE_NULL)
        json_object_set_new(e, "scope", text_json(st, 5));
    json_object_set_new(e, "created_at", ts_json(st, 6));
    json_object_set_new(e, "updated_at", ts_json(st, 7));
    json_object_set_new(e, "archived_at", ts_json(st, 8));
    return e;
}

static const char SQL_ENV_GET[] = "SELECT " ENV_COLS " FROM environments WHERE id=?1";

static int env_load(sq_store_t *q, const char *id, json_t **out, shed_err *err)
{
    sqlite3_stmt *st = prep(q, SQL_ENV_GET, err);
    if (!st) return -EIO;
    bind_text(st, 1, id);
    int rc = step_json_row(q, st, env_row, out, "environment lookup", err);
    if (rc == 0) return err_msg(err, ENOENT, "no environment '%s'", id);
    return rc < 0 ? rc : 0;
}

static const char SQL_ENV_INSERT[] =
    "INSERT INTO environments(id,name,description,config,metadata,scope,created_at,updated_at)"
    " VALUES(?1,?2,?3,?4,?5,?6,?7,?7)";

static int sq_env_create(store_t *s, json_t *f, json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    char id[ID_MAX];
    int rc = id_new("env", id, sizeof(id));
    if (rc < 0) return err_set(err, -rc, "getrandom");
    json_t *cfg = json_object_get(f, "config");
    json_t *md = json_object_get(f, "metadata");
    _cleanup_free_ char *cfg_s = cfg ? dump(cfg) : strdup("{}");
    _cleanup_free_ char *md_s = md ? dump(md) : strdup("{}");
    if ((rc = tx_begin(q, err)) < 0) return rc;
    sqlite3_stmt *st = prep(q, SQL_ENV_INSERT, err);
    if (!st) return tx_end(q, -EIO, err);
    bind_text(st, 1, id);
    bind_text(st, 2, json_string_value(json_object_get(f, "name")));
    bind_text(st, 3, json_string_value(json_object_get(f, "description")));
    bind_text(st, 4, cfg_s);
    bind_text(st, 5, md_s);
    bind_text(st, 6, json_string_value(json_object_get(f, "scope")));
    sqlite3_bind_int64(st, 7, clock_wall_us());
    rc = step_done(q, st, "insert environment", err);
    if (rc == 0) rc = env_load(q, id, out, err);
    return tx_end(q, rc, err);
}

static int sq_env_get(store_t *s, const char *id, json_t **out, shed_err *err)
{
    return env_load(SQ(s), id, out, err);
}

static const char SQL_ENV_PAGE_ALL[] =
    "SELECT " ENV_COLS " FROM environments WHERE seq>?1 ORDER BY seq LIMIT ?2";
static const char SQL_ENV_PAGE_LIVE[] =
    "SELECT " ENV_COLS " FROM environments WHERE seq>?1 AND archived_at IS NULL"
    " ORDER BY seq LIMIT ?2";

static int sq_env_list(store_t *s, bool include_archived, const store_page_t *pg, json_t **out,
                       shed_err *err)
{
    store_page_t p = *pg;
    p.desc = false;
    return run_page(SQ(s), include_archived ? SQL_ENV_PAGE_ALL : SQL_ENV_PAGE_LIVE, &p, NULL, NULL,
                    env_row, 9, out, err);
}

static const char SQL_ENV_UPDATE[] = "UPDATE environments SET name=?2, description=?3, config=?4,"
                                     " metadata=?5, scope=?6, updated_at=?7 WHERE id=?1";

static int sq_env_update(store_t *s, const char *id, json_t *f, json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    _cleanup_json_ json_t *cur = NULL;
    if ((rc = env_load(q, id, &cur, err)) < 0) return tx_end(q, rc, err);
    json_t *v;
    if ((v = json_object_get(f, "name"))) json_object_set(cur, "name", v);
    if ((v = json_object_get(f, "description"))) json_object_set(cur, "description", v);
    if ((v = json_object_get(f, "config"))) json_object_set(cur, "config", v);
    if ((v = json_object_get(f, "scope"))) json_object_set(cur, "scope", v);
    if ((v = json_object_get(f, "metadata"))) {
        json_t *md = json_object_get(cur, "metadata");
        const char *k;
        json_t *mv;
        json_object_foreach(v, k, mv)
        {
            if (json_is_null(mv))
                json_object_del(md, k);
            else
                json_object_set(md, k, mv);
        }
    }
    _cleanup_free_ char *cfg_s = dump(json_object_get(cur, "config"));
    _cleanup_free_ char *md_s = dump(json_object_get(cur, "metadata"));
    sqlite3_stmt *st = prep(q, SQL_ENV_UPDATE, err);
    if (!st) return tx_end(q, -EIO, err);
    bind_text(st, 1, id);
    bind_text(st, 2, json_string_value(json_object_get(cur, "name")));
    bind_text(st, 3, json_string_value(json_object_get(cur, "description")));
    bind_text(st, 4, cfg_s);
    bind_text(st, 5, md_s);
    bind_text(st, 6, json_string_value(json_object_get(cur, "scope")));
    sqlite3_bind_int64(st, 7, clock_wall_us());
    rc = step_done(q, st, "update environment", err);
    if (rc == 0) rc = env_load(q, id, out, err);
    return tx_end(q, rc, err);
}

static const char SQL_ENV_ARCHIVE[] =
    "UPDATE environments SET archived_at=COALESCE(archived_at, ?2), updated_at=?2 WHERE id=?1";

static int sq_env_archive(store_t *s, const char *id, json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    sqlite3_stmt *st = prep(q, SQL_ENV_ARCHIVE, err);
    if (!st) return tx_end(q, -EIO, err);
    bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, clock_wall_us());
    rc = step_done(q, st, "archive environment", err);
    if (rc == 0) rc = env_load(q, id, out, err);
    return tx_end(q, rc, err);
}

static const char SQL_DEL_TOKENS[] =
    "DELETE FROM work_tokens WHERE work_id IN (SELECT id FROM work WHERE env_id=?1)";
static const char SQL_DEL_EVENTS[] =
    "DELETE FROM events WHERE session_id IN (SELECT id FROM sessions WHERE env_id=?1)";
static const char SQL_DEL_WORK[] = "DELETE FROM work WHERE env_id=?1";
static const char SQL_DEL_SESSIONS[] = "DELETE FROM sessions WHERE env_id=?1";
static const char SQL_DEL_KEYS[] = "DELETE FROM env_keys WHERE env_id=?1";
static const char SQL_DEL_ENV[] = "DELETE FROM environments WHERE id=?1";

static int sq_env_delete(store_t *s, const char *id, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    _cleanup_json_ json_t *cur = NULL;
    if ((rc = env_load(q, id, &cur, err)) < 0) return tx_end(q, rc, err);
    const char *sqls[] = {SQL_DEL_TOKENS,   SQL_DEL_EVENTS, SQL_DEL_WORK,
                          SQL_DEL_SESSIONS, SQL_DEL_KEYS,   SQL_DEL_ENV};
    for (size_t i = 0; i < ARRAY_SIZE(sqls) && rc == 0; i++) {
        sqlite3_stmt *st = prep(q, sqls[i], err);
        if (!st) return tx_end(q, -EIO, err);
        bind_text(st, 1, id);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_err(q, err, "delete environment");
        sqlite3_reset(st);
    }
    return tx_end(q, rc, err);
}

/* ------------------------------------------------------------------- keys */

static json_t *key_row(sqlite3_stmt *st)
{
    json_t *k = json_object();
    json_object_set_new(k, "type", json_string("environment_key"));
    json_object_set_new(k, "id", text_json(st, 0));
    json_object_set_new(k, "environment_id", text_json(st, 1));
    json_object_set_new(k, "created_at", ts_json(st, 2));
    json_object_set_new(k, "revoked_at", ts_json(st, 3));
    return k;
}

static const char SQL_KEY_INSERT[] =
    "INSERT INTO env_keys(id,env_id,key_hash,created_at) VALUES(?1,?2,?3,?4)";
static const char SQL_KEY_GET[] =
    "SELECT id,env_id,created_at,revoked_at,seq FROM env_keys WHERE id=?1 AND env_id=?2";

static int sq_key_create(store_t *s, const char *env_id, const char *hash, json_t **out,
                         shed_err *err)
{
    sq_store_t *q = SQ(s);
    char id[ID_MAX];
    int rc = id_new("envkey", id, sizeof(id));
    if (rc < 0) return err_set(err, -rc, "getrandom");
    if ((rc = tx_begin(q, err)) < 0) return rc;
    _cleanup_json_ json_t *env = NULL;
    if ((rc = env_load(q, env_id, &env, err)) < 0) return tx_end(q, rc, err);
    sqlite3_stmt *st = prep(q, SQL_KEY_INSERT, err);
    if (!st) return tx_end(q, -EIO, err);
    bind_text(st, 1, id);
    bind_text(st, 2, env_id);
    bind_text(st, 3, hash);
    sqlite3_bind_int64(st, 4, clock_wall_us());
    rc = step_done(q, st, "insert key", err);
    if (rc == 0) {
        st = prep(q, SQL_KEY_GET, err);
        if (!st) return tx_end(q, -EIO, err);
        bind_text(st, 1, id);
        bind_text(st, 2, env_id);
        if (sqlite3_step(st) == SQLITE_ROW)
            *out = key_row(st);
        else
            rc = db_err(q, err, "read key");
        sqlite3_reset(st);
    }
    return tx_end(q, rc, err);
}

static const char SQL_KEY_LIST[] = "SELECT id,env_id,created_at,revoked_at,seq FROM env_keys"
                                   " WHERE seq>?1 AND env_id=?3 ORDER BY seq LIMIT ?2";

static int sq_key_list(store_t *s, const char *env_id, json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    _cleanup_json_ json_t *env = NULL;
    int rc = env_load(q, env_id, &env, err);
    if (rc < 0) return rc;
    store_page_t pg = {.limit = 1000};
    return run_page(q, SQL_KEY_LIST, &pg, env_id, NULL, key_row, 4, out, err);
}

static const char SQL_KEY_REVOKE[] =
    "UPDATE env_keys SET revoked_at=COALESCE(revoked_at, ?3) WHERE id=?1 AND env_id=?2";

static int sq_key_revoke(store_t *s, const char *env_id, const char *key_id, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    sqlite3_stmt *st = prep(q, SQL_KEY_REVOKE, err);
    if (!st) return tx_end(q, -EIO, err);
    bind_text(st, 1, key_id);
    bind_text(st, 2, env_id);
    sqlite3_bind_int64(st, 3, clock_wall_us());
    rc = step_done(q, st, "revoke key", err);
    if (rc == 0 && sqlite3_changes(q->db) == 0)
        rc = err_msg(err, ENOENT, "no key '%s' in environment '%s'", key_id, env_id);
    return tx_end(q, rc, err);
}

static const char SQL_AUTH_KEY[] =
    "SELECT k.env_id FROM env_keys k JOIN environments e ON e.id=k.env_id"
    " WHERE k.key_hash=?1 AND k.revoked_at IS NULL";

static int sq_auth_env_key(store_t *s, const char *hash, store_principal_t *out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    sqlite3_stmt *st = prep(q, SQL_AUTH_KEY, err);
    if (!st) return -EIO;
    bind_text(st, 1, hash);
    int rc = step_row(q, st, "key lookup", err);
    if (rc == 0) return err_msg(err, ENOENT, "unknown or revoked environment key");
    if (rc < 0) return rc;
    memset(out, 0, sizeof(*out));
    out->kind = PRINCIPAL_ENV_KEY;
    snprintf(out->env_id, sizeof(out->env_id), "%s", col_text(st, 0));
    out->gen = -1;
    sqlite3_reset(st);
    return 0;
}

static const char SQL_AUTH_TOKEN[] = "SELECT w.env_id, w.id, w.data_id, t.gen FROM work_tokens t"
                                     " JOIN work w ON w.id=t.work_id WHERE t.token_hash=?1";

static int sq_auth_sessions_token(store_t *s, const char *hash, store_principal_t *out,
                                  shed_err *err)
{
    sq_store_t *q = SQ(s);
    sqlite3_stmt *st = prep(q, SQL_AUTH_TOKEN, err);
    if (!st) return -EIO;
    bind_text(st, 1, hash);
    int rc = step_row(q, st, "token lookup", err);
    if (rc == 0) return err_msg(err, ENOENT, "unknown sessions token");
    if (rc < 0) return rc;
    memset(out, 0, sizeof(*out));
    out->kind = PRINCIPAL_SESSIONS_TOKEN;
    snprintf(out->env_id, sizeof(out->env_id), "%s", col_text(st, 0));
    snprintf(out->work_id, sizeof(out->work_id), "%s", col_text(st, 1));
    snprintf(out->session_id, sizeof(out->session_id), "%s", col_text(st, 2));
    out->gen = sqlite3_column_int64(st, 3);
    sqlite3_reset(st);
    return 0;
}

/* ------------------------------------------------------------------- work */

#define WORK_COLS                                                                                  \
    "id,env_id,data_type,data_id,state,metadata,created_at,acknowledged_at,started_at,"            \
    "latest_heartbeat_at,stop_requested_at,stopped_at,seq,gen,claimed_at,ttl_seconds,queued_at,"   \
    "deliveries,acked_gen"

enum {
    W_ID,
    W_ENV,
    W_DTYPE,
    W_DID,
    W_STATE,
    W_MD,
    W_CREATED,
    W_ACK,
    W_STARTED,
    W_HB,
    W_STOPREQ,
    W_STOPPED,
    W_SEQ,
    W_GEN,
    W_CLAIMED,
    W_TTL,
    W_QUEUED,
    W_DELIVERIES,
    W_ACKED_GEN
};

static json_t *work_row(sqlite3_stmt *st)
{
    json_t *w = json_object();
    json_object_set_new(w, "id", text_json(st, W_ID));
    json_object_set_new(w, "type", json_string("work"));
    json_object_set_new(w, "environment_id", text_json(st, W_ENV));
    json_object_set_new(
        w, "data",
        json_pack("{s:o,s:o}", "type", text_json(st, W_DTYPE), "id", text_json(st, W_DID)));
    json_object_set_new(w, "state", text_json(st, W_STATE));
    json_object_set_new(w, "metadata", stored_json(st, W_MD, json_object()));
    json_object_set_new(w, "secret", json_null());
    json_object_set_new(w, "created_at", ts_json(st, W_CREATED));
    json_object_set_new(w, "acknowledged_at", ts_json(st, W_ACK));
    json_object_set_new(w, "started_at", ts_json(st, W_STARTED));
    json_object_set_new(w, "latest_heartbeat_at", ts_json(st, W_HB));
    json_object_set_new(w, "stop_requested_at", ts_json(st, W_STOPREQ));
    json_object_set_new(w, "stopped_at", ts_json(st, W_STOPPED));
    return w;
}

/* The parts of a work row the state machine needs. */
typedef struct work_state {
    char state[16];
    int64_t gen;
    bool claimed;
    int64_t hb_us; /* 0 = none */
    int64_t ttl_s;
    int64_t stopped_us;
    int64_t deliveries; /* polls that handed it out since it was last queued */
    int64_t acked_gen;  /* the delivery whose token acked it; -1 unknown (ack by key) */
} work_state_t;

static const char SQL_WORK_GET[] = "SELECT " WORK_COLS " FROM work WHERE id=?1 AND env_id=?2";

static int work_load(sq_store_t *q, const char *env_id, const char *work_id, work_state_t *ws,
                     json_t **out, shed_err *err)
{
    sqlite3_stmt *st = prep(q, SQL_WORK_GET, err);
    if (!st) return -EIO;
    bind_text(st, 1, work_id);
    bind_text(st, 2, env_id);
    int rc = step_row(q, st, "work lookup", err);
    if (rc == 0)
        return err_msg(err, ENOENT, "no work item '%s' in environment '%s'", work_id, env_id);
    if (rc < 0) return rc;
    if (ws) {
        snprintf(ws->state, sizeof(ws->state), "%s", col_text(st, W_STATE));
        ws->gen = sqlite3_column_int64(st, W_GEN);
        ws->claimed = sqlite3_column_type(st, W_CLAIMED) != SQLITE_NULL;
        ws->hb_us =
            sqlite3_column_type(st, W_HB) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, W_HB);
        ws->ttl_s = sqlite3_column_int64(st, W_TTL);
        ws->stopped_us = sqlite3_column_type(st, W_STOPPED) == SQLITE_NULL
                             ? 0
                             : sqlite3_column_int64(st, W_STOPPED);
        ws->deliveries = sqlite3_column_int64(st, W_DELIVERIES);
        ws->acked_gen = sqlite3_column_type(st, W_ACKED_GEN) == SQLITE_NULL
                            ? -1
                            : sqlite3_column_int64(st, W_ACKED_GEN);
    }
    if (out) *out = work_row(st);
    sqlite3_reset(st);
    return 0;
}

/* Lease expiry: an item whose holder stopped heartbeating goes back to the
 * queue with the same id and a new delivery generation (so its old holder's
 * token and heartbeat no longer match); a stopping item whose holder vanished
 * is stopped. Runs inside the caller's transaction. */
static const char SQL_SWEEP_REQUEUE[] =
    "UPDATE work SET state='queued', queued_at=?2, claimed_at=NULL, claimed_by=NULL,"
    " acknowledged_at=NULL, started_at=NULL, latest_heartbeat_at=NULL, lease_expires_at=NULL,"
    " gen=gen+1, deliveries=0, acked_gen=NULL WHERE env_id=?1 AND state IN ('starting','active') "
    "AND lease_expires_at<?2";
static const char SQL_SWEEP_STOP[] =
    "UPDATE work SET state='stopped', stopped_at=?2, lease_expires_at=NULL"
    " WHERE env_id=?1 AND state='stopping' AND lease_expires_at<?2";

static int sweep(sq_store_t *q, const char *env_id, int64_t now, shed_err *err)
{
    const char *sqls[] = {SQL_SWEEP_REQUEUE, SQL_SWEEP_STOP};
    for (size_t i = 0; i < 2; i++) {
        sqlite3_stmt *st = prep(q, sqls[i], err);
        if (!st) return -EIO;
        bind_text(st, 1, env_id);
        sqlite3_bind_int64(st, 2, now);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) return db_err(q, err, "lease sweep");
    }
    return 0;
}

static const char SQL_WORK_INSERT[] =
    "INSERT INTO work(id,env_id,data_type,data_id,state,metadata,created_at,queued_at,ttl_seconds)"
    " VALUES(?1,?2,'session',?3,'queued','{}',?4,?4,?5)";

static int work_enqueue(sq_store_t *q, const char *env_id, const char *session_id, shed_err *err)
{
    char id[ID_MAX];
    int rc = id_new("work", id, sizeof(id));
    if (rc < 0) return err_set(err, -rc, "getrandom");
    sqlite3_stmt *st = prep(q, SQL_WORK_INSERT, err);
    if (!st) return -EIO;
    bind_text(st, 1, id);
    bind_text(st, 2, env_id);
    bind_text(st, 3, session_id);
    sqlite3_bind_int64(st, 4, clock_wall_us());
    sqlite3_bind_int64(st, 5, q->base.cfg.default_ttl_s);
    rc = step_done(q, st, "enqueue work", err);
    return rc;
}

static const char SQL_POLL_PICK[] =
    "SELECT id FROM work WHERE env_id=?1 AND state='queued' AND (claimed_at IS NULL OR"
    " claimed_at<=?2) ORDER BY seq LIMIT 1";
static const char SQL_POLL_CLAIM[] =
    "UPDATE work SET claimed_at=?2, claimed_by=?3, gen=gen+1, deliveries=deliveries+1 WHERE id=?1";
static const char SQL_TOKEN_INSERT[] =
    "INSERT INTO work_tokens(token_hash,work_id,gen) SELECT ?1, id, gen FROM work WHERE id=?2";

static int sq_work_poll(store_t *s, const char *env_id, const char *worker_id, int64_t reclaim_ms,
                        const char *token_hash, int64_t now, json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    *out = NULL;
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    if ((rc = sweep(q, env_id, now, err)) < 0) return tx_end(q, rc, err);
    sqlite3_stmt *st = prep(q, SQL_POLL_PICK, err);
    if (!st) return tx_end(q, -EIO, err);
    bind_text(st, 1, env_id);
    sqlite3_bind_int64(st, 2, now - reclaim_ms * 1000);
    char id[ID_MAX] = "";
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) snprintf(id, sizeof(id), "%s", col_text(st, 0));
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return tx_end(q, db_err(q, err, "poll"), err);
    if (!id[0]) return tx_end(q, 0, err); /* empty: nothing was written, commit is a no-op */
    st = prep(q, SQL_POLL_CLAIM, err);
    if (!st) return tx_end(q, -EIO, err);
    bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    bind_text(st, 3, worker_id);
    rc = step_done(q, st, "claim", err);
    if (rc == 0 && token_hash) {
        st = prep(q, SQL_TOKEN_INSERT, err);
        if (!st) return tx_end(q, -EIO, err);
        bind_text(st, 1, token_hash);
        bind_text(st, 2, id);
        rc = step_done(q, st, "token", err);
    }
    if (rc == 0) rc = work_load(q, env_id, id, NULL, out, err);
    rc = tx_end(q, rc, err);
    if (rc < 0 && *out) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

static const char SQL_ACK[] = "UPDATE work SET state='starting', acknowledged_at=?2,"
                              " lease_expires_at=?3, acked_gen=?4 WHERE id=?1";

static int sq_work_ack(store_t *s, const char *env_id, const char *work_id, int64_t gen,
                       int64_t now, json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    work_state_t ws;
    if ((rc = sweep(q, env_id, now, err)) < 0 ||
        (rc = work_load(q, env_id, work_id, &ws, NULL, err)) < 0)
        return tx_end(q, rc, err);
    if (gen >= 0 && gen != ws.gen)
        return tx_end(
            q,
            err_msg(err, EEXIST,
                    "work item '%s' was delivered to another worker since this token was issued",
                    work_id),
            err);
    if (!strcmp(ws.state, "stopped"))
        return tx_end(q, err_msg(err, EEXIST, "work item '%s' is stopped", work_id), err);
    if (!strcmp(ws.state, "queued")) {
        if (!ws.claimed)
            return tx_end(q,
                          err_msg(err, EEXIST,
                                  "work item '%s' has not been polled; poll it before acking",
                                  work_id),
                          err);
        sqlite3_stmt *st = prep(q, SQL_ACK, err);
        if (!st) return tx_end(q, -EIO, err);
        bind_text(st, 1, work_id);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_int64(st, 3, now + ws.ttl_s * 1000000);
        if (gen >= 0)
            sqlite3_bind_int64(st, 4, gen);
        else
            sqlite3_bind_null(st, 4);
        rc = step_done(q, st, "ack", err);
    }
    /* starting/active/stopping: a repeated ack of the same delivery is a no-op
     * (a retry after a lost answer). If the item was handed out more than once
     * (an unacked delivery was reclaimed), only the delivery that acked may
     * repeat it — known by its token; an ack by key names no delivery — and
     * every other ack is refused: two workers never both believe they hold it. */
    else if (ws.deliveries > 1 && !(gen >= 0 && ws.acked_gen == gen))
        return tx_end(q,
                      err_msg(err, EEXIST,
                              "work item '%s' was delivered more than once and is already acked; "
                              "the first ack holds it",
                              work_id),
                      err);
    if (rc == 0) rc = work_load(q, env_id, work_id, NULL, out, err);
    return tx_end(q, rc, err);
}

static const char SQL_HEARTBEAT[] =
    "UPDATE work SET state=CASE state WHEN 'starting' THEN 'active' ELSE state END,"
    " started_at=COALESCE(started_at, ?2), latest_heartbeat_at=?3, lease_expires_at=?4,"
    " ttl_seconds=?5 WHERE id=?1";

static void fill_hb(store_heartbeat_t *hb, const char *state, int64_t hb_us, int64_t ttl,
                    bool extended)
{
    snprintf(hb->state, sizeof(hb->state), "%s", state);
    hb->last_heartbeat[0] = '\0';
    if (hb_us) clock_rfc3339_us(hb_us, hb->last_heartbeat);
    hb->ttl_seconds = ttl;
    hb->lease_extended = extended;
}

static int sq_work_heartbeat(store_t *s, const char *env_id, const char *work_id, int64_t gen,
                             const char *expected, int64_t desired_ttl, int64_t now,
                             store_heartbeat_t *hb, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    work_state_t ws;
    if ((rc = sweep(q, env_id, now, err)) < 0 ||
        (rc = work_load(q, env_id, work_id, &ws, NULL, err)) < 0)
        return tx_end(q, rc, err);
    fill_hb(hb, ws.state, ws.hb_us, ws.ttl_s, false);
    if (gen >= 0 && gen != ws.gen)
        return tx_end(q,
                      err_msg(err, ESTALE,
                              "the lease of work item '%s' belongs to a later delivery", work_id),
                      err);
    if (!strcmp(ws.state, "queued"))
        return tx_end(q,
                      err_msg(err, ESTALE,
                              "work item '%s' is queued: its lease expired or it was never acked",
                              work_id),
                      err);
    const char *have = ws.hb_us ? hb->last_heartbeat : "NO_HEARTBEAT";
    if (!expected || strcmp(expected, have) != 0)
        return tx_end(q,
                      err_msg(err, ESTALE,
                              "expected_last_heartbeat does not match the lease of work item '%s'",
                              work_id),
                      err);
    if (!strcmp(ws.state, "stopped")) {
        if (!ws.hb_us) clock_rfc3339_us(ws.stopped_us ? ws.stopped_us : now, hb->last_heartbeat);
        return tx_end(q, 0, err);
    }
    int64_t ttl = desired_ttl > 0 ? desired_ttl : ws.ttl_s;
    int64_t beat = now > ws.hb_us ? now : ws.hb_us + 1; /* strictly increasing: echo is unique */
    sqlite3_stmt *st = prep(q, SQL_HEARTBEAT, err);
    if (!st) return tx_end(q, -EIO, err);
    bind_text(st, 1, work_id);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, beat);
    sqlite3_bind_int64(st, 4, now + ttl * 1000000);
    sqlite3_bind_int64(st, 5, ttl);
    rc = step_done(q, st, "heartbeat", err);
    fill_hb(hb, !strcmp(ws.state, "starting") ? "active" : ws.state, beat, ttl, true);
    return tx_end(q, rc, err);
}

static const char SQL_STOP_FINAL[] =
    "UPDATE work SET state='stopped', stopped_at=?2, lease_expires_at=NULL,"
    " stop_requested_at=COALESCE(stop_requested_at, ?2) WHERE id=?1";
static const char SQL_STOP_REQUEST[] =
    "UPDATE work SET state='stopping', stop_requested_at=?2 WHERE id=?1";

static int sq_work_stop(store_t *s, const char *env_id, const char *work_id, int64_t gen,
                        bool force, bool by_holder, int64_t now, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    work_state_t ws;
    if ((rc = sweep(q, env_id, now, err)) < 0 ||
        (rc = work_load(q, env_id, work_id, &ws, NULL, err)) < 0)
        return tx_end(q, rc, err);
    if (gen >= 0 && gen != ws.gen)
        return tx_end(
            q,
            err_msg(err, EEXIST,
                    "work item '%s' was delivered to another worker since this token was issued",
                    work_id),
            err);
    if (!strcmp(ws.state, "stopped"))
        return tx_end(q, err_msg(err, EEXIST, "work item '%s' is already stopped", work_id), err);
    bool final = force || by_holder || !strcmp(ws.state, "queued");
    if (!final && !strcmp(ws.state, "stopping")) return tx_end(q, 0, err);
    sqlite3_stmt *st = prep(q, final ? SQL_STOP_FINAL : SQL_STOP_REQUEST, err);
    if (!st) return tx_end(q, -EIO, err);
    bind_text(st, 1, work_id);
    sqlite3_bind_int64(st, 2, now);
    rc = step_done(q, st, "stop", err);
    return tx_end(q, rc, err);
}

static int sq_work_get(store_t *s, const char *env_id, const char *work_id, int64_t now,
                       json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    if ((rc = sweep(q, env_id, now, err)) == 0) rc = work_load(q, env_id, work_id, NULL, out, err);
    return tx_end(q, rc, err);
}

static const char SQL_WORK_PAGE[] =
    "SELECT " WORK_COLS " FROM work WHERE seq>?1 AND env_id=?3 ORDER BY seq LIMIT ?2";

static int sq_work_list(store_t *s, const char *env_id, const store_page_t *pg, int64_t now,
                        json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    _cleanup_json_ json_t *env = NULL;
    if ((rc = env_load(q, env_id, &env, err)) < 0 || (rc = sweep(q, env_id, now, err)) < 0)
        return tx_end(q, rc, err);
    store_page_t p = *pg;
    p.desc = false;
    rc = run_page(q, SQL_WORK_PAGE, &p, env_id, NULL, work_row, W_SEQ, out, err);
    return tx_end(q, rc, err);
}

static const char SQL_WORK_MD[] = "UPDATE work SET metadata=?2 WHERE id=?1";

static int sq_work_update(store_t *s, const char *env_id, const char *work_id, json_t *patch,
                          json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    _cleanup_json_ json_t *cur = NULL;
    if ((rc = work_load(q, env_id, work_id, NULL, &cur, err)) < 0) return tx_end(q, rc, err);
    json_t *md = json_object_get(cur, "metadata");
    const char *k;
    json_t *v;
    json_object_foreach(patch, k, v)
    {
        if (json_is_null(v))
            json_object_del(md, k);
        else
            json_object_set(md, k, v);
    }
    _cleanup_free_ char *md_s = dump(md);
    sqlite3_stmt *st = prep(q, SQL_WORK_MD, err);
    if (!st) return tx_end(q, -EIO, err);
    bind_text(st, 1, work_id);
    bind_text(st, 2, md_s);
    rc = step_done(q, st, "update work", err);
    if (rc == 0) rc = work_load(q, env_id, work_id, NULL, out, err);
    return tx_end(q, rc, err);
}

static const char SQL_STATS[] =
    "SELECT COALESCE(SUM(claimed_at IS NULL OR claimed_at<=?2),0),"
    " COALESCE(SUM(claimed_at IS NOT NULL AND claimed_at>?2),0), MIN(queued_at)"
    " FROM work WHERE env_id=?1 AND state='queued'";

static int sq_work_stats(store_t *s, const char *env_id, int64_t now, json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    _cleanup_json_ json_t *env = NULL;
    if ((rc = env_load(q, env_id, &env, err)) < 0 || (rc = sweep(q, env_id, now, err)) < 0)
        return tx_end(q, rc, err);
    sqlite3_stmt *st = prep(q, SQL_STATS, err);
    if (!st) return tx_end(q, -EIO, err);
    bind_text(st, 1, env_id);
    sqlite3_bind_int64(st, 2, now - q->base.cfg.default_reclaim_ms * 1000);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *out =
            json_pack("{s:s,s:I,s:I,s:o}", "type", "work_queue_stats", "depth",
                      (json_int_t)sqlite3_column_int64(st, 0), "pending",
                      (json_int_t)sqlite3_column_int64(st, 1), "oldest_queued_at", ts_json(st, 2));
    } else {
        rc = db_err(q, err, "stats");
    }
    sqlite3_reset(st);
    return tx_end(q, rc, err);
}

/* --------------------------------------------------------------- sessions */

#define SESSION_COLS                                                                               \
    "id,env_id,status,agent,metadata,title,resources,created_at,updated_at,archived_at,seq"

static json_t *session_row(sqlite3_stmt *st)
{
    json_t *j = json_object();
    json_object_set_new(j, "id", text_json(st, 0));
    json_object_set_new(j, "type", json_string("session"));
    json_object_set_new(j, "environment_id", text_json(st, 1));
    json_object_set_new(j, "status", text_json(st, 2));
    json_object_set_new(j, "agent", stored_json(st, 3, json_object()));
    json_object_set_new(j, "metadata", stored_json(st, 4, json_object()));
    json_object_set_new(j, "title", text_json(st, 5));
    json_object_set_new(j, "resources", stored_json(st, 6, json_array()));
    json_object_set_new(j, "created_at", ts_json(st, 7));
    json_object_set_new(j, "updated_at", ts_json(st, 8));
    json_object_set_new(j, "archived_at", ts_json(st, 9));
    json_object_set_new(j, "vault_ids", json_array());
    json_object_set_new(j, "outcome_evaluations", json_array());
    json_object_set_new(j, "budget", json_null());
    json_object_set_new(j, "stats", json_object());
    json_object_set_new(j, "usage", json_object());
    return j;
}

static const char SQL_SESSION_GET[] = "SELECT " SESSION_COLS " FROM sessions WHERE id=?1";

static int session_load(sq_store_t *q, const char *id, json_t **out, shed_err *err)
{
    sqlite3_stmt *st = prep(q, SQL_SESSION_GET, err);
    if (!st) return -EIO;
    bind_text(st, 1, id);
    int rc = step_json_row(q, st, session_row, out, "session lookup", err);
    if (rc == 0) return err_msg(err, ENOENT, "no session '%s'", id);
    return rc < 0 ? rc : 0;
}

static const char SQL_SESSION_INSERT[] =
    "INSERT INTO sessions(id,env_id,status,agent,metadata,title,resources,created_at,updated_at)"
    " VALUES(?1,?2,'idle',?3,?4,?5,?6,?7,?7)";

static int sq_session_create(store_t *s, json_t *f, json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    char id[ID_MAX];
    int rc = id_new("sesn", id, sizeof(id));
    if (rc < 0) return err_set(err, -rc, "getrandom");
    const char *env_id = json_string_value(json_object_get(f, "environment_id"));
    if ((rc = tx_begin(q, err)) < 0) return rc;
    _cleanup_json_ json_t *env = NULL;
    if ((rc = env_load(q, env_id, &env, err)) < 0) return tx_end(q, rc, err);
    if (!json_is_null(json_object_get(env, "archived_at")))
        return tx_end(q, err_msg(err, EINVAL, "environment '%s' is archived", env_id), err);
    json_t *agent = json_object_get(f, "agent");
    json_t *md = json_object_get(f, "metadata");
    json_t *res = json_object_get(f, "resources");
    _cleanup_free_ char *agent_s = agent ? dump(agent) : strdup("{}");
    _cleanup_free_ char *md_s = md ? dump(md) : strdup("{}");
    _cleanup_free_ char *res_s = res ? dump(res) : strdup("[]");
    sqlite3_stmt *st = prep(q, SQL_SESSION_INSERT, err);
    if (!st) return tx_end(q, -EIO, err);
    bind_text(st, 1, id);
    bind_text(st, 2, env_id);
    bind_text(st, 3, agent_s);
    bind_text(st, 4, md_s);
    bind_text(st, 5, json_string_value(json_object_get(f, "title")));
    bind_text(st, 6, res_s);
    sqlite3_bind_int64(st, 7, clock_wall_us());
    rc = step_done(q, st, "insert session", err);
    if (rc == 0) rc = work_enqueue(q, env_id, id, err);
    if (rc == 0) rc = session_load(q, id, out, err);
    return tx_end(q, rc, err);
}

static const char SQL_SESSION_HEAD[] = "SELECT env_id,status FROM sessions WHERE id=?1";

static int session_head(sq_store_t *q, const char *id, char env_id[ID_MAX], char status[32],
                        shed_err *err)
{
    sqlite3_stmt *st = prep(q, SQL_SESSION_HEAD, err);
    if (!st) return -EIO;
    bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        snprintf(env_id, ID_MAX, "%s", col_text(st, 0));
        snprintf(status, 32, "%s", col_text(st, 1));
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) return err_msg(err, ENOENT, "no session '%s'", id);
    return rc == SQLITE_ROW ? 0 : db_err(q, err, "session lookup");
}

static int sq_session_head(store_t *s, const char *id, char env_id[ID_MAX], char status[32],
                           shed_err *err)
{
    return session_head(SQ(s), id, env_id, status, err);
}

static int sq_session_get(store_t *s, const char *id, json_t **out, shed_err *err)
{
    return session_load(SQ(s), id, out, err);
}

static const char SQL_SESSION_PAGE[] =
    "SELECT " SESSION_COLS " FROM sessions WHERE seq>?1 ORDER BY seq LIMIT ?2";
static const char SQL_SESSION_PAGE_ENV[] =
    "SELECT " SESSION_COLS " FROM sessions WHERE seq>?1 AND env_id=?3 ORDER BY seq LIMIT ?2";

static int sq_session_list(store_t *s, const char *env_id, const store_page_t *pg, json_t **out,
                           shed_err *err)
{
    store_page_t p = *pg;
    p.desc = false;
    return run_page(SQ(s), env_id ? SQL_SESSION_PAGE_ENV : SQL_SESSION_PAGE, &p, env_id, NULL,
                    session_row, 10, out, err);
}

/* ----------------------------------------------------------------- events */

static const char SQL_EVENT_REF[] = "SELECT type FROM events WHERE session_id=?1 AND id=?2";
static const char SQL_EVENT_ANSWERED[] = "SELECT 1 FROM events WHERE session_id=?1 AND answers=?2";
static const char SQL_EVENT_INSERT[] =
    "INSERT INTO events(id,session_id,type,answers,body,processed_at) VALUES(?1,?2,?3,?4,?5,?6)";
static const char SQL_SESSION_STATUS[] = "UPDATE sessions SET status=?2, updated_at=?3 WHERE id=?1";
static const char SQL_WORK_OPEN[] =
    "SELECT 1 FROM work WHERE data_id=?1 AND state IN ('queued','starting','active') LIMIT 1";

/* The type of event `ref` in the session, or "" if there is none. */
static int event_ref_type(sq_store_t *q, const char *sid, const char *ref, char *type, size_t n,
                          shed_err *err)
{
    sqlite3_stmt *st = prep(q, SQL_EVENT_REF, err);
    if (!st) return -EIO;
    bind_text(st, 1, sid);
    bind_text(st, 2, ref);
    int rc = sqlite3_step(st);
    type[0] = '\0';
    if (rc == SQLITE_ROW) snprintf(type, n, "%s", col_text(st, 0));
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_err(q, err, "event lookup");
}

static int answered(sq_store_t *q, const char *sid, const char *ref, bool *yes, shed_err *err)
{
    sqlite3_stmt *st = prep(q, SQL_EVENT_ANSWERED, err);
    if (!st) return -EIO;
    bind_text(st, 1, sid);
    bind_text(st, 2, ref);
    int rc = sqlite3_step(st);
    *yes = rc == SQLITE_ROW;
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_err(q, err, "answer lookup");
}

static int events_append_tx(sq_store_t *q, const char *sid, json_t *events,
                            store_append_result_t *res, shed_err *err)
{
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    char env_buf[ID_MAX], status[32], orig_status[32];
    if ((rc = session_head(q, sid, env_buf, orig_status, err)) < 0) return tx_end(q, rc, err);
    const char *env_id = env_buf;
    snprintf(res->env_id, sizeof(res->env_id), "%s", env_id);
    snprintf(status, sizeof(status), "%s", orig_status);
    if (!strcmp(status, "terminated"))
        return tx_end(
            q, err_msg(err, EINVAL, "session '%s' is terminated: it accepts no events", sid), err);
    bool wake = false;
    json_t *stored = json_array();
    /* The answer is built from the very bytes stored, so it is never encoded twice. */
    if (q->answer.cap > (256u << 10)) buf_free(&q->answer); /* keep no large body around */
    buf_reset(&q->answer);
    bool answer_ok = buf_puts(&q->answer, "{\"data\":[") == 0;
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        const char *type = json_string_value(json_object_get(ev, "type"));
        const char *ref = NULL, *ref_field = NULL, *want = NULL;
        if (!strcmp(type, "user.tool_result")) {
            ref_field = "tool_use_id";
            want = "agent.tool_use";
        } else if (!strcmp(type, "user.custom_tool_result")) {
            ref_field = "custom_tool_use_id";
            want = "agent.custom_tool_use";
        } else if (!strcmp(type, "user.tool_confirmation")) {
            ref_field = "tool_use_id";
        }
        if (ref_field) {
            ref = json_string_value(json_object_get(ev, ref_field));
            char rtype[64];
            if ((rc = event_ref_type(q, sid, ref, rtype, sizeof(rtype), err)) < 0) break;
            bool ok = want ? !strcmp(rtype, want)
                           : (!strcmp(rtype, "agent.tool_use") ||
                              !strcmp(rtype, "agent.custom_tool_use"));
            if (!ok) {
                rc = err_msg(err, EINVAL, "events[%zu].%s: no %s '%s' in session '%s'", i,
                             ref_field, want ? want : "agent.tool_use", ref, sid);
                break;
            }
            if (want) {
                bool dup;
                if ((rc = answered(q, sid, ref, &dup, err)) < 0) break;
                if (dup) {
                    rc = err_msg(err, EEXIST,
                                 "events[%zu].%s: '%s' already has a result; the first one stands",
                                 i, ref_field, ref);
                    break;
                }
            } else {
                ref = NULL; /* confirmations do not answer the call */
            }
        }
        char id[ID_MAX];
        if ((rc = id_new("sevt", id, sizeof(id))) < 0) {
            rc = err_set(err, -rc, "getrandom");
            break;
        }
        int64_t now = clock_wall_us();
        char ts[RFC3339_LEN];
        clock_rfc3339_us(now, ts);
        json_t *e = json_deep_copy(ev);
        json_object_set_new(e, "id", json_string(id));
        json_object_set_new(e, "processed_at", json_string(ts));
        _cleanup_free_ char *body = dump(e);
        sqlite3_stmt *st = prep(q, SQL_EVENT_INSERT, err);
        if (!st || !body) {
            json_decref(e);
            rc = -EIO;
            break;
        }
        bind_text(st, 1, id);
        bind_text(st, 2, sid);
        bind_text(st, 3, type);
        bind_text(st, 4, ref);
        bind_text(st, 5, body);
        sqlite3_bind_int64(st, 6, now);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            json_decref(e);
            rc = db_err(q, err, "insert event");
            break;
        }
        rc = 0;
        json_array_append_new(stored, e);
        if (answer_ok && ((i && buf_putc(&q->answer, ',') < 0) || buf_puts(&q->answer, body) < 0))
            answer_ok = false;
        if (answer_ok && res->nappended < STORE_APPEND_MAX) {
            store_appended_t *a = &res->appended[res->nappended++];
            a->seq = sqlite3_last_insert_rowid(q->db);
            snprintf(a->type, sizeof(a->type), "%s", type);
            a->len = strlen(body);
            a->off = q->answer.len - a->len;
        } else {
            answer_ok = false;
        }
        if (!strcmp(type, "agent.tool_use") || !strcmp(type, "agent.custom_tool_use")) {
            snprintf(status, sizeof(status), "running");
            wake = true;
        } else if (!strcmp(type, "session.status_running")) {
            snprintf(status, sizeof(status), "running");
        } else if (!strcmp(type, "session.status_idle")) {
            snprintf(status, sizeof(status), "idle");
        } else if (!strcmp(type, "session.status_terminated")) {
            snprintf(status, sizeof(status), "terminated");
            wake = false;
        }
    }
    if (rc == 0 && strcmp(status, orig_status)) {
        sqlite3_stmt *st = prep(q, SQL_SESSION_STATUS, err);
        if (!st)
            rc = -EIO;
        else {
            bind_text(st, 1, sid);
            bind_text(st, 2, status);
            sqlite3_bind_int64(st, 3, clock_wall_us());
            rc = step_done(q, st, "session status", err);
        }
    }
    if (rc == 0 && wake) {
        sqlite3_stmt *st = prep(q, SQL_WORK_OPEN, err);
        if (!st)
            rc = -EIO;
        else {
            bind_text(st, 1, sid);
            int r = sqlite3_step(st);
            sqlite3_reset(st);
            if (r == SQLITE_DONE) {
                rc = work_enqueue(q, env_id, sid, err);
                res->work_enqueued = rc == 0;
            } else if (r != SQLITE_ROW) {
                rc = db_err(q, err, "open work lookup");
            }
        }
    }
    rc = tx_end(q, rc, err);
    if (rc < 0) {
        json_decref(stored);
        res->work_enqueued = false;
        res->nappended = 0;
        return rc;
    }
    res->events = stored;
    if (answer_ok && buf_puts(&q->answer, "]}") == 0)
        res->answer = q->answer.data;
    else
        res->nappended = 0;
    return 0;
}

static const char SQL_SYNC_NORMAL[] = "PRAGMA synchronous=NORMAL";
static const char SQL_SYNC_FULL[] = "PRAGMA synchronous=FULL";

static int sq_events_append(store_t *s, const char *sid, json_t *events, unsigned flags,
                            store_append_result_t *res, shed_err *err)
{
    sq_store_t *q = SQ(s);
    memset(res, 0, sizeof(*res));
    bool early =
        (flags & STORE_APPEND_EARLY) && !s->cfg.sync_normal && !s->cfg.sync_strict && !q->in_memory;
    if (!early) return events_append_tx(q, sid, events, res, err);
    if (q->failed[0]) return tx_begin(q, err); /* the refusal */
    int rc = exec_simple(q, SQL_SYNC_NORMAL, err);
    if (rc < 0) return rc;
    rc = events_append_tx(q, sid, events, res, err);
    shed_err e2 = {0};
    if (exec_simple(q, SQL_SYNC_FULL, &e2) < 0) {
        /* Fail closed: no later commit may go unflushed. */
        snprintf(q->failed, sizeof(q->failed), "restoring synchronous=FULL: %s", e2.msg);
        q->sync_pending = true; /* sq_sync still flushes what this append committed */
    }
    if (rc == 0) {
        q->sync_pending = true;
        res->sync_pending = true;
    }
    return rc;
}

/* The fsync COMMIT at synchronous=FULL does (sqlite3WalFrames: the WAL file,
 * SQLITE_SYNC_NORMAL, and the directory once after the WAL was created),
 * for what early appends committed. */
static int sq_sync(store_t *s, shed_err *err)
{
    sq_store_t *q = SQ(s);
    if (!q->sync_pending) return 0;
    q->sync_pending = false;
    sqlite3_file *f = NULL;
    int rc = sqlite3_file_control(q->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f);
    if (rc == SQLITE_OK && f && f->pMethods)
        rc = f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
    else if (rc == SQLITE_OK)
        rc = SQLITE_IOERR; /* a WAL database in use always has its journal open */
    if (rc == SQLITE_OK) return 0;
    snprintf(q->failed, sizeof(q->failed), "fsync of the write-ahead log: SQLite error %d", rc);
    return err_msg(err, EIO, "database: %s", q->failed);
}

static const char *sq_write_refused(store_t *s)
{
    sq_store_t *q = SQ(s);
    return q->failed[0] ? q->failed : NULL;
}

static json_t *event_row(sqlite3_stmt *st)
{
    return stored_json(st, 0, json_object());
}

static const char SQL_EVENTS_ASC[] =
    "SELECT body, seq FROM events WHERE seq>?1 AND session_id=?3 ORDER BY seq LIMIT ?2";
static const char SQL_EVENTS_DESC[] =
    "SELECT body, seq FROM events WHERE seq<?1 AND session_id=?3 ORDER BY seq DESC LIMIT ?2";

#define TYPES_IN " AND type IN (?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19)"
static const char SQL_EVENTS_ASC_T[] =
    "SELECT body, seq FROM events WHERE seq>?1 AND session_id=?3" TYPES_IN " ORDER BY seq LIMIT ?2";
static const char SQL_EVENTS_DESC_T[] =
    "SELECT body, seq FROM events WHERE seq<?1 AND session_id=?3" TYPES_IN
    " ORDER BY seq DESC LIMIT ?2";

static int sq_events_list(store_t *s, const char *sid, const store_page_t *pg, json_t **out,
                          shed_err *err)
{
    sq_store_t *q = SQ(s);
    char env_id[ID_MAX], status[32];
    int rc = session_head(q, sid, env_id, status, err);
    if (rc < 0) return rc;
    const char *sql = pg->ntypes ? (pg->desc ? SQL_EVENTS_DESC_T : SQL_EVENTS_ASC_T)
                                 : (pg->desc ? SQL_EVENTS_DESC : SQL_EVENTS_ASC);
    return run_page(q, sql, pg, sid, NULL, event_row, 1, out, err);
}

static const char SQL_EVENTS_LAST[] = "SELECT COALESCE(MAX(seq),0) FROM events WHERE session_id=?1";

static int sq_events_last_seq(store_t *s, const char *sid, int64_t *seq, shed_err *err)
{
    sq_store_t *q = SQ(s);
    sqlite3_stmt *st = prep(q, SQL_EVENTS_LAST, err);
    if (!st) return -EIO;
    bind_text(st, 1, sid);
    int rc = sqlite3_step(st);
    *seq = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : db_err(q, err, "last event");
}

static const char SQL_EVENTS_AFTER[] =
    "SELECT seq, type, body FROM events WHERE session_id=?1 AND seq>?2 ORDER BY seq LIMIT ?3";

static int sq_events_after(store_t *s, const char *sid, int64_t after, store_stream_event_t *out,
                           int max, shed_err *err)
{
    sq_store_t *q = SQ(s);
    sqlite3_stmt *st = prep(q, SQL_EVENTS_AFTER, err);
    if (!st) return -EIO;
    bind_text(st, 1, sid);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int(st, 3, max);
    int n = 0, rc = SQLITE_DONE;
    while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        out[n].seq = sqlite3_column_int64(st, 0);
        snprintf(out[n].type, sizeof(out[n].type), "%s", col_text(st, 1));
        out[n].json = strdup(col_text(st, 2));
        if (!out[n].json) {
            /* all or an error: a stream takes fewer than `max` as "all there is" */
            while (n > 0) free(out[--n].json);
            sqlite3_reset(st);
            return err_set(err, ENOMEM, "events of a stream");
        }
        n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return db_err(q, err, "events of a stream");
    return n;
}

/* ------------------------------------------- agents, skills, memory stores */

static json_t *obj_row(sqlite3_stmt *st)
{
    return stored_json(st, 0, json_object());
}

static const char SQL_OBJ_INSERT[] =
    "INSERT INTO objects(id,kind,body,created_at,updated_at) VALUES(?1,?2,?3,?4,?4)";
static const char SQL_OBJ_GET[] = "SELECT body,seq FROM objects WHERE kind=?1 AND id=?2";
static const char SQL_OBJ_SET[] =
    "UPDATE objects SET body=?3, updated_at=?4 WHERE kind=?1 AND id=?2";

static int obj_insert(sq_store_t *q, const char *kind, const char *prefix, json_t *body,
                      int64_t now, shed_err *err)
{
    char id[ID_MAX], ts[RFC3339_LEN];
    int rc = id_new(prefix, id, sizeof(id));
    if (rc < 0) return err_set(err, -rc, "getrandom");
    clock_rfc3339_us(now, ts);
    json_object_set_new(body, "id", json_string(id));
    json_object_set_new(body, "created_at", json_string(ts));
    json_object_set_new(body, "updated_at", json_string(ts));
    _cleanup_free_ char *b = dump(body);
    if (!b) return err_set(err, ENOMEM, "encode %s", kind);
    sqlite3_stmt *st = prep(q, SQL_OBJ_INSERT, err);
    if (!st) return -EIO;
    bind_text(st, 1, id);
    bind_text(st, 2, kind);
    bind_text(st, 3, b);
    sqlite3_bind_int64(st, 4, now);
    rc = step_done(q, st, "insert object", err);
    return rc;
}

static int obj_load(sq_store_t *q, const char *kind, const char *id, json_t **out, shed_err *err)
{
    sqlite3_stmt *st = prep(q, SQL_OBJ_GET, err);
    if (!st) return -EIO;
    bind_text(st, 1, kind);
    bind_text(st, 2, id);
    int rc = step_json_row(q, st, obj_row, out, "object lookup", err);
    if (rc == 0) return err_msg(err, ENOENT, "no %s '%s'", kind, id);
    return rc < 0 ? rc : 0;
}

static int obj_save(sq_store_t *q, const char *kind, const char *id, json_t *body, int64_t now,
                    shed_err *err)
{
    _cleanup_free_ char *b = dump(body);
    if (!b) return err_set(err, ENOMEM, "encode %s", kind);
    sqlite3_stmt *st = prep(q, SQL_OBJ_SET, err);
    if (!st) return -EIO;
    bind_text(st, 1, kind);
    bind_text(st, 2, id);
    bind_text(st, 3, b);
    sqlite3_bind_int64(st, 4, now);
    int rc = step_done(q, st, "update object", err);
    return rc;
}

static int sq_obj_create(store_t *s, const char *kind, const char *prefix, json_t *body,
                         json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    rc = obj_insert(q, kind, prefix, body, clock_wall_us(), err);
    if (rc == 0) *out = json_incref(body);
    return tx_end(q, rc, err);
}

static int sq_obj_get(store_t *s, const char *kind, const char *id, json_t **out, shed_err *err)
{
    return obj_load(SQ(s), kind, id, out, err);
}

static const char SQL_OBJ_PAGE[] =
    "SELECT body,seq FROM objects WHERE seq>?1 AND kind=?3 ORDER BY seq LIMIT ?2";
static const char SQL_OBJ_PAGE_DESC[] =
    "SELECT body,seq FROM objects WHERE seq<?1 AND kind=?3 ORDER BY seq DESC LIMIT ?2";

static int sq_obj_list(store_t *s, const char *kind, const store_page_t *pg, json_t **out,
                       shed_err *err)
{
    return run_page(SQ(s), pg->desc ? SQL_OBJ_PAGE_DESC : SQL_OBJ_PAGE, pg, kind, NULL, obj_row, 1,
                    out, err);
}

/* Skill versions: ids are decimal strings (microseconds of creation, strictly
 * increasing per skill), so "latest" and "the highest numeric version" agree. */
#define SKV_COLS "id,skill_id,name,description,directory,created_at,seq"

static json_t *skv_row(sqlite3_stmt *st)
{
    json_t *j = json_object();
    json_object_set_new(j, "id", text_json(st, 0));
    json_object_set_new(j, "type", json_string("skill_version"));
    json_object_set_new(j, "skill_id", text_json(st, 1));
    json_object_set_new(j, "version", text_json(st, 0));
    json_object_set_new(j, "name", text_json(st, 2));
    json_object_set_new(j, "description", text_json(st, 3));
    json_object_set_new(j, "directory", text_json(st, 4));
    json_object_set_new(j, "created_at", ts_json(st, 5));
    return j;
}

static const char SQL_SKV_MAX[] =
    "SELECT COALESCE(MAX(CAST(id AS INTEGER)),0) FROM skill_versions WHERE skill_id=?1";
static const char SQL_SKV_INSERT[] =
    "INSERT INTO skill_versions(id,skill_id,name,description,directory,archive,created_at)"
    " VALUES(?1,?2,?3,?4,?5,?6,?7)";
static const char SQL_SKV_GET[] =
    "SELECT " SKV_COLS " FROM skill_versions WHERE skill_id=?1 AND id=?2";
static const char SQL_SKV_LATEST[] = "SELECT " SKV_COLS " FROM skill_versions WHERE skill_id=?1"
                                     " ORDER BY CAST(id AS INTEGER) DESC LIMIT 1";
static const char SQL_SKV_CONTENT[] =
    "SELECT archive FROM skill_versions WHERE skill_id=?1 AND id=?2";

static int skv_insert(sq_store_t *q, const char *skill_id, json_t *v, const void *archive,
                      size_t len, int64_t now, char *vid, size_t vidlen, shed_err *err)
{
    sqlite3_stmt *st = prep(q, SQL_SKV_MAX, err);
    if (!st) return -EIO;
    bind_text(st, 1, skill_id);
    int64_t max = 0;
    if (sqlite3_step(st) == SQLITE_ROW) max = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    snprintf(vid, vidlen, "%" PRId64, now > max ? now : max + 1);
    if (!(st = prep(q, SQL_SKV_INSERT, err))) return -EIO;
    bind_text(st, 1, vid);
    bind_text(st, 2, skill_id);
    bind_text(st, 3, json_string_value(json_object_get(v, "name")));
    bind_text(st, 4, json_string_value(json_object_get(v, "description")));
    bind_text(st, 5, json_string_value(json_object_get(v, "directory")));
    sqlite3_bind_blob64(st, 6, archive, len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, now);
    int rc = step_done(q, st, "insert skill version", err);
    return rc;
}

static int skv_load(sq_store_t *q, const char *skill_id, const char *version, json_t **out,
                    shed_err *err)
{
    bool latest = !strcmp(version, "latest");
    sqlite3_stmt *st = prep(q, latest ? SQL_SKV_LATEST : SQL_SKV_GET, err);
    if (!st) return -EIO;
    bind_text(st, 1, skill_id);
    if (!latest) bind_text(st, 2, version);
    int rc = step_json_row(q, st, skv_row, out, "skill version lookup", err);
    if (rc == 0) return err_msg(err, ENOENT, "no version '%.40s' of skill '%s'", version, skill_id);
    return rc < 0 ? rc : 0;
}

/* Add a version to a skill already loaded in `skill`; moves latest_version_id. */
static int skill_add_version(sq_store_t *q, json_t *skill, json_t *v, const void *archive,
                             size_t len, int64_t now, json_t **out, shed_err *err)
{
    const char *skill_id = json_string_value(json_object_get(skill, "id"));
    char vid[32], ts[RFC3339_LEN];
    int rc = skv_insert(q, skill_id, v, archive, len, now, vid, sizeof(vid), err);
    if (rc < 0) return rc;
    clock_rfc3339_us(now, ts);
    json_object_set_new(skill, "latest_version_id", json_string(vid));
    json_object_set_new(skill, "latest_version", json_string(vid));
    json_object_set_new(skill, "updated_at", json_string(ts));
    if ((rc = obj_save(q, "skill", skill_id, skill, now, err)) < 0) return rc;
    return skv_load(q, skill_id, vid, out, err);
}

static int sq_skill_create(store_t *s, json_t *skill, json_t *v, const void *archive, size_t len,
                           json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int64_t now = clock_wall_us();
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    _cleanup_json_ json_t *ver = NULL;
    rc = obj_insert(q, "skill", "skill", skill, now, err);
    if (rc == 0) rc = skill_add_version(q, skill, v, archive, len, now, &ver, err);
    if (rc == 0) *out = json_incref(skill);
    return tx_end(q, rc, err);
}

static int sq_skill_version_create(store_t *s, const char *skill_id, json_t *v, const void *archive,
                                   size_t len, json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    _cleanup_json_ json_t *skill = NULL;
    rc = obj_load(q, "skill", skill_id, &skill, err);
    if (rc == 0) rc = skill_add_version(q, skill, v, archive, len, clock_wall_us(), out, err);
    return tx_end(q, rc, err);
}

static int sq_skill_version_get(store_t *s, const char *skill_id, const char *version, json_t **out,
                                shed_err *err)
{
    sq_store_t *q = SQ(s);
    _cleanup_json_ json_t *skill = NULL;
    int rc = obj_load(q, "skill", skill_id, &skill, err);
    if (rc < 0) return rc;
    return skv_load(q, skill_id, version, out, err);
}

static const char SQL_SKV_PAGE[] = "SELECT " SKV_COLS " FROM skill_versions WHERE seq>?1"
                                   " AND skill_id=?3 ORDER BY seq LIMIT ?2";
static const char SQL_SKV_PAGE_DESC[] = "SELECT " SKV_COLS " FROM skill_versions WHERE seq<?1"
                                        " AND skill_id=?3 ORDER BY seq DESC LIMIT ?2";

static int sq_skill_version_list(store_t *s, const char *skill_id, const store_page_t *pg,
                                 json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    _cleanup_json_ json_t *skill = NULL;
    int rc = obj_load(q, "skill", skill_id, &skill, err);
    if (rc < 0) return rc;
    return run_page(q, pg->desc ? SQL_SKV_PAGE_DESC : SQL_SKV_PAGE, pg, skill_id, NULL, skv_row, 6,
                    out, err);
}

static int sq_skill_version_content(store_t *s, const char *skill_id, const char *version,
                                    void **data, size_t *len, shed_err *err)
{
    sq_store_t *q = SQ(s);
    _cleanup_json_ json_t *v = NULL;
    int rc = sq_skill_version_get(s, skill_id, version, &v, err);
    if (rc < 0) return rc;
    sqlite3_stmt *st = prep(q, SQL_SKV_CONTENT, err);
    if (!st) return -EIO;
    bind_text(st, 1, skill_id);
    bind_text(st, 2, json_string_value(json_object_get(v, "id")));
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return db_err(q, err, "skill content");
    }
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    const void *b = sqlite3_column_blob(st, 0);
    void *copy = malloc(n ? n : 1);
    if (!copy) {
        sqlite3_reset(st);
        return err_set(err, ENOMEM, "skill content");
    }
    if (n) memcpy(copy, b, n);
    sqlite3_reset(st);
    *data = copy;
    *len = n;
    return 0;
}

/* Memories. */
#define MEM_COLS "id,store_id,path,content,sha,size,version_id,created_at,updated_at"

static json_t *mem_row_view(sqlite3_stmt *st, bool full)
{
    json_t *j = json_object();
    json_object_set_new(j, "id", text_json(st, 0));
    json_object_set_new(j, "type", json_string("memory"));
    json_object_set_new(j, "memory_store_id", text_json(st, 1));
    json_object_set_new(j, "path", text_json(st, 2));
    if (full) {
        const char *c = (const char *)sqlite3_column_text(st, 3);
        json_object_set_new(j, "content",
                            json_stringn(c ? c : "", (size_t)sqlite3_column_bytes(st, 3)));
    } else {
        json_object_set_new(j, "content", json_null());
    }
    json_object_set_new(j, "content_sha256", text_json(st, 4));
    json_object_set_new(j, "content_size_bytes", json_integer(sqlite3_column_int64(st, 5)));
    json_object_set_new(j, "memory_version_id", text_json(st, 6));
    json_object_set_new(j, "created_at", ts_json(st, 7));
    json_object_set_new(j, "updated_at", ts_json(st, 8));
    return j;
}

static const char SQL_MEM_GET[] = "SELECT " MEM_COLS " FROM memories WHERE store_id=?1 AND id=?2";
/* An existing memory at the path, above it (an ancestor file) or below it. */
static const char SQL_MEM_CONFLICT[] =
    "SELECT id,path FROM memories WHERE store_id=?1 AND id IS NOT ?3 AND (path=?2"
    " OR substr(?2,1,length(path)+1)=path||'/' OR substr(path,1,length(?2)+1)=?2||'/') LIMIT 1";
static const char SQL_MEM_INSERT[] =
    "INSERT INTO memories(id,store_id,path,content,sha,size,version_id,created_at,updated_at)"
    " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?8)";
static const char SQL_MEM_UPDATE[] = "UPDATE memories SET path=?3, content=?4, sha=?5, size=?6,"
                                     " version_id=?7, updated_at=?8 WHERE store_id=?1 AND id=?2";
static const char SQL_MEM_DELETE[] = "DELETE FROM memories WHERE store_id=?1 AND id=?2";
static const char SQL_MEM_SCAN[] = "SELECT " MEM_COLS " FROM memories WHERE store_id=?1"
                                   " AND path>?2 AND substr(path,1,length(?3))=?3 ORDER BY path";

static int mem_load(sq_store_t *q, const char *sql, const char *store_id, const char *key,
                    bool full, json_t **out, shed_err *err)
{
    sqlite3_stmt *st = prep(q, sql, err);
    if (!st) return -EIO;
    bind_text(st, 1, store_id);
    bind_text(st, 2, key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = mem_row_view(st, full);
        sqlite3_reset(st);
        return 0;
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return err_msg(err, ENOENT, "no memory '%.80s' in store '%s'", key, store_id);
    return db_err(q, err, "memory lookup");
}

static int mem_store_check(sq_store_t *q, const char *store_id, shed_err *err)
{
    _cleanup_json_ json_t *ms = NULL;
    return obj_load(q, "memory_store", store_id, &ms, err);
}

/* -EEXIST with *conflict filled when another memory blocks `path`. */
static int mem_conflict(sq_store_t *q, const char *store_id, const char *path, const char *self,
                        json_t **conflict, shed_err *err)
{
    sqlite3_stmt *st = prep(q, SQL_MEM_CONFLICT, err);
    if (!st) return -EIO;
    bind_text(st, 1, store_id);
    bind_text(st, 2, path);
    bind_text(st, 3, self);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (conflict)
            *conflict = json_pack("{s:s,s:s}", "conflicting_memory_id", col_text(st, 0),
                                  "conflicting_path", col_text(st, 1));
        rc = err_msg(err, EEXIST, "path '%.200s' conflicts with the memory at '%.200s'", path,
                     col_text(st, 1));
        sqlite3_reset(st);
        return rc;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_err(q, err, "memory conflict check");
}

static int mem_write(sq_store_t *q, const char *sql, const char *store_id, const char *id,
                     const char *path, const char *content, size_t len, int64_t now, shed_err *err)
{
    char sha[SHA256_HEX_LEN], vid[ID_MAX];
    crypto_sha256_hex(content, len, sha);
    int rc = id_new("memver", vid, sizeof(vid));
    if (rc < 0) return err_set(err, -rc, "getrandom");
    sqlite3_stmt *st = prep(q, sql, err);
    if (!st) return -EIO;
    if (sql == SQL_MEM_INSERT) {
        bind_text(st, 1, id);
        bind_text(st, 2, store_id);
    } else {
        bind_text(st, 1, store_id);
        bind_text(st, 2, id);
    }
    bind_text(st, 3, path);
    sqlite3_bind_text64(st, 4, content, len, SQLITE_TRANSIENT, SQLITE_UTF8);
    bind_text(st, 5, sha);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)len);
    bind_text(st, 7, vid);
    sqlite3_bind_int64(st, 8, now);
    rc = step_done(q, st, "write memory", err);
    return rc;
}

static int sq_memory_create(store_t *s, const char *store_id, const char *path, const char *content,
                            size_t len, bool full, json_t **out, json_t **conflict, shed_err *err)
{
    sq_store_t *q = SQ(s);
    char id[ID_MAX];
    int rc = id_new("mem", id, sizeof(id));
    if (rc < 0) return err_set(err, -rc, "getrandom");
    if ((rc = tx_begin(q, err)) < 0) return rc;
    rc = mem_store_check(q, store_id, err);
    if (rc == 0) rc = mem_conflict(q, store_id, path, NULL, conflict, err);
    if (rc == 0)
        rc = mem_write(q, SQL_MEM_INSERT, store_id, id, path, content, len, clock_wall_us(), err);
    if (rc == 0) rc = mem_load(q, SQL_MEM_GET, store_id, id, full, out, err);
    return tx_end(q, rc, err);
}

static int sq_memory_update(store_t *s, const char *store_id, const char *mem_id, const char *path,
                            const char *content, size_t len, const char *expected_sha, bool full,
                            json_t **out, json_t **conflict, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    _cleanup_json_ json_t *cur = NULL;
    rc = mem_store_check(q, store_id, err);
    if (rc == 0) rc = mem_load(q, SQL_MEM_GET, store_id, mem_id, true, &cur, err);
    if (rc < 0) return tx_end(q, rc, err);
    const char *cur_sha = json_string_value(json_object_get(cur, "content_sha256"));
    const char *cur_path = json_string_value(json_object_get(cur, "path"));
    json_t *cc = json_object_get(cur, "content");
    const char *new_path = path ? path : cur_path;
    const char *new_content = content ? content : json_string_value(cc);
    size_t new_len = content ? len : json_string_length(cc);
    bool same = !strcmp(new_path, cur_path) && new_len == json_string_length(cc) &&
                !memcmp(new_content, json_string_value(cc), new_len);
    if (expected_sha && strcmp(expected_sha, cur_sha) && !same)
        return tx_end(q,
                      err_msg(err, ESTALE,
                              "precondition failed: memory '%s' has content_sha256 %s, not %.64s",
                              mem_id, cur_sha, expected_sha),
                      err);
    if (!same) {
        if (strcmp(new_path, cur_path) &&
            (rc = mem_conflict(q, store_id, new_path, mem_id, conflict, err)) < 0)
            return tx_end(q, rc, err);
        rc = mem_write(q, SQL_MEM_UPDATE, store_id, mem_id, new_path, new_content, new_len,
                       clock_wall_us(), err);
    }
    if (rc == 0) rc = mem_load(q, SQL_MEM_GET, store_id, mem_id, full, out, err);
    return tx_end(q, rc, err);
}

static int sq_memory_delete(store_t *s, const char *store_id, const char *mem_id,
                            const char *expected_sha, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = tx_begin(q, err);
    if (rc < 0) return rc;
    _cleanup_json_ json_t *cur = NULL;
    rc = mem_store_check(q, store_id, err);
    if (rc == 0) rc = mem_load(q, SQL_MEM_GET, store_id, mem_id, false, &cur, err);
    if (rc < 0) return tx_end(q, rc, err);
    const char *cur_sha = json_string_value(json_object_get(cur, "content_sha256"));
    if (expected_sha && strcmp(expected_sha, cur_sha))
        return tx_end(q,
                      err_msg(err, ESTALE,
                              "precondition failed: memory '%s' has content_sha256 %s, not %.64s",
                              mem_id, cur_sha, expected_sha),
                      err);
    sqlite3_stmt *st = prep(q, SQL_MEM_DELETE, err);
    if (!st) return tx_end(q, -EIO, err);
    bind_text(st, 1, store_id);
    bind_text(st, 2, mem_id);
    rc = step_done(q, st, "delete memory", err);
    return tx_end(q, rc, err);
}

static int sq_memory_get(store_t *s, const char *store_id, const char *mem_id, bool full,
                         json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = mem_store_check(q, store_id, err);
    if (rc < 0) return rc;
    return mem_load(q, SQL_MEM_GET, store_id, mem_id, full, out, err);
}

/* Keyset paging by path. The cursor is "pg_" + hex of the last key emitted:
 * a memory path, or a memory_prefix path (ends with '/'), whose whole group
 * the next page skips. Listing under concurrent writes never repeats or
 * skips a path that existed throughout. */
static int sq_memory_list(store_t *s, const char *store_id, const char *prefix, int depth,
                          bool full, const store_page_t *pg, json_t **out, shed_err *err)
{
    sq_store_t *q = SQ(s);
    int rc = mem_store_check(q, store_id, err);
    if (rc < 0) return rc;
    char after[1100] = "";
    if (pg->cursor) {
        const char *c = pg->cursor;
        size_t n = strlen(c);
        if (strncmp(c, "pg_", 3) || n < 5 || (n - 3) % 2 || (n - 3) / 2 >= sizeof(after))
            return err_msg(err, EINVAL,
                           "query parameter 'page' is not a cursor this server issued");
        for (size_t i = 0; i < (n - 3) / 2; i++) {
            unsigned v;
            if (sscanf(c + 3 + 2 * i, "%2x", &v) != 1 || !v)
                return err_msg(err, EINVAL,
                               "query parameter 'page' is not a cursor this server issued");
            after[i] = (char)v;
        }
        after[(n - 3) / 2] = '\0';
    }
    const char *pfx = prefix ? prefix : "/";
    size_t plen = strlen(pfx);
    sqlite3_stmt *st = prep(q, SQL_MEM_SCAN, err);
    if (!st) return -EIO;
    bind_text(st, 1, store_id);
    bind_text(st, 2, after);
    bind_text(st, 3, pfx);
    json_t *data = json_array();
    char last[1100] = "", group[1100] = "";
    size_t alen = strlen(after);
    bool skip_after_group = alen && after[alen - 1] == '/';
    bool more = false;
    int n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *path = col_text(st, 2);
        if (skip_after_group && !strncmp(path, after, alen)) continue;
        if (group[0] && !strncmp(path, group, strlen(group))) continue;
        /* depth: segments below the prefix ("/" + depth segments shown as memories) */
        const char *rest = path + plen - (pfx[plen - 1] == '/' ? 1 : 0);
        char key[1100];
        bool is_group = false;
        if (depth > 0) {
            int segs = 0;
            const char *p = rest;
            const char *cut = NULL;
            while (*p) {
                if (*p == '/') {
                    segs++;
                    if (segs == depth + 1) {
                        cut = p;
                        break;
                    }
                }
                p++;
            }
            if (cut) {
                size_t k = (size_t)(cut - path) + 1;
                if (k >= sizeof(key)) k = sizeof(key) - 1;
                memcpy(key, path, k);
                key[k] = '\0';
                is_group = true;
            }
        }
        if (n == pg->limit) {
            more = true;
            break;
        }
        if (is_group) {
            snprintf(group, sizeof(group), "%s", key);
            json_array_append_new(data,
                                  json_pack("{s:s,s:s}", "type", "memory_prefix", "path", key));
            snprintf(last, sizeof(last), "%s", key);
        } else {
            json_array_append_new(data, mem_row_view(st, full));
            snprintf(last, sizeof(last), "%s", path);
        }
        n++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        json_decref(data);
        sqlite3_reset(st);
        return db_err(q, err, "memory list");
    }
    sqlite3_reset(st);
    json_t *p = json_object();
    json_object_set_new(p, "data", data);
    if (more) {
        char cur[3 + 2 * sizeof(last) + 1];
        memcpy(cur, "pg_", 3);
        crypto_hex((const unsigned char *)last, strlen(last), cur + 3);
        json_object_set_new(p, "next_page", json_string(cur));
    } else {
        json_object_set_new(p, "next_page", json_null());
    }
    json_object_set_new(p, "prev_page", json_null());
    *out = p;
    return 0;
}

/* ------------------------------------------------------------------- open */

static void sq_close(store_t *s)
{
    sq_store_t *q = SQ(s);
    if (!q) return;
    for (int i = 0; i < STMT_CACHE && q->cache[i].sql; i++) sqlite3_finalize(q->cache[i].st);
    sqlite3_close(q->db);
    buf_free(&q->answer);
    free(q);
}

static const struct store_ops SQLITE_OPS = {
    .close = sq_close,
    .auth_env_key = sq_auth_env_key,
    .auth_sessions_token = sq_auth_sessions_token,
    .env_create = sq_env_create,
    .env_get = sq_env_get,
    .env_list = sq_env_list,
    .env_update = sq_env_update,
    .env_archive = sq_env_archive,
    .env_delete = sq_env_delete,
    .key_create = sq_key_create,
    .key_list = sq_key_list,
    .key_revoke = sq_key_revoke,
    .session_create = sq_session_create,
    .session_get = sq_session_get,
    .session_head = sq_session_head,
    .session_list = sq_session_list,
    .events_append = sq_events_append,
    .sync = sq_sync,
    .write_refused = sq_write_refused,
    .events_list = sq_events_list,
    .events_last_seq = sq_events_last_seq,
    .events_after = sq_events_after,
    .work_poll = sq_work_poll,
    .work_ack = sq_work_ack,
    .work_heartbeat = sq_work_heartbeat,
    .work_stop = sq_work_stop,
    .work_get = sq_work_get,
    .work_list = sq_work_list,
    .work_update = sq_work_update,
    .work_stats = sq_work_stats,
    .obj_create = sq_obj_create,
    .obj_get = sq_obj_get,
    .obj_list = sq_obj_list,
    .skill_create = sq_skill_create,
    .skill_version_create = sq_skill_version_create,
    .skill_version_get = sq_skill_version_get,
    .skill_version_list = sq_skill_version_list,
    .skill_version_content = sq_skill_version_content,
    .memory_list = sq_memory_list,
    .memory_get = sq_memory_get,
    .memory_create = sq_memory_create,
    .memory_update = sq_memory_update,
    .memory_delete = sq_memory_delete,
};

/* Databases made before a column existed get it (idempotent). */
static int migrate(sq_store_t *q, char **msg)
{
    static const char *const ALTER[] = {
        "ALTER TABLE work ADD COLUMN deliveries INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE work ADD COLUMN acked_gen INTEGER",
    };
    for (size_t i = 0; i < ARRAY_SIZE(ALTER); i++) {
        int rc = sqlite3_exec(q->db, ALTER[i], NULL, NULL, msg);
        if (rc != SQLITE_OK && *msg && strstr(*msg, "duplicate column")) {
            sqlite3_free(*msg);
            *msg = NULL;
            rc = SQLITE_OK;
        }
        if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

int store_sqlite_open(const char *path, const store_queue_cfg_t *cfg, store_t **out, shed_err *err)
{
    sq_store_t *q = calloc(1, sizeof(*q));
    if (!q) return err_set(err, ENOMEM, "store");
    q->base.ops = &SQLITE_OPS;
    q->base.cfg = *cfg;
    q->in_memory = !strcmp(path, ":memory:");
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &q->db, flags, NULL) != SQLITE_OK) {
        int rc =
            err_msg(err, EIO, "open database %s: %s (check the directory exists and is writable)",
                    path, q->db ? sqlite3_errmsg(q->db) : "out of memory");
        sqlite3_close(q->db);
        free(q);
        return rc;
    }
    sqlite3_busy_timeout(q->db, 5000);
    char *msg = NULL;
    const char *setup =
        cfg->sync_normal
            ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
            : "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;";
    if (sqlite3_exec(q->db, setup, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(q->db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK ||
        migrate(q, &msg) != SQLITE_OK) {
        int rc = err_msg(err, EIO, "initialize database %s: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        sq_close(&q->base);
        return rc;
    }
    /* Confirm WAL took (it cannot on some filesystems): durability reasoning depends on it. */
    sqlite3_stmt *st = NULL;
    if (strcmp(path, ":memory:") && /* in-memory databases (tests, fuzzing) have no WAL */
        sqlite3_prepare_v2(q->db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && strcmp(col_text(st, 0), "wal") != 0) {
        sqlite3_finalize(st);
        int rc = err_msg(err, EIO,
                         "database %s: WAL journal mode unavailable on this filesystem; put "
                         "--state-dir on a local disk",
                         path);
        sq_close(&q->base);
        return rc;
    }
    sqlite3_finalize(st);
    *out = &q->base;
    return 0;
}

int store_open(const char *url, const store_queue_cfg_t *cfg, store_t **out, shed_err *err)
{
    if (!strncmp(url, "sqlite:", 7)) return store_sqlite_open(url + 7, cfg, out, err);
    if (!strncmp(url, "postgres://", 11) || !strncmp(url, "postgresql://", 13))
        return err_msg(err, ENOTSUP,
                       "--db %.12s...: the PostgreSQL backend is not built yet; use sqlite:PATH",
                       url);
    if (strstr(url, "://"))
        return err_msg(err, EINVAL, "--db: unknown database URL scheme; use sqlite:PATH");
    return store_sqlite_open(url, cfg, out, err);
}
