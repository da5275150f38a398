/*
 * dw_pg: dwfleet's PostgreSQL access (libpq). One handle wraps one connection: connect with retry
 * and jittered exponential backoff up to a deadline, parameterised statements only (PQexecParams),
 * every status checked, connection loss reported as the retriable DW_ERR_PG_CONN with dw_pg_reset()
 * to reconnect, transaction helpers, and versioned schema migrations (schemas/sql/NNN_name.sql)
 * applied under an advisory lock in one transaction.
 *
 * A handle is not thread-safe: use one per thread. Passwords found in a DSN are registered with
 * dw_log_add_secret() before anything is logged, and messages name the server as
 * "host:port/dbname", never by the full DSN.
 */
#ifndef DW_PG_H
#define DW_PG_H

#include <stddef.h>

#include <libpq-fe.h>

#include "dw_buf.h"
#include "dw_err.h"

typedef struct dw_pg_s dw_pg_t;

/* The advisory lock key dw_pg_migrate() holds for its transaction ("dwfleet" in ASCII). */
#define DW_PG_MIGRATE_LOCK_KEY 28278779460019572LL

/* ---- DSNs ------------------------------------------------------------------------------------ */

/* Describe dsn (keyword "host=... dbname=..." or URI "postgresql://...") as "host:port/dbname" for
 * messages (unset parts fall back to PGHOST/PGPORT/PGDATABASE, then "[local]", "5432", the user).
 * target: caller's buffer. DW_ERR_CONFIG when libpq cannot parse dsn. */
dw_err_t dw_pg_dsn_describe(const char *dsn, char *target, size_t target_size, char *errstr,
                            size_t errstr_size);

/* Copy dsn into out with every password value (keyword password=..., URI user:pass@ and
 * ?password=...) replaced by "***", for --dump-config and the like. DW_ERR_CONFIG when libpq cannot
 * parse dsn, DW_ERR_INVALID_ARG when out is too small. */
dw_err_t dw_pg_dsn_mask(const char *dsn, char *out, size_t out_size, char *errstr,
                        size_t errstr_size);

/* Register every password in dsn with dw_log_add_secret(): the value as libpq decodes it and as
 * written (quoted or percent-encoded), plus $PGPASSWORD when set. dw_pg_connect() calls this
 * itself. DW_ERR_CONFIG when libpq cannot parse dsn. */
dw_err_t dw_pg_dsn_register_secrets(const char *dsn, char *errstr, size_t errstr_size);

/* ---- connection ------------------------------------------------------------------------------ */

/* Connect to dsn (borrowed, copied), retrying with exponential backoff and jitter until timeout_ms
 * (> 0) have passed in total; each failed attempt is logged at WARN with libpq's message.
 * application_name is set to app_name (borrowed, copied; NULL means "dwfleet") unless the DSN sets
 * one itself. Returns a new handle (dw_pg_destroy) or NULL with errstr filled and, when errp is
 * not NULL, *errp set: DW_ERR_CONFIG (unparsable DSN), DW_ERR_INVALID_ARG, DW_ERR_NOMEM, or
 * DW_ERR_PG_CONN (retriable: no attempt succeeded before the deadline). */
dw_pg_t *dw_pg_connect(const char *dsn, const char *app_name, int timeout_ms, dw_err_t *errp,
                       char *errstr, size_t errstr_size);

/* Close the connection and free the handle. NULL is a no-op. */
void dw_pg_destroy(dw_pg_t *pg);

/* Drop the current connection and connect again with the same DSN, name and backoff deadline.
 * Any open transaction is lost. DW_ERR_PG_CONN when the deadline passes. */
dw_err_t dw_pg_reset(dw_pg_t *pg, char *errstr, size_t errstr_size);

/* The underlying connection (borrowed; valid until dw_pg_reset or dw_pg_destroy), for what this
 * module does not wrap (COPY, LISTEN). Do not PQfinish it. */
PGconn *dw_pg_conn(dw_pg_t *pg);

/* "host:port/dbname" of this handle (borrowed). */
const char *dw_pg_target(const dw_pg_t *pg);

/* ---- statements ------------------------------------------------------------------------------ */

/* Run one SQL statement with nparams text parameters ($1..$n; params borrowed, a NULL element is
 * SQL NULL) through PQexecParams. sql must be a constant: never build SQL from input.
 * On success, when res is not NULL, *res is a new PGresult the caller must PQclear (rows or
 * command status); on failure *res is NULL. Errors: DW_ERR_PG_CONN (retriable: the connection is
 * lost, call dw_pg_reset), DW_ERR_PG (SQL error; errstr has SQLSTATE and message,
 * dw_pg_last_sqlstate() the code), DW_ERR_NOMEM. */
dw_err_t dw_pg_exec(dw_pg_t *pg, const char *sql, int nparams, const char *const *params,
                    PGresult **res, char *errstr, size_t errstr_size);

/* The SQLSTATE of the last operation on pg (borrowed, 5 characters): "00000" after a success,
 * the server's code after an SQL error (e.g. "23505" unique_violation, "40001"
 * serialization_failure, "40P01" deadlock_detected: callers retry those transactions), "08006"
 * when the connection was lost without a server-sent code. */
const char *dw_pg_last_sqlstate(const dw_pg_t *pg);

/* BEGIN (the server's default isolation level), COMMIT, ROLLBACK. dw_pg_commit returns DW_ERR_PG
 * (SQLSTATE 40000) when the server rolled the transaction back instead because a statement in it
 * had failed. */
dw_err_t dw_pg_begin(dw_pg_t *pg, char *errstr, size_t errstr_size);
dw_err_t dw_pg_commit(dw_pg_t *pg, char *errstr, size_t errstr_size);
dw_err_t dw_pg_rollback(dw_pg_t *pg, char *errstr, size_t errstr_size);

/* ---- migrations ------------------------------------------------------------------------------ */

typedef struct {
    int version; /* NNN as a number, 1.. */
    char *name;  /* the part between "NNN_" and ".sql" */
    char *file;  /* the file name, for messages */
    char *path;  /* dir/file */
    char *sql;   /* the file's content, NUL-terminated */
} dw_pg_migration_t;

typedef struct {
    dw_pg_migration_t *items; /* sorted by version */
    size_t count;
} dw_pg_migrations_t;

/* Parse a migration file name "NNN_name.sql": NNN at least three digits, a version >= 1, name of
 * [A-Za-z0-9_-], non-empty. name: caller's buffer. DW_ERR_PARSE naming the file otherwise. */
dw_err_t dw_pg_migration_name_parse(const char *file, int *version, char *name, size_t name_size,
                                    char *errstr, size_t errstr_size);

/* Read every *.sql file of dir (hidden files, other files and subdirectories are ignored), parse
 * its name, load its content and sort by version. Versions must run 1, 2, 3, ... without a gap or a
 * duplicate. *out: new (dw_pg_migrations_destroy), NULL on error. DW_ERR_IO (unreadable dir or
 * file), DW_ERR_PARSE (bad name, gap, duplicate, NUL byte in a file), each naming the file. */
dw_err_t dw_pg_migrations_scan(const char *dir, dw_pg_migrations_t **out, char *errstr,
                               size_t errstr_size);

/* NULL is a no-op. */
void dw_pg_migrations_destroy(dw_pg_migrations_t *ms);

/* Apply dir's migrations that the database has not recorded yet, in one transaction:
 * pg_advisory_xact_lock(DW_PG_MIGRATE_LOCK_KEY), create dw_schema_migrations if missing, verify
 * the checksum (sha256 of the file) of every recorded version, run each new file, record it.
 * Concurrent callers are serialised by the lock; a later one finds everything applied.
 * *applied (may be NULL) = the number of files applied (0 when up to date).
 * Errors: those of dw_pg_migrations_scan; DW_ERR_CONFLICT when a recorded version's file changed;
 * DW_ERR_PG naming the file whose SQL failed (nothing of the run stays); DW_ERR_PG_CONN. */
dw_err_t dw_pg_migrate(dw_pg_t *pg, const char *dir, int *applied, char *errstr,
                       size_t errstr_size);

/* Array literals for array parameters ($1::text[], unnest): one dw_buf per array, elements added
 * in order, quoted with " and \ escaped; s NULL adds a NULL element. dw_pg_array_end closes it
 * ("{}" when empty) and returns its text (b->p), NULL when out of memory. */
void dw_pg_array_add(dw_buf_t *b, const char *s);
const char *dw_pg_array_end(dw_buf_t *b);

#endif
