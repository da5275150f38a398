/*
 * dwctl db migrate | db status: apply the versioned SQL migrations of schemas/sql (the workers
 * apply them at start too), and show which are applied and which are pending.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "dw_pg.h"
#include "dwctl.h"

static dwctl_opts_t migrate_opts, status_opts;
static const struct option db_longopts[] = {DWCTL_LONGOPT_JSON, {0}};
static const char db_options_help[] = "      --json               JSON on stdout\n";

static dw_cli_spec_t migrate_spec = {
    .name = "db migrate",
    .synopsis = "[OPTIONS]",
    .description = "Apply the pending SQL migrations of pg.migrations_dir to pg.dsn, in one "
                   "transaction under an advisory lock (safe while workers start).",
    .options_help = db_options_help,
    .longopts = db_longopts,
    .on_option = dwctl_opt_json,
    .opaque = &migrate_opts,
};

static dw_cli_spec_t status_spec = {
    .name = "db status",
    .synopsis = "[OPTIONS]",
    .description = "List the migrations of pg.migrations_dir and whether pg.dsn has them.",
    .options_help = db_options_help,
    .longopts = db_longopts,
    .on_option = dwctl_opt_json,
    .opaque = &status_opts,
};

/* A connection for a db command, or NULL with the message printed. New. */
static dw_pg_t *db_connect(const dwctl_ctx_t *ctx, int *rc)
{
    char errstr[512];
    dw_err_t err = DW_OK;
    const char *dsn = dw_conf_get_str(ctx->conf, "pg.dsn");
    if (!dsn) {
        fprintf(stderr, "dwctl: pg.dsn is not set (config file, DW_PG_DSN, or -X pg.dsn=...)\n");
        *rc = DW_EXIT_USAGE;
        return NULL;
    }
    dw_pg_t *pg = dw_pg_connect(dsn, "dwctl", (int)dw_conf_get_int(ctx->conf, "pg.connect_timeout_ms"),
                                &err, errstr, sizeof(errstr));
    if (!pg) {
        fprintf(stderr, "dwctl: %s\n", errstr);
        *rc = dw_cli_exit_code(err);
    }
    return pg;
}

static int migrate_run(dwctl_ctx_t *ctx, void *opaque)
{
    char errstr[1024];
    int rc = DW_EXIT_FAILURE, applied = 0;
    const char *dir = dw_conf_get_str(ctx->conf, "pg.migrations_dir");
    dw_pg_t *pg = db_connect(ctx, &rc);
    if (!pg)
        return rc;
    dw_err_t err = dw_pg_migrate(pg, dir, &applied, errstr, sizeof(errstr));
    if (err) {
        fprintf(stderr, "dwctl db migrate: %s\n", errstr);
        rc = dw_cli_exit_code(err);
        goto out;
    }
    if (ctx->json)
        dwctl_print_json(json_pack("{s:i, s:s}", "applied", applied, "dir", dir));
    else
        printf("%d migration(s) applied to %s\n", applied, dw_pg_target(pg));
    rc = DW_EXIT_OK;
out:
    dw_pg_destroy(pg);
    return rc;
}

static int status_run(dwctl_ctx_t *ctx, void *opaque)
{
    char errstr[1024];
    int rc = DW_EXIT_FAILURE;
    PGresult *res = NULL;
    dw_pg_migrations_t *ms = NULL;
    json_t *list = NULL;
    const char *dir = dw_conf_get_str(ctx->conf, "pg.migrations_dir");
    dw_err_t err = dw_pg_migrations_scan(dir, &ms, errstr, sizeof(errstr));
    if (err) {
        fprintf(stderr, "dwctl db status: %s\n", errstr);
        return dw_cli_exit_code(err);
    }
    dw_pg_t *pg = db_connect(ctx, &rc);
    if (!pg)
        goto out;
    if (dw_pg_exec(pg,
                   "SELECT version::text, applied_at::text FROM dw_schema_migrations "
                   "ORDER BY version",
                   0, NULL, &res, errstr, sizeof(errstr)) != DW_OK) {
        /* A database never migrated has no table: everything is pending. */
        if (strcmp(dw_pg_last_sqlstate(pg), "42P01") != 0) {
            fprintf(stderr, "dwctl db status: %s\n", errstr);
            goto out;
        }
    }
    list = json_array();
    for (size_t i = 0; i < ms->count; i++) {
        const char *applied_at = NULL;
        for (int r = 0; res && r < PQntuples(res); r++) {
            if (atoi(PQgetvalue(res, r, 0)) == ms->items[i].version)
                applied_at = PQgetvalue(res, r, 1);
        }
        json_array_append_new(list, json_pack("{s:i, s:s, s:s?}", "version", ms->items[i].version,
                                              "name", ms->items[i].name, "applied_at",
                                              applied_at));
        if (!ctx->json)
            printf("%03d %-32s %s\n", ms->items[i].version, ms->items[i].name,
                   applied_at ? applied_at : "pending");
    }
    if (ctx->json) {
        dwctl_print_json(list);
        list = NULL;
    }
    rc = DW_EXIT_OK;
out:
    json_decref(list);
    PQclear(res);
    dw_pg_destroy(pg);
    dw_pg_migrations_destroy(ms);
    return rc;
}

static const dwctl_cmd_t migrate_cmd = {
    .words = "db migrate",
    .summary = "apply pending PostgreSQL migrations",
    .spec = &migrate_spec,
    .run = migrate_run,
};
static const dwctl_cmd_t status_cmd = {
    .words = "db status",
    .summary = "list applied and pending migrations",
    .spec = &status_spec,
    .run = status_run,
};

const dwctl_cmd_t *const dwctl_db_cmds[] = {&migrate_cmd, &status_cmd, NULL};
