/*
 * transform_stats: dw-transform's counters (what the metrics module will export) and the line
 * the loop logs at info level every transform.stats_interval_ms.
 */
#include <inttypes.h>
#include <stdio.h>

#include "transform.h"

void tx_counters_latency(tx_counters_t *c, uint64_t us)
{
    int b = 0;
    while (b < TX_LAT_BUCKETS - 1 && (us >> (b + 1)) != 0)
        b++;
    c->lat_hist[b]++;
    c->lat_count++;
    c->lat_sum_us += us;
    if (us > c->lat_max_us)
        c->lat_max_us = us;
}

void tx_counters_commit(tx_counters_t *c, const tx_pending_t *p)
{
    c->consumed += p->consumed;
    c->produced += p->produced;
    c->dropped += p->dropped;
    c->skipped += p->skipped;
    c->dead_lettered += p->dead_lettered;
    c->txn_committed++;
    c->batch_sum += p->consumed;
    if (p->consumed > c->batch_max)
        c->batch_max = p->consumed;
}

uint64_t tx_counters_latency_quantile(const tx_counters_t *c, double q)
{
    if (c->lat_count == 0)
        return 0;
    uint64_t want = (uint64_t)((double)c->lat_count * q + 0.5);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (int b = 0; b < TX_LAT_BUCKETS; b++) {
        seen += c->lat_hist[b];
        if (seen >= want)
            return ((uint64_t)1 << (b + 1)) - 1 < c->lat_max_us ? ((uint64_t)1 << (b + 1)) - 1
                                                                : c->lat_max_us;
    }
    return c->lat_max_us;
}

void tx_counters_format(const tx_counters_t *c, char *buf, size_t size)
{
    double avg_batch = c->txn_committed ? (double)c->batch_sum / (double)c->txn_committed : 0.0;
    snprintf(buf, size,
             "consumed=%" PRIu64 " produced=%" PRIu64 " dropped=%" PRIu64 " skipped=%" PRIu64
             " dead_lettered=%" PRIu64 " txn_committed=%" PRIu64 " txn_aborted=%" PRIu64
             " rebalances=%" PRIu64 " reloads=%" PRIu64 " reload_failures=%" PRIu64
             " batch_avg=%.1f batch_max=%" PRIu64 " latency_us_p50=%" PRIu64
             " latency_us_p99=%" PRIu64 " latency_us_max=%" PRIu64,
             c->consumed, c->produced, c->dropped, c->skipped, c->dead_lettered, c->txn_committed,
             c->txn_aborted, c->rebalances, c->reloads, c->reload_failures, avg_batch, c->batch_max,
             tx_counters_latency_quantile(c, 0.5), tx_counters_latency_quantile(c, 0.99),
             c->lat_max_us);
}
