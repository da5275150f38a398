/*
 * dw_pg: one libpq connection per handle. Connecting is non-blocking (PQconnectStartParams and
 * PQconnectPoll under poll()) so that one attempt never outlives the caller's deadline; failed
 * attempts are retried with exponential backoff and jitter. Statements go through PQexecParams
 * with the status checked after every call; migrations are the one place SQL text from a file runs
 * through PQexec (trusted: it ships in the repository, it is never built from input).
 */
#include "dw_pg.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dw_log.h"

#define DW_PG_FAC             "pg"
#define DW_PG_BACKOFF_MIN_MS  100
#define DW_PG_BACKOFF_MAX_MS  5000
#define DW_PG_MSG_MAX         1024
#define DW_PG_TARGET_MAX      256
#define DW_PG_MAX_PW_SPANS    16
#define DW_PG_MIN_SERVER_VERS 110000 /* sha256() */

struct dw_pg_s {
    PGconn *conn;  /* owned; NULL after a failed dw_pg_reset */
    char *dsn;     /* owned copy */
    char *app;     /* owned copy */
    int timeout_ms;
    uint64_t rng;  /* jitter state */
    char target[DW_PG_TARGET_MAX];
    char sqlstate[6];
};

/* ---- small helpers ----------------------------------------------------------------------------- */

static int64_t dw_pg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void dw_pg_sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL); /* an interrupted sleep only shortens one backoff step */
}

/* xorshift64*: jitter only, not security. */
static uint64_t dw_pg_rand(dw_pg_t *pg)
{
    pg->rng ^= pg->rng >> 12;
    pg->rng ^= pg->rng << 25;
    pg->rng ^= pg->rng >> 27;
    return pg->rng * 2685821657736338717ULL;
}

/* libpq messages span lines ("...failed: Connection refused\n\tIs the server running..."): fold
 * every run of whitespace into one space and drop the trailing newline. */
static void dw_pg_flatten(const char *src, char *dst, size_t n)
{
    size_t o = 0;
    bool space = false;
    if (n == 0)
        return;
    for (const char *p = src ? src : ""; *p && o + 1 < n; p++) {
        if (isspace((unsigned char)*p)) {
            space = o > 0;
            continue;
        }
        if (space && o + 2 < n)
            dst[o++] = ' ';
        space = false;
        dst[o++] = *p;
    }
    dst[o] = '\0';
}

static void dw_pg_set_sqlstate(dw_pg_t *pg, const char *state)
{
    snprintf(pg->sqlstate, sizeof(pg->sqlstate), "%s", state);
}

/* ---- DSNs -------------------------------------------------------------------------------------- */

typedef struct {
    size_t off, len;
} dw_pg_span_t;

static size_t dw_pg_uri_prefix(const char *dsn)
{
    if (strncmp(dsn, "postgresql://", 13) == 0)
        return 13;
    if (strncmp(dsn, "postgres://", 11) == 0)
        return 11;
    return 0;
}

static void dw_pg_span_add(dw_pg_span_t *spans, size_t *n, size_t max, size_t off, size_t len)
{
    if (len > 0 && *n < max)
        spans[(*n)++] = (dw_pg_span_t){off, len};
}

/* Where dsn writes password values, as written (quotes and percent-encoding included), in order.
 * Mirrors libpq's parsers (conninfo_parse, conninfo_uri_parse_options); dsn must parse. */
static size_t dw_pg_dsn_password_spans(const char *dsn, dw_pg_span_t *spans, size_t max)
{
    size_t n = 0, pre = dw_pg_uri_prefix(dsn);
    if (pre > 0) {
        const char *start = dsn + pre, *p = start;
        while (*p && *p != '@' && *p != '/')
            p++;
        if (*p == '@') {
            const char *colon = memchr(start, ':', (size_t)(p - start));
            if (colon)
                dw_pg_span_add(spans, &n, max, (size_t)(colon + 1 - dsn), (size_t)(p - colon - 1));
            p++;
        } else {
            p = start;
        }
        const char *q = strchr(p, '?');
        while (q && *q) {
            const char *key = q + 1, *amp = strchr(key, '&');
            const char *end = amp ? amp : key + strlen(key);
            const char *eq = memchr(key, '=', (size_t)(end - key));
            if (eq && eq - key == 8 && strncmp(key, "password", 8) == 0)
                dw_pg_span_add(spans, &n, max, (size_t)(eq + 1 - dsn), (size_t)(end - eq - 1));
            q = amp;
        }
        return n;
    }
    const char *p = dsn;
    while (*p) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        const char *key = p;
        while (*p && *p != '=' && !isspace((unsigned char)*p))
            p++;
        size_t keylen = (size_t)(p - key);
        while (isspace((unsigned char)*p))
            p++;
        if (*p != '=')
            break; /* PQconninfoParse rejects this; nothing more to find */
        p++;
        while (isspace((unsigned char)*p))
            p++;
        const char *val = p;
        if (*p == '\'') {
            p++;
            while (*p && *p != '\'')
                p += (*p == '\\' && p[1]) ? 2 : 1;
            if (*p == '\'')
                p++;
        } else {
            while (*p && !isspace((unsigned char)*p))
                p += (*p == '\\' && p[1]) ? 2 : 1;
        }
        if (keylen == 8 && strncmp(key, "password", 8) == 0)
            dw_pg_span_add(spans, &n, max, (size_t)(val - dsn), (size_t)(p - val));
    }
    return n;
}

/* new PQconninfoOption array (PQconninfoFree) or NULL with DW_ERR_CONFIG in errstr. */
static PQconninfoOption *dw_pg_dsn_parse(const char *dsn, dw_err_t *err, char *errstr, size_t n)
{
    char *perr = NULL; /* new (PQfreemem) */
    PQconninfoOption *opts = PQconninfoParse(dsn, &perr);
    if (!opts) {
        char msg[DW_PG_MSG_MAX];
        dw_pg_flatten(perr ? perr : "out of memory", msg, sizeof(msg));
        *err = dw_errf(perr ? DW_ERR_CONFIG : DW_ERR_NOMEM, errstr, n,
                       "invalid PostgreSQL connection string: %s", msg);
    }
    PQfreemem(perr);
    return opts;
}

/* The option's value when set and not empty (borrowed from opts). */
static const char *dw_pg_opt(const PQconninfoOption *opts, const char *key)
{
    for (const PQconninfoOption *o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, key) == 0)
            return (o->val && *o->val) ? o->val : NULL;
    }
    return NULL;
}

static const char *dw_pg_env(const char *name)
{
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

dw_err_t dw_pg_dsn_describe(const char *dsn, char *target, size_t target_size, char *errstr,
                            size_t errstr_size)
{
    dw_err_t err = DW_OK;
    PQconninfoOption *opts = dw_pg_dsn_parse(dsn, &err, errstr, errstr_size); /* owned */
    if (!opts)
        goto out;
    const char *host = dw_pg_opt(opts, "host");
    if (!host)
        host = dw_pg_opt(opts, "hostaddr");
    if (!host)
        host = dw_pg_env("PGHOST");
    if (!host)
        host = dw_pg_env("PGHOSTADDR");
    const char *port = dw_pg_opt(opts, "port");
    if (!port)
        port = dw_pg_env("PGPORT");
    const char *db = dw_pg_opt(opts, "dbname");
    if (!db)
        db = dw_pg_env("PGDATABASE");
    if (!db)
        db = dw_pg_opt(opts, "user");
    if (!db)
        db = dw_pg_env("PGUSER");
    snprintf(target, target_size, "%s:%s/%s", host ? host : "[local]", port ? port : "5432",
             db ? db : "");
out:
    PQconninfoFree(opts);
    return err;
}

dw_err_t dw_pg_dsn_mask(const char *dsn, char *out, size_t out_size, char *errstr,
                        size_t errstr_size)
{
    dw_err_t err = DW_OK;
    dw_pg_span_t spans[DW_PG_MAX_PW_SPANS];
    PQconninfoOption *opts = dw_pg_dsn_parse(dsn, &err, errstr, errstr_size); /* owned */
    if (!opts)
        goto out;
    size_t nspans = dw_pg_dsn_password_spans(dsn, spans, DW_PG_MAX_PW_SPANS);
    size_t o = 0, i = 0, s = 0;
    while (dsn[i]) {
        const char *piece;
        size_t len;
        if (s < nspans && spans[s].off == i) {
            piece = "***";
            len = 3;
            i += spans[s++].len;
        } else {
            piece = dsn + i++;
            len = 1;
        }
        if (o + len >= out_size) {
            err = dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                          "masked connection string does not fit in %zu bytes", out_size);
            goto out;
        }
        memcpy(out + o, piece, len);
        o += len;
    }
    if (out_size > 0)
        out[o] = '\0';
out:
    PQconninfoFree(opts);
    return err;
}

dw_err_t dw_pg_dsn_register_secrets(const char *dsn, char *errstr, size_t errstr_size)
{
    dw_err_t err = DW_OK;
    dw_pg_span_t spans[DW_PG_MAX_PW_SPANS];
    char raw[DW_PG_MSG_MAX];
    dw_log_add_secret(dw_pg_env("PGPASSWORD"));
    PQconninfoOption *opts = dw_pg_dsn_parse(dsn, &err, errstr, errstr_size); /* owned */
    if (!opts)
        goto out;
    dw_log_add_secret(dw_pg_opt(opts, "password"));
    size_t nspans = dw_pg_dsn_password_spans(dsn, spans, DW_PG_MAX_PW_SPANS);
    for (size_t i = 0; i < nspans; i++) {
        const char *v = dsn + spans[i].off;
        size_t len = spans[i].len;
        snprintf(raw, sizeof(raw), "%.*s", (int)len, v);
        dw_log_add_secret(raw);
        if (len >= 2 && v[0] == '\'' && v[len - 1] == '\'') {
            snprintf(raw, sizeof(raw), "%.*s", (int)(len - 2), v + 1);
            dw_log_add_secret(raw);
        }
    }
out:
    PQconninfoFree(opts);
    return err;
}

/* ---- connection -------------------------------------------------------------------------------- */

/* Server notices (e.g. "relation already exists, skipping") go to our log, never to stderr. */
static void dw_pg_notice_receiver(void *arg, const PGresult *res)
{
    const dw_pg_t *pg = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (sev && strcmp(sev, "WARNING") == 0)
        DW_WARN(DW_PG_FAC, "%s: server warning: %s", pg->target, msg ? msg : "?");
    else
        DW_DEBUG(DW_PG_FAC, "%s: server %s: %s", pg->target, sev ? sev : "notice",
                 msg ? msg : "?");
}

/* One connection attempt that gives up at deadline (monotonic ms). Returns a new connection, or
 * NULL with libpq's message in msg. */
static PGconn *dw_pg_try_connect(const dw_pg_t *pg, int64_t deadline, char *msg, size_t n)
{
    /* dbname is expanded: the DSN's own application_name wins over ours (it comes before);
     * client_encoding comes after it, so every string dwfleet exchanges is UTF-8. */
    const char *const keys[] = {"application_name", "dbname", "client_encoding", NULL};
    const char *const vals[] = {pg->app, pg->dsn, "UTF8", NULL};
    PGconn *conn = PQconnectStartParams(keys, vals, 1); /* owned */
    PGconn *ok = NULL;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;

    if (!conn) {
        snprintf(msg, n, "out of memory");
        goto out;
    }
    if (PQstatus(conn) == CONNECTION_BAD) {
        dw_pg_flatten(PQerrorMessage(conn), msg, n);
        goto out;
    }
    for (;;) {
        if (st == PGRES_POLLING_OK) {
            ok = conn;
            conn = NULL;
            goto out;
        }
        if (st == PGRES_POLLING_FAILED) {
            dw_pg_flatten(PQerrorMessage(conn), msg, n);
            goto out;
        }
        int64_t left = deadline - dw_pg_now_ms();
        if (left <= 0) {
            snprintf(msg, n, "timeout expired");
            goto out;
        }
        struct pollfd pfd = {.fd = PQsocket(conn),
                             .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
        if (pfd.fd < 0) {
            dw_pg_flatten(PQerrorMessage(conn), msg, n);
            goto out;
        }
        int r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r < 0 && errno != EINTR) {
            snprintf(msg, n, "poll failed: %s", strerror(errno));
            goto out;
        }
        if (r > 0)
            st = PQconnectPoll(conn);
    }
out:
    PQfinish(conn);
    return ok;
}

/* Attempt until pg->timeout_ms have passed; on success pg->conn is the new connection. */
static dw_err_t dw_pg_connect_loop(dw_pg_t *pg, char *errstr, size_t errstr_size)
{
    dw_err_t err = DW_ERR_PG_CONN;
    int64_t start = dw_pg_now_ms(), deadline = start + pg->timeout_ms;
    int64_t backoff = DW_PG_BACKOFF_MIN_MS;
    char msg[DW_PG_MSG_MAX] = "";

    for (int attempt = 1;; attempt++) {
        PGconn *conn = dw_pg_try_connect(pg, deadline, msg, sizeof(msg)); /* owned */
        if (conn) {
            pg->conn = conn;
            PQsetNoticeReceiver(pg->conn, dw_pg_notice_receiver, pg);
            if (attempt > 1)
                DW_INFO(DW_PG_FAC, "connected to \"%s\" after %d attempts", pg->target, attempt);
            err = DW_OK;
            break;
        }
        /* "equal jitter": half the step fixed, half random. When the wait reaches the deadline
         * there is no time left for another attempt: wait it out and report this one's reason
         * (rather than a bare "timeout expired" from an attempt that never had a chance). */
        int64_t left = deadline - dw_pg_now_ms();
        int64_t wait = backoff / 2 + (int64_t)(dw_pg_rand(pg) % (uint64_t)(backoff / 2 + 1));
        if (left <= 0 || wait >= left) {
            DW_WARN(DW_PG_FAC, "could not connect to \"%s\": %s (attempt %d, giving up)",
                    pg->target, msg, attempt);
            if (left > 0)
                dw_pg_sleep_ms(left);
            err = dw_errf(DW_ERR_PG_CONN, errstr, errstr_size,
                          "could not connect to \"%s\": %s (gave up after %d attempt%s in %lld ms)",
                          pg->target, msg, attempt, attempt == 1 ? "" : "s",
                          (long long)(dw_pg_now_ms() - start));
            break;
        }
        DW_WARN(DW_PG_FAC, "could not connect to \"%s\": %s (attempt %d, retrying in %lld ms)",
                pg->target, msg, attempt, (long long)wait);
        dw_pg_sleep_ms(wait);
        backoff = backoff * 2 > DW_PG_BACKOFF_MAX_MS ? DW_PG_BACKOFF_MAX_MS : backoff * 2;
    }
    return err;
}

dw_pg_t *dw_pg_connect(const char *dsn, const char *app_name, int timeout_ms, dw_err_t *errp,
                       char *errstr, size_t errstr_size)
{
    dw_pg_t *pg = NULL; /* new, returned */
    dw_err_t err = DW_OK;

    if (!dsn || timeout_ms <= 0) {
        err = dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                      "dw_pg_connect: a DSN and a positive timeout are required");
        goto out;
    }
    /* before anything can be logged */
    if ((err = dw_pg_dsn_register_secrets(dsn, errstr, errstr_size)))
        goto out;
    pg = calloc(1, sizeof(*pg));
    if (!pg || !(pg->dsn = strdup(dsn)) || !(pg->app = strdup(app_name ? app_name : "dwfleet"))) {
        err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto out;
    }
    pg->timeout_ms = timeout_ms;
    pg->rng = ((uint64_t)dw_pg_now_ms() << 20) ^ ((uint64_t)getpid() << 40) ^ (uintptr_t)pg;
    if (pg->rng == 0)
        pg->rng = 0x9E3779B97F4A7C15ULL;
    dw_pg_set_sqlstate(pg, "00000");
    if ((err = dw_pg_dsn_describe(dsn, pg->target, sizeof(pg->target), errstr, errstr_size)))
        goto out;
    err = dw_pg_connect_loop(pg, errstr, errstr_size);
out:
    if (err) {
        dw_pg_destroy(pg);
        pg = NULL;
    }
    if (errp)
        *errp = err;
    return pg;
}

void dw_pg_destroy(dw_pg_t *pg)
{
    if (!pg)
        return;
    PQfinish(pg->conn);
    free(pg->dsn);
    free(pg->app);
    free(pg);
}

dw_err_t dw_pg_reset(dw_pg_t *pg, char *errstr, size_t errstr_size)
{
    PQfinish(pg->conn);
    pg->conn = NULL;
    dw_pg_set_sqlstate(pg, "00000");
    return dw_pg_connect_loop(pg, errstr, errstr_size);
}

PGconn *dw_pg_conn(dw_pg_t *pg)
{
    return pg->conn;
}

const char *dw_pg_target(const dw_pg_t *pg)
{
    return pg->target;
}

const char *dw_pg_last_sqlstate(const dw_pg_t *pg)
{
    return pg->sqlstate;
}

/* ---- statements -------------------------------------------------------------------------------- */

/* After COPY started by accident: end it and read every remaining result, so the connection is
 * usable again. */
static void dw_pg_drain(PGconn *conn, ExecStatusType st)
{
    PGresult *r;
    if (st == PGRES_COPY_IN) {
        PQputCopyEnd(conn, "COPY is not supported here");
    } else if (st == PGRES_COPY_OUT) {
        char *buf = NULL;
        while (PQgetCopyData(conn, &buf, 0) > 0)
            PQfreemem(buf);
    }
    while ((r = PQgetResult(conn)))
        PQclear(r);
}

/* Classify a result (borrowed; NULL when libpq could not even send) and record its SQLSTATE.
 * Connection loss (status bad, class 08, 57P0x shutdown codes) is DW_ERR_PG_CONN. */
static dw_err_t dw_pg_check(dw_pg_t *pg, const PGresult *r, bool allow_empty, char *errstr,
                            size_t errstr_size)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    char msg[DW_PG_MSG_MAX];

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || (allow_empty && st == PGRES_EMPTY_QUERY)) {
        dw_pg_set_sqlstate(pg, "00000");
        return DW_OK;
    }
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
        dw_pg_drain(pg->conn, st);

    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    bool lost = PQstatus(pg->conn) == CONNECTION_BAD ||
                (state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0));
    dw_pg_set_sqlstate(pg, state ? state : lost ? "08006" : "XX000");

    if (st != PGRES_FATAL_ERROR && st != PGRES_NONFATAL_ERROR) {
        dw_pg_flatten(st == PGRES_EMPTY_QUERY ? "empty query" : PQresStatus(st), msg, sizeof(msg));
        return dw_errf(DW_ERR_PG, errstr, errstr_size, "%s: unexpected result %s", pg->target,
                       msg);
    }
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *hint = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_HINT) : NULL;
    if (primary)
        snprintf(msg, sizeof(msg), "%s%s%s%s%s", primary, detail ? "; DETAIL: " : "",
                 detail ? detail : "", hint ? "; HINT: " : "", hint ? hint : "");
    else
        /* a client-side result (e.g. "server closed the connection unexpectedly"): when the
         * connection is gone, the connection's message also holds the server's last FATAL */
        dw_pg_flatten(r && !lost ? PQresultErrorMessage(r) : PQerrorMessage(pg->conn), msg,
                      sizeof(msg));
    if (!*msg)
        dw_pg_flatten(PQerrorMessage(pg->conn), msg, sizeof(msg));
    return dw_errf(lost ? DW_ERR_PG_CONN : DW_ERR_PG, errstr, errstr_size, "%s: SQLSTATE %s: %s%s",
                   pg->target, pg->sqlstate, msg, lost ? " (connection lost)" : "");
}

dw_err_t dw_pg_exec(dw_pg_t *pg, const char *sql, int nparams, const char *const *params,
                    PGresult **res, char *errstr, size_t errstr_size)
{
    PGresult *r = NULL; /* owned until handed to *res */
    dw_err_t err;

    if (res)
        *res = NULL;
    r = PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if ((err = dw_pg_check(pg, r, false, errstr, errstr_size)))
        goto out;
    if (res) {
        *res = r;
        r = NULL;
    }
out:
    PQclear(r);
    return err;
}

dw_err_t dw_pg_begin(dw_pg_t *pg, char *errstr, size_t errstr_size)
{
    return dw_pg_exec(pg, "BEGIN", 0, NULL, NULL, errstr, errstr_size);
}

dw_err_t dw_pg_commit(dw_pg_t *pg, char *errstr, size_t errstr_size)
{
    PGresult *r = NULL; /* owned */
    dw_err_t err = dw_pg_exec(pg, "COMMIT", 0, NULL, &r, errstr, errstr_size);
    if (!err && strcmp(PQcmdStatus(r), "ROLLBACK") == 0) {
        dw_pg_set_sqlstate(pg, "40000");
        err = dw_errf(DW_ERR_PG, errstr, errstr_size,
                      "%s: SQLSTATE 40000: transaction was rolled back instead of committed "
                      "(a statement in it had failed)",
                      pg->target);
    }
    PQclear(r);
    return err;
}

dw_err_t dw_pg_rollback(dw_pg_t *pg, char *errstr, size_t errstr_size)
{
    return dw_pg_exec(pg, "ROLLBACK", 0, NULL, NULL, errstr, errstr_size);
}

/* ---- migrations -------------------------------------------------------------------------------- */

dw_err_t dw_pg_migration_name_parse(const char *file, int *version, char *name, size_t name_size,
                                    char *errstr, size_t errstr_size)
{
    const char *p = file;
    long long v = 0;
    size_t digits = 0, len = strlen(file);

    while (isdigit((unsigned char)*p)) {
        if (v <= INT_MAX)
            v = v * 10 + (*p - '0');
        p++;
        digits++;
    }
    if (digits < 3 || *p != '_' || len < 4 || strcmp(file + len - 4, ".sql") != 0)
        return dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                       "bad migration file name \"%s\": expected NNN_name.sql (NNN: three or more "
                       "digits)",
                       file);
    if (v < 1 || v > INT_MAX)
        return dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                       "bad migration file name \"%s\": version must be between 1 and %d", file,
                       INT_MAX);
    const char *nm = p + 1, *end = file + len - 4;
    if (nm >= end)
        return dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                       "bad migration file name \"%s\": the name after \"%.*s_\" is empty", file,
                       (int)digits, file);
    for (const char *c = nm; c < end; c++) {
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-')
            return dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                           "bad migration file name \"%s\": the name may hold only letters, "
                           "digits, '_' and '-'",
                           file);
    }
    if ((size_t)(end - nm) >= name_size)
        return dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                       "bad migration file name \"%s\": the name is too long", file);
    memcpy(name, nm, (size_t)(end - nm));
    name[end - nm] = '\0';
    *version = (int)v;
    return DW_OK;
}

void dw_pg_migrations_destroy(dw_pg_migrations_t *ms)
{
    if (!ms)
        return;
    for (size_t i = 0; i < ms->count; i++) {
        free(ms->items[i].name);
        free(ms->items[i].file);
        free(ms->items[i].path);
        free(ms->items[i].sql);
    }
    free(ms->items);
    free(ms);
}

/* Read path whole into *out (new, NUL-terminated). */
static dw_err_t dw_pg_read_file(const char *path, const char *file, char **out, char *errstr,
                                size_t errstr_size)
{
    FILE *f = NULL;  /* owned */
    char *buf = NULL; /* owned until handed to *out */
    size_t len = 0, cap = 0;
    dw_err_t err = DW_OK;

    *out = NULL;
    if (!(f = fopen(path, "rb"))) {
        err = dw_errf(DW_ERR_IO, errstr, errstr_size, "could not open migration \"%s\": %s", path,
                      strerror(errno));
        goto out;
    }
    for (;;) {
        if (cap - len < 4096 + 1) {
            size_t ncap = cap ? cap * 2 : 8192;
            char *nbuf = realloc(buf, ncap);
            if (!nbuf) {
                err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory reading \"%s\"",
                              file);
                goto out;
            }
            buf = nbuf;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        err = dw_errf(DW_ERR_IO, errstr, errstr_size, "could not read migration \"%s\": %s", path,
                      strerror(errno));
        goto out;
    }
    buf[len] = '\0';
    if (memchr(buf, '\0', len)) {
        err = dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                      "migration \"%s\" contains a NUL byte (not an SQL text file)", file);
        goto out;
    }
    *out = buf;
    buf = NULL;
out:
    if (f)
        fclose(f);
    free(buf);
    return err;
}

static int dw_pg_strcmp_p(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int dw_pg_migration_cmp(const void *a, const void *b)
{
    const dw_pg_migration_t *x = a, *y = b;
    if (x->version != y->version)
        return x->version < y->version ? -1 : 1;
    return strcmp(x->file, y->file);
}

dw_err_t dw_pg_migrations_scan(const char *dir, dw_pg_migrations_t **out, char *errstr,
                               size_t errstr_size)
{
    DIR *d = NULL;                 /* owned */
    dw_pg_migrations_t *ms = NULL; /* owned until handed to *out */
    char **files = NULL;           /* owned, with its strings */
    size_t nfiles = 0, cap = 0;
    char *path = NULL;             /* owned */
    dw_err_t err = DW_OK;
    struct dirent *de;

    *out = NULL;
    if (!(d = opendir(dir))) {
        err = dw_errf(DW_ERR_IO, errstr, errstr_size,
                      "could not open migrations directory \"%s\": %s", dir, strerror(errno));
        goto out;
    }
    /* file names first, sorted, so the first bad one reported is the same on every machine */
    for (errno = 0; (de = readdir(d)); errno = 0) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 4 || strcmp(de->d_name + len - 4, ".sql") != 0)
            continue;
        if (nfiles == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nf = realloc(files, ncap * sizeof(*nf));
            if (!nf)
                goto nomem;
            files = nf;
            cap = ncap;
        }
        if (!(files[nfiles] = strdup(de->d_name)))
            goto nomem;
        nfiles++;
    }
    if (errno) {
        err = dw_errf(DW_ERR_IO, errstr, errstr_size,
                      "could not read migrations directory \"%s\": %s", dir, strerror(errno));
        goto out;
    }
    if (nfiles > 0)
        qsort(files, nfiles, sizeof(*files), dw_pg_strcmp_p);

    if (!(ms = calloc(1, sizeof(*ms))) || (nfiles && !(ms->items = calloc(nfiles, sizeof(*ms->items)))))
        goto nomem;
    for (size_t i = 0; i < nfiles; i++) {
        char name[256];
        int version;
        struct stat stt;
        free(path);
        if (!(path = malloc(strlen(dir) + strlen(files[i]) + 2)))
            goto nomem;
        snprintf(path, strlen(dir) + strlen(files[i]) + 2, "%s/%s", dir, files[i]);
        if (stat(path, &stt) != 0) {
            err = dw_errf(DW_ERR_IO, errstr, errstr_size, "could not stat migration \"%s\": %s",
                          path, strerror(errno));
            goto out;
        }
        if (!S_ISREG(stt.st_mode))
            continue;
        if ((err = dw_pg_migration_name_parse(files[i], &version, name, sizeof(name), errstr,
                                              errstr_size)))
            goto out;
        dw_pg_migration_t *m = &ms->items[ms->count++];
        m->version = version;
        if (!(m->name = strdup(name)) || !(m->file = strdup(files[i])))
            goto nomem;
        m->path = path;
        path = NULL;
        if ((err = dw_pg_read_file(m->path, m->file, &m->sql, errstr, errstr_size)))
            goto out;
    }
    if (ms->count > 0)
        qsort(ms->items, ms->count, sizeof(*ms->items), dw_pg_migration_cmp);
    for (size_t i = 0; i < ms->count; i++) {
        const dw_pg_migration_t *m = &ms->items[i];
        if (i > 0 && m->version == ms->items[i - 1].version) {
            err = dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                          "duplicate migration version %d: \"%s\" and \"%s\" in \"%s\"",
                          m->version, ms->items[i - 1].file, m->file, dir);
            goto out;
        }
        if (m->version != (int)i + 1) {
            err = dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                          "migration \"%s\" has version %d but version %d is missing in \"%s\" "
                          "(versions run 1, 2, 3, ... without a gap)",
                          m->file, m->version, (int)i + 1, dir);
            goto out;
        }
    }
    *out = ms;
    ms = NULL;
    goto out;
nomem:
    err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory scanning \"%s\"", dir);
out:
    if (d)
        closedir(d);
    for (size_t i = 0; i < nfiles; i++)
        free(files[i]);
    free(files);
    free(path);
    dw_pg_migrations_destroy(ms);
    return err;
}

/* The 1-based line of the 1-based character position pos (PG_DIAG_STATEMENT_POSITION counts
 * characters, not bytes) in the UTF-8 text s. */
static int dw_pg_line_of(const char *s, long pos)
{
    int line = 1;
    long ch = 0;
    for (const char *p = s; *p; p++) {
        if (((unsigned char)*p & 0xC0) != 0x80 && ++ch == pos)
            break;
        if (*p == '\n')
            line++;
    }
    return line;
}

/* Run one migration file's SQL inside the open transaction. The only PQexec in dwfleet: the text
 * is trusted (it ships in the repository, never built from input) and may hold several
 * statements, which PQexecParams refuses. */
static dw_err_t dw_pg_migration_run(dw_pg_t *pg, const dw_pg_migration_t *m, char *errstr,
                                    size_t errstr_size)
{
    PGresult *r = NULL; /* owned */
    char msg[DW_PG_MSG_MAX];
    dw_err_t err;

    r = PQexec(pg->conn, m->sql);
    if ((err = dw_pg_check(pg, r, true, msg, sizeof(msg)))) {
        const char *pos = r ? PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION) : NULL;
        char where[32] = "";
        if (pos)
            snprintf(where, sizeof(where), " at line %d", dw_pg_line_of(m->sql, atol(pos)));
        err = dw_errf(err, errstr, errstr_size, "migration \"%s\" failed%s: %s", m->file, where,
                      msg);
        goto out;
    }
    if (PQtransactionStatus(pg->conn) != PQTRANS_INTRANS) {
        err = dw_errf(DW_ERR_PG, errstr, errstr_size,
                      "migration \"%s\" ended the migration transaction: a migration file must not "
                      "hold BEGIN, COMMIT or ROLLBACK",
                      m->file);
        goto out;
    }
out:
    PQclear(r);
    return err;
}

dw_err_t dw_pg_migrate(dw_pg_t *pg, const char *dir, int *applied, char *errstr,
                       size_t errstr_size)
{
    dw_pg_migrations_t *ms = NULL; /* owned */
    PGresult *r = NULL;            /* owned */
    bool *done = NULL;             /* owned: which files this run applied */
    bool in_tx = false;
    int count = 0;
    char key[32], version[16], last[16];
    dw_err_t err;

    if (applied)
        *applied = 0;
    if ((err = dw_pg_migrations_scan(dir, &ms, errstr, errstr_size)))
        goto out;
    if (ms->count > 0 && !(done = calloc(ms->count, sizeof(*done)))) {
        err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto out;
    }
    if (PQstatus(pg->conn) == CONNECTION_OK && PQserverVersion(pg->conn) < DW_PG_MIN_SERVER_VERS) {
        err = dw_errf(DW_ERR_PG, errstr, errstr_size,
                      "%s: PostgreSQL 11 or later is required (server version %d)", pg->target,
                      PQserverVersion(pg->conn));
        goto out;
    }

    /* READ COMMITTED whatever the server's default: each statement after the lock must see what
     * a concurrent migrator committed while we waited for it. */
    if ((err = dw_pg_exec(pg, "BEGIN ISOLATION LEVEL READ COMMITTED", 0, NULL, NULL, errstr,
                          errstr_size)))
        goto out;
    in_tx = true;
    snprintf(key, sizeof(key), "%lld", DW_PG_MIGRATE_LOCK_KEY);
    const char *lock_params[] = {key};
    if ((err = dw_pg_exec(pg, "SELECT pg_advisory_xact_lock($1::bigint)", 1, lock_params, NULL,
                          errstr, errstr_size)))
        goto out;
    if ((err = dw_pg_exec(pg,
                          "CREATE TABLE IF NOT EXISTS dw_schema_migrations ("
                          " version int PRIMARY KEY,"
                          " name text NOT NULL,"
                          " checksum text NOT NULL,"
                          " applied_at timestamptz NOT NULL DEFAULT now())",
                          0, NULL, NULL, errstr, errstr_size)))
        goto out;

    for (size_t i = 0; i < ms->count; i++) {
        const dw_pg_migration_t *m = &ms->items[i];
        snprintf(version, sizeof(version), "%d", m->version);
        const char *check_params[] = {version, m->sql};
        if ((err = dw_pg_exec(pg,
                              "SELECT checksum, encode(sha256(convert_to($2, 'UTF8')), 'hex'), name"
                              " FROM dw_schema_migrations WHERE version = $1::int",
                              2, check_params, &r, errstr, errstr_size)))
            goto out;
        if (PQntuples(r) == 1) {
            if (strcmp(PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1)) != 0) {
                err = dw_errf(DW_ERR_CONFLICT, errstr, errstr_size,
                              "migration \"%s\" (version %d) changed after it was applied to "
                              "\"%s\": checksum %.12s... recorded, %.12s... now; add a new "
                              "migration instead of editing an applied one",
                              m->file, m->version, pg->target, PQgetvalue(r, 0, 0),
                              PQgetvalue(r, 0, 1));
                goto out;
            }
            if (strcmp(PQgetvalue(r, 0, 2), m->name) != 0)
                DW_WARN(DW_PG_FAC, "%s: migration version %d was applied as \"%s\", the file is "
                        "now \"%s\" (same content)", pg->target, m->version, PQgetvalue(r, 0, 2),
                        m->file);
            PQclear(r);
            r = NULL;
            continue;
        }
        PQclear(r);
        r = NULL;

        DW_DEBUG(DW_PG_FAC, "%s: applying migration \"%s\"", pg->target, m->file);
        if ((err = dw_pg_migration_run(pg, m, errstr, errstr_size)))
            goto out;
        const char *record_params[] = {version, m->name, m->sql};
        if ((err = dw_pg_exec(pg,
                              "INSERT INTO dw_schema_migrations (version, name, checksum)"
                              " VALUES ($1::int, $2, encode(sha256(convert_to($3, 'UTF8')), 'hex'))",
                              3, record_params, NULL, errstr, errstr_size)))
            goto out;
        done[i] = true;
        count++;
    }

    /* a newer build may have migrated further: tolerate it (rolling upgrades), but say so */
    snprintf(last, sizeof(last), "%zu", ms->count);
    const char *newer_params[] = {last};
    if ((err = dw_pg_exec(pg,
                          "SELECT version, name FROM dw_schema_migrations WHERE version > $1::int"
                          " ORDER BY version",
                          1, newer_params, &r, errstr, errstr_size)))
        goto out;
    for (int row = 0; row < PQntuples(r); row++)
        DW_WARN(DW_PG_FAC, "%s: the database has migration %s (%s) that \"%s\" does not hold "
                "(a newer dwfleet migrated it?)", pg->target, PQgetvalue(r, row, 0),
                PQgetvalue(r, row, 1), dir);
    PQclear(r);
    r = NULL;

    if ((err = dw_pg_commit(pg, errstr, errstr_size)))
        goto out;
    in_tx = false;
    for (size_t i = 0; i < ms->count; i++) {
        if (done[i])
            DW_INFO(DW_PG_FAC, "%s: applied migration \"%s\" (version %d)", pg->target,
                    ms->items[i].file, ms->items[i].version);
    }
    if (count == 0)
        DW_DEBUG(DW_PG_FAC, "%s: schema up to date at version %zu", pg->target, ms->count);
out:
    PQclear(r);
    if (in_tx) {
        /* keep the failure's SQLSTATE for the caller, not the ROLLBACK's */
        char state[sizeof(pg->sqlstate)], ignored[DW_PG_MSG_MAX];
        memcpy(state, pg->sqlstate, sizeof(state));
        dw_pg_rollback(pg, ignored, sizeof(ignored));
        memcpy(pg->sqlstate, state, sizeof(state));
    }
    free(done);
    dw_pg_migrations_destroy(ms);
    if (!err && applied)
        *applied = count;
    return err;
}

void dw_pg_array_add(dw_buf_t *b, const char *s)
{
    dw_buf_put(b, b->n ? "," : "{", 1);
    if (!s) {
        DW_BUF_LIT(b, "NULL");
        return;
    }
    DW_BUF_LIT(b, "\"");
    for (;;) {
        size_t run = strcspn(s, "\"\\");
        dw_buf_put(b, s, run);
        s += run;
        if (!*s)
            break;
        char esc[2] = {'\\', *s++};
        dw_buf_put(b, esc, 2);
    }
    DW_BUF_LIT(b, "\"");
}

const char *dw_pg_array_end(dw_buf_t *b)
{
    if (!b->n)
        DW_BUF_LIT(b, "{");
    DW_BUF_LIT(b, "}");
    return b->fail ? NULL : b->p;
}
