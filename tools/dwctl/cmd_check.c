/*
 * dwctl check: can this configuration reach the fleet's Kafka cluster and PostgreSQL database?
 * Prints one line per service (or one JSON object with --json); exit 0 when both answer, 1 when
 * one does not, 2 when the configuration lacks what is needed.
 */
#include <stdio.h>
#include <stdlib.h>

#include <libpq-fe.h>

#include "dw_kafka.h"
#include "dw_pg.h"
#include "dwctl.h"

#define CHECK_TIMEOUT_MS 10000

enum { OPT_TIMEOUT = 0x101 };

typedef struct check_opts_s {
    dwctl_opts_t common;
    int timeout_ms;
} check_opts_t;

static check_opts_t check_opts = {.timeout_ms = CHECK_TIMEOUT_MS};

static dw_err_t check_opt(int opt, const char *arg, void *opaque, char *errstr,
                          size_t errstr_size)
{
    check_opts_t *o = opaque;
    char *end = NULL;
    if (opt == OPT_TIMEOUT) {
        long v = strtol(arg, &end, 10);
        if (!*arg || *end || v < 1 || v > 600000)
            return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                           "--timeout: '%s' is not a number of milliseconds in [1, 600000]", arg);
        o->timeout_ms = (int)v;
        return DW_OK;
    }
    return dwctl_opt_json(opt, arg, opaque, errstr, errstr_size);
}

static const struct option check_longopts[] = {
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    DWCTL_LONGOPT_JSON,
    {0},
};
static dw_cli_spec_t check_spec = {
    .name = "check",
    .synopsis = "[OPTIONS]",
    .description = "Check that the configured Kafka cluster and PostgreSQL database answer.",
    .options_help = "      --timeout MS         how long to wait for each service (default 10000)\n"
                    "      --json               one JSON object on stdout\n",
    .longopts = check_longopts,
    .on_option = check_opt,
    .opaque = &check_opts,
};

/* Kafka: brokers and dwfleet topics. result: borrowed, filled. */
static bool check_kafka(const dw_conf_t *conf, int timeout_ms, json_t *result)
{
    char errstr[512];
    bool ok = false;
    const rd_kafka_metadata_t *md = NULL;
    char **topics = NULL;
    size_t ntopics = 0;
    rd_kafka_t *rk = dw_kafka_admin_new(conf, errstr, sizeof(errstr));
    if (!rk)
        goto out;
    if (dw_kafka_wait_ready(rk, timeout_ms, errstr, sizeof(errstr)) != DW_OK)
        goto out;
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
    if (kerr) {
        snprintf(errstr, sizeof(errstr), "metadata request failed: %s", rd_kafka_err2str(kerr));
        goto out;
    }
    if (dw_kafka_topics_list(rk, "dw.", timeout_ms, &topics, &ntopics, errstr,
                             sizeof(errstr)) != DW_OK)
        goto out;
    json_object_set_new(result, "brokers", json_integer(md->broker_cnt));
    json_object_set_new(result, "dw_topics", json_integer((json_int_t)ntopics));
    ok = true;
out:
    json_object_set_new(result, "ok", json_boolean(ok));
    json_object_set_new(result, "bootstrap",
                        json_string(dw_conf_get_str(conf, "kafka.bootstrap.servers")));
    if (!ok)
        json_object_set_new(result, "error", json_string(errstr));
    dw_kafka_topics_free(topics, ntopics);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rk)
        rd_kafka_destroy(rk);
    return ok;
}

/* PostgreSQL: server version and the schema version dwfleet migrated to. */
static bool check_pg(const dw_conf_t *conf, int timeout_ms, json_t *result)
{
    char errstr[512];
    bool ok = false;
    dw_err_t err = DW_OK;
    PGresult *res = NULL;
    int timeout = (int)dw_conf_get_int(conf, "pg.connect_timeout_ms");
    dw_pg_t *pg = dw_pg_connect(dw_conf_get_str(conf, "pg.dsn"), "dwctl",
                                timeout < timeout_ms ? timeout : timeout_ms, &err,
                                errstr, sizeof(errstr));
    if (!pg)
        goto out;
    json_object_set_new(result, "target", json_string(dw_pg_target(pg)));
    if (dw_pg_exec(pg, "SELECT current_setting('server_version'), "
                       "to_regclass('dw_schema_migrations') IS NOT NULL",
                   0, NULL, &res, errstr, sizeof(errstr)) != DW_OK)
        goto out;
    json_object_set_new(result, "server_version", json_string(PQgetvalue(res, 0, 0)));
    bool migrated = PQgetvalue(res, 0, 1)[0] == 't';
    PQclear(res);
    res = NULL;
    if (migrated) {
        if (dw_pg_exec(pg, "SELECT coalesce(max(version), 0) FROM dw_schema_migrations", 0, NULL,
                       &res, errstr, sizeof(errstr)) != DW_OK)
            goto out;
        json_object_set_new(result, "schema_version",
                            json_integer(strtoll(PQgetvalue(res, 0, 0), NULL, 10)));
    } else {
        json_object_set_new(result, "schema_version", json_integer(0));
    }
    ok = true;
out:
    json_object_set_new(result, "ok", json_boolean(ok));
    if (!ok)
        json_object_set_new(result, "error", json_string(errstr));
    PQclear(res);
    dw_pg_destroy(pg);
    return ok;
}

static int check_run(dwctl_ctx_t *ctx, void *opaque)
{
    if (!dw_conf_is_set(ctx->conf, "kafka.bootstrap.servers") ||
        !dw_conf_is_set(ctx->conf, "pg.dsn")) {
        fprintf(stderr, "dwctl check: kafka.bootstrap.servers and pg.dsn must be set "
                        "(config file, DW_KAFKA_BOOTSTRAP / DW_PG_DSN, or -X)\n");
        return DW_EXIT_USAGE;
    }
    json_t *kafka = json_object(), *pg = json_object();
    const check_opts_t *o = opaque;
    bool kok = check_kafka(ctx->conf, o->timeout_ms, kafka);
    bool pok = check_pg(ctx->conf, o->timeout_ms, pg);
    if (ctx->json) {
        dwctl_print_json(json_pack("{s:o, s:o}", "kafka", kafka, "postgresql", pg));
    } else {
        if (kok)
            printf("kafka: ok (%s, %lld broker(s), %lld dwfleet topic(s))\n",
                   json_string_value(json_object_get(kafka, "bootstrap")),
                   json_integer_value(json_object_get(kafka, "brokers")),
                   json_integer_value(json_object_get(kafka, "dw_topics")));
        else
            printf("kafka: FAILED (%s): %s\n",
                   json_string_value(json_object_get(kafka, "bootstrap")),
                   json_string_value(json_object_get(kafka, "error")));
        if (pok)
            printf("postgresql: ok (%s, server %s, schema version %lld)\n",
                   json_string_value(json_object_get(pg, "target")),
                   json_string_value(json_object_get(pg, "server_version")),
                   json_integer_value(json_object_get(pg, "schema_version")));
        else
            printf("postgresql: FAILED: %s\n", json_string_value(json_object_get(pg, "error")));
        json_decref(kafka);
        json_decref(pg);
    }
    return kok && pok ? DW_EXIT_OK : DW_EXIT_FAILURE;
}

static const dwctl_cmd_t check_cmd = {
    .words = "check",
    .summary = "check that Kafka and PostgreSQL answer",
    .spec = &check_spec,
    .run = check_run,
};

const dwctl_cmd_t *const dwctl_check_cmds[] = {&check_cmd, NULL};
