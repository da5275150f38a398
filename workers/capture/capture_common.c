/*
 * capture_common: what both capture modes share: ack groups and the delivery report callback,
 * produce with the design's headers, topic creation, checkpoints and the
 * Dataverse row id table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "capture.h"
#include "dw_topics.h"
#include "dw_log.h"
#include "dw_mapper.h"
#include "dw_recordids.h"
#include "dw_time.h"

/* ---- ack groups ----------------------------------------------------------------------------- */

void capture_ack_init(capture_ack_t *ack)
{
    memset(ack, 0, sizeof(*ack));
    pthread_mutex_init(&ack->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ack->cond, &ca);
    pthread_condattr_destroy(&ca);
}

void capture_ack_destroy(capture_ack_t *ack)
{
    pthread_mutex_destroy(&ack->lock);
    pthread_cond_destroy(&ack->cond);
}

void capture_ack_reset(capture_ack_t *ack)
{
    pthread_mutex_lock(&ack->lock);
    ack->pending = 0;
    ack->failed = 0;
    ack->err = DW_OK;
    ack->errstr[0] = '\0';
    pthread_mutex_unlock(&ack->lock);
}

int capture_ack_pending(capture_ack_t *ack)
{
    pthread_mutex_lock(&ack->lock);
    int n = ack->pending;
    pthread_mutex_unlock(&ack->lock);
    return n;
}

dw_err_t capture_ack_wait(capture_ack_t *ack, int timeout_ms)
{
    struct timespec until = dw_time_deadline(CLOCK_MONOTONIC, timeout_ms);
    pthread_mutex_lock(&ack->lock);
    while (ack->pending > 0) {
        if (pthread_cond_timedwait(&ack->cond, &ack->lock, &until) != 0)
            break;
    }
    dw_err_t rc = ack->pending > 0 ? DW_ERR_TIMEOUT : ack->failed ? ack->err : DW_OK;
    pthread_mutex_unlock(&ack->lock);
    return rc;
}

void capture_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    capture_t *cap = opaque;
    capture_ack_t *ack = m->_private;
    if (m->err) {
        atomic_fetch_add(&cap->delivery_failed, 1);
        DW_WARN(CAPTURE_FAC, "delivery to %s failed: %s", rd_kafka_topic_name(m->rkt),
                rd_kafka_err2str(m->err));
    } else {
        atomic_fetch_add(&cap->acked, 1);
    }
    if (!ack)
        return;
    pthread_mutex_lock(&ack->lock);
    if (m->err && !ack->failed++) {
        ack->err = dw_kafka_err_map(m->err);
        if (!dw_err_is_retriable(ack->err) && ack->err != DW_ERR_NOT_FOUND)
            ack->err = DW_ERR_KAFKA;
        snprintf(ack->errstr, sizeof(ack->errstr), "%s", rd_kafka_err2str(m->err));
    }
    ack->pending--;
    if (ack->pending <= 0)
        pthread_cond_broadcast(&ack->cond);
    pthread_mutex_unlock(&ack->lock);
}

dw_err_t capture_produce(capture_t *cap, capture_ack_t *ack, const char *topic, const char *key,
                         size_t key_len, const char *value, size_t value_len, const char *map,
                         const char *source, const char *op, const char *correlation_id,
                         rd_kafka_headers_t *extra, int block_ms, char *errstr,
                         size_t errstr_size)
{
    rd_kafka_headers_t *hdrs = dw_kafka_headers_dw(map, source, op, correlation_id);
    if (!hdrs) {
        rd_kafka_headers_destroy(extra);
        return dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    }
    if (extra) {
        size_t idx = 0;
        const char *name;
        const void *val;
        size_t size;
        while (rd_kafka_header_get_all(extra, idx++, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR)
            rd_kafka_header_add(hdrs, name, -1, val, (ssize_t)size);
        rd_kafka_headers_destroy(extra);
    }
    dw_kafka_msg_t msg = DW_KAFKA_MSG_INIT;
    msg.topic = topic;
    msg.key = key;
    msg.key_len = key_len;
    msg.value = value;
    msg.value_len = value_len;
    msg.msg_opaque = ack;
    if (ack) {
        pthread_mutex_lock(&ack->lock);
        ack->pending++;
        pthread_mutex_unlock(&ack->lock);
    }
    dw_err_t rc = dw_kafka_produce(cap->rk, &msg, hdrs, block_ms, errstr, errstr_size);
    if (rc) {
        if (ack) {
            pthread_mutex_lock(&ack->lock);
            ack->pending--;
            if (!ack->failed++) {
                ack->err = rc;
                snprintf(ack->errstr, sizeof(ack->errstr), "%s", errstr ? errstr : "");
            }
            pthread_cond_broadcast(&ack->cond);
            pthread_mutex_unlock(&ack->lock);
        }
        return rc;
    }
    atomic_fetch_add(&cap->produced, 1);
    return DW_OK;
}

/* ---- topics ---------------------------------------------------------------------------------- */

void capture_topics_create(capture_t *cap, dw_kafka_topic_kind_t kind)
{
    char errstr[1024];
    rd_kafka_t *admin = NULL;
    dw_topics_t *ts = NULL;
    size_t created = 0;
    if (!dw_conf_get_bool(cap->conf, "capture.create_topics"))
        return;
    int timeout = (int)dw_conf_get_int(cap->conf, "capture.topics_timeout_ms");
    if (!(ts = dw_topics_new(cap->conf, 0))) {
        DW_WARN(CAPTURE_FAC, "could not create topics: out of memory");
        goto out;
    }
    for (size_t i = 0; i < cap->nactive; i++) {
        if (dw_topics_add_map(ts, dw_map_name(cap->active[i]), DW_TOPICS_KIND(kind), errstr,
                              sizeof(errstr)) != DW_OK) {
            DW_WARN(CAPTURE_FAC, "could not create topics: %s", errstr);
            goto out;
        }
    }
    if (dw_topics_add_special(ts, errstr, sizeof(errstr)) != DW_OK) {
        DW_WARN(CAPTURE_FAC, "could not create topics: %s", errstr);
        goto out;
    }
    if (!(admin = dw_kafka_admin_new(cap->conf, errstr, sizeof(errstr)))) {
        DW_WARN(CAPTURE_FAC, "could not create topics: %s", errstr);
        goto out;
    }
    if (dw_kafka_wait_ready(admin, timeout, errstr, sizeof(errstr)) != DW_OK) {
        DW_WARN(CAPTURE_FAC, "Kafka is not reachable, topics not created: %s", errstr);
        goto out;
    }
    if (dw_topics_ensure(ts, admin, timeout, &created, errstr, sizeof(errstr)) != DW_OK)
        DW_WARN(CAPTURE_FAC, "%s", errstr);
    else if (created > 0)
        DW_INFO(CAPTURE_FAC, "created %zu missing topic(s)", created);
out:
    dw_topics_destroy(ts);
    if (admin)
        rd_kafka_destroy(admin);
}

/* ---- checkpoints ----------------------------------------------------------------------------- */

dw_err_t capture_checkpoint_get(capture_t *cap, const char *map, const char *source,
                                char **position, char *errstr, size_t errstr_size)
{
    PGresult *res = NULL;
    const char *p[3] = {cap->component, map, source};
    *position = NULL;
    dw_err_t rc = dw_pg_exec(cap->pg,
                             "SELECT position FROM dw_checkpoint WHERE component = $1 AND map = $2"
                             " AND source = $3",
                             3, p, &res, errstr, errstr_size);
    if (rc)
        return rc;
    if (PQntuples(res) == 1 && !(*position = strdup(PQgetvalue(res, 0, 0))))
        rc = DW_ERR_NOMEM;
    PQclear(res);
    return rc;
}

dw_err_t capture_checkpoint_put(capture_t *cap, const char *map, const char *source,
                                const char *position, const json_t *ids, char *errstr,
                                size_t errstr_size)
{
    dw_err_t rc;
    if ((rc = dw_pg_begin(cap->pg, errstr, errstr_size)))
        return rc;
    if ((rc = dw_recordids_upsert(cap->pg, map, ids, errstr, errstr_size)))
        goto fail;
    if (position) {
        const char *p[4] = {cap->component, map, source, position};
        rc = dw_pg_exec(cap->pg,
                        "INSERT INTO dw_checkpoint (component, map, source, position)"
                        " VALUES ($1, $2, $3, $4) ON CONFLICT (component, map, source)"
                        " DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
                        4, p, NULL, errstr, errstr_size);
        if (rc)
            goto fail;
    }
    return dw_pg_commit(cap->pg, errstr, errstr_size);
fail:
    dw_pg_rollback(cap->pg, NULL, 0);
    return rc;
}

dw_err_t capture_record_id_get(capture_t *cap, const char *map, const char *record_id, char **ck,
                               json_t **key, char *errstr, size_t errstr_size)
{
    PGresult *res = NULL;
    const char *p[2] = {map, record_id};
    *ck = NULL;
    *key = NULL;
    dw_err_t rc = dw_pg_exec(cap->pg,
                             "SELECT canonical_key, source_key::text FROM dw_record_ids"
                             " WHERE map = $1 AND record_id = $2::uuid",
                             2, p, &res, errstr, errstr_size);
    if (rc)
        return rc;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return DW_ERR_NOT_FOUND;
    }
    *ck = strdup(PQgetvalue(res, 0, 0));
    *key = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
    PQclear(res);
    if (!*ck || !*key) {
        free(*ck);
        json_decref(*key);
        *ck = NULL;
        *key = NULL;
        return DW_ERR_NOMEM;
    }
    return DW_OK;
}
