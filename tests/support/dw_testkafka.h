/*
 * dw_testkafka: read what a component produced to a topic, for the integration tests. A reader
 * assigns partition 0 of one topic (from the beginning or the end), and collects every record:
 * key, the value as text and parsed as JSON, and the dw.op header. Never depends on Criterion:
 * failures come back as -1 with a message in the caller's errstr.
 */
#ifndef DW_TESTKAFKA_H
#define DW_TESTKAFKA_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "dw_config.h"

typedef struct dw_testkafka_rec_s {
    char *key;       /* "" when the record has none */
    json_t *ev;      /* the value parsed, NULL when it is not JSON */
    char *raw;       /* the value as text */
    char op_hdr[16]; /* the dw.op header, "" when absent */
} dw_testkafka_rec_t;

typedef struct dw_testkafka_s {
    dw_testkafka_rec_t *r; /* the records read so far, in order */
    size_t n, cap;
    rd_kafka_t *rk;
    char topic[256];
} dw_testkafka_t;

/* Start reading topic (partition 0) at DW_KAFKA_BOOTSTRAP: from its beginning, or only what
 * arrives from now on when from_end. rs is overwritten. 0, or -1 with errstr filled. */
int dw_testkafka_open(dw_testkafka_t *rs, const char *topic, bool from_end, char *errstr,
                      size_t errstr_size);

/* Read records into rs until pred(rs, arg) holds (checked before each poll; NULL: never) or
 * timeout_ms passed. */
typedef bool(dw_testkafka_pred_fn)(dw_testkafka_t *rs, void *arg);
void dw_testkafka_read(dw_testkafka_t *rs, int timeout_ms, dw_testkafka_pred_fn *pred, void *arg);

/* A predicate for dw_testkafka_read: at least *(size_t *)arg records. */
bool dw_testkafka_have_count(dw_testkafka_t *rs, void *arg);

/* Delete the topics dw.<map>_<suffix>.<source> of every map in maps and every source in sources
 * (both NULL-terminated) at DW_KAFKA_BOOTSTRAP: the renamed maps' topics a test made. Best
 * effort: nothing is reported. */
void dw_testkafka_delete_topics(const char *const *maps, const char *suffix,
                                const char *const *sources);

/* The clients a test drives Kafka with, at DW_KAFKA_BOOTSTRAP: *conf (dw_conf_common_defs with
 * kafka.bootstrap.servers set), *admin and *producer (idempotent; either may be NULL when not
 * wanted). 0, or -1 with errstr filled (DW_KAFKA_BOOTSTRAP or DW_PG_DSN unset, a client that
 * cannot be made); nothing is left to free then. */
int dw_testkafka_clients(dw_conf_t **conf, rd_kafka_t **admin, rd_kafka_t **producer, char *errstr,
                         size_t errstr_size);

/* Close the consumer and free the records. */
void dw_testkafka_close(dw_testkafka_t *rs);

#endif
