/* Unit tests of writer_sched: backoff, Retry-After, failure classes, budgets, AIMD. */
#include <criterion/criterion.h>
#include <string.h>

#include "dw_dlq.h"
#include "writer.h"

static wr_policy_t policy(bool fail)
{
    return (wr_policy_t){.initial_ms = 500,
                         .max_ms = 60000,
                         .fail_when_unavailable = fail,
                         .budget = 3,
                         .budget_ms = 10000,
                         .lookup_retries = 2};
}

Test(writer_sched, backoff_doubles_with_jitter_and_caps)
{
    wr_policy_t p = policy(false);
    for (uint64_t r = 0; r < 50; r++) {
        int64_t d1 = wr_backoff_ms(&p, 1, -1, r * 7919);
        cr_assert(d1 >= 250 && d1 <= 500, "%lld", (long long)d1);
        int64_t d3 = wr_backoff_ms(&p, 3, -1, r * 7919);
        cr_assert(d3 >= 1000 && d3 <= 2000, "%lld", (long long)d3);
        int64_t d30 = wr_backoff_ms(&p, 30, -1, r * 7919);
        cr_assert(d30 >= 30000 && d30 <= 60000, "%lld", (long long)d30);
    }
}

Test(writer_sched, never_before_retry_after)
{
    wr_policy_t p = policy(false);
    cr_assert_geq(wr_backoff_ms(&p, 1, 5000, 1), 5000);
    cr_assert_geq(wr_backoff_ms(&p, 30, 120000, 1), 120000);
}

Test(writer_sched, queue_retries_transient_forever)
{
    wr_policy_t p = policy(false);
    int64_t delay;
    cr_assert_null(wr_sched_failure(&p, DW_WCLASS_TRANSIENT, 1000, 0, 1e9, -1, 1, &delay));
    cr_assert_gt(delay, 0);
}

Test(writer_sched, fail_dead_letters_after_the_budget)
{
    wr_policy_t p = policy(true);
    int64_t delay;
    cr_assert_null(wr_sched_failure(&p, DW_WCLASS_TRANSIENT, 2, 0, 100, -1, 1, &delay));
    cr_assert_str_eq(wr_sched_failure(&p, DW_WCLASS_TRANSIENT, 3, 0, 100, -1, 1, &delay),
                     DW_DLQ_CLASS_UNAVAILABLE);
    cr_assert_str_eq(wr_sched_failure(&p, DW_WCLASS_TRANSIENT, 1, 0, 10000, -1, 1, &delay),
                     DW_DLQ_CLASS_UNAVAILABLE, "time budget");
}

Test(writer_sched, lookup_missing_is_retried_then_dead_lettered)
{
    wr_policy_t p = policy(false);
    int64_t delay;
    cr_assert_null(wr_sched_failure(&p, DW_WCLASS_LOOKUP_MISSING, 1, 0, 0, -1, 1, &delay));
    cr_assert_null(wr_sched_failure(&p, DW_WCLASS_LOOKUP_MISSING, 2, 0, 0, -1, 1, &delay));
    cr_assert_str_eq(wr_sched_failure(&p, DW_WCLASS_LOOKUP_MISSING, 3, 0, 0, -1, 1, &delay),
                     DW_DLQ_CLASS_LOOKUP_MISSING);
}

Test(writer_sched, other_classes_go_to_the_dead_letter_topic)
{
    wr_policy_t p = policy(false);
    int64_t delay;
    cr_assert_str_eq(wr_sched_failure(&p, DW_WCLASS_VALIDATION, 1, 0, 0, -1, 1, &delay),
                     DW_DLQ_CLASS_VALIDATION);
    cr_assert_str_eq(wr_sched_failure(&p, DW_WCLASS_SCHEMA_DRIFT, 1, 0, 0, -1, 1, &delay),
                     DW_DLQ_CLASS_SCHEMA);
    cr_assert_str_eq(wr_sched_failure(&p, DW_WCLASS_UNKNOWN, 1, 0, 0, -1, 1, &delay),
                     DW_DLQ_CLASS_UNKNOWN);
}

Test(writer_sched, aimd_halves_on_throttling_and_grows_slowly)
{
    wr_aimd_t a;
    wr_aimd_init(&a, 8, 16, 3);
    cr_assert(wr_aimd_batch(&a, true));
    cr_assert_eq(a.cur, 4);
    wr_aimd_batch(&a, true);
    wr_aimd_batch(&a, true);
    wr_aimd_batch(&a, true);
    cr_assert_eq(a.cur, 1);
    cr_assert_not(wr_aimd_batch(&a, false));
    cr_assert_not(wr_aimd_batch(&a, false));
    cr_assert(wr_aimd_batch(&a, false));
    cr_assert_eq(a.cur, 2);
    for (int i = 0; i < 200; i++)
        wr_aimd_batch(&a, false);
    cr_assert_eq(a.cur, 16);
}
