/*
 * Integration tests for dw_pg against the real PostgreSQL that scripts/services.sh starts
 * (DW_PG_DSN). Every test gets its own database, created before and dropped (WITH FORCE) after it:
 * parameterised round trips of hostile values, SQL errors and their SQLSTATE, transactions,
 * connection loss and reset, and migrations (fresh, repeated, changed, concurrent, failing).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dw_pg.h"

#define CONNECT_TIMEOUT_MS 10000

static dw_pg_t *admin; /* connected to DW_PG_DSN's database: creates and drops ours */
static dw_pg_t *pg;    /* connected to this test's database */
static char dbname[64];
static char dbdsn[2048];
static char tmpdir[64];

/* ---- fixture ----------------------------------------------------------------------------------- */

static const char *base_dsn(void)
{
    const char *dsn = getenv("DW_PG_DSN");
    cr_assert(dsn && *dsn, "DW_PG_DSN is not set: run eval \"$(scripts/services.sh env)\" first "
                           "(scripts/services.sh up starts PostgreSQL)");
    return dsn;
}

/* base's parameters with dbname replaced, as a keyword connection string (not SQL: libpq's own
 * quoting, a value in single quotes with \ and ' escaped). */
static void dsn_with_db(const char *base, const char *db, char *out, size_t n)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &perr);
    cr_assert_not_null(opts, "DW_PG_DSN does not parse: %s", perr ? perr : "?");
    size_t o = 0;
    for (PQconninfoOption *opt = opts; opt->keyword; opt++) {
        if (!opt->val || strcmp(opt->keyword, "dbname") == 0)
            continue;
        o += (size_t)snprintf(out + o, n - o, "%s='", opt->keyword);
        for (const char *c = opt->val; *c && o + 3 < n; c++) {
            if (*c == '\'' || *c == '\\')
                out[o++] = '\\';
            out[o++] = *c;
        }
        o += (size_t)snprintf(out + o, n - o, "' ");
        cr_assert_lt(o, n);
    }
    snprintf(out + o, n - o, "dbname='%s'", db);
    PQconninfoFree(opts);
}

/* CREATE/DROP DATABASE take an identifier, which no statement parameter can stand for: the
 * server quotes the name itself (format('%I') = quote_ident), and only that result runs. */
static void admin_exec_formatted(const char *format_sql, const char *name)
{
    char err[1024] = "";
    PGresult *res = NULL;
    const char *params[] = {name};
    cr_assert_eq(dw_pg_exec(admin, format_sql, 1, params, &res, err, sizeof(err)), DW_OK, "%s", err);
    char *stmt = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    cr_assert_eq(dw_pg_exec(admin, stmt, 0, NULL, NULL, err, sizeof(err)), DW_OK, "%s: %s", stmt,
                 err);
    free(stmt);
}

static void setup(void)
{
    char err[1024] = "";
    static int seq;
    admin = dw_pg_connect(base_dsn(), "test_pg_admin", CONNECT_TIMEOUT_MS, NULL, err, sizeof(err));
    cr_assert_not_null(admin, "%s", err);
    snprintf(dbname, sizeof(dbname), "dwtest_pg_%d_%ld_%d", (int)getpid(), (long)time(NULL), seq++);
    admin_exec_formatted("SELECT format('CREATE DATABASE %I', $1::text)", dbname);
    dsn_with_db(base_dsn(), dbname, dbdsn, sizeof(dbdsn));
    pg = dw_pg_connect(dbdsn, "test_pg", CONNECT_TIMEOUT_MS, NULL, err, sizeof(err));
    cr_assert_not_null(pg, "%s", err);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/dw_test_pg_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[128];
    dw_pg_destroy(pg);
    pg = NULL;
    if (admin && dbname[0])
        admin_exec_formatted("SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', $1::text)",
                             dbname);
    dw_pg_destroy(admin);
    admin = NULL;
    if (tmpdir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        cr_assert_eq(system(cmd), 0);
    }
}

TestSuite(pg, .init = setup, .fini = teardown);

/* ---- helpers ----------------------------------------------------------------------------------- */

static void write_sql(const char *name, const char *content)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(content, f);
    fclose(f);
}

/* The single text value of a one-row, one-column query (new, free it); NULL for SQL NULL. */
static char *query_value(dw_pg_t *h, const char *sql, int nparams, const char *const *params)
{
    char err[1024] = "";
    PGresult *res = NULL;
    cr_assert_eq(dw_pg_exec(h, sql, nparams, params, &res, err, sizeof(err)), DW_OK, "%s: %s", sql,
                 err);
    cr_assert_eq(PQntuples(res), 1, "%s", sql);
    char *v = PQgetisnull(res, 0, 0) ? NULL : strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static bool relation_exists(const char *name)
{
    const char *params[] = {name};
    char *v = query_value(pg, "SELECT to_regclass($1) IS NOT NULL", 1, params);
    bool exists = strcmp(v, "t") == 0;
    free(v);
    return exists;
}

static long query_long(const char *sql)
{
    char *v = query_value(pg, sql, 0, NULL);
    long n = v ? atol(v) : -1;
    free(v);
    return n;
}

/* ---- statements -------------------------------------------------------------------------------- */

Test(pg, hostile_values_round_trip_through_parameters)
{
    char err[1024] = "";
    cr_assert_eq(dw_pg_exec(pg, "CREATE TABLE t (id int PRIMARY KEY, v text)", 0, NULL, NULL, err,
                            sizeof(err)),
                 DW_OK, "%s", err);

    size_t big_len = 1024 * 1024;
    char *big = malloc(big_len + 1);
    const char pattern[] = "'\\\"; DROP TABLE t; -- \xc3\xa9\xe2\x82\xac\xf0\x9f\x9a\x80 $1 %s\t\n";
    for (size_t i = 0; i < big_len;) {
        size_t chunk = sizeof(pattern) - 1;
        if (i + chunk > big_len)
            break;
        memcpy(big + i, pattern, chunk);
        i += chunk;
        big[i] = '\0';
    }
    big_len = strlen(big);
    cr_assert_gt(big_len, 1000000);

    const char *values[] = {
        "it's",
        "'); DROP TABLE t; --",
        "back\\slash and \\\\ double and \\x00",
        "\"double\" quotes and $1 $$dollar$$ %s %n",
        "Gr\xc3\xbc\xc3\x9f" "e \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x9a\x80 \xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a",
        "",
        "line1\nline2\r\n\ttab",
        big,
        NULL,
    };
    size_t nvalues = sizeof(values) / sizeof(*values);
    for (size_t i = 0; i < nvalues; i++) {
        char id[16];
        snprintf(id, sizeof(id), "%zu", i);
        const char *params[] = {id, values[i]};
        cr_assert_eq(dw_pg_exec(pg, "INSERT INTO t (id, v) VALUES ($1::int, $2)", 2, params, NULL,
                                err, sizeof(err)),
                     DW_OK, "value %zu: %s", i, err);
    }
    for (size_t i = 0; i < nvalues; i++) {
        char id[16];
        snprintf(id, sizeof(id), "%zu", i);
        const char *params[] = {id};
        char *got = query_value(pg, "SELECT v FROM t WHERE id = $1::int", 1, params);
        if (values[i] == NULL) {
            cr_assert_null(got, "value %zu should be SQL NULL", i);
        } else {
            cr_assert_not_null(got, "value %zu came back NULL", i);
            cr_assert_eq(strlen(got), strlen(values[i]), "value %zu length", i);
            cr_assert(strcmp(got, values[i]) == 0, "value %zu differs", i);
        }
        free(got);
    }
    /* the server saw characters, not bytes: the emoji is one character */
    const char *emoji[] = {"\xf0\x9f\x9a\x80"};
    char *len = query_value(pg, "SELECT length($1)", 1, emoji);
    cr_assert_str_eq(len, "1");
    free(len);
    cr_assert_eq(query_long("SELECT count(*) FROM t"), (long)nvalues, "table t intact");
    free(big);
}

Test(pg, unique_violation_is_sqlstate_23505_and_the_connection_stays_usable)
{
    char err[1024] = "";
    PGresult *res = (PGresult *)1;
    const char *params[] = {"1"};
    cr_assert_eq(dw_pg_exec(pg, "CREATE TABLE u (id int PRIMARY KEY)", 0, NULL, NULL, err,
                            sizeof(err)),
                 DW_OK, "%s", err);
    cr_assert_eq(dw_pg_exec(pg, "INSERT INTO u VALUES ($1::int)", 1, params, NULL, err, sizeof(err)),
                 DW_OK, "%s", err);
    cr_assert_str_eq(dw_pg_last_sqlstate(pg), "00000");

    dw_err_t e = dw_pg_exec(pg, "INSERT INTO u VALUES ($1::int)", 1, params, &res, err, sizeof(err));
    cr_assert_eq(e, DW_ERR_PG);
    cr_assert_not(dw_err_is_retriable(e));
    cr_assert_null(res, "no result is handed out on failure");
    cr_assert_str_eq(dw_pg_last_sqlstate(pg), "23505");
    cr_assert(strstr(err, "SQLSTATE 23505") && strstr(err, "duplicate key") &&
                  strstr(err, "Key (id)=(1) already exists"),
              "%s", err);
    cr_assert(strstr(err, dbname), "message names the database: %s", err);

    cr_assert_eq(query_long("SELECT count(*) FROM u"), 1);
    cr_assert_str_eq(dw_pg_last_sqlstate(pg), "00000");
}

Test(pg, sql_errors_carry_their_sqlstate)
{
    char err[1024] = "";
    cr_assert_eq(dw_pg_exec(pg, "SELECT * FROM no_such_table", 0, NULL, NULL, err, sizeof(err)),
                 DW_ERR_PG);
    cr_assert_str_eq(dw_pg_last_sqlstate(pg), "42P01");
    cr_assert(strstr(err, "no_such_table"), "%s", err);

    const char *bad[] = {"not a number"};
    cr_assert_eq(dw_pg_exec(pg, "SELECT $1::int", 1, bad, NULL, err, sizeof(err)), DW_ERR_PG);
    cr_assert_str_eq(dw_pg_last_sqlstate(pg), "22P02");

    /* parameterised execution runs exactly one statement: no piggy-backed second one */
    cr_assert_eq(dw_pg_exec(pg, "SELECT 1; SELECT 2", 0, NULL, NULL, err, sizeof(err)), DW_ERR_PG);
    cr_assert_str_eq(dw_pg_last_sqlstate(pg), "42601");
}

Test(pg, transactions_commit_and_roll_back)
{
    char err[1024] = "";
    const char *one[] = {"1"}, *two[] = {"2"};
    cr_assert_eq(dw_pg_exec(pg, "CREATE TABLE x (id int PRIMARY KEY)", 0, NULL, NULL, err,
                            sizeof(err)),
                 DW_OK, "%s", err);

    cr_assert_eq(dw_pg_begin(pg, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(dw_pg_exec(pg, "INSERT INTO x VALUES ($1::int)", 1, one, NULL, err, sizeof(err)),
                 DW_OK, "%s", err);
    cr_assert_eq(dw_pg_commit(pg, err, sizeof(err)), DW_OK, "%s", err);

    cr_assert_eq(dw_pg_begin(pg, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(dw_pg_exec(pg, "INSERT INTO x VALUES ($1::int)", 1, two, NULL, err, sizeof(err)),
                 DW_OK, "%s", err);
    cr_assert_eq(dw_pg_rollback(pg, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(query_long("SELECT count(*) FROM x"), 1);

    /* a failed statement dooms the transaction: COMMIT must not pass for success */
    cr_assert_eq(dw_pg_begin(pg, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(dw_pg_exec(pg, "INSERT INTO x VALUES ($1::int)", 1, two, NULL, err, sizeof(err)),
                 DW_OK, "%s", err);
    cr_assert_eq(dw_pg_exec(pg, "INSERT INTO x VALUES ($1::int)", 1, one, NULL, err, sizeof(err)),
                 DW_ERR_PG);
    cr_assert_str_eq(dw_pg_last_sqlstate(pg), "23505");
    cr_assert_eq(dw_pg_commit(pg, err, sizeof(err)), DW_ERR_PG);
    cr_assert(strstr(err, "rolled back"), "%s", err);
    cr_assert_eq(query_long("SELECT count(*) FROM x"), 1);
}

Test(pg, lost_connection_is_retriable_and_reset_reconnects)
{
    char err[1024] = "";
    dw_err_t e = dw_pg_exec(pg, "SELECT pg_terminate_backend(pg_backend_pid())", 0, NULL, NULL, err,
                            sizeof(err));
    cr_assert_eq(e, DW_ERR_PG_CONN, "%s: %s", dw_err_name(e), err);
    cr_assert(dw_err_is_retriable(e));
    /* libpq reports the server's FATAL 57P01 as a client-side "server closed the connection"
     * result without a SQLSTATE: connection_failure then */
    cr_assert(strcmp(dw_pg_last_sqlstate(pg), "57P01") == 0 ||
                  strcmp(dw_pg_last_sqlstate(pg), "08006") == 0,
              "%s", dw_pg_last_sqlstate(pg));
    cr_assert(strstr(err, "terminating connection") && strstr(err, "connection lost"), "%s", err);

    e = dw_pg_exec(pg, "SELECT 1", 0, NULL, NULL, err, sizeof(err));
    cr_assert_eq(e, DW_ERR_PG_CONN, "%s: %s", dw_err_name(e), err);

    cr_assert_eq(dw_pg_reset(pg, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(query_long("SELECT 41 + 1"), 42);
    cr_assert_eq(PQstatus(dw_pg_conn(pg)), CONNECTION_OK);
}

Test(pg, application_name_is_the_program_name)
{
    char *v = query_value(pg, "SELECT current_setting('application_name')", 0, NULL);
    cr_assert_str_eq(v, "test_pg");
    free(v);
    v = query_value(pg, "SELECT current_setting('client_encoding')", 0, NULL);
    cr_assert_str_eq(v, "UTF8");
    free(v);
    cr_assert_str_eq(strchr(dw_pg_target(pg), '/') + 1, dbname);
}

/* ---- migrations -------------------------------------------------------------------------------- */

Test(pg, repository_migrations_apply_to_an_empty_database_once)
{
    char err[1024] = "";
    int applied = -1;
    dw_pg_migrations_t *ms = NULL;
    const char *dir = DW_SOURCE_DIR "/schemas/sql";
    cr_assert_eq(dw_pg_migrations_scan(dir, &ms, err, sizeof(err)), DW_OK, "%s", err);

    cr_assert_eq(dw_pg_migrate(pg, dir, &applied, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(applied, (int)ms->count);
    cr_assert_eq(query_long("SELECT count(*) FROM dw_schema_migrations"), (long)ms->count);
    cr_assert_eq(query_long("SELECT max(version) FROM dw_schema_migrations"), (long)ms->count);
    cr_assert_eq(query_long("SELECT count(*) FROM dw_schema_migrations WHERE checksum ~ "
                            "'^[0-9a-f]{64}$' AND applied_at <= now()"),
                 (long)ms->count);
    char *name = query_value(pg, "SELECT name FROM dw_schema_migrations WHERE version = 1", 0, NULL);
    cr_assert_str_eq(name, "checkpoints");
    free(name);
    cr_assert(relation_exists("dw_checkpoint"));

    /* the checkpoint table does what capture needs: upsert a position per (component, map, source) */
    const char *p1[] = {"dw-capture", "account", "dv", "delta-link-1"};
    const char *p2[] = {"dw-capture", "account", "dv", "delta-link-2"};
    const char *upsert = "INSERT INTO dw_checkpoint (component, map, source, position)"
                         " VALUES ($1, $2, $3, $4) ON CONFLICT (component, map, source)"
                         " DO UPDATE SET position = excluded.position, updated_at = now()";
    cr_assert_eq(dw_pg_exec(pg, upsert, 4, p1, NULL, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(dw_pg_exec(pg, upsert, 4, p2, NULL, err, sizeof(err)), DW_OK, "%s", err);
    char *pos = query_value(pg, "SELECT position FROM dw_checkpoint WHERE updated_at IS NOT NULL",
                            0, NULL);
    cr_assert_str_eq(pos, "delta-link-2");
    free(pos);

    cr_assert_eq(dw_pg_migrate(pg, dir, &applied, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(applied, 0, "the second run is a no-op");
    cr_assert_eq(query_long("SELECT count(*) FROM dw_schema_migrations"), (long)ms->count);
    cr_assert_eq(PQtransactionStatus(dw_pg_conn(pg)), PQTRANS_IDLE);
    dw_pg_migrations_destroy(ms);
}

Test(pg, new_migrations_apply_on_top_of_recorded_ones)
{
    char err[1024] = "";
    int applied = -1;
    write_sql("001_a.sql", "CREATE TABLE a (x int);\n");
    cr_assert_eq(dw_pg_migrate(pg, tmpdir, &applied, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(applied, 1);
    write_sql("002_b.sql", "-- two statements in one file\nCREATE TABLE b (x int);\n"
                           "INSERT INTO a VALUES (1);\n");
    write_sql("003_c.sql", "-- only a comment: nothing to run\n");
    cr_assert_eq(dw_pg_migrate(pg, tmpdir, &applied, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(applied, 2);
    cr_assert(relation_exists("b"));
    cr_assert_eq(query_long("SELECT count(*) FROM a"), 1);
    cr_assert_eq(query_long("SELECT count(*) FROM dw_schema_migrations"), 3);
}

Test(pg, changed_checksum_is_a_conflict_naming_the_file)
{
    char err[1024] = "";
    int applied = -1;
    write_sql("001_a.sql", "CREATE TABLE a (x int);\n");
    cr_assert_eq(dw_pg_migrate(pg, tmpdir, &applied, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(applied, 1);

    write_sql("001_a.sql", "CREATE TABLE a (x int, y int);\n");
    write_sql("002_b.sql", "CREATE TABLE b (x int);\n");
    dw_err_t e = dw_pg_migrate(pg, tmpdir, &applied, err, sizeof(err));
    cr_assert_eq(e, DW_ERR_CONFLICT, "%s: %s", dw_err_name(e), err);
    cr_assert_eq(applied, 0);
    cr_assert(strstr(err, "\"001_a.sql\"") && strstr(err, "changed"), "%s", err);
    cr_assert_not(relation_exists("b"), "nothing of a refused run is applied");
    cr_assert_eq(query_long("SELECT count(*) FROM information_schema.columns WHERE table_name = "
                            "'a'"),
                 1, "001 was not re-applied");
    cr_assert_eq(PQtransactionStatus(dw_pg_conn(pg)), PQTRANS_IDLE);
}

Test(pg, failing_migration_on_an_empty_database_leaves_nothing)
{
    char err[1024] = "";
    int applied = -1;
    write_sql("001_ok.sql", "CREATE TABLE ok_a (x int);\n");
    write_sql("002_bad.sql", "CREATE TABLE bad_b (x int);\n\nSELEC 1;\n");
    dw_err_t e = dw_pg_migrate(pg, tmpdir, &applied, err, sizeof(err));
    cr_assert_eq(e, DW_ERR_PG, "%s: %s", dw_err_name(e), err);
    cr_assert_eq(applied, 0);
    cr_assert(strstr(err, "\"002_bad.sql\"") && strstr(err, "line 3") &&
                  strstr(err, "SQLSTATE 42601"),
              "%s", err);
    cr_assert_str_eq(dw_pg_last_sqlstate(pg), "42601");
    cr_assert_not(relation_exists("ok_a"));
    cr_assert_not(relation_exists("bad_b"));
    cr_assert_not(relation_exists("dw_schema_migrations"));
    cr_assert_eq(PQtransactionStatus(dw_pg_conn(pg)), PQTRANS_IDLE);
}

Test(pg, failing_migration_rolls_back_the_whole_run)
{
    char err[1024] = "";
    int applied = -1;
    write_sql("001_ok.sql", "CREATE TABLE ok_a (x int);\n");
    cr_assert_eq(dw_pg_migrate(pg, tmpdir, &applied, err, sizeof(err)), DW_OK, "%s", err);
    write_sql("002_ok.sql", "CREATE TABLE ok_b (x int);\nINSERT INTO ok_a VALUES (2);\n");
    write_sql("003_bad.sql", "CREATE TABLE bad_c (x int);\nINSERT INTO ok_a VALUES ('x');\n");
    dw_err_t e = dw_pg_migrate(pg, tmpdir, &applied, err, sizeof(err));
    cr_assert_eq(e, DW_ERR_PG, "%s: %s", dw_err_name(e), err);
    cr_assert(strstr(err, "\"003_bad.sql\"") && strstr(err, "22P02"), "%s", err);
    cr_assert(relation_exists("ok_a"));
    cr_assert_not(relation_exists("ok_b"));
    cr_assert_not(relation_exists("bad_c"));
    cr_assert_eq(query_long("SELECT count(*) FROM ok_a"), 0);
    cr_assert_eq(query_long("SELECT count(*) FROM dw_schema_migrations"), 1);
    cr_assert_eq(query_long("SELECT max(version) FROM dw_schema_migrations"), 1);
}

Test(pg, migration_that_commits_by_itself_is_reported)
{
    char err[1024] = "";
    write_sql("001_commits.sql", "CREATE TABLE c (x int);\nCOMMIT;\n");
    dw_err_t e = dw_pg_migrate(pg, tmpdir, NULL, err, sizeof(err));
    cr_assert_eq(e, DW_ERR_PG, "%s: %s", dw_err_name(e), err);
    cr_assert(strstr(err, "\"001_commits.sql\"") && strstr(err, "COMMIT"), "%s", err);
}

/* The child side of a concurrent migration: connect, wait for the barrier to open, migrate, exit
 * with the number applied (200 + the error code on failure). It never returns, never touches the
 * parent's connections and calls no cr_assert: Criterion's reporting socket belongs to the parent. */
static void migrate_child(int barrier_rd, int ready_wr, const char *dir)
{
    char cerr[1024] = "";
    int applied = -1;
    char c;
    dw_pg_t *mine = dw_pg_connect(dbdsn, "test_pg_child", CONNECT_TIMEOUT_MS, NULL, cerr,
                                  sizeof(cerr));
    if (!mine) {
        fprintf(stderr, "child: %s\n", cerr);
        _exit(250);
    }
    if (write(ready_wr, "r", 1) != 1) /* connected: tell the parent */
        _exit(252);
    close(ready_wr);
    if (read(barrier_rd, &c, 1) != 0) /* EOF: the parent released both at once */
        _exit(251);
    dw_err_t e = dw_pg_migrate(mine, dir, &applied, cerr, sizeof(cerr));
    if (e) {
        fprintf(stderr, "child: %s\n", cerr);
        _exit(200 + (int)e);
    }
    dw_pg_destroy(mine);
    _exit(applied);
}

/* Two processes migrate dir in this test's database at the same moment; returns the sum of what
 * they applied and sets *zero to how many applied nothing. */
static int migrate_concurrently(const char *dir, int *zero)
{
    int barrier[2], ready[2], total = 0;
    pid_t kids[2];
    cr_assert_eq(pipe(barrier), 0);
    cr_assert_eq(pipe(ready), 0);
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            close(barrier[1]);
            close(ready[0]);
            migrate_child(barrier[0], ready[1], dir);
        }
        cr_assert_geq(kids[k], 0, "fork failed");
    }
    close(barrier[0]);
    close(ready[1]);
    /* both connected and blocked on the barrier (each says so, however slow the machine: a fixed
     * pause could open the barrier before one had connected, and the migrations not overlap) */
    char got[2];
    size_t nready = 0;
    while (nready < 2) {
        ssize_t rd = read(ready[0], got, 2 - nready);
        if (rd <= 0)
            break; /* a child failed before connecting: its exit code tells */
        nready += (size_t)rd;
    }
    close(ready[0]);
    close(barrier[1]);
    *zero = 0;
    for (int k = 0; k < 2; k++) {
        int status = 0;
        cr_assert_eq(waitpid(kids[k], &status, 0), kids[k]);
        cr_assert(WIFEXITED(status), "child %d died", k);
        int code = WEXITSTATUS(status);
        cr_assert_lt(code, 200, "child %d failed with exit code %d", k, code);
        total += code;
        *zero += code == 0;
    }
    return total;
}

Test(pg, concurrent_migrators_are_serialised_by_the_lock)
{
    int zero = -1;
    /* the first file holds the lock long enough for the other process to be waiting on it */
    write_sql("001_slow.sql", "CREATE TABLE s1 (x int);\nSELECT pg_sleep(0.5);\n");
    write_sql("002_more.sql", "CREATE TABLE s2 (x int);\n");

    cr_assert_eq(migrate_concurrently(tmpdir, &zero), 2, "each file applied by exactly one process");
    cr_assert_eq(zero, 1, "the second process found everything applied");
    cr_assert_eq(query_long("SELECT count(*) FROM pg_class WHERE relname = 'dw_schema_migrations'"),
                 1);
    cr_assert_eq(query_long("SELECT count(*) FROM dw_schema_migrations"), 2);
    cr_assert_eq(query_long("SELECT count(DISTINCT version) FROM dw_schema_migrations"), 2);
    cr_assert(relation_exists("s1") && relation_exists("s2"));
}

Test(pg, concurrent_migrators_of_the_repository_schema_both_succeed)
{
    dw_pg_migrations_t *ms = NULL;
    char err[1024] = "";
    int zero = -1;
    const char *dir = DW_SOURCE_DIR "/schemas/sql";
    cr_assert_eq(dw_pg_migrations_scan(dir, &ms, err, sizeof(err)), DW_OK, "%s", err);

    cr_assert_eq(migrate_concurrently(dir, &zero), (int)ms->count);
    cr_assert_eq(zero, 1);
    cr_assert_eq(query_long("SELECT count(*) FROM pg_class WHERE relname = 'dw_schema_migrations'"),
                 1);
    cr_assert_eq(query_long("SELECT count(*) - count(DISTINCT version) FROM dw_schema_migrations"),
                 0);
    cr_assert_eq(query_long("SELECT count(*) FROM dw_schema_migrations"), (long)ms->count);
    cr_assert(relation_exists("dw_checkpoint"));
    dw_pg_migrations_destroy(ms);
}
