/*
 * dw-writer: the writer worker of one target. Consumes the command topics dw.<map>.to-<target>
 * of the maps that write to that target (consumer group dw-writer-<target>), writes them in
 * batches with the target's bulk APIs (common/dw_target), keeps the sync ledger in PostgreSQL,
 * retries transient failures and dead-letters the rest to dw.<map>.dlq, and commits an offset
 * only when every command before it is done. SIGINT/SIGTERM stop it after the batch in flight;
 * SIGHUP reloads the maps. Operation: docs/writer.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_cli.h"
#include "dw_config.h"
#include "dw_log.h"
#include "dw_signal.h"
#include "dw_system.h"
#include "dw_topics.h"
#include "writer.h"

static const dw_conf_def_t *const wr_tables[] = {dw_conf_common_defs, wr_conf_defs,
                                                 dw_system_conf_defs, dw_topics_conf_defs, NULL};

/* Sections of the shared fleet file that belong to other components. */
static const char *const wr_foreign[] = {"capture",  "transform", "monitor",
                                         "emulator", "dwctl",     NULL};

#define OPT_TARGET 't'

typedef struct wr_args_s {
    const char *target;
} wr_args_t;

static dw_err_t on_option(int opt, const char *arg, void *opaque, char *errstr, size_t errstr_size)
{
    wr_args_t *a = opaque;
    if (opt == OPT_TARGET) {
        if (strcmp(arg, "dv") != 0 && strcmp(arg, "fo") != 0)
            return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                           "--target: '%s' is not dv or fo", arg);
        a->target = arg;
        return DW_OK;
    }
    return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "unknown option");
}

int main(int argc, char **argv)
{
    int rc = DW_EXIT_FAILURE;
    dw_conf_t *conf = NULL;
    wr_loop_t *loop = NULL;
    char errstr[2048];
    wr_args_t args = {0};
    static const struct option longopts[] = {{"target", required_argument, NULL, OPT_TARGET},
                                             {NULL, 0, NULL, 0}};
    dw_cli_t *cli = dw_cli_new("dw-writer", wr_tables, wr_foreign);
    if (!cli) {
        fprintf(stderr, "dw-writer: out of memory\n");
        return DW_EXIT_FAILURE;
    }
    dw_cli_spec_t spec = {
        .synopsis = "--target dv|fo [OPTIONS]",
        .description =
            "The writer worker: command topics dw.<map>.to-<target> -> the target's Web API\n"
            "(Dataverse UpsertMultiple/$batch, F&O $batch), with the sync ledger in PostgreSQL\n"
            "(echoes, stale versions, deletes), retries with backoff and dead letters to\n"
            "dw.<map>.dlq. Scale by starting more instances. SIGHUP reloads the maps.\n"
            "See docs/writer.md.",
        .options_help = "  -t, --target dv|fo        the system this worker writes to (required)\n",
        .shortopts = "t:",
        .longopts = longopts,
        .on_option = on_option,
        .opaque = &args,
    };
    int argi = 1;
    rc = dw_cli_parse(cli, &spec, argc, argv, &argi);
    if (rc != DW_CLI_CONTINUE)
        goto out;
    if (!args.target && !dw_cli_dump_requested(cli)) {
        rc = dw_cli_usage_error(cli, &spec, "--target dv|fo is required");
        goto out;
    }
    rc = dw_cli_load(cli, NULL, &conf);
    if (rc != DW_CLI_CONTINUE)
        goto out;
    /* writer.prefetch_kbytes becomes the consumer's kafka.queued.max.messages.kbytes in
     * wr_loop_new (the consumer only: the producer would warn about a consumer property) */
    if (dw_conf_is_set(conf, "kafka.queued.max.messages.kbytes") &&
        dw_conf_source(conf, "writer.prefetch_kbytes") != DW_CONF_SRC_DEFAULT) {
        fprintf(stderr, "dw-writer: kafka.queued.max.messages.kbytes is set, "
                        "writer.prefetch_kbytes is ignored\n");
    }
    if (!dw_conf_get_str(conf, "kafka.bootstrap.servers")) {
        fprintf(stderr, "dw-writer: kafka.bootstrap.servers is not set (DW_KAFKA_BOOTSTRAP)\n");
        rc = DW_EXIT_USAGE;
        goto out;
    }
    if (dw_signal_install() != DW_OK) {
        fprintf(stderr, "dw-writer: could not install the signal handlers\n");
        rc = DW_EXIT_FAILURE;
        goto out;
    }
    loop = wr_loop_new(conf, args.target, &rc, errstr, sizeof(errstr));
    if (!loop) {
        DW_ERROR("writer", "%s", errstr);
        goto out;
    }
    dw_err_t err = wr_loop_run(loop, errstr, sizeof(errstr));
    if (err) {
        DW_ERROR("writer", "stopped: %s", errstr);
        rc = err == DW_ERR_CONFIG ? DW_EXIT_USAGE : DW_EXIT_FAILURE;
    } else {
        DW_INFO("writer", "stopped");
        rc = DW_EXIT_OK;
    }
out:
    wr_loop_destroy(loop);
    dw_conf_destroy(conf);
    dw_cli_destroy(cli);
    return rc;
}
