/*
 * Unit tests for dw_pg that need no server: DSN password masking and secret registration (keyword
 * and URI forms), the "host:port/db" description, migration file names and the directory scan
 * (order, gap, duplicate, bad names), and a connection to a closed port giving up at its deadline.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dw_log.h"
#include "dw_pg.h"

/* ---- helpers ----------------------------------------------------------------------------------- */

static char *tmpdir_new(void)
{
    char *dir = strdup("/tmp/dw_test_pg_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    return dir;
}

static void write_file(const char *dir, const char *name, const char *content)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot create %s", path);
    fputs(content, f);
    fclose(f);
}

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[512];
    if (!d)
        return;
    while ((de = readdir(d))) {
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            rm_rf(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static char *redact(const char *s)
{
    static char buf[1024];
    dw_log_redact(s, buf, sizeof(buf));
    return buf;
}

/* ---- DSNs -------------------------------------------------------------------------------------- */

Test(pg, keyword_dsn_password_is_masked_and_registered)
{
    char out[256], err[256] = "";
    const char *dsn = "host=db.example port=5433 dbname=fleet user=dw password=s3cr3t-pw";
    cr_assert_eq(dw_pg_dsn_mask(dsn, out, sizeof(out), err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_str_eq(out, "host=db.example port=5433 dbname=fleet user=dw password=***");

    dw_log_clear_secrets();
    cr_assert_eq(dw_pg_dsn_register_secrets(dsn, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_str_eq(redact("auth failed for s3cr3t-pw!"), "auth failed for ***!");
}

Test(pg, keyword_dsn_quoted_password_is_masked_as_written_and_decoded)
{
    char out[256], err[256] = "";
    const char *dsn = "host=db password = 'pa ss\\'word'  dbname=x";
    cr_assert_eq(dw_pg_dsn_mask(dsn, out, sizeof(out), err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_str_eq(out, "host=db password = ***  dbname=x");

    dw_log_clear_secrets();
    cr_assert_eq(dw_pg_dsn_register_secrets(dsn, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_str_eq(redact("decoded <pa ss'word>"), "decoded <***>");
    cr_assert_str_eq(redact("raw <pa ss\\'word>"), "raw <***>");
}

Test(pg, uri_dsn_password_is_masked_and_registered)
{
    char out[256], err[256] = "";
    const char *dsn = "postgresql://dw:p%40ssw0rd@db.example:6543/fleet?sslmode=disable";
    cr_assert_eq(dw_pg_dsn_mask(dsn, out, sizeof(out), err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_str_eq(out, "postgresql://dw:***@db.example:6543/fleet?sslmode=disable");

    dw_log_clear_secrets();
    cr_assert_eq(dw_pg_dsn_register_secrets(dsn, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_str_eq(redact("decoded p@ssw0rd, encoded p%40ssw0rd"), "decoded ***, encoded ***");
}

Test(pg, uri_dsn_query_password_is_masked)
{
    char out[256], err[256] = "";
    const char *dsn = "postgres://dw@db/fleet?password=qwerty123&application_name=x";
    cr_assert_eq(dw_pg_dsn_mask(dsn, out, sizeof(out), err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_str_eq(out, "postgres://dw@db/fleet?password=***&application_name=x");

    dw_log_clear_secrets();
    cr_assert_eq(dw_pg_dsn_register_secrets(dsn, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_str_eq(redact("qwerty123"), "***");
}

Test(pg, dsn_without_password_is_unchanged)
{
    char out[256], err[256] = "";
    const char *dsns[] = {"postgresql://dwfleet@127.0.0.1:55432/dwfleet",
                          "postgresql://127.0.0.1/db?user=a:b", "host=h dbname=d user=u", ""};
    for (size_t i = 0; i < sizeof(dsns) / sizeof(*dsns); i++) {
        cr_assert_eq(dw_pg_dsn_mask(dsns[i], out, sizeof(out), err, sizeof(err)), DW_OK, "%s",
                     err);
        cr_assert_str_eq(out, dsns[i]);
    }
}

Test(pg, dsn_mask_reports_a_small_buffer)
{
    char out[8], err[256] = "";
    cr_assert_eq(dw_pg_dsn_mask("host=localhost password=x", out, sizeof(out), err, sizeof(err)),
                 DW_ERR_INVALID_ARG);
}

Test(pg, dsn_describe_names_host_port_and_database)
{
    char target[128], err[256] = "";
    cr_assert_eq(dw_pg_dsn_describe("postgresql://u:pw@db.example:6543/fleet", target,
                                    sizeof(target), err, sizeof(err)),
                 DW_OK, "%s", err);
    cr_assert_str_eq(target, "db.example:6543/fleet");
    cr_assert_eq(dw_pg_dsn_describe("hostaddr=10.0.0.7 dbname=x password=secret", target,
                                    sizeof(target), err, sizeof(err)),
                 DW_OK, "%s", err);
    cr_assert_str_eq(target, "10.0.0.7:5432/x");
}

Test(pg, dsn_describe_falls_back_to_environment_and_defaults)
{
    char target[128], err[256] = "";
    unsetenv("PGHOST");
    unsetenv("PGHOSTADDR");
    unsetenv("PGPORT");
    unsetenv("PGDATABASE");
    unsetenv("PGUSER");
    cr_assert_eq(dw_pg_dsn_describe("user=alice", target, sizeof(target), err, sizeof(err)), DW_OK);
    cr_assert_str_eq(target, "[local]:5432/alice");
    setenv("PGHOST", "envhost", 1);
    setenv("PGPORT", "7777", 1);
    setenv("PGDATABASE", "envdb", 1);
    cr_assert_eq(dw_pg_dsn_describe("", target, sizeof(target), err, sizeof(err)), DW_OK);
    cr_assert_str_eq(target, "envhost:7777/envdb");
}

Test(pg, invalid_dsn_is_a_configuration_error)
{
    char out[256], err[256] = "";
    cr_assert_eq(dw_pg_dsn_mask("host=x bogus_option=1", out, sizeof(out), err, sizeof(err)),
                 DW_ERR_CONFIG);
    cr_assert(strstr(err, "bogus_option"), "%s", err);
    dw_err_t e = DW_OK;
    cr_assert_null(dw_pg_connect("host=x bogus_option=1", "t", 1000, &e, err, sizeof(err)));
    cr_assert_eq(e, DW_ERR_CONFIG);
    cr_assert_null(dw_pg_connect("host=x", "t", 0, &e, err, sizeof(err)));
    cr_assert_eq(e, DW_ERR_INVALID_ARG);
}

/* ---- migration files --------------------------------------------------------------------------- */

Test(pg, migration_names_that_parse)
{
    static const struct {
        const char *file, *name;
        int version;
    } cases[] = {
        {"001_checkpoints.sql", "checkpoints", 1},
        {"042_sync-ledger_v2.sql", "sync-ledger_v2", 42},
        {"1000_big.sql", "big", 1000},
        {"0007_padded.sql", "padded", 7},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char name[64], err[256] = "";
        int v = -1;
        cr_assert_eq(dw_pg_migration_name_parse(cases[i].file, &v, name, sizeof(name), err,
                                                sizeof(err)),
                     DW_OK, "%s: %s", cases[i].file, err);
        cr_assert_eq(v, cases[i].version, "%s", cases[i].file);
        cr_assert_str_eq(name, cases[i].name);
    }
}

Test(pg, migration_names_that_are_rejected_name_the_file)
{
    static const char *const bad[] = {
        "1_x.sql",          "01_x.sql",      "001x.sql",          "001_.sql",
        "000_zero.sql",     "abc_x.sql",     "001_x.txt",         "001_x.sql.bak",
        "001_with space.sql", "001_semi;colon.sql", "99999999999_huge.sql", "001_x.SQL",
        "_001_x.sql",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        char name[64], err[256] = "";
        int v = -1;
        cr_assert_eq(dw_pg_migration_name_parse(bad[i], &v, name, sizeof(name), err, sizeof(err)),
                     DW_ERR_PARSE, "%s accepted", bad[i]);
        cr_assert(strstr(err, bad[i]), "message does not name %s: %s", bad[i], err);
    }
}

Test(pg, scan_sorts_numerically_and_ignores_other_files)
{
    char *dir = tmpdir_new(), sub[512], err[256] = "";
    dw_pg_migrations_t *ms = NULL;
    char name[32];
    for (int v = 1; v <= 9; v++) {
        snprintf(name, sizeof(name), "%03d_m%d.sql", v, v);
        write_file(dir, name, "SELECT 1;\n");
    }
    write_file(dir, "0010_ten.sql", "SELECT 10;\n"); /* sorts before 002 as text */
    write_file(dir, "README.md", "not a migration");
    write_file(dir, ".005_hidden.sql", "hidden");
    write_file(dir, "003_m3.sql~", "editor backup");
    snprintf(sub, sizeof(sub), "%s/011_subdir.sql", dir);
    cr_assert_eq(mkdir(sub, 0700), 0);

    cr_assert_eq(dw_pg_migrations_scan(dir, &ms, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(ms->count, 10);
    for (size_t i = 0; i < ms->count; i++)
        cr_assert_eq(ms->items[i].version, (int)i + 1);
    cr_assert_str_eq(ms->items[0].file, "001_m1.sql");
    cr_assert_str_eq(ms->items[9].file, "0010_ten.sql");
    cr_assert_str_eq(ms->items[9].name, "ten");
    cr_assert_str_eq(ms->items[9].sql, "SELECT 10;\n");
    cr_assert(strstr(ms->items[9].path, dir) == ms->items[9].path);
    dw_pg_migrations_destroy(ms);
    rm_rf(dir);
    free(dir);
}

Test(pg, scan_reports_a_gap_naming_the_file)
{
    char *dir = tmpdir_new(), err[256] = "";
    dw_pg_migrations_t *ms = NULL;
    write_file(dir, "001_a.sql", "SELECT 1;");
    write_file(dir, "002_b.sql", "SELECT 1;");
    write_file(dir, "004_d.sql", "SELECT 1;");
    cr_assert_eq(dw_pg_migrations_scan(dir, &ms, err, sizeof(err)), DW_ERR_PARSE);
    cr_assert_null(ms);
    cr_assert(strstr(err, "\"004_d.sql\"") && strstr(err, "version 3 is missing"), "%s", err);
    rm_rf(dir);
    free(dir);
}

Test(pg, scan_requires_the_first_version_to_be_1)
{
    char *dir = tmpdir_new(), err[256] = "";
    dw_pg_migrations_t *ms = NULL;
    write_file(dir, "002_b.sql", "SELECT 1;");
    cr_assert_eq(dw_pg_migrations_scan(dir, &ms, err, sizeof(err)), DW_ERR_PARSE);
    cr_assert(strstr(err, "\"002_b.sql\"") && strstr(err, "version 1 is missing"), "%s", err);
    rm_rf(dir);
    free(dir);
}

Test(pg, scan_reports_a_duplicate_naming_both_files)
{
    char *dir = tmpdir_new(), err[256] = "";
    dw_pg_migrations_t *ms = NULL;
    write_file(dir, "001_a.sql", "SELECT 1;");
    write_file(dir, "002_b.sql", "SELECT 1;");
    write_file(dir, "0002_c.sql", "SELECT 1;");
    cr_assert_eq(dw_pg_migrations_scan(dir, &ms, err, sizeof(err)), DW_ERR_PARSE);
    cr_assert_null(ms);
    cr_assert(strstr(err, "duplicate migration version 2") && strstr(err, "\"002_b.sql\"") &&
                  strstr(err, "\"0002_c.sql\""),
              "%s", err);
    rm_rf(dir);
    free(dir);
}

Test(pg, scan_reports_a_bad_file_name)
{
    char *dir = tmpdir_new(), err[256] = "";
    dw_pg_migrations_t *ms = NULL;
    write_file(dir, "001_a.sql", "SELECT 1;");
    write_file(dir, "2_b.sql", "SELECT 1;");
    cr_assert_eq(dw_pg_migrations_scan(dir, &ms, err, sizeof(err)), DW_ERR_PARSE);
    cr_assert(strstr(err, "\"2_b.sql\""), "%s", err);
    rm_rf(dir);
    free(dir);
}

Test(pg, scan_rejects_a_file_with_a_nul_byte)
{
    char *dir = tmpdir_new(), path[512], err[256] = "";
    dw_pg_migrations_t *ms = NULL;
    snprintf(path, sizeof(path), "%s/001_bin.sql", dir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite("SELECT\0 1;", 1, 10, f);
    fclose(f);
    cr_assert_eq(dw_pg_migrations_scan(dir, &ms, err, sizeof(err)), DW_ERR_PARSE);
    cr_assert(strstr(err, "001_bin.sql") && strstr(err, "NUL"), "%s", err);
    rm_rf(dir);
    free(dir);
}

Test(pg, scan_of_an_empty_directory_is_empty)
{
    char *dir = tmpdir_new(), err[256] = "";
    dw_pg_migrations_t *ms = NULL;
    cr_assert_eq(dw_pg_migrations_scan(dir, &ms, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(ms->count, 0);
    dw_pg_migrations_destroy(ms);
    rm_rf(dir);
    free(dir);
}

Test(pg, scan_of_a_missing_directory_is_an_io_error)
{
    char err[256] = "";
    dw_pg_migrations_t *ms = NULL;
    cr_assert_eq(dw_pg_migrations_scan("/nonexistent/dw/sql", &ms, err, sizeof(err)), DW_ERR_IO);
    cr_assert(strstr(err, "/nonexistent/dw/sql"), "%s", err);
}

Test(pg, repository_migrations_are_well_formed)
{
    char err[256] = "";
    dw_pg_migrations_t *ms = NULL;
    cr_assert_eq(dw_pg_migrations_scan(DW_SOURCE_DIR "/schemas/sql", &ms, err, sizeof(err)), DW_OK,
                 "%s", err);
    cr_assert_geq(ms->count, 1);
    cr_assert_str_eq(ms->items[0].file, "001_checkpoints.sql");
    cr_assert(strstr(ms->items[0].sql, "CREATE TABLE dw_checkpoint"));
    dw_pg_migrations_destroy(ms);
}

/* ---- connecting -------------------------------------------------------------------------------- */

Test(pg, connect_to_a_closed_port_gives_up_at_the_deadline)
{
    /* a bound socket that does not listen: connections to its port are refused, and holding it
     * keeps anyone else from listening there during the test */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof(sa);
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
    int port = ntohs(sa.sin_port);

    char dsn[256], target[64], err[512] = "";
    snprintf(dsn, sizeof(dsn), "postgresql://dw:hunter2-pw@127.0.0.1:%d/fleet", port);
    snprintf(target, sizeof(target), "\"127.0.0.1:%d/fleet\"", port);

    FILE *log = tmpfile();
    cr_assert_not_null(log);
    dw_log_set_output(log);
    dw_log_set_level(DW_LOG_DEBUG);

    struct timespec t0, t1;
    dw_err_t e = DW_OK;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    dw_pg_t *pg = dw_pg_connect(dsn, "test_pg", 1000, &e, err, sizeof(err));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    dw_log_set_output(NULL);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;

    cr_assert_null(pg);
    cr_assert_eq(e, DW_ERR_PG_CONN);
    cr_assert(dw_err_is_retriable(e));
    cr_assert_geq(ms, 950, "gave up after %ld ms", ms);
    cr_assert_lt(ms, 2500, "took %ld ms", ms);
    cr_assert(strstr(err, "could not connect to ") && strstr(err, target), "%s", err);
    cr_assert(strstr(err, "refused"), "libpq's reason is missing: %s", err);
    cr_assert_null(strstr(err, "hunter2"), "%s", err);

    char text[16384];
    size_t n = (rewind(log), fread(text, 1, sizeof(text) - 1, log));
    text[n] = '\0';
    fclose(log);
    int warns = 0;
    for (const char *p = text; (p = strstr(p, " warn ")); p++)
        warns++;
    cr_assert_geq(warns, 3, "expected a WARN per attempt, log:\n%s", text);
    cr_assert(strstr(text, "retrying in") && strstr(text, "giving up"), "%s", text);
    cr_assert(strstr(text, target), "%s", text);
    cr_assert_null(strstr(text, "hunter2"), "the password reached the log:\n%s", text);
    cr_assert_null(strstr(text, "postgresql://"), "the DSN reached the log:\n%s", text);
    close(fd);
}
