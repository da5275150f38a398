/*
 * dw_topics: build the topic specs of maps from the configuration and create the missing ones.
 * Shared by dwctl topics create and the workers that create their own topics at start.
 */
#include "dw_topics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_dlq.h"
#include "dw_log.h"

#define FAC "topics"

const dw_conf_def_t dw_topics_conf_defs[] = {
    {"topics.partitions", DW_CONF_INT, "6", 1, 10000, NULL, 0, NULL,
     "partitions of each new topic of a map (the ceiling of a map's parallelism)"},
    {"topics.replication_factor", DW_CONF_INT, "-1", -1, 32, NULL, 0, NULL,
     "replication factor of new topics; -1: the broker's default.replication.factor"},
    {"topics.retention_ms", DW_CONF_INT, "604800000", -1, 1e15, NULL, 0, NULL,
     "retention.ms of new capture and command topics (default 7 days; -1: forever)"},
    {"topics.dlq_retention_ms", DW_CONF_INT, "2592000000", -1, 1e15, NULL, 0, NULL,
     "retention.ms of new dead-letter topics (default 30 days; -1: forever)"},
    {"maps.*.partitions", DW_CONF_INT, NULL, 1, 10000, NULL, 0, NULL,
     "per-map override of topics.partitions"},
    DW_CONF_END,
};

typedef struct dw_topics_entry_s {
    char name[DW_KAFKA_TOPIC_MAX + 1];
} dw_topics_entry_t;

struct dw_topics_s {
    const dw_conf_t *conf;
    int partitions; /* > 0: override */
    int replication_factor;
    char retention[32], dlq_retention[32];
    const char *config[3], *dlq_config[3];
    dw_topics_entry_t *names; /* names[i] is specs[i].name */
    dw_kafka_topic_spec_t *specs;
    size_t n, cap;
};

dw_topics_t *dw_topics_new(const dw_conf_t *conf, int partitions)
{
    dw_topics_t *ts = calloc(1, sizeof(*ts));
    if (!ts)
        return NULL;
    ts->conf = conf;
    ts->partitions = partitions;
    ts->replication_factor = (int)dw_conf_get_int(conf, "topics.replication_factor");
    snprintf(ts->retention, sizeof(ts->retention), "%lld",
             dw_conf_get_int(conf, "topics.retention_ms"));
    snprintf(ts->dlq_retention, sizeof(ts->dlq_retention), "%lld",
             dw_conf_get_int(conf, "topics.dlq_retention_ms"));
    ts->config[0] = ts->dlq_config[0] = "retention.ms";
    ts->config[1] = ts->retention;
    ts->dlq_config[1] = ts->dlq_retention;
    return ts;
}

void dw_topics_destroy(dw_topics_t *ts)
{
    if (!ts)
        return;
    free(ts->names);
    free(ts->specs);
    free(ts);
}

static bool dw_topics_has(const dw_topics_t *ts, const char *name)
{
    for (size_t i = 0; i < ts->n; i++)
        if (strcmp(ts->names[i].name, name) == 0)
            return true;
    return false;
}

static dw_err_t dw_topics_grow(dw_topics_t *ts)
{
    if (ts->n < ts->cap)
        return DW_OK;
    size_t cap = ts->cap ? ts->cap * 2 : 16;
    dw_topics_entry_t *names = malloc(cap * sizeof(*names));
    dw_kafka_topic_spec_t *specs = malloc(cap * sizeof(*specs));
    if (!names || !specs) {
        free(names);
        free(specs);
        return DW_ERR_NOMEM;
    }
    if (ts->n) {
        memcpy(names, ts->names, ts->n * sizeof(*names));
        memcpy(specs, ts->specs, ts->n * sizeof(*specs));
    }
    for (size_t i = 0; i < ts->n; i++)
        specs[i].name = names[i].name;
    free(ts->names);
    free(ts->specs);
    ts->names = names;
    ts->specs = specs;
    ts->cap = cap;
    return DW_OK;
}

dw_err_t dw_topics_add_map(dw_topics_t *ts, const char *map, unsigned kinds, char *errstr,
                           size_t errstr_size)
{
    dw_err_t err = dw_kafka_map_name_check(map, true, errstr, errstr_size);
    if (err)
        return err;
    int partitions = ts->partitions;
    if (partitions <= 0 && map[0] != '_') {
        char key[DW_KAFKA_MAP_MAX + 32];
        snprintf(key, sizeof(key), "maps.%s.partitions", map);
        if (dw_conf_is_set(ts->conf, key))
            partitions = (int)dw_conf_get_int(ts->conf, key);
    }
    if (partitions <= 0)
        partitions = (int)dw_conf_get_int(ts->conf, "topics.partitions");
    for (int k = 0; k < DW_KAFKA_TOPIC__COUNT; k++) {
        if (!(kinds & DW_TOPICS_KIND(k)))
            continue;
        char name[DW_KAFKA_TOPIC_MAX + 1];
        if ((err = dw_kafka_topic_name(name, sizeof(name), map, (dw_kafka_topic_kind_t)k, errstr,
                                       errstr_size)) != DW_OK)
            return err;
        if (dw_topics_has(ts, name))
            continue;
        if (dw_topics_grow(ts) != DW_OK)
            return dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        memcpy(ts->names[ts->n].name, name, sizeof(name));
        ts->specs[ts->n] = (dw_kafka_topic_spec_t){
            .name = ts->names[ts->n].name,
            .partitions = partitions,
            .replication_factor = ts->replication_factor,
            .config = k == DW_KAFKA_TOPIC_DLQ ? ts->dlq_config : ts->config,
        };
        ts->n++;
    }
    return DW_OK;
}

dw_err_t dw_topics_add_special(dw_topics_t *ts, char *errstr, size_t errstr_size)
{
    dw_err_t err = dw_topics_add_map(ts, DW_DLQ_UNKNOWN_MAP, DW_TOPICS_KIND(DW_KAFKA_TOPIC_DLQ),
                                     errstr, errstr_size);
    if (!err)
        err = dw_topics_add_map(ts, DW_TOPICS_CAPTURE_DLQ_MAP, DW_TOPICS_KIND(DW_KAFKA_TOPIC_DLQ),
                                errstr, errstr_size);
    return err;
}

size_t dw_topics_count(const dw_topics_t *ts)
{
    return ts->n;
}

dw_kafka_topic_spec_t *dw_topics_specs(dw_topics_t *ts)
{
    return ts->specs;
}

static int dw_topics_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

dw_err_t dw_topics_ensure(dw_topics_t *ts, rd_kafka_t *rk, int timeout_ms, size_t *created,
                          char *errstr, size_t errstr_size)
{
    char **have = NULL;
    size_t nhave = 0, nmissing = 0;
    dw_kafka_topic_spec_t *missing = NULL;
    if (created)
        *created = 0;
    dw_err_t ret = dw_kafka_topics_list(rk, "dw.", timeout_ms, &have, &nhave, errstr, errstr_size);
    if (ret) {
        for (size_t i = 0; i < ts->n; i++) {
            ts->specs[i].existed = false;
            ts->specs[i].err = ret;
        }
        goto done;
    }
    if (ts->n > 0 && !(missing = calloc(ts->n, sizeof(*missing)))) {
        ret = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < ts->n; i++) {
        dw_kafka_topic_spec_t *s = &ts->specs[i];
        s->err = DW_OK;
        s->existed = nhave > 0 && bsearch(&s->name, have, nhave, sizeof(*have), dw_topics_cmp);
        if (!s->existed)
            missing[nmissing++] = *s;
    }
    if (nmissing == 0)
        goto done;
    ret = dw_kafka_topics_create(rk, missing, nmissing, timeout_ms, errstr, errstr_size);
    /* copy the results back (a topic made meanwhile by someone else: existed) */
    for (size_t i = 0, j = 0; i < ts->n && j < nmissing; i++) {
        if (ts->specs[i].existed)
            continue;
        ts->specs[i].existed = missing[j].existed;
        ts->specs[i].err = missing[j].err;
        if (created && !missing[j].existed && !missing[j].err)
            (*created)++;
        j++;
    }
done:
    free(missing);
    dw_kafka_topics_free(have, nhave);
    return ret;
}
