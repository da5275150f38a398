/*
 * dw_testkafka: a test reader of one topic's records (see dw_testkafka.h).
 */
#include "dw_testkafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dw_kafka.h"
#include "dw_testutil.h"

int dw_testkafka_open(dw_testkafka_t *rs, const char *topic, bool from_end, char *errstr,
                      size_t errstr_size)
{
    memset(rs, 0, sizeof(*rs));
    snprintf(rs->topic, sizeof(rs->topic), "%s", topic);
    const char *bootstrap = getenv("DW_KAFKA_BOOTSTRAP");
    if (!bootstrap) {
        snprintf(errstr, errstr_size, "DW_KAFKA_BOOTSTRAP is not set (scripts/services.sh env)");
        return -1;
    }
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, NULL, 0);
    rd_kafka_conf_set(c, "group.id", dw_test_unique("dwtest"), NULL, 0);
    rd_kafka_conf_set(c, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(c, "auto.offset.reset", "earliest", NULL, 0);
    rd_kafka_conf_set(c, "topic.metadata.refresh.interval.ms", "500", NULL, 0);
    if (!(rs->rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, errstr_size))) {
        rd_kafka_conf_destroy(c);
        return -1;
    }
    rd_kafka_poll_set_consumer(rs->rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, rs->topic, 0)->offset =
        from_end ? RD_KAFKA_OFFSET_END : RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t err = rd_kafka_assign(rs->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        snprintf(errstr, errstr_size, "assign %s: %s", topic, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

static void rec_add(dw_testkafka_t *rs, const rd_kafka_message_t *m)
{
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 64;
        dw_testkafka_rec_t *nr = realloc(rs->r, cap * sizeof(*nr));
        if (!nr)
            return;
        rs->r = nr;
        rs->cap = cap;
    }
    dw_testkafka_rec_t *r = &rs->r[rs->n++];
    r->key = strndup(m->key ? (const char *)m->key : "", m->key_len);
    r->ev = json_loadb(m->payload, m->len, 0, NULL);
    r->raw = strndup(m->payload ? (const char *)m->payload : "", m->len);
    r->op_hdr[0] = '\0';
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
        dw_kafka_header_get(h, DW_KAFKA_HDR_OP, r->op_hdr, sizeof(r->op_hdr));
}

void dw_testkafka_read(dw_testkafka_t *rs, int timeout_ms, dw_testkafka_pred_fn *pred, void *arg)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (pred && pred(rs, arg))
            return;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > timeout_ms)
            return;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rs->rk, 200);
        if (!m)
            continue;
        if (!m->err)
            rec_add(rs, m);
        rd_kafka_message_destroy(m);
    }
}

bool dw_testkafka_have_count(dw_testkafka_t *rs, void *arg)
{
    return rs->n >= *(const size_t *)arg;
}

void dw_testkafka_delete_topics(const char *const *maps, const char *suffix,
                                const char *const *sources)
{
    char errstr[512], buf[32][256];
    const char *names[32];
    size_t n = 0;
    for (size_t i = 0; maps[i]; i++)
        for (size_t s = 0; sources[s] && n < 32; s++, n++) {
            snprintf(buf[n], sizeof(buf[n]), "dw.%s_%s.%s", maps[i], suffix, sources[s]);
            names[n] = buf[n];
        }
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", getenv("DW_KAFKA_BOOTSTRAP"), NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(c);
        return;
    }
    dw_kafka_topics_delete(rk, names, n, 10000, errstr, sizeof(errstr));
    rd_kafka_destroy(rk);
}

void dw_testkafka_close(dw_testkafka_t *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->r[i].key);
        free(rs->r[i].raw);
        json_decref(rs->r[i].ev);
    }
    free(rs->r);
    if (rs->rk) {
        rd_kafka_consumer_close(rs->rk);
        rd_kafka_destroy(rs->rk);
    }
    memset(rs, 0, sizeof(*rs));
}

int dw_testkafka_clients(dw_conf_t **conf, rd_kafka_t **admin, rd_kafka_t **producer, char *errstr,
                         size_t errstr_size)
{
    static const dw_conf_def_t *const tables[] = {dw_conf_common_defs, NULL};
    const char *bootstrap = getenv("DW_KAFKA_BOOTSTRAP");
    *conf = NULL;
    if (admin)
        *admin = NULL;
    if (producer)
        *producer = NULL;
    if (!bootstrap || !*bootstrap || !getenv("DW_PG_DSN")) {
        snprintf(
            errstr, errstr_size,
            "DW_KAFKA_BOOTSTRAP and DW_PG_DSN must be set (eval \"$(scripts/services.sh env)\")");
        return -1;
    }
    *conf = dw_conf_new(tables, NULL, errstr, errstr_size);
    if (!*conf)
        return -1;
    if (dw_conf_set(*conf, "kafka.bootstrap.servers", bootstrap, DW_CONF_SRC_ENV,
                    "DW_KAFKA_BOOTSTRAP", errstr, errstr_size) != DW_OK)
        goto fail;
    if (admin && !(*admin = dw_kafka_admin_new(*conf, errstr, errstr_size)))
        goto fail;
    if (producer) {
        dw_kafka_producer_opts_t popts;
        dw_kafka_producer_opts_init(&popts);
        if (!(*producer = dw_kafka_producer_new(*conf, &popts, errstr, errstr_size)))
            goto fail;
    }
    return 0;
fail:
    if (admin && *admin) {
        rd_kafka_destroy(*admin);
        *admin = NULL;
    }
    dw_conf_destroy(*conf);
    *conf = NULL;
    return -1;
}
