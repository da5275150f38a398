/*
 * capture: the shared state of dw-capture: configuration, the idempotent producer, PostgreSQL,
 * the maps, delivery tracking (an ack group per unit of work whose position may move only once
 * every record in it is acknowledged) and the checkpoint store (envelopes: common/dw_event).
 * capture_dv.c pulls Dataverse change tracking; capture_fo.c receives F&O data events.
 */
#ifndef DW_CAPTURE_H
#define DW_CAPTURE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "dw_config.h"
#include "dw_err.h"
#include "dw_event.h"
#include "dw_kafka.h"
#include "dw_map.h"
#include "dw_pg.h"

#define CAPTURE_FAC "capture"
#define CAPTURE_DLQ_MAP "_capture"

/* What every capture mode shares. Fields are set up by main.c. */
typedef struct capture_s {
    const dw_conf_t *conf;  /* borrowed */
    rd_kafka_t *rk;         /* the idempotent producer (owned by main) */
    dw_pg_t *pg;            /* dv mode only (owned by main); NULL in fo mode */
    dw_mapset_t *maps;      /* owned by main */
    const dw_map_t **active; /* the maps this instance captures (borrowed from maps) */
    size_t nactive;
    const char *component;  /* checkpoint component name */
    char dlq_topic[DW_KAFKA_TOPIC_MAX + 1];
    /* counters (read by tests through the log and by a future /metrics) */
    atomic_ulong produced, acked, delivery_failed, dlq, malformed, requests;
} capture_t;

/* ---- delivery tracking ------------------------------------------------------------------ */

/* An ack group: the messages of one unit of work (one Dataverse page, one F&O event request).
 * Each produced message holds the group as its msg_opaque; the delivery report callback
 * (capture_dr_cb) counts it down. Thread-safe. */
typedef struct capture_ack_s {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int pending;
    int failed;
    dw_err_t err; /* the first failure */
    char errstr[256];
} capture_ack_t;

void capture_ack_init(capture_ack_t *ack);
void capture_ack_destroy(capture_ack_t *ack);
/* Reset counts (no message of the group may be in flight). */
void capture_ack_reset(capture_ack_t *ack);
int capture_ack_pending(capture_ack_t *ack);
/* Wait until nothing is pending or timeout_ms passed (someone else must serve delivery reports).
 * DW_OK when all delivered, the first delivery error when one failed, DW_ERR_TIMEOUT. */
dw_err_t capture_ack_wait(capture_ack_t *ack, int timeout_ms);

/* The producer's delivery report callback (set in main.c). */
void capture_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

/* Produce value to topic with key and the design's headers, counted in ack (which must outlive
 * the delivery report). block_ms: how long to wait on a full queue. */
dw_err_t capture_produce(capture_t *cap, capture_ack_t *ack, const char *topic, const char *key,
                         size_t key_len, const char *value, size_t value_len, const char *map,
                         const char *source, const char *op, const char *correlation_id,
                         rd_kafka_headers_t *extra, int block_ms, char *errstr,
                         size_t errstr_size);

/* The event envelope, its id and timestamps: common/dw_event (dw_event_build, ...). */

/* ---- topics ------------------------------------------------------------------------------- */

/* Create the capture topics of the active maps (kind fo or dv) and dw._capture.dlq with the
 * configured partitions and retention. An unreachable cluster is a warning (capture still
 * starts, and refuses or retries until Kafka is back). */
void capture_topics_create(capture_t *cap, dw_kafka_topic_kind_t kind);

/* ---- checkpoints and record ids (dv) ------------------------------------------------------ */

/* The stored position of (component, map, source) into *position (new string, NULL when none). */
dw_err_t capture_checkpoint_get(capture_t *cap, const char *map, const char *source,
                                char **position, char *errstr, size_t errstr_size);
/* In one transaction: the Dataverse row ids seen (ids: JSON array of {"id","ck","key"}; may be
 * NULL or empty) into dw_record_ids, then the position (NULL: none) into dw_checkpoint. */
dw_err_t capture_checkpoint_put(capture_t *cap, const char *map, const char *source,
                                const char *position, const json_t *ids, char *errstr,
                                size_t errstr_size);
/* The canonical key and source key of a Dataverse row id from dw_record_ids: *ck new string and
 * *key new object, or DW_ERR_NOT_FOUND. */
dw_err_t capture_record_id_get(capture_t *cap, const char *map, const char *record_id, char **ck,
                               json_t **key, char *errstr, size_t errstr_size);

/* ---- modes -------------------------------------------------------------------------------- */

/* Run until a stop is requested. Exit code (DW_EXIT_*). */
int capture_dv_run(capture_t *cap);
int capture_fo_run(capture_t *cap);

#endif
