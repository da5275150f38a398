/*
 * dw_topics: the set of topics a dwfleet component makes sure of, built from the configuration
 * (topics.partitions, maps.<map>.partitions, topics.replication_factor, topics.retention_ms,
 * topics.dlq_retention_ms) in one place, so dwctl topics create, dw-transform and the other
 * workers create the same topics the same way. A set owns its names and settings; dw_topics_ensure
 * creates the ones the cluster lacks.
 */
#ifndef DW_TOPICS_H
#define DW_TOPICS_H

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "dw_config.h"
#include "dw_err.h"
#include "dw_kafka.h"

/* The topics.* keys (and maps.*.partitions) for a binary's configuration tables. */
extern const dw_conf_def_t dw_topics_conf_defs[];

/* The map name of dwfleet's capture dead-letter topic: dw._capture.dlq. */
#define DW_TOPICS_CAPTURE_DLQ_MAP "_capture"

/* A mask of topic kinds: DW_TOPICS_KIND(DW_KAFKA_TOPIC_FO) | ...; DW_TOPICS_ALL: all five. */
#define DW_TOPICS_KIND(k) (1u << (unsigned)(k))
#define DW_TOPICS_ALL     ((1u << DW_KAFKA_TOPIC__COUNT) - 1u)

typedef struct dw_topics_s dw_topics_t;

/* A new, empty set. conf: borrowed, must outlive the set; it must know the keys of
 * dw_topics_conf_defs. partitions > 0 overrides the configured partition count of every topic.
 * NULL when out of memory. */
dw_topics_t *dw_topics_new(const dw_conf_t *conf, int partitions);
void dw_topics_destroy(dw_topics_t *ts);

/* Add dw.<map>.<kind> for every kind in kinds (a DW_TOPICS_KIND mask). Partitions: the set's
 * override, else maps.<map>.partitions, else topics.partitions; retention: topics.retention_ms,
 * topics.dlq_retention_ms for a dlq. map is checked (reserved names, "_unknown", allowed); a topic
 * already in the set is not added twice. DW_ERR_INVALID_ARG (errstr) or DW_ERR_NOMEM. */
dw_err_t dw_topics_add_map(dw_topics_t *ts, const char *map, unsigned kinds, char *errstr,
                           size_t errstr_size);
/* Add dwfleet's own dead-letter topics, dw._unknown.dlq and dw._capture.dlq. */
dw_err_t dw_topics_add_special(dw_topics_t *ts, char *errstr, size_t errstr_size);

/* The specs (borrowed, valid until the next add or destroy) and their count. */
size_t dw_topics_count(const dw_topics_t *ts);
dw_kafka_topic_spec_t *dw_topics_specs(dw_topics_t *ts);

/* Make sure every topic of the set exists: asks the cluster which topics exist (metadata, never
 * by name, so auto-creation cannot kick in) and creates only the missing ones (a client without
 * the right to create topics starts when all exist). After the call each spec's existed and err
 * tell what happened; *created (may be NULL) counts the topics created. rk: borrowed, any handle
 * (dw_kafka_admin_new). On failure the first error, errstr naming the failed topics. */
dw_err_t dw_topics_ensure(dw_topics_t *ts, rd_kafka_t *rk, int timeout_ms, size_t *created,
                          char *errstr, size_t errstr_size);

#endif
