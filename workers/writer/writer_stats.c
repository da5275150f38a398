/*
 * writer_stats: dw-writer's counters (what the metrics module will export) and the line the loop
 * logs at info level every writer.stats_interval_ms and at exit.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "writer.h"

static const char *const dlq_classes[8] = {"poison",       "validation", "lookup_missing",
                                           "schema_drift", "unknown",    "unavailable",
                                           "unknown_map",  "other"};

size_t wr_dlq_class_index(const char *cls)
{
    for (size_t i = 0; i < 7; i++)
        if (cls && strcmp(cls, dlq_classes[i]) == 0)
            return i;
    return 7;
}

uint64_t wr_counters_dead_lettered(const wr_counters_t *c)
{
    uint64_t n = 0;
    for (size_t i = 0; i < 8; i++)
        n += c->dead_lettered[i];
    return n;
}

void wr_counters_latency(wr_counters_t *c, uint64_t us)
{
    int b = 0;
    while (b < WR_LAT_BUCKETS - 1 && (us >> (b + 1)) != 0)
        b++;
    c->lat_hist[b]++;
    c->lat_count++;
    if (us > c->lat_max_us)
        c->lat_max_us = us;
}

uint64_t wr_counters_latency_quantile(const wr_counters_t *c, double q)
{
    if (c->lat_count == 0)
        return 0;
    uint64_t want = (uint64_t)((double)c->lat_count * q + 0.5);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (int b = 0; b < WR_LAT_BUCKETS; b++) {
        seen += c->lat_hist[b];
        if (seen >= want) {
            uint64_t edge = ((uint64_t)1 << (b + 1)) - 1;
            return edge < c->lat_max_us ? edge : c->lat_max_us;
        }
    }
    return c->lat_max_us;
}

void wr_counters_format(const wr_counters_t *c, char *buf, size_t size)
{
    double avg = c->batches ? (double)c->batch_sum / (double)c->batches : 0.0;
    const uint64_t *d = c->dead_lettered;
    snprintf(buf, size,
             "consumed=%" PRIu64 " written=%" PRIu64 " coalesced=%" PRIu64 " echo_dropped=%" PRIu64
             " stale_dropped=%" PRIu64 " delete_unresolved=%" PRIu64 " dead_lettered=%" PRIu64
             " dlq_poison=%" PRIu64 " dlq_validation=%" PRIu64 " dlq_lookup_missing=%" PRIu64
             " dlq_schema_drift=%" PRIu64 " dlq_unknown=%" PRIu64 " dlq_unavailable=%" PRIu64
             " retries=%" PRIu64 " throttled=%" PRIu64 " batches=%" PRIu64
             " batch_avg=%.1f batch_max=%" PRIu64 " ledger_failures=%" PRIu64 " rebalances=%" PRIu64
             " reloads=%" PRIu64 " reload_failures=%" PRIu64 " write_us_p50=%" PRIu64 " write_us_p99=%" PRIu64 " pending=%" PRIu64
             " pending_max=%" PRIu64 " concurrency=%d ledger_jobs=%" PRIu64
             " ledger_us_avg=%" PRIu64 " loop_wait_ms=%" PRIu64
             " in_flight_fetch=%.2f in_flight_write=%.2f"
             " in_flight_store=%.2f in_flight_held=%.2f",
             c->consumed, c->written, c->coalesced, c->echo_dropped, c->stale_dropped,
             c->delete_unresolved, wr_counters_dead_lettered(c), d[0], d[1], d[2], d[3], d[4], d[5],
             c->retries, c->throttled, c->batches, avg, c->batch_max, c->ledger_failures,
             c->rebalances, c->reloads, c->reload_failures, wr_counters_latency_quantile(c, 0.5),
             wr_counters_latency_quantile(c, 0.99), c->pending, c->pending_max, c->concurrency,
             c->ledger_jobs, c->ledger_jobs ? c->ledger_us / c->ledger_jobs : 0,
             c->loop_wait_us / 1000, c->run_us ? (double)c->stage_us[0] / (double)c->run_us : 0.0,
             c->run_us ? (double)c->stage_us[1] / (double)c->run_us : 0.0,
             c->run_us ? (double)c->stage_us[2] / (double)c->run_us : 0.0,
             c->run_us ? (double)c->stage_us[3] / (double)c->run_us : 0.0);
}
