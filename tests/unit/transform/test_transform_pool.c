/*
 * Unit tests for dw-transform's mapping queue (transform_pool.c): the outcomes come out in the
 * order the messages went in whatever thread mapped them, with and without mapping threads; the
 * ring wraps around; clearing it while threads are mapping lets go of every message. Real
 * consumer messages come from librdkafka's built-in mock cluster (no broker needed).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "transform.h"

#define MAPS     DW_SOURCE_DIR "/schemas/maps"
#define METADATA DW_SOURCE_DIR "/schemas/metadata"
#define TOPIC    "dw.customers_accounts.fo"
#define N        600

static dw_mapset_t *set;
static rd_kafka_t *producer, *consumer;
static rd_kafka_message_t *msgs[N];

/* Event i: a valid upsert of account US-<i>, or (every seventh) a value that is no JSON. */
static int event(char *buf, size_t size, int i)
{
    if (i % 7 == 3)
        return snprintf(buf, size, "not json %d", i);
    return snprintf(
        buf, size,
        "{\"version\":1,\"event_id\":\"0b6f4b4e-7c1d-4c52-9d55-%012d\",\"map\":"
        "\"customers_accounts\",\"source\":\"fo\",\"op\":\"upsert\",\"key\":{\"dataAreaId\":"
        "\"USMF\",\"CustomerAccount\":\"US-%d\"},\"data\":{\"dataAreaId\":\"USMF\","
        "\"CustomerAccount\":\"US-%d\",\"PartyType\":\"Organization\",\"OrganizationName\":\"C\","
        "\"OnHoldStatus\":\"No\"},\"source_version\":\"5\",\"source_ts\":\"2024-03-01T10:00:00Z\","
        "\"capture_ts\":\"2024-03-01T10:00:00.125Z\",\"correlation_id\":\"corr\"}",
        i, i, i);
}

/* N messages of TOPIC consumed from a mock cluster into msgs[]. */
static void consume_all(void)
{
    char errstr[512], buf[2048];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(c, "test.mock.num.brokers", "1", errstr, sizeof(errstr)),
                 RD_KAFKA_CONF_OK, "%s", errstr);
    rd_kafka_conf_set(c, "log_level", "3", NULL, 0);
    producer = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
    cr_assert_not_null(producer, "%s", errstr);
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(producer);
    cr_assert_eq(rd_kafka_mock_topic_create(mc, TOPIC, 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int i = 0; i < N; i++) {
        int len = event(buf, sizeof(buf), i);
        cr_assert_eq(rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(TOPIC),
                                       RD_KAFKA_V_VALUE(buf, (size_t)len),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    cr_assert_eq(rd_kafka_flush(producer, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);

    c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), NULL, 0);
    rd_kafka_conf_set(c, "group.id", "test-transform-pool", NULL, 0);
    rd_kafka_conf_set(c, "log_level", "3", NULL, 0);
    consumer = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    cr_assert_not_null(consumer, "%s", errstr);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    cr_assert_eq(rd_kafka_assign(consumer, l), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
    int got = 0;
    for (int empty = 0; got < N && empty < 200;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
        if (!m) {
            empty++;
            continue;
        }
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        msgs[got++] = m;
    }
    cr_assert_eq(got, N, "consumed %d of %d", got, N);
}

static void setup(void)
{
    char errstr[1024];
    set = dw_mapset_load(MAPS, METADATA, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(set, "%s", errstr);
    consume_all();
}

static void teardown(void)
{
    for (int i = 0; i < N; i++)
        if (msgs[i])
            rd_kafka_message_destroy(msgs[i]);
    if (consumer) {
        rd_kafka_consumer_close(consumer);
        rd_kafka_destroy(consumer);
    }
    if (producer)
        rd_kafka_destroy(producer);
    dw_mapset_destroy(set);
}

TestSuite(transform_pool, .init = setup, .fini = teardown, .timeout = 60);

/* The outcome of item it is the one of message i (its account, or poison). */
static void assert_outcome_of(const tx_item_t *it, int i)
{
    cr_assert_eq(it->msg->offset, i, "item of offset %lld where %d was due",
                 (long long)it->msg->offset, i);
    cr_assert_eq(it->err, DW_OK);
    if (i % 7 == 3) {
        cr_assert_eq(it->out.kind, TX_OUT_DLQ, "message %d", i);
        return;
    }
    cr_assert_eq(it->out.kind, TX_OUT_COMMAND, "message %d: %s", i, it->out.message);
    char key[64];
    snprintf(key, sizeof(key), "[\"usmf\",\"us-%d\"]", i);
    cr_assert_str_eq(it->out.key, key);
}

/* Push the messages in turns of `turn`, take what is mapped in order, pop it; every message goes
 * through a ring of capacity cap. */
static void run_through(int nthreads, size_t cap, int turn)
{
    tx_pool_t *pool = tx_pool_new(nthreads, cap, 1 << 20);
    cr_assert_not_null(pool);
    tx_pool_set_maps(pool, set);
    int pushed = 0, taken = 0;
    while (taken < N) {
        size_t room = tx_pool_room(pool);
        int n = N - pushed < turn ? N - pushed : turn;
        if ((size_t)n > room)
            n = (int)room;
        if (n > 0) {
            tx_pool_push(pool, &msgs[pushed], (size_t)n, 0);
            for (int i = pushed; i < pushed + n; i++)
                cr_assert_null(msgs[i], "the pool takes the message");
            pushed += n;
        }
        cr_assert_eq(tx_pool_count(pool), (size_t)(pushed - taken));
        size_t k = tx_pool_ready(pool);
        if (k == 0) {
            if (!(nthreads == 0 && tx_pool_help(pool)))
                tx_pool_wait_head(pool, 50);
            continue;
        }
        for (size_t j = 0; j < k; j++)
            assert_outcome_of(tx_pool_item(pool, j), taken + (int)j);
        tx_pool_pop(pool, k);
        taken += (int)k;
    }
    cr_assert_eq(tx_pool_count(pool), 0);
    tx_pool_destroy(pool);
}

Test(transform_pool, outcomes_come_out_in_push_order_from_several_threads)
{
    run_through(3, 64, 50); /* the ring wraps around many times */
}

Test(transform_pool, without_threads_the_caller_maps_in_order)
{
    run_through(0, 100, 30);
    tx_pool_t *pool = tx_pool_new(0, 4, 1 << 20);
    cr_assert_not_null(pool);
    cr_assert_not(tx_pool_help(pool), "nothing to map");
    cr_assert_not(tx_pool_wait_head(pool, 10), "nothing to wait for");
    tx_pool_destroy(pool);
}

Test(transform_pool, clearing_while_threads_map_lets_go_of_every_message)
{
    tx_pool_t *pool = tx_pool_new(2, N, 1 << 20);
    cr_assert_not_null(pool);
    tx_pool_set_maps(pool, set);
    tx_pool_push(pool, msgs, N, 0);
    cr_assert_eq(tx_pool_count(pool), N);
    cr_assert_eq(tx_pool_room(pool), 0);
    tx_pool_clear(pool); /* some mapped, some being mapped, some never claimed */
    cr_assert_eq(tx_pool_count(pool), 0);
    cr_assert_eq(tx_pool_ready(pool), 0);
    cr_assert_eq(tx_pool_room(pool), N);
    cr_assert_not(tx_pool_help(pool));
    tx_pool_destroy(pool);
    /* the messages were destroyed by the pool (ASan reports a leak or a double free otherwise) */
}
