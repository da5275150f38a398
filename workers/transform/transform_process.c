/*
 * transform_process: what one captured message becomes. Reads the envelope strictly, checks it
 * against the topic it came from, applies the map's scope filter and direction, maps the record
 * and builds the command; every way it can fail becomes a dead-letter outcome naming class,
 * reason and field. No Kafka and no clock here, so every branch is unit-tested.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_dlq.h"
#include "dw_envelope.h"
#include "dw_mapper.h"
#include "transform.h"

void tx_outcome_clear(tx_outcome_t *out)
{
    free(out->key);
    free(out->value);
    memset(out, 0, sizeof(*out));
}

static void dlq(tx_outcome_t *out, const char *dlq_map, const char *cls, const char *reason,
                const char *field, const char *message)
{
    out->kind = TX_OUT_DLQ;
    if (dw_kafka_topic_name(out->topic, sizeof(out->topic), dlq_map, DW_KAFKA_TOPIC_DLQ, NULL, 0) !=
        DW_OK)
        dw_kafka_topic_name(out->topic, sizeof(out->topic), DW_DLQ_UNKNOWN_MAP, DW_KAFKA_TOPIC_DLQ,
                            NULL, 0);
    out->cls = cls;
    out->reason = reason;
    snprintf(out->field, sizeof(out->field), "%s", field ? field : "");
    snprintf(out->message, sizeof(out->message), "%s", message ? message : "");
}

dw_err_t tx_process(const dw_mapset_t *set, const char *topic, const void *value, size_t len,
                    size_t max_bytes, tx_outcome_t *out)
{
    memset(out, 0, sizeof(*out));
    dw_err_t ret = DW_OK;
    dw_event_t ev = {0};
    dw_envelope_error_t eerr;
    dw_mapper_error_t merr;
    dw_mapper_result_t res = {0};
    bool have_res = false;
    char msg[512];

    char tmap[DW_KAFKA_MAP_MAX + 1];
    dw_kafka_topic_kind_t kind;
    if (dw_kafka_topic_parse(topic, tmap, sizeof(tmap), &kind, NULL, 0) != DW_OK ||
        (kind != DW_KAFKA_TOPIC_FO && kind != DW_KAFKA_TOPIC_DV)) {
        dlq(out, DW_DLQ_UNKNOWN_MAP, DW_DLQ_CLASS_UNKNOWN_MAP, "not_a_capture_topic", "",
            "the record came from a topic that is not a capture topic dw.<map>.fo|dv");
        goto done;
    }
    const dw_map_t *map = dw_mapset_find(set, tmap);
    if (!map) {
        snprintf(msg, sizeof(msg), "no loaded map is named \"%s\"", tmap);
        dlq(out, DW_DLQ_UNKNOWN_MAP, DW_DLQ_CLASS_UNKNOWN_MAP, "unknown_map", "map", msg);
        goto done;
    }
    ret = dw_event_parse(value, len, max_bytes, &ev, &eerr);
    if (ret == DW_ERR_NOMEM)
        goto done;
    if (ret != DW_OK) {
        ret = DW_OK;
        dlq(out, tmap, DW_DLQ_CLASS_POISON, dw_envelope_reason_name(eerr.reason), eerr.field,
            eerr.message);
        goto done;
    }
    dw_map_side_t tside = kind == DW_KAFKA_TOPIC_FO ? DW_MAP_FO : DW_MAP_DV;
    if (strcmp(ev.map, tmap) != 0) {
        snprintf(msg, sizeof(msg), "map: the envelope names map \"%s\" but came from %s", ev.map,
                 topic);
        dlq(out, tmap, DW_DLQ_CLASS_POISON, "invalid_envelope", "map", msg);
        goto done;
    }
    if (ev.source != tside) {
        snprintf(msg, sizeof(msg), "source: the envelope says \"%s\" but came from %s",
                 ev.source_name, topic);
        dlq(out, tmap, DW_DLQ_CLASS_POISON, "invalid_envelope", "source", msg);
        goto done;
    }
    dw_map_dir_t dir = ev.source == DW_MAP_FO ? DW_MAP_FO_TO_DV : DW_MAP_DV_TO_FO;
    if (!dw_map_runs(map, dir)) {
        out->kind = TX_OUT_SKIP;
        goto done;
    }
    dw_map_side_t target = dw_map_dir_target(dir);
    if (ev.op != DW_EVENT_DELETE) {
        bool in = false;
        if (dw_mapper_in_scope(map, dir, ev.data, &in, &merr) != DW_OK) {
            if (merr.reason == DW_MAPPER_NOMEM) {
                ret = DW_ERR_NOMEM;
                goto done;
            }
            dlq(out, tmap, DW_DLQ_CLASS_MAPPING, dw_mapper_reason_name(merr.reason), merr.field,
                merr.message);
            goto done;
        }
        if (!in) {
            out->kind = TX_OUT_DROP;
            goto done;
        }
    }
    /* A delete is mapped from its key (the key columns are the ones that matter); a Dataverse
     * delete that carries only record_id has nothing to map and passes through. */
    const json_t *record = ev.op == DW_EVENT_DELETE ? ev.key : ev.data;
    if (json_object_size(record) > 0) {
        if (dw_mapper_apply(map, dir, record, &res, &merr) != DW_OK) {
            if (merr.reason == DW_MAPPER_NOMEM) {
                ret = DW_ERR_NOMEM;
                goto done;
            }
            dlq(out, tmap, DW_DLQ_CLASS_MAPPING, dw_mapper_reason_name(merr.reason), merr.field,
                merr.message);
            goto done;
        }
        have_res = true;
    }
    /* Loop prevention for a map that runs both ways: the record's content as the origin side
     * will see it come back (the writer keeps it in its ledger), and the origin's key. */
    bool both = dw_map_direction(map) == DW_MAP_BOTH;
    char ohash[DW_SHA256_HEX_SIZE];
    bool have_ohash = false;
    if (both && have_res && ev.op != DW_EVENT_DELETE) {
        dw_err_t orc = dw_mapper_origin_hash(map, dir, &res, ohash, &merr);
        if (orc == DW_ERR_NOMEM) {
            ret = DW_ERR_NOMEM;
            goto done;
        }
        have_ohash = orc == DW_OK;
    }
    out->value = dw_command_text(&ev, map, target, have_res ? &res : NULL,
                                 have_ohash ? ohash : NULL, both, &out->value_len);
    if (!out->value) {
        ret = DW_ERR_NOMEM;
        goto done;
    }
    if (have_res) {
        out->key = res.canonical_key;
        res.canonical_key = NULL;
        out->key_len = strlen(out->key);
    }
    out->kind = TX_OUT_COMMAND;
    dw_kafka_topic_name(out->topic, sizeof(out->topic), tmap,
                        target == DW_MAP_DV ? DW_KAFKA_TOPIC_TO_DV : DW_KAFKA_TOPIC_TO_FO, NULL, 0);
    out->op = ev.op == DW_EVENT_DELETE ? "delete" : "upsert";
    snprintf(out->map, sizeof(out->map), "%s", ev.map);
    snprintf(out->source, sizeof(out->source), "%s", ev.source_name);
    snprintf(out->correlation_id, sizeof(out->correlation_id), "%s", ev.correlation_id);
    if (!dw_envelope_rfc3339(ev.capture_ts, &out->capture_ms))
        out->capture_ms = 0;
done:
    dw_mapper_result_clear(&res);
    dw_event_clear(&ev);
    if (ret != DW_OK)
        tx_outcome_clear(out);
    return ret;
}
