/*
 * dw-transform: the transform worker. Consumes the capture topics (dw.<map>.fo|dv) of the
 * configured maps in consumer group dw-transform, maps every event in its map's direction and
 * produces the write command to dw.<map>.to-dv|to-fo, or the original message to dw.<map>.dlq,
 * in one Kafka transaction with the input offsets. SIGHUP reloads the maps; SIGINT/SIGTERM
 * commit the open transaction and stop. Operation: docs/transform.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_cli.h"
#include "dw_config.h"
#include "dw_log.h"
#include "dw_signal.h"
#include "dw_topics.h"
#include "transform.h"

static const dw_conf_def_t *const tx_tables[] = {dw_conf_common_defs, tx_conf_defs,
                                                 dw_topics_conf_defs, NULL};

/* Sections of the shared fleet file that belong to other components. */
static const char *const tx_foreign[] = {"capture", "writer", "monitor", "emulator",
                                         "dv",      "fo",     "dwctl",   NULL};

/* librdkafka settings dw-transform defaults through its own documented keys (see tx_conf_defs
 * and docs/transform.md); an explicit kafka.<property> wins over them. */
static const char *const tx_kafka_defaults[] = {
    "transform.prefetch_kbytes",
    "kafka.queued.max.messages.kbytes",
    "transform.linger_ms",
    "kafka.linger.ms",
    "transform.compression",
    "kafka.compression.type",
    NULL,
};

int main(int argc, char **argv)
{
    int rc = DW_EXIT_FAILURE;
    dw_conf_t *conf = NULL;
    tx_loop_t *loop = NULL;
    char errstr[2048];
    dw_cli_t *cli = dw_cli_new("dw-transform", tx_tables, tx_foreign);
    if (!cli) {
        fprintf(stderr, "dw-transform: out of memory\n");
        return DW_EXIT_FAILURE;
    }
    dw_cli_spec_t spec = {
        .synopsis = "[OPTIONS]",
        .description =
            "The transform worker: capture topics dw.<map>.fo|dv -> command topics "
            "dw.<map>.to-dv|to-fo\n(dead letters to dw.<map>.dlq), exactly once inside Kafka. "
            "Scale by starting more\ninstances with distinct transform.instance_id values. "
            "SIGHUP reloads the maps.\nSee docs/transform.md.",
    };
    int argi = 1;
    rc = dw_cli_parse(cli, &spec, argc, argv, &argi);
    if (rc != DW_CLI_CONTINUE)
        goto out;
    rc = dw_cli_load(cli, NULL, &conf);
    if (rc != DW_CLI_CONTINUE)
        goto out;
    for (int i = 0; tx_kafka_defaults[i]; i += 2) {
        const char *key = tx_kafka_defaults[i], *kkey = tx_kafka_defaults[i + 1];
        if (dw_conf_is_set(conf, kkey)) {
            if (dw_conf_source(conf, key) != DW_CONF_SRC_DEFAULT)
                fprintf(stderr, "dw-transform: %s is set, %s is ignored\n", kkey, key);
            continue;
        }
        char value[32];
        if (strcmp(key, "transform.compression") == 0)
            snprintf(value, sizeof(value), "%s", dw_conf_get_str(conf, key));
        else
            snprintf(value, sizeof(value), "%lld", dw_conf_get_int(conf, key));
        if (dw_conf_set(conf, kkey, value, DW_CONF_SRC_DEFAULT, key, errstr, sizeof(errstr)) !=
            DW_OK) {
            fprintf(stderr, "dw-transform: %s\n", errstr);
            rc = DW_EXIT_FAILURE;
            goto out;
        }
    }
    if (!dw_conf_get_str(conf, "kafka.bootstrap.servers")) {
        fprintf(stderr, "dw-transform: kafka.bootstrap.servers is not set (DW_KAFKA_BOOTSTRAP)\n");
        rc = DW_EXIT_USAGE;
        goto out;
    }
    if (dw_signal_install() != DW_OK) {
        fprintf(stderr, "dw-transform: could not install the signal handlers\n");
        rc = DW_EXIT_FAILURE;
        goto out;
    }
    loop = tx_loop_new(conf, &rc, errstr, sizeof(errstr));
    if (!loop) {
        DW_ERROR("transform", "%s", errstr);
        goto out;
    }
    dw_err_t err = tx_loop_run(loop, errstr, sizeof(errstr));
    if (err) {
        DW_ERROR("transform", "stopped: %s", errstr);
        rc = DW_EXIT_FAILURE;
    } else {
        DW_INFO("transform", "stopped");
        rc = DW_EXIT_OK;
    }
out:
    tx_loop_destroy(loop);
    dw_conf_destroy(conf);
    dw_cli_destroy(cli);
    return rc;
}
