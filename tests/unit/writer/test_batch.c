/* Unit tests of writer_batch: per-key blocking, coalescing, caps, due time. */
#include <criterion/criterion.h>
#include <string.h>

#include "writer.h"
#include "wr_test_cmd.h"

static wr_item_t *push(wr_part_t *p, int64_t off, const char *key, const char *version)
{
    char buf[1024], why[400], field[64];
    wr_item_t *it = wr_item_new(off, key, strlen(key), 10);
    cr_assert_not_null(it);
    wr_test_cmd(buf, sizeof(buf), "cur", "dv", key, version, WR_HASH_A);
    cr_assert_eq(wr_cmd_parse(buf, strlen(buf), "cur", "dv", &it->cmd, why, sizeof(why), field,
                              sizeof(field)),
                 DW_OK, "%s", why);
    it->valid = true;
    cr_assert_eq(wr_part_push(p, it), DW_OK);
    return it;
}

static size_t build(wr_part_t **parts, size_t n, int64_t now, size_t max, size_t map_max,
                    wr_item_t **out)
{
    wr_part_batchinfo_t info[4];
    for (size_t i = 0; i < n; i++)
        info[i] = (wr_part_batchinfo_t){0, map_max};
    size_t counts[1];
    return wr_batch_build(parts, info, n, 0, now, max, counts, 1, out);
}

Test(writer_batch, coalesces_one_key_newest_version_wins)
{
    wr_part_t *p = wr_part_new("t", 0, NULL, NULL);
    wr_item_t *a = push(p, 0, "K1", "5");
    wr_item_t *b = push(p, 1, "K1", "9");
    wr_item_t *c = push(p, 2, "K1", "7"); /* an older snapshot arriving late */
    wr_item_t *d = push(p, 3, "K2", "1");
    wr_item_t *out[8];
    size_t n = build(&p, 1, 100, 10, 10, out);
    cr_assert_eq(n, 2);
    cr_assert_eq(out[0], b);
    cr_assert_eq(out[0]->nsup, 2);
    cr_assert_eq(out[1], d);
    cr_assert_eq(a->state, WR_ST_INFLIGHT);
    cr_assert_eq(c->state, WR_ST_INFLIGHT);
    wr_item_done(b);
    cr_assert_eq(a->state, WR_ST_DONE);
    cr_assert_eq(c->state, WR_ST_DONE);
    wr_part_destroy(p);
}

Test(writer_batch, ties_go_to_the_higher_offset)
{
    wr_part_t *p = wr_part_new("t", 0, NULL, NULL);
    push(p, 0, "K1", "5");
    wr_item_t *b = push(p, 1, "K1", "5");
    wr_item_t *out[4];
    cr_assert_eq(build(&p, 1, 0, 10, 10, out), 1);
    cr_assert_eq(out[0], b);
    wr_part_destroy(p);
}

Test(writer_batch, a_retried_key_holds_back_only_its_own_commands)
{
    wr_part_t *p = wr_part_new("t", 0, NULL, NULL);
    wr_item_t *a = push(p, 0, "K1", "1");
    a->attempts = 1;
    a->not_before_ms = 1000; /* backing off */
    wr_item_t *b = push(p, 1, "K1", "2");
    wr_item_t *c = push(p, 2, "K2", "1");
    wr_item_t *out[4];
    cr_assert_eq(build(&p, 1, 500, 10, 10, out), 1);
    cr_assert_eq(out[0], c);
    cr_assert_eq(b->state, WR_ST_PENDING);
    /* once due, the retried and the newer command are coalesced */
    cr_assert_eq(build(&p, 1, 1000, 10, 10, out), 1);
    cr_assert_eq(out[0], b);
    cr_assert_eq(b->nsup, 1);
    wr_part_destroy(p);
}

Test(writer_batch, inflight_dead_letter_holds_its_key)
{
    wr_part_t *p = wr_part_new("t", 0, NULL, NULL);
    wr_item_t *a = push(p, 0, "K1", "1");
    a->state = WR_ST_INFLIGHT;
    push(p, 1, "K1", "2");
    wr_item_t *out[4];
    cr_assert_eq(build(&p, 1, 0, 10, 10, out), 0);
    wr_part_destroy(p);
}

Test(writer_batch, respects_the_batch_and_map_caps)
{
    wr_part_t *p = wr_part_new("t", 0, NULL, NULL);
    char key[16];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "K%d", i);
        push(p, i, key, "1");
    }
    wr_item_t *out[16];
    cr_assert_eq(build(&p, 1, 0, 4, 10, out), 4);
    cr_assert_eq(build(&p, 1, 0, 10, 3, out), 3);
    cr_assert_eq(build(&p, 1, 0, 10, 10, out), 3);
    cr_assert_eq(build(&p, 1, 0, 10, 10, out), 0);
    wr_part_destroy(p);
}

Test(writer_batch, invalid_commands_are_never_picked)
{
    wr_part_t *p = wr_part_new("t", 0, NULL, NULL);
    wr_item_t *a = push(p, 0, "K1", "1");
    a->valid = false;
    wr_item_t *out[4];
    cr_assert_eq(build(&p, 1, 0, 10, 10, out), 0);
    wr_part_destroy(p);
}

Test(writer_batch, due_by_count_linger_or_retry)
{
    wr_part_t *p = wr_part_new("t", 0, NULL, NULL);
    int64_t wake;
    cr_assert_not(wr_batch_due(&p, 1, 0, 10, 50, &wake));
    cr_assert_eq(wake, INT64_MAX);
    wr_item_t *a = push(p, 0, "K1", "1");
    a->arrived_ms = 100;
    cr_assert_not(wr_batch_due(&p, 1, 120, 10, 50, &wake));
    cr_assert_eq(wake, 150);
    cr_assert(wr_batch_due(&p, 1, 150, 10, 50, &wake));
    cr_assert(wr_batch_due(&p, 1, 120, 1, 50, &wake), "full");
    a->attempts = 1;
    a->not_before_ms = 300;
    cr_assert_not(wr_batch_due(&p, 1, 200, 10, 50, &wake));
    cr_assert_eq(wake, 300);
    cr_assert(wr_batch_due(&p, 1, 300, 10, 1000000, &wake), "a due retry goes at once");
    wr_part_destroy(p);
}
