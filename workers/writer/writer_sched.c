/*
 * writer_sched: what happens after a failed write. Exponential backoff with jitter that never
 * retries before the target's Retry-After; the failure class decides between another attempt
 * and a dead letter (lookup-missing a few times, transient forever with on_unavailable=queue or
 * within the retry budget with fail); and the AIMD controller of the target's concurrency.
 * Pure: time and randomness are arguments.
 */
#include "dw_dlq.h"
#include "writer.h"

int64_t wr_backoff_ms(const wr_policy_t *p, int attempts, long retry_after_ms, uint64_t rnd)
{
    int64_t d = p->initial_ms > 0 ? p->initial_ms : 1;
    for (int i = 1; i < attempts && d < p->max_ms; i++)
        d *= 2;
    if (d > p->max_ms)
        d = p->max_ms;
    int64_t half = d / 2;
    int64_t delay = half + (half > 0 ? (int64_t)(rnd % (uint64_t)(d - half + 1)) : 0);
    if (retry_after_ms >= 0 && delay < retry_after_ms)
        delay = retry_after_ms;
    return delay;
}

const char *wr_sched_failure(const wr_policy_t *p, dw_wclass_t cls, int attempts, int64_t first_ms,
                             int64_t now_ms, long retry_after_ms, uint64_t rnd, int64_t *delay_ms)
{
    *delay_ms = 0;
    switch (cls) {
    case DW_WCLASS_OK:
        return NULL;
    case DW_WCLASS_TRANSIENT:
        if (p->fail_when_unavailable &&
            (attempts >= p->budget || now_ms - first_ms >= p->budget_ms))
            return DW_DLQ_CLASS_UNAVAILABLE;
        *delay_ms = wr_backoff_ms(p, attempts, retry_after_ms, rnd);
        return NULL;
    case DW_WCLASS_LOOKUP_MISSING:
        if (attempts > p->lookup_retries)
            return DW_DLQ_CLASS_LOOKUP_MISSING;
        *delay_ms = wr_backoff_ms(p, attempts, retry_after_ms, rnd);
        return NULL;
    case DW_WCLASS_VALIDATION:
        return DW_DLQ_CLASS_VALIDATION;
    case DW_WCLASS_SCHEMA_DRIFT:
        return DW_DLQ_CLASS_SCHEMA;
    case DW_WCLASS_UNKNOWN:
    default:
        return DW_DLQ_CLASS_UNKNOWN;
    }
}

void wr_aimd_init(wr_aimd_t *a, int start, int max, int increase_after)
{
    a->min = 1;
    a->max = max < 1 ? 1 : max;
    a->cur = start < 1 ? 1 : (start > a->max ? a->max : start);
    a->increase_after = increase_after < 1 ? 1 : increase_after;
    a->good = 0;
}

bool wr_aimd_batch(wr_aimd_t *a, bool throttled)
{
    int before = a->cur;
    if (throttled) {
        a->cur = a->cur / 2 < a->min ? a->min : a->cur / 2;
        a->good = 0;
    } else if (++a->good >= a->increase_after) {
        a->good = 0;
        if (a->cur < a->max)
            a->cur++;
    }
    return a->cur != before;
}
