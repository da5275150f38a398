/*
 * Integration tests of dw_kafka against the real broker that scripts/services.sh starts
 * (DW_KAFKA_BOOTSTRAP; the broker has auto.create.topics.enable=false): topics created
 * idempotently, described, listed and deleted; a keyed message with the design's headers
 * produced and consumed back through the helpers' clients; committed and aborted transactions
 * seen by read_committed and read_uncommitted consumers; offsets sent inside a transaction and a
 * consumer rewound to them.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "dw_config.h"
#include "dw_kafka.h"
#include "dw_log.h"
#include "dw_time.h"

#define ASSERT_CONTAINS(hay, needle)                                                               \
    cr_assert(strstr((hay), (needle)) != NULL, "expected \"%s\" in:\n%s", (needle), (hay))

#define TIMEOUT_MS 30000

static const dw_conf_def_t *const tables[] = {dw_conf_common_defs, NULL};

/* Per test (each runs in its own process): the configuration, an admin client, a unique map. */
static dw_conf_t *conf;
static rd_kafka_t *admin;
static char map[64];
static char topic[DW_KAFKA_TOPIC_MAX + 1];

static void setup(void)
{
    const char *bootstrap = getenv("DW_KAFKA_BOOTSTRAP");
    cr_assert(bootstrap && *bootstrap,
              "DW_KAFKA_BOOTSTRAP is not in the environment: after `scripts/services.sh up`, run "
              "`eval \"$(scripts/services.sh env)\"; export DW_KAFKA_BOOTSTRAP` (scripts/test.sh "
              "does) before the integration tests");
    char errstr[512] = "";
    conf = dw_conf_new(tables, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(conf, "%s", errstr);
    cr_assert_eq(dw_conf_set(conf, "kafka.bootstrap.servers", bootstrap, DW_CONF_SRC_ENV,
                             "DW_KAFKA_BOOTSTRAP", errstr, sizeof(errstr)),
                 DW_OK, "%s", errstr);
    admin = dw_kafka_admin_new(conf, errstr, sizeof(errstr));
    cr_assert_not_null(admin, "%s", errstr);
    cr_assert_eq(dw_kafka_wait_ready(admin, TIMEOUT_MS, errstr, sizeof(errstr)), DW_OK,
                 "the broker at %s does not answer: %s", bootstrap, errstr);
    snprintf(map, sizeof(map), "it_%ld_%ld", (long)getpid(), (long)time(NULL));
    cr_assert_eq(dw_kafka_topic_name(topic, sizeof(topic), map, DW_KAFKA_TOPIC_FO, errstr,
                                     sizeof(errstr)),
                 DW_OK, "%s", errstr);
}

static void teardown(void)
{
    if (admin) {
        /* every topic this test may have made; missing ones count as deleted */
        char names[DW_KAFKA_TOPIC__COUNT][DW_KAFKA_TOPIC_MAX + 1];
        const char *list[DW_KAFKA_TOPIC__COUNT];
        for (int k = 0; k < DW_KAFKA_TOPIC__COUNT; k++) {
            dw_kafka_topic_name(names[k], sizeof(names[k]), map, (dw_kafka_topic_kind_t)k, NULL,
                                0);
            list[k] = names[k];
        }
        char errstr[512] = "";
        if (dw_kafka_topics_delete(admin, list, DW_KAFKA_TOPIC__COUNT, TIMEOUT_MS, errstr,
                                   sizeof(errstr)) != DW_OK)
            cr_log_warn("cleanup: %s", errstr);
        rd_kafka_destroy(admin);
        admin = NULL;
    }
    dw_conf_destroy(conf);
    conf = NULL;
}

static void create_topic(const char *name, int partitions)
{
    static const char *const config[] = {"retention.ms", "3600000", NULL};
    dw_kafka_topic_spec_t spec = {name, partitions, 1, config, true, DW_ERR_INTERNAL};
    char errstr[512] = "";
    cr_assert_eq(dw_kafka_topics_create(admin, &spec, 1, TIMEOUT_MS, errstr, sizeof(errstr)),
                 DW_OK, "%s", errstr);
    cr_assert_eq(spec.err, DW_OK);
    cr_assert(!spec.existed, "topic %s existed before the test", name);
}

/* A consumer on conf plus extra kafka.* pairs. */
static rd_kafka_t *consumer(const char *group, const char *isolation, bool eof)
{
    char errstr[512] = "";
    if (eof)
        cr_assert_eq(dw_conf_set(conf, "kafka.enable.partition.eof", "true", DW_CONF_SRC_FLAG,
                                 "test", errstr, sizeof(errstr)),
                     DW_OK, "%s", errstr);
    dw_kafka_consumer_opts_t opts;
    dw_kafka_consumer_opts_init(&opts);
    opts.group_id = group;
    opts.isolation_level = isolation;
    rd_kafka_t *rk = dw_kafka_consumer_new(conf, &opts, errstr, sizeof(errstr));
    cr_assert_not_null(rk, "%s", errstr);
    return rk;
}

static void assign_from_start(rd_kafka_t *rk, const char *name)
{
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, name, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    cr_assert_eq(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
}

/* Consume values (as strings) until the partition's end; returns how many (at most max). */
static int consume_to_eof(rd_kafka_t *rk, char values[][32], int max, int64_t *offsets)
{
    int n = 0;
    int64_t deadline = dw_time_mono_ms() + TIMEOUT_MS;
    while (dw_time_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(m);
            return n;
        }
        cr_assert_eq(m->err, RD_KAFKA_RESP_ERR_NO_ERROR, "consume: %s",
                     rd_kafka_message_errstr(m));
        if (n < max) {
            snprintf(values[n], 32, "%.*s", (int)m->len, (const char *)m->payload);
            if (offsets)
                offsets[n] = m->offset;
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    cr_assert_fail("no end of partition within %d ms (%d messages)", TIMEOUT_MS, n);
    return n;
}

static void produce_value(rd_kafka_t *rk, const char *name, const char *value)
{
    dw_kafka_msg_t msg = DW_KAFKA_MSG_INIT;
    msg.topic = name;
    msg.partition = 0;
    msg.key = value;
    msg.key_len = strlen(value);
    msg.value = value;
    msg.value_len = strlen(value);
    char errstr[512] = "";
    cr_assert_eq(dw_kafka_produce(rk, &msg, NULL, 5000, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
}

TestSuite(kafka_it, .init = setup, .fini = teardown, .timeout = 240);

Test(kafka_it, topic_creation_is_idempotent_and_described)
{
    static const char *const config[] = {"retention.ms", "3600000", "cleanup.policy", "delete",
                                         NULL};
    dw_kafka_topic_spec_t spec = {topic, 3, 1, config, true, DW_ERR_INTERNAL};
    char errstr[512] = "";
    cr_assert_eq(dw_kafka_topics_create(admin, &spec, 1, TIMEOUT_MS, errstr, sizeof(errstr)),
                 DW_OK, "%s", errstr);
    cr_assert(!spec.existed);
    cr_assert_eq(spec.err, DW_OK);

    int partitions = 0;
    cr_assert_eq(dw_kafka_topic_partitions(admin, topic, TIMEOUT_MS, &partitions, errstr,
                                           sizeof(errstr)),
                 DW_OK, "%s", errstr);
    cr_assert_eq(partitions, 3);

    /* again, with the DLQ beside it: success, the first reported as already there */
    char dlq[DW_KAFKA_TOPIC_MAX + 1];
    cr_assert_eq(dw_kafka_topic_name(dlq, sizeof(dlq), map, DW_KAFKA_TOPIC_DLQ, NULL, 0), DW_OK);
    dw_kafka_topic_spec_t specs[2] = {{topic, 3, 1, config, false, DW_ERR_INTERNAL},
                                      {dlq, 1, -1, NULL, true, DW_ERR_INTERNAL}};
    cr_assert_eq(dw_kafka_topics_create(admin, specs, 2, TIMEOUT_MS, errstr, sizeof(errstr)),
                 DW_OK, "%s", errstr);
    cr_assert(specs[0].existed, "the second create reports the topic as existing");
    cr_assert_eq(specs[0].err, DW_OK);
    cr_assert(!specs[1].existed);
    cr_assert_eq(specs[1].err, DW_OK);

    char prefix[80];
    snprintf(prefix, sizeof(prefix), "dw.%s.", map);
    char **names = NULL;
    size_t count = 0;
    cr_assert_eq(dw_kafka_topics_list(admin, prefix, TIMEOUT_MS, &names, &count, errstr,
                                      sizeof(errstr)),
                 DW_OK, "%s", errstr);
    cr_assert_eq(count, 2);
    cr_assert_str_eq(names[0], dlq, "sorted");
    cr_assert_str_eq(names[1], topic);
    dw_kafka_topics_free(names, count);

    const char *both[] = {topic, dlq};
    cr_assert_eq(dw_kafka_topics_delete(admin, both, 2, TIMEOUT_MS, errstr, sizeof(errstr)),
                 DW_OK, "%s", errstr);
    cr_assert_eq(dw_kafka_topic_partitions(admin, topic, TIMEOUT_MS, &partitions, errstr,
                                           sizeof(errstr)),
                 DW_ERR_NOT_FOUND);
    ASSERT_CONTAINS(errstr, topic);
    cr_assert_eq(dw_kafka_topics_delete(admin, both, 2, TIMEOUT_MS, errstr, sizeof(errstr)),
                 DW_OK, "deleting a missing topic is not an error: %s", errstr);
}

Test(kafka_it, bad_topic_specs_fail_naming_the_topic)
{
    static const char *const bad_config[] = {"retention.ms", "forever", NULL};
    dw_kafka_topic_spec_t spec = {topic, 1, 1, bad_config, false, DW_OK};
    char errstr[512] = "";
    dw_err_t err = dw_kafka_topics_create(admin, &spec, 1, TIMEOUT_MS, errstr, sizeof(errstr));
    cr_assert_eq(err, DW_ERR_INVALID_ARG, "%s: %s", dw_err_name(err), errstr);
    cr_assert_eq(spec.err, DW_ERR_INVALID_ARG);
    ASSERT_CONTAINS(errstr, "could not create topic");
    ASSERT_CONTAINS(errstr, topic);

    /* a replication factor the single broker cannot give */
    dw_kafka_topic_spec_t rf = {topic, 1, 3, NULL, false, DW_OK};
    err = dw_kafka_topics_create(admin, &rf, 1, TIMEOUT_MS, errstr, sizeof(errstr));
    cr_assert_eq(err, DW_ERR_INVALID_ARG, "%s: %s", dw_err_name(err), errstr);
    ASSERT_CONTAINS(errstr, topic);
    cr_log_info("broker says: %s", errstr);

    int partitions;
    cr_assert_eq(dw_kafka_topic_partitions(admin, topic, TIMEOUT_MS, &partitions, errstr,
                                           sizeof(errstr)),
                 DW_ERR_NOT_FOUND, "nothing was created");
}

Test(kafka_it, keyed_message_with_headers_round_trips)
{
    create_topic(topic, 3);
    char errstr[512] = "";
    rd_kafka_t *prod = dw_kafka_producer_new(conf, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(prod, "%s", errstr);

    static const char key[] = "{\"accountnumber\":\"ACC-001\"}";
    static const char value[] = "{\"v\":1,\"op\":\"upsert\",\"data\":{\"name\":\"Contoso\"}}";
    dw_kafka_msg_t msg = DW_KAFKA_MSG_INIT;
    msg.topic = topic;
    msg.key = key;
    msg.key_len = strlen(key);
    msg.value = value;
    msg.value_len = strlen(value);
    rd_kafka_headers_t *hdrs = dw_kafka_headers_dw(map, "fo", "upsert", "corr-42");
    cr_assert_eq(dw_kafka_produce(prod, &msg, hdrs, 5000, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
    hdrs = NULL; /* taken */
    int remaining = -1;
    cr_assert_eq(dw_kafka_flush(prod, TIMEOUT_MS, &remaining, errstr, sizeof(errstr)), DW_OK,
                 "%s", errstr);
    cr_assert_eq(remaining, 0);
    rd_kafka_destroy(prod);

    char group[96];
    snprintf(group, sizeof(group), "dw-it-%s", map);
    rd_kafka_t *cons = consumer(group, NULL, false);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    cr_assert_eq(rd_kafka_subscribe(cons, sub), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(sub);

    rd_kafka_message_t *m = NULL;
    int64_t deadline = dw_time_mono_ms() + TIMEOUT_MS;
    while (!m && dw_time_mono_ms() < deadline) {
        m = rd_kafka_consumer_poll(cons, 200);
        if (m && m->err) {
            cr_log_warn("consume: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            m = NULL;
        }
    }
    cr_assert_not_null(m, "nothing consumed within %d ms", TIMEOUT_MS);
    cr_assert_eq(m->key_len, strlen(key));
    cr_assert(memcmp(m->key, key, m->key_len) == 0);
    cr_assert_eq(m->len, strlen(value));
    cr_assert(memcmp(m->payload, value, m->len) == 0);
    rd_kafka_headers_t *got = NULL;
    cr_assert_eq(rd_kafka_message_headers(m, &got), RD_KAFKA_RESP_ERR_NO_ERROR);
    cr_assert_eq(rd_kafka_header_cnt(got), 4);
    static const char *const want[][2] = {{DW_KAFKA_HDR_MAP, NULL},
                                          {DW_KAFKA_HDR_SOURCE, "fo"},
                                          {DW_KAFKA_HDR_OP, "upsert"},
                                          {DW_KAFKA_HDR_CORRELATION_ID, "corr-42"}};
    for (size_t i = 0; i < 4; i++) {
        char buf[128];
        cr_assert_eq(dw_kafka_header_get(got, want[i][0], buf, sizeof(buf)), DW_OK, "%s",
                     want[i][0]);
        cr_assert_str_eq(buf, want[i][1] ? want[i][1] : map);
    }
    rd_kafka_message_destroy(m);
    dw_kafka_consumer_destroy(cons);
}

Test(kafka_it, read_committed_sees_only_committed_transactions)
{
    create_topic(topic, 1);
    char errstr[512] = "";
    char txnid[96];
    snprintf(txnid, sizeof(txnid), "dw-it-txn-%s", map);
    dw_kafka_producer_opts_t popts;
    dw_kafka_producer_opts_init(&popts);
    popts.transactional_id = txnid;
    rd_kafka_t *prod = dw_kafka_producer_new(conf, &popts, errstr, sizeof(errstr));
    cr_assert_not_null(prod, "%s", errstr);
    dw_kafka_txn_action_t act;
    cr_assert_eq(dw_kafka_txn_init(prod, TIMEOUT_MS, &act, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);

    cr_assert_eq(dw_kafka_txn_begin(prod, &act, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    produce_value(prod, topic, "committed-1");
    produce_value(prod, topic, "committed-2");
    cr_assert_eq(dw_kafka_txn_commit(prod, TIMEOUT_MS, &act, errstr, sizeof(errstr)), DW_OK,
                 "%s", errstr);
    cr_assert_eq(act, DW_KAFKA_TXN_OK);

    cr_assert_eq(dw_kafka_txn_begin(prod, &act, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    produce_value(prod, topic, "aborted-1");
    produce_value(prod, topic, "aborted-2");
    cr_assert_eq(dw_kafka_flush(prod, TIMEOUT_MS, NULL, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
    cr_assert_eq(dw_kafka_txn_abort(prod, TIMEOUT_MS, &act, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
    rd_kafka_destroy(prod);

    char values[8][32];
    char group[96];
    snprintf(group, sizeof(group), "dw-it-rc-%s", map);
    rd_kafka_t *rc = consumer(group, NULL, true); /* dwfleet's default: read_committed */
    assign_from_start(rc, topic);
    int n = consume_to_eof(rc, values, 8, NULL);
    cr_assert_eq(n, 2, "read_committed saw %d messages", n);
    cr_assert_str_eq(values[0], "committed-1");
    cr_assert_str_eq(values[1], "committed-2");
    dw_kafka_consumer_destroy(rc);

    snprintf(group, sizeof(group), "dw-it-ru-%s", map);
    rd_kafka_t *ru = consumer(group, "read_uncommitted", true);
    assign_from_start(ru, topic);
    n = consume_to_eof(ru, values, 8, NULL);
    cr_assert_eq(n, 4, "read_uncommitted saw %d messages", n);
    cr_assert_str_eq(values[0], "committed-1");
    cr_assert_str_eq(values[1], "committed-2");
    cr_assert_str_eq(values[2], "aborted-1");
    cr_assert_str_eq(values[3], "aborted-2");
    dw_kafka_consumer_destroy(ru);
}

Test(kafka_it, offsets_sent_in_a_transaction_commit_with_it_and_rewind_returns_there)
{
    char out[DW_KAFKA_TOPIC_MAX + 1];
    cr_assert_eq(dw_kafka_topic_name(out, sizeof(out), map, DW_KAFKA_TOPIC_TO_DV, NULL, 0),
                 DW_OK);
    create_topic(topic, 1);
    create_topic(out, 1);
    char errstr[512] = "";

    rd_kafka_t *plain = dw_kafka_producer_new(conf, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(plain, "%s", errstr);
    produce_value(plain, topic, "in-0");
    produce_value(plain, topic, "in-1");
    produce_value(plain, topic, "in-2");
    cr_assert_eq(dw_kafka_flush(plain, TIMEOUT_MS, NULL, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
    rd_kafka_destroy(plain);

    char group[96];
    snprintf(group, sizeof(group), "dw-it-eos-%s", map);
    rd_kafka_t *cons = consumer(group, NULL, true);
    assign_from_start(cons, topic);
    char values[8][32];
    int64_t offsets[8];
    cr_assert_eq(consume_to_eof(cons, values, 8, offsets), 3);

    /* process the first two inside a transaction: output and input offsets commit together */
    char txnid[96];
    snprintf(txnid, sizeof(txnid), "dw-it-eos-%s", map);
    dw_kafka_producer_opts_t popts;
    dw_kafka_producer_opts_init(&popts);
    popts.transactional_id = txnid;
    rd_kafka_t *prod = dw_kafka_producer_new(conf, &popts, errstr, sizeof(errstr));
    cr_assert_not_null(prod, "%s", errstr);
    dw_kafka_txn_action_t act;
    cr_assert_eq(dw_kafka_txn_init(prod, TIMEOUT_MS, &act, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
    cr_assert_eq(dw_kafka_txn_begin(prod, &act, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    produce_value(prod, out, "out-0");
    produce_value(prod, out, "out-1");
    rd_kafka_topic_partition_list_t *next = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(next, topic, 0)->offset = offsets[1] + 1;
    cr_assert_eq(dw_kafka_txn_send_offsets(prod, cons, next, TIMEOUT_MS, &act, errstr,
                                           sizeof(errstr)),
                 DW_OK, "%s", errstr);
    rd_kafka_topic_partition_list_destroy(next);
    cr_assert_eq(dw_kafka_txn_commit(prod, TIMEOUT_MS, &act, errstr, sizeof(errstr)), DW_OK,
                 "%s", errstr);
    rd_kafka_destroy(prod);

    rd_kafka_topic_partition_list_t *committed = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(committed, topic, 0);
    cr_assert_eq(rd_kafka_committed(cons, committed, TIMEOUT_MS), RD_KAFKA_RESP_ERR_NO_ERROR);
    cr_assert_eq(committed->elems[0].offset, offsets[1] + 1, "committed %lld",
                 (long long)committed->elems[0].offset);
    rd_kafka_topic_partition_list_destroy(committed);

    /* after an abort the worker rewinds: the third input comes again */
    cr_assert_eq(dw_kafka_consumer_rewind(cons, TIMEOUT_MS, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
    int n = consume_to_eof(cons, values, 8, offsets);
    cr_assert_eq(n, 1, "after the rewind %d message(s)", n);
    cr_assert_str_eq(values[0], "in-2");
    cr_assert_eq(offsets[0], 2);
    dw_kafka_consumer_destroy(cons);
}
