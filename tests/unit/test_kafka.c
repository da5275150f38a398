/*
 * Unit tests of dw_kafka, without services: topic names built and parsed back, client
 * configuration layered from a dw_conf_t (defaults < kafka.* < essentials), librdkafka's own
 * error texts, error mapping, headers, and fault injection on librdkafka's built-in mock cluster
 * (test.mock.num.brokers): delivery reports, a full producer queue, injected produce errors,
 * transactions that must abort or are fenced, a consume round trip.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "dw_config.h"
#include "dw_kafka.h"
#include "dw_log.h"
#include "dw_time.h"

#define ASSERT_CONTAINS(hay, needle)                                                               \
    cr_assert(strstr((hay), (needle)) != NULL, "expected \"%s\" in:\n%s", (needle), (hay))

/* Kafka protocol request types (ApiKey) used for fault injection. */
#define API_PRODUCE              0
#define API_ADD_PARTITIONS_TO_TXN 24

static const dw_conf_def_t *const tables[] = {dw_conf_common_defs, NULL};

/* A configuration with the given kafka.* (or other) name, value pairs; NULL-terminated. */
static dw_conf_t *conf_with(const char *const *kv)
{
    char errstr[512];
    dw_conf_t *conf = dw_conf_new(tables, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(conf, "dw_conf_new: %s", errstr);
    for (const char *const *p = kv; p && p[0]; p += 2)
        cr_assert_eq(dw_conf_set(conf, p[0], p[1], DW_CONF_SRC_FLAG, "test", errstr,
                                 sizeof(errstr)),
                     DW_OK, "dw_conf_set %s: %s", p[0], errstr);
    return conf;
}

/* The value of a librdkafka property in kc (static buffer); "" when unset. */
static const char *prop(const rd_kafka_conf_t *kc, const char *name)
{
    static char buf[512];
    size_t size = sizeof(buf);
    rd_kafka_conf_res_t res = rd_kafka_conf_get(kc, name, buf, &size);
    if (res == RD_KAFKA_CONF_UNKNOWN && strcmp(name, "transactional.id") == 0)
        return ""; /* librdkafka 2.0.2 says UNKNOWN for this string property when unset */
    cr_assert_eq(res, RD_KAFKA_CONF_OK, "conf_get %s: %d", name, (int)res);
    return buf;
}

/* ---------------------------------------------------------------- topic names */

Test(kafka, topic_name_is_built_for_every_kind)
{
    static const char *const want[] = {"dw.account.fo", "dw.account.dv", "dw.account.to-dv",
                                       "dw.account.to-fo", "dw.account.dlq"};
    char buf[DW_KAFKA_TOPIC_MAX + 1];
    char errstr[256];
    for (int k = 0; k < DW_KAFKA_TOPIC__COUNT; k++) {
        cr_assert_eq(dw_kafka_topic_name(buf, sizeof(buf), "account", (dw_kafka_topic_kind_t)k,
                                         errstr, sizeof(errstr)),
                     DW_OK, "%s", errstr);
        cr_assert_str_eq(buf, want[k]);
    }
    cr_assert_eq(dw_kafka_topic_name(buf, sizeof(buf), "cust_v3_2", DW_KAFKA_TOPIC_TO_FO, errstr,
                                     sizeof(errstr)),
                 DW_OK);
    cr_assert_str_eq(buf, "dw.cust_v3_2.to-fo");
}

Test(kafka, reserved_map_names_build_dwfleet_topics_but_fail_as_user_maps)
{
    char buf[DW_KAFKA_TOPIC_MAX + 1];
    char errstr[256] = "";
    cr_assert_eq(dw_kafka_topic_name(buf, sizeof(buf), "_unknown", DW_KAFKA_TOPIC_DLQ, errstr,
                                     sizeof(errstr)),
                 DW_OK, "%s", errstr);
    cr_assert_str_eq(buf, "dw._unknown.dlq");
    cr_assert_eq(dw_kafka_topic_name(buf, sizeof(buf), "_capture", DW_KAFKA_TOPIC_DLQ, errstr,
                                     sizeof(errstr)),
                 DW_OK);
    cr_assert_str_eq(buf, "dw._capture.dlq");

    cr_assert_eq(dw_kafka_map_name_check("_capture", false, errstr, sizeof(errstr)),
                 DW_ERR_INVALID_ARG);
    ASSERT_CONTAINS(errstr, "reserved");
    cr_assert_eq(dw_kafka_map_name_check("_capture", true, errstr, sizeof(errstr)), DW_OK);
    cr_assert_eq(dw_kafka_map_name_check("account", false, errstr, sizeof(errstr)), DW_OK);
}

Test(kafka, invalid_map_names_are_rejected_with_the_reason)
{
    static const struct {
        const char *map;
        const char *why;
    } cases[] = {
        {"", "empty"},           {"Account", "'A'"},       {"acc.ount", "'.'"},
        {"acc-ount", "'-'"},     {"acc ount", "' '"},      {"caf\xc3\xa9", "[a-z0-9_]"},
        {"a/b", "'/'"},
    };
    char buf[DW_KAFKA_TOPIC_MAX + 1];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char errstr[256] = "";
        cr_assert_eq(dw_kafka_topic_name(buf, sizeof(buf), cases[i].map, DW_KAFKA_TOPIC_FO,
                                         errstr, sizeof(errstr)),
                     DW_ERR_INVALID_ARG, "map \"%s\" accepted", cases[i].map);
        ASSERT_CONTAINS(errstr, cases[i].why);
        cr_assert(!dw_err_is_retriable(DW_ERR_INVALID_ARG));
    }
    char errstr[256] = "";
    cr_assert_eq(dw_kafka_topic_name(buf, sizeof(buf), "account", DW_KAFKA_TOPIC__COUNT, errstr,
                                     sizeof(errstr)),
                 DW_ERR_INVALID_ARG);
    ASSERT_CONTAINS(errstr, "kind");
}

Test(kafka, map_name_length_keeps_every_topic_within_kafka_limit)
{
    char map[DW_KAFKA_MAP_MAX + 2];
    char buf[DW_KAFKA_TOPIC_MAX + 1];
    char errstr[256] = "";
    memset(map, 'a', DW_KAFKA_MAP_MAX);
    map[DW_KAFKA_MAP_MAX] = '\0';
    for (int k = 0; k < DW_KAFKA_TOPIC__COUNT; k++) {
        cr_assert_eq(dw_kafka_topic_name(buf, sizeof(buf), map, (dw_kafka_topic_kind_t)k, errstr,
                                         sizeof(errstr)),
                     DW_OK, "%s", errstr);
        cr_assert_leq(strlen(buf), 249);
    }
    cr_assert_eq(strlen(buf), 247); /* dlq */
    cr_assert_eq(dw_kafka_topic_name(buf, sizeof(buf), map, DW_KAFKA_TOPIC_TO_DV, errstr,
                                     sizeof(errstr)),
                 DW_OK);
    cr_assert_eq(strlen(buf), 249, "the longest kind reaches Kafka's limit exactly");

    map[DW_KAFKA_MAP_MAX] = 'a';
    map[DW_KAFKA_MAP_MAX + 1] = '\0';
    cr_assert_eq(dw_kafka_topic_name(buf, sizeof(buf), map, DW_KAFKA_TOPIC_FO, errstr,
                                     sizeof(errstr)),
                 DW_ERR_INVALID_ARG);
    ASSERT_CONTAINS(errstr, "at most 240");
}

Test(kafka, topic_name_into_a_small_buffer_is_an_error)
{
    char buf[8];
    char errstr[256] = "";
    cr_assert_eq(dw_kafka_topic_name(buf, sizeof(buf), "account", DW_KAFKA_TOPIC_FO, errstr,
                                     sizeof(errstr)),
                 DW_ERR_INVALID_ARG);
    ASSERT_CONTAINS(errstr, "buffer");
}

Test(kafka, topic_names_parse_back_to_map_and_kind)
{
    static const char *const maps[] = {"account", "a", "_unknown", "x_1_2", "0"};
    for (size_t m = 0; m < sizeof(maps) / sizeof(maps[0]); m++) {
        for (int k = 0; k < DW_KAFKA_TOPIC__COUNT; k++) {
            char topic[DW_KAFKA_TOPIC_MAX + 1], map[DW_KAFKA_MAP_MAX + 1], errstr[256] = "";
            dw_kafka_topic_kind_t kind = DW_KAFKA_TOPIC__COUNT;
            cr_assert_eq(dw_kafka_topic_name(topic, sizeof(topic), maps[m],
                                             (dw_kafka_topic_kind_t)k, errstr, sizeof(errstr)),
                         DW_OK);
            cr_assert_eq(dw_kafka_topic_parse(topic, map, sizeof(map), &kind, errstr,
                                              sizeof(errstr)),
                         DW_OK, "%s: %s", topic, errstr);
            cr_assert_str_eq(map, maps[m]);
            cr_assert_eq(kind, k);
        }
    }
    dw_kafka_topic_kind_t kind;
    cr_assert_eq(dw_kafka_topic_parse("dw.orders.to-dv", NULL, 0, &kind, NULL, 0), DW_OK);
    cr_assert_eq(kind, DW_KAFKA_TOPIC_TO_DV);
    cr_assert_str_eq(dw_kafka_topic_kind_name(kind), "to-dv");
    cr_assert_eq(dw_kafka_topic_kind_parse("dlq", &kind), DW_OK);
    cr_assert_eq(kind, DW_KAFKA_TOPIC_DLQ);
    cr_assert_eq(dw_kafka_topic_kind_parse("DLQ", &kind), DW_ERR_INVALID_ARG);
    cr_assert_null(dw_kafka_topic_kind_name(DW_KAFKA_TOPIC__COUNT));
}

Test(kafka, foreign_topic_names_do_not_parse)
{
    static const struct {
        const char *topic;
        const char *why;
    } cases[] = {
        {"orders", "not a dwfleet topic"},
        {"__consumer_offsets", "not a dwfleet topic"},
        {"dw.account", "no kind"},
        {"dw.account.xx", "unknown kind \"xx\""},
        {"dw.account.fo.extra", "unknown kind"},
        {"dw..fo", "empty"},
        {"dw.Account.fo", "'A'"},
        {"dw.a.b.fo", "'.'"},
        {"dw.fo", "no kind"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char map[DW_KAFKA_MAP_MAX + 1], errstr[256] = "";
        cr_assert_eq(dw_kafka_topic_parse(cases[i].topic, map, sizeof(map), NULL, errstr,
                                          sizeof(errstr)),
                     DW_ERR_INVALID_ARG, "\"%s\" parsed", cases[i].topic);
        ASSERT_CONTAINS(errstr, cases[i].why);
    }
    char longer[DW_KAFKA_TOPIC_MAX + 8] = "dw.";
    memset(longer + 3, 'a', DW_KAFKA_TOPIC_MAX);
    memcpy(longer + DW_KAFKA_TOPIC_MAX, ".fo", 4);
    char errstr[256] = "";
    cr_assert_eq(dw_kafka_topic_parse(longer, NULL, 0, NULL, errstr, sizeof(errstr)),
                 DW_ERR_INVALID_ARG);
    ASSERT_CONTAINS(errstr, "longer than 249");
}

/* ---------------------------------------------------------------- configuration */

Test(kafka, every_kafka_key_passes_through_to_librdkafka)
{
    dw_conf_t *conf = conf_with((const char *const[]){
        "kafka.bootstrap.servers", "broker-a:9092,broker-b:9092", "kafka.client.id", "from-conf",
        "kafka.linger.ms", "7", "kafka.message.max.bytes", "2000000", "log.level", "warn", NULL});
    char errstr[512] = "";
    rd_kafka_conf_t *kc = dw_kafka_conf_new(conf, errstr, sizeof(errstr));
    cr_assert_not_null(kc, "%s", errstr);
    cr_assert_str_eq(prop(kc, "bootstrap.servers"), "broker-a:9092,broker-b:9092");
    cr_assert_str_eq(prop(kc, "client.id"), "from-conf");
    cr_assert_str_eq(prop(kc, "linger.ms"), "7");
    cr_assert_str_eq(prop(kc, "message.max.bytes"), "2000000");
    rd_kafka_conf_destroy(kc);

    kc = dw_kafka_conf_new(NULL, errstr, sizeof(errstr));
    cr_assert_not_null(kc, "no configuration: nothing passed through");
    rd_kafka_conf_destroy(kc);
    dw_conf_destroy(conf);
}

Test(kafka, producer_defaults_yield_to_kafka_keys_but_not_the_transactional_id)
{
    char errstr[512] = "";
    dw_conf_t *plain = conf_with(NULL);
    rd_kafka_conf_t *kc = dw_kafka_producer_conf_new(plain, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(kc, "%s", errstr);
    cr_assert_str_eq(prop(kc, "enable.idempotence"), "true");
    cr_assert_str_eq(prop(kc, "transactional.id"), "", "not transactional");
    rd_kafka_conf_destroy(kc);

    dw_kafka_producer_opts_t opts;
    dw_kafka_producer_opts_init(&opts);
    opts.client_id = "dw-capture";
    opts.transactional_id = "dw-transform-0";
    dw_conf_t *conf = conf_with((const char *const[]){
        "kafka.enable.idempotence", "false", "kafka.transactional.id", "shared-by-the-fleet",
        "kafka.client.id", "operator-id", NULL});
    kc = dw_kafka_producer_conf_new(conf, &opts, errstr, sizeof(errstr));
    cr_assert_not_null(kc, "%s", errstr);
    cr_assert_str_eq(prop(kc, "enable.idempotence"), "false", "kafka.* overrides a default");
    cr_assert_str_eq(prop(kc, "client.id"), "operator-id", "kafka.* overrides a default");
    cr_assert_str_eq(prop(kc, "transactional.id"), "dw-transform-0", "the instance's id wins");
    rd_kafka_conf_destroy(kc);

    opts.transactional_id = NULL;
    kc = dw_kafka_producer_conf_new(conf, &opts, errstr, sizeof(errstr));
    cr_assert_not_null(kc, "%s", errstr);
    cr_assert_str_eq(prop(kc, "transactional.id"), "",
                     "a fleet-wide transactional.id never reaches a producer");
    rd_kafka_conf_destroy(kc);
    dw_conf_destroy(conf);
    dw_conf_destroy(plain);
}

Test(kafka, consumer_defaults_for_dwfleet)
{
    char errstr[512] = "";
    dw_conf_t *conf = conf_with(NULL);
    dw_kafka_consumer_opts_t opts;
    dw_kafka_consumer_opts_init(&opts);
    opts.group_id = "dw-writer-dv";
    rd_kafka_conf_t *kc = dw_kafka_consumer_conf_new(conf, &opts, errstr, sizeof(errstr));
    cr_assert_not_null(kc, "%s", errstr);
    cr_assert_str_eq(prop(kc, "group.id"), "dw-writer-dv");
    cr_assert_str_eq(prop(kc, "isolation.level"), "read_committed");
    cr_assert_str_eq(prop(kc, "enable.auto.commit"), "false");
    cr_assert_str_eq(prop(kc, "enable.auto.offset.store"), "false");
    cr_assert_str_eq(prop(kc, "auto.offset.reset"), "smallest"); /* librdkafka's name */
    cr_assert_str_eq(prop(kc, "partition.assignment.strategy"), "cooperative-sticky");
    rd_kafka_conf_destroy(kc);

    opts.cooperative = false;
    kc = dw_kafka_consumer_conf_new(conf, &opts, errstr, sizeof(errstr));
    cr_assert_not_null(kc, "%s", errstr);
    cr_assert_str_eq(prop(kc, "partition.assignment.strategy"), "range,roundrobin");
    rd_kafka_conf_destroy(kc);
    dw_conf_destroy(conf);
}

Test(kafka, consumer_kafka_keys_win_over_defaults_not_over_essentials)
{
    char errstr[512] = "";
    FILE *logf = tmpfile();
    cr_assert_not_null(logf);
    dw_log_set_output(logf);
    dw_conf_t *conf = conf_with((const char *const[]){
        "kafka.auto.offset.reset", "latest", "kafka.isolation.level", "read_uncommitted",
        "kafka.partition.assignment.strategy", "range", "kafka.enable.auto.commit", "true",
        "kafka.enable.auto.offset.store", "true", "kafka.group.id", "fleet-wide", NULL});
    dw_kafka_consumer_opts_t opts;
    dw_kafka_consumer_opts_init(&opts);
    opts.group_id = "dw-transform";
    rd_kafka_conf_t *kc = dw_kafka_consumer_conf_new(conf, &opts, errstr, sizeof(errstr));
    cr_assert_not_null(kc, "%s", errstr);
    cr_assert_str_eq(prop(kc, "auto.offset.reset"), "largest");
    cr_assert_str_eq(prop(kc, "isolation.level"), "read_uncommitted");
    cr_assert_str_eq(prop(kc, "partition.assignment.strategy"), "range");
    cr_assert_str_eq(prop(kc, "enable.auto.commit"), "false", "essential");
    cr_assert_str_eq(prop(kc, "enable.auto.offset.store"), "false", "essential");
    cr_assert_str_eq(prop(kc, "group.id"), "dw-transform", "the component's group");
    rd_kafka_conf_destroy(kc);

    /* a code-given isolation level is essential; without a group the configured one applies */
    opts.group_id = NULL;
    opts.isolation_level = "read_committed";
    kc = dw_kafka_consumer_conf_new(conf, &opts, errstr, sizeof(errstr));
    cr_assert_not_null(kc, "%s", errstr);
    cr_assert_str_eq(prop(kc, "isolation.level"), "read_committed");
    cr_assert_str_eq(prop(kc, "group.id"), "fleet-wide");
    rd_kafka_conf_destroy(kc);

    fflush(logf);
    rewind(logf);
    char text[4096] = "";
    size_t n = fread(text, 1, sizeof(text) - 1, logf);
    text[n] = '\0';
    dw_log_set_output(NULL);
    fclose(logf);
    ASSERT_CONTAINS(text, "kafka.enable.auto.commit is ignored");
    ASSERT_CONTAINS(text, "kafka.group.id is ignored");
    dw_conf_destroy(conf);
}

Test(kafka, invalid_settings_give_librdkafka_text)
{
    char errstr[512] = "";
    dw_conf_t *conf = conf_with(NULL);

    /* a value librdkafka refuses, given by the code */
    dw_kafka_consumer_opts_t copts;
    dw_kafka_consumer_opts_init(&copts);
    copts.isolation_level = "read_sometimes";
    cr_assert_null(dw_kafka_consumer_new(conf, &copts, errstr, sizeof(errstr)));
    ASSERT_CONTAINS(errstr, "isolation.level");
    ASSERT_CONTAINS(errstr, "Invalid value \"read_sometimes\"");

    /* each value valid, the combination refused by rd_kafka_new: the conf must not leak */
    dw_conf_t *bad = conf_with((const char *const[]){"kafka.enable.idempotence", "false", NULL});
    dw_kafka_producer_opts_t popts;
    dw_kafka_producer_opts_init(&popts);
    popts.transactional_id = "t-1";
    errstr[0] = '\0';
    cr_assert_null(dw_kafka_producer_new(bad, &popts, errstr, sizeof(errstr)));
    ASSERT_CONTAINS(errstr, "could not create Kafka producer");
    ASSERT_CONTAINS(errstr, "enable.idempotence");

    /* a consumer without a group, neither given nor configured */
    cr_assert_null(dw_kafka_consumer_new(conf, NULL, errstr, sizeof(errstr)));
    ASSERT_CONTAINS(errstr, "needs a group");

    /* a librdkafka property unknown to this librdkafka is refused when set */
    cr_assert_neq(dw_conf_set(conf, "kafka.no.such.property", "1", DW_CONF_SRC_FLAG, "test",
                              errstr, sizeof(errstr)),
                  DW_OK);
    ASSERT_CONTAINS(errstr, "No such configuration property");
    dw_conf_destroy(bad);
    dw_conf_destroy(conf);
}

/* ---------------------------------------------------------------- errors */

Test(kafka, librdkafka_errors_map_to_dw_errors_with_retriability)
{
    static const struct {
        rd_kafka_resp_err_t in;
        dw_err_t out;
    } cases[] = {
        {RD_KAFKA_RESP_ERR_NO_ERROR, DW_OK},
        {RD_KAFKA_RESP_ERR__QUEUE_FULL, DW_ERR_QUEUE_FULL},
        {RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, DW_ERR_TIMEOUT},
        {RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, DW_ERR_TIMEOUT},
        {RD_KAFKA_RESP_ERR__TRANSPORT, DW_ERR_UNAVAILABLE},
        {RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, DW_ERR_UNAVAILABLE},
        {RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, DW_ERR_KAFKA_RETRIABLE},
        {RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, DW_ERR_KAFKA_RETRIABLE},
        {RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, DW_ERR_KAFKA_RETRIABLE},
        {RD_KAFKA_RESP_ERR_PRODUCER_FENCED, DW_ERR_FENCED},
        {RD_KAFKA_RESP_ERR__FENCED, DW_ERR_FENCED},
        {RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, DW_ERR_NOT_FOUND},
        {RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, DW_ERR_INVALID_ARG},
        {RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR, DW_ERR_INVALID_ARG},
        {RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, DW_ERR_KAFKA},
        {RD_KAFKA_RESP_ERR__DESTROY, DW_ERR_INTERRUPTED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_assert_eq(dw_kafka_err_map(cases[i].in), cases[i].out, "%s -> %s, want %s",
                     rd_kafka_err2name(cases[i].in), dw_err_name(dw_kafka_err_map(cases[i].in)),
                     dw_err_name(cases[i].out));
    cr_assert(dw_err_is_retriable(dw_kafka_err_map(RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)));
    cr_assert(!dw_err_is_retriable(dw_kafka_err_map(RD_KAFKA_RESP_ERR_PRODUCER_FENCED)));

    /* an error object without flags is not retriable, whatever the table says */
    rd_kafka_error_t *error = rd_kafka_error_new(RD_KAFKA_RESP_ERR__TIMED_OUT, "late");
    cr_assert_eq(dw_kafka_error_map(error), DW_ERR_KAFKA);
    cr_assert_eq(dw_kafka_txn_classify(error), DW_KAFKA_TXN_FATAL);
    rd_kafka_error_destroy(error);
    cr_assert_eq(dw_kafka_error_map(NULL), DW_OK);
    cr_assert_eq(dw_kafka_txn_classify(NULL), DW_KAFKA_TXN_OK);
    cr_assert_str_eq(dw_kafka_txn_action_name(DW_KAFKA_TXN_ABORT), "abort");
}

/* ---------------------------------------------------------------- headers */

Test(kafka, design_headers_are_built_and_read_back)
{
    rd_kafka_headers_t *hdrs = dw_kafka_headers_dw("account", "fo", "upsert", NULL);
    cr_assert_not_null(hdrs);
    cr_assert_eq(rd_kafka_header_cnt(hdrs), 3, "a NULL value is left out");
    char buf[64];
    cr_assert_eq(dw_kafka_header_get(hdrs, DW_KAFKA_HDR_MAP, buf, sizeof(buf)), DW_OK);
    cr_assert_str_eq(buf, "account");
    cr_assert_eq(dw_kafka_header_get(hdrs, DW_KAFKA_HDR_SOURCE, buf, sizeof(buf)), DW_OK);
    cr_assert_str_eq(buf, "fo");
    cr_assert_eq(dw_kafka_header_get(hdrs, DW_KAFKA_HDR_OP, buf, sizeof(buf)), DW_OK);
    cr_assert_str_eq(buf, "upsert");
    cr_assert_eq(dw_kafka_header_get(hdrs, DW_KAFKA_HDR_CORRELATION_ID, buf, sizeof(buf)),
                 DW_ERR_NOT_FOUND);
    char tiny[4];
    cr_assert_eq(dw_kafka_header_get(hdrs, DW_KAFKA_HDR_MAP, tiny, sizeof(tiny)),
                 DW_ERR_INVALID_ARG);
    cr_assert_str_eq(tiny, "acc");
    rd_kafka_headers_destroy(hdrs);

    hdrs = dw_kafka_headers_new("a", "1", "b", "", "a", "2", (const char *)NULL);
    cr_assert_eq(rd_kafka_header_cnt(hdrs), 3);
    cr_assert_eq(dw_kafka_header_get(hdrs, "a", buf, sizeof(buf)), DW_OK);
    cr_assert_str_eq(buf, "2", "the last value of a repeated header");
    cr_assert_eq(dw_kafka_header_get(hdrs, "b", buf, sizeof(buf)), DW_OK);
    cr_assert_str_eq(buf, "");
    rd_kafka_headers_destroy(hdrs);
    cr_assert_eq(dw_kafka_header_get(NULL, "a", buf, sizeof(buf)), DW_ERR_NOT_FOUND);
}

/* ---------------------------------------------------------------- mock cluster */

static int dr_count;
static int dr_failed;
static rd_kafka_resp_err_t dr_last_err;
static void *dr_last_opaque;

static void count_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    dr_count++;
    if (m->err) {
        dr_failed++;
        dr_last_err = m->err;
    }
    dr_last_opaque = m->_private;
}

/* A producer on its own mock cluster with topic (1 partition); extra: more kafka.* pairs. */
static rd_kafka_t *mock_producer(const char *topic, const char *const *extra,
                                 const char *transactional_id, rd_kafka_mock_cluster_t **mc)
{
    const char *kv[32] = {"kafka.test.mock.num.brokers", "1", "log.level", "warn"};
    size_t n = 4;
    for (const char *const *p = extra; p && p[0] && n < 30; p += 2) {
        kv[n++] = p[0];
        kv[n++] = p[1];
    }
    kv[n] = NULL;
    dw_conf_t *conf = conf_with(kv);
    dw_kafka_producer_opts_t opts;
    dw_kafka_producer_opts_init(&opts);
    opts.dr_msg_cb = count_dr;
    opts.transactional_id = transactional_id;
    char errstr[512] = "";
    rd_kafka_t *rk = dw_kafka_producer_new(conf, &opts, errstr, sizeof(errstr));
    cr_assert_not_null(rk, "%s", errstr);
    dw_conf_destroy(conf);
    *mc = rd_kafka_handle_mock_cluster(rk);
    cr_assert_not_null(*mc);
    cr_assert_eq(rd_kafka_mock_topic_create(*mc, topic, 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    return rk;
}

static dw_err_t produce_one(rd_kafka_t *rk, const char *topic, int i, int block_ms,
                            char *errstr, size_t errstr_size)
{
    char key[32], value[64];
    snprintf(key, sizeof(key), "key-%d", i);
    snprintf(value, sizeof(value), "{\"n\":%d}", i);
    dw_kafka_msg_t msg = DW_KAFKA_MSG_INIT;
    msg.topic = topic;
    msg.key = key;
    msg.key_len = strlen(key);
    msg.value = value;
    msg.value_len = strlen(value);
    msg.msg_opaque = (void *)(intptr_t)(i + 1);
    return dw_kafka_produce(rk, &msg, dw_kafka_headers_dw("m", "fo", "upsert", "c-1"), block_ms,
                            errstr, errstr_size);
}

Test(kafka, produce_serves_delivery_reports)
{
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *rk = mock_producer("t", NULL, NULL, &mc);
    char errstr[512] = "";
    for (int i = 0; i < 10; i++)
        cr_assert_eq(produce_one(rk, "t", i, 1000, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    int remaining = -1;
    cr_assert_eq(dw_kafka_flush(rk, 10000, &remaining, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
    cr_assert_eq(remaining, 0);
    cr_assert_eq(dr_count, 10);
    cr_assert_eq(dr_failed, 0, "delivery failed: %s", rd_kafka_err2str(dr_last_err));
    cr_assert_eq((intptr_t)dr_last_opaque, 10, "the message's opaque comes back");
    rd_kafka_destroy(rk);
}

Test(kafka, full_queue_is_served_and_retried_until_it_has_room)
{
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *rk = mock_producer(
        "t", (const char *const[]){"kafka.queue.buffering.max.messages", "10", NULL}, NULL, &mc);
    char errstr[512] = "";
    /* never polled here: only dw_kafka_produce serves delivery reports */
    for (int i = 0; i < 200; i++)
        cr_assert_eq(produce_one(rk, "t", i, 10000, errstr, sizeof(errstr)), DW_OK,
                     "message %d: %s", i, errstr);
    cr_assert_geq(dr_count, 190, "a full queue was served by polling (%d reports)", dr_count);
    cr_assert_eq(dw_kafka_flush(rk, 10000, NULL, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_eq(dr_count, 200);
    cr_assert_eq(dr_failed, 0);
    rd_kafka_destroy(rk);
}

Test(kafka, full_queue_past_the_deadline_is_queue_full)
{
    rd_kafka_mock_cluster_t *mc;
    /* a long linger keeps the first ten messages queued */
    rd_kafka_t *rk = mock_producer("t",
                                   (const char *const[]){"kafka.queue.buffering.max.messages",
                                                         "10", "kafka.linger.ms", "2000", NULL},
                                   NULL, &mc);
    char errstr[512] = "";
    for (int i = 0; i < 10; i++)
        cr_assert_eq(produce_one(rk, "t", i, 0, errstr, sizeof(errstr)), DW_OK, "%s", errstr);

    cr_assert_eq(produce_one(rk, "t", 10, 0, errstr, sizeof(errstr)), DW_ERR_QUEUE_FULL);
    ASSERT_CONTAINS(errstr, "\"t\"");
    cr_assert(dw_err_is_retriable(DW_ERR_QUEUE_FULL));

    int64_t t0 = dw_time_mono_ms();
    cr_assert_eq(produce_one(rk, "t", 10, 300, errstr, sizeof(errstr)), DW_ERR_QUEUE_FULL);
    int64_t waited = dw_time_mono_ms() - t0;
    cr_assert_geq(waited, 300, "waited %lld ms", (long long)waited);
    cr_assert_lt(waited, 1500, "waited %lld ms", (long long)waited);
    ASSERT_CONTAINS(errstr, "300 ms");

    cr_assert_eq(dw_kafka_flush(rk, 10000, NULL, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_eq(dr_count, 10);
    cr_assert_eq(dr_failed, 0);
    rd_kafka_destroy(rk);
}

Test(kafka, flush_reports_what_remains)
{
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *rk = mock_producer("t", NULL, NULL, &mc);
    char errstr[512] = "";
    /* the broker does not answer for 2 s */
    rd_kafka_mock_broker_push_request_error_rtts(mc, 1, API_PRODUCE, 1,
                                                 RD_KAFKA_RESP_ERR_NO_ERROR, 2000);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(produce_one(rk, "t", i, 0, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    int remaining = 0;
    cr_assert_eq(dw_kafka_flush(rk, 200, &remaining, errstr, sizeof(errstr)), DW_ERR_TIMEOUT);
    cr_assert_geq(remaining, 3, "remaining %d", remaining);
    ASSERT_CONTAINS(errstr, "still queued after 200 ms");
    cr_assert_eq(dw_kafka_flush(rk, 10000, &remaining, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
    cr_assert_eq(remaining, 0);
    cr_assert_eq(dr_count, 3);
    cr_assert_eq(dr_failed, 0);
    rd_kafka_destroy(rk);
}

Test(kafka, retriable_produce_errors_are_retried_until_delivered)
{
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *rk = mock_producer("t", NULL, NULL, &mc);
    char errstr[512] = "";
    /* let the producer learn the topic first, so the errors hit the produce requests */
    cr_assert_eq(produce_one(rk, "t", 0, 1000, errstr, sizeof(errstr)), DW_OK);
    cr_assert_eq(dw_kafka_flush(rk, 10000, NULL, errstr, sizeof(errstr)), DW_OK, "%s", errstr);

    rd_kafka_mock_push_request_errors(mc, API_PRODUCE, 3, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                      RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
                                      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND);
    cr_assert_eq(produce_one(rk, "t", 1, 1000, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_eq(dw_kafka_flush(rk, 20000, NULL, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_eq(dr_count, 2);
    cr_assert_eq(dr_failed, 0, "delivery failed: %s", rd_kafka_err2str(dr_last_err));

    /* and the errors were really injected: a permanent one fails the delivery */
    rd_kafka_mock_push_request_errors(mc, API_PRODUCE, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    cr_assert_eq(produce_one(rk, "t", 2, 1000, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_eq(dw_kafka_flush(rk, 20000, NULL, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_eq(dr_count, 3);
    cr_assert_eq(dr_failed, 1);
    cr_assert_eq(dr_last_err, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    cr_assert_eq(dw_kafka_err_map(dr_last_err), DW_ERR_KAFKA);
    rd_kafka_destroy(rk);
}

static int stats_calls;

static int count_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (json_len > 0 && strstr(json, "\"type\": \"producer\""))
        stats_calls++;
    return 0;
}

Test(kafka, statistics_are_delivered_when_asked_for)
{
    dw_conf_t *conf = conf_with((const char *const[]){"kafka.test.mock.num.brokers", "1", NULL});
    dw_kafka_producer_opts_t opts;
    dw_kafka_producer_opts_init(&opts);
    opts.stats_cb = count_stats;
    opts.stats_interval_ms = 100;
    char errstr[512] = "";
    rd_kafka_t *rk = dw_kafka_producer_new(conf, &opts, errstr, sizeof(errstr));
    cr_assert_not_null(rk, "%s", errstr);
    for (int i = 0; i < 50 && stats_calls == 0; i++)
        rd_kafka_poll(rk, 100);
    cr_assert_gt(stats_calls, 0);
    rd_kafka_destroy(rk);
    dw_conf_destroy(conf);
}

Test(kafka, unreachable_cluster_is_reported_through_the_log)
{
    FILE *logf = tmpfile();
    cr_assert_not_null(logf);
    dw_log_set_output(logf);
    dw_conf_t *conf = conf_with((const char *const[]){"kafka.bootstrap.servers", "127.0.0.1:1",
                                                      NULL});
    char errstr[512] = "";
    rd_kafka_t *rk = dw_kafka_admin_new(conf, errstr, sizeof(errstr));
    cr_assert_not_null(rk, "%s", errstr);
    int64_t t0 = dw_time_mono_ms();
    cr_assert_eq(dw_kafka_wait_ready(rk, 700, errstr, sizeof(errstr)), DW_ERR_UNAVAILABLE);
    cr_assert_lt(dw_time_mono_ms() - t0, 3000, "bounded");
    ASSERT_CONTAINS(errstr, "127.0.0.1:1");
    ASSERT_CONTAINS(errstr, "did not answer within 700 ms");
    cr_assert(dw_err_is_retriable(DW_ERR_UNAVAILABLE));
    rd_kafka_poll(rk, 100); /* serve the error callback */
    rd_kafka_destroy(rk);
    dw_log_set_output(NULL);
    dw_conf_destroy(conf);

    fflush(logf);
    rewind(logf);
    char text[8192] = "";
    size_t n = fread(text, 1, sizeof(text) - 1, logf);
    text[n] = '\0';
    fclose(logf);
    ASSERT_CONTAINS(text, "_ALL_BROKERS_DOWN"); /* the error callback */
    ASSERT_CONTAINS(text, "kafka.FAIL");        /* the log callback's facility */
}

/* ---------------------------------------------------------------- mock transactions */

Test(kafka, failed_transaction_asks_for_abort_then_succeeds)
{
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *rk = mock_producer("t", NULL, "txn-abort", &mc);
    char errstr[512] = "";
    dw_kafka_txn_action_t act = DW_KAFKA_TXN_FATAL;
    cr_assert_eq(dw_kafka_txn_init(rk, 10000, &act, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
    cr_assert_eq(act, DW_KAFKA_TXN_OK);

    cr_assert_eq(dw_kafka_txn_begin(rk, &act, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    /* a permanent per-message error (an authorization error would poison the topic) */
    rd_kafka_mock_push_request_errors(mc, API_PRODUCE, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    cr_assert_eq(produce_one(rk, "t", 0, 1000, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    dw_err_t err = dw_kafka_txn_commit(rk, 10000, &act, errstr, sizeof(errstr));
    cr_assert_eq(act, DW_KAFKA_TXN_ABORT, "action %s: %s", dw_kafka_txn_action_name(act), errstr);
    cr_assert(dw_err_is_retriable(err), "%s", dw_err_name(err));
    ASSERT_CONTAINS(errstr, "could not commit transaction");

    /* the worker's loop: abort, redo, until committed. librdkafka 2.0.2 against the mock needs
     * a second round: the redo fails with OUT_OF_ORDER_SEQUENCE_NUMBER ("requires epoch bump"),
     * itself abortable, and the abort bumps the epoch. */
    int rounds = 0;
    while (act != DW_KAFKA_TXN_OK) {
        cr_assert_eq(act, DW_KAFKA_TXN_ABORT, "action %s: %s", dw_kafka_txn_action_name(act),
                     errstr);
        cr_assert_lt(++rounds, 4, "still failing after %d rounds: %s", rounds, errstr);
        cr_assert_eq(dw_kafka_txn_abort(rk, 10000, &act, errstr, sizeof(errstr)), DW_OK, "%s",
                     errstr);
        cr_assert_eq(dw_kafka_txn_begin(rk, &act, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
        cr_assert_eq(produce_one(rk, "t", rounds, 1000, errstr, sizeof(errstr)), DW_OK, "%s",
                     errstr);
        dw_kafka_txn_commit(rk, 10000, &act, errstr, sizeof(errstr));
    }
    cr_log_info("committed after %d abort(s)", rounds);
    rd_kafka_poll(rk, 0);
    cr_assert_eq(dr_count - dr_failed, 1, "one message delivered (%d reports)", dr_count);
    rd_kafka_destroy(rk);
}

Test(kafka, fenced_transactional_producer_is_fatal_and_fenced)
{
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *rk = mock_producer("t", NULL, "txn-fenced", &mc);
    char errstr[512] = "";
    dw_kafka_txn_action_t act = DW_KAFKA_TXN_OK;
    cr_assert_eq(dw_kafka_txn_init(rk, 10000, &act, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
    cr_assert_eq(dw_kafka_txn_begin(rk, &act, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    rd_kafka_mock_push_request_errors(mc, API_ADD_PARTITIONS_TO_TXN, 1,
                                      RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
    produce_one(rk, "t", 0, 1000, errstr, sizeof(errstr));
    dw_err_t err = dw_kafka_txn_commit(rk, 10000, &act, errstr, sizeof(errstr));
    cr_assert_eq(act, DW_KAFKA_TXN_FATAL, "action %s: %s", dw_kafka_txn_action_name(act), errstr);
    cr_assert_eq(err, DW_ERR_FENCED, "%s: %s", dw_err_name(err), errstr);
    ASSERT_CONTAINS(errstr, "fatal error");

    /* the handle is done: produce says so, with the cause */
    err = produce_one(rk, "t", 1, 0, errstr, sizeof(errstr));
    cr_assert_eq(err, DW_ERR_FENCED, "%s: %s", dw_err_name(err), errstr);
    rd_kafka_destroy(rk);
}

/* ---------------------------------------------------------------- mock consume */

Test(kafka, consumer_reads_back_key_value_and_headers)
{
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *prod = mock_producer("t", NULL, NULL, &mc);
    char errstr[512] = "";
    cr_assert_eq(produce_one(prod, "t", 41, 1000, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_eq(dw_kafka_flush(prod, 10000, NULL, errstr, sizeof(errstr)), DW_OK, "%s", errstr);

    dw_conf_t *conf = conf_with((const char *const[]){
        "kafka.bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), NULL});
    dw_kafka_consumer_opts_t opts;
    dw_kafka_consumer_opts_init(&opts);
    opts.group_id = "g-unit";
    rd_kafka_t *cons = dw_kafka_consumer_new(conf, &opts, errstr, sizeof(errstr));
    cr_assert_not_null(cons, "%s", errstr);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, "t", RD_KAFKA_PARTITION_UA);
    cr_assert_eq(rd_kafka_subscribe(cons, topics), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(topics);

    bool got = false;
    int64_t deadline = dw_time_mono_ms() + 20000;
    while (!got && dw_time_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 200);
        if (!m)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        cr_assert_eq(m->key_len, strlen("key-41"));
        cr_assert(memcmp(m->key, "key-41", m->key_len) == 0);
        cr_assert_eq(m->len, strlen("{\"n\":41}"));
        cr_assert(memcmp(m->payload, "{\"n\":41}", m->len) == 0);
        rd_kafka_headers_t *hdrs = NULL;
        cr_assert_eq(rd_kafka_message_headers(m, &hdrs), RD_KAFKA_RESP_ERR_NO_ERROR);
        char buf[64];
        cr_assert_eq(dw_kafka_header_get(hdrs, DW_KAFKA_HDR_CORRELATION_ID, buf, sizeof(buf)),
                     DW_OK);
        cr_assert_str_eq(buf, "c-1");
        got = true;
        rd_kafka_message_destroy(m);
    }
    cr_assert(got, "no message within 20 s");
    dw_kafka_consumer_destroy(cons);
    dw_conf_destroy(conf);
    rd_kafka_destroy(prod);
}
