/* Unit tests of writer_queue: per-partition queues and the contiguous done watermark. */
#include <criterion/criterion.h>

#include "writer.h"

static int freed;

static void free_cb(wr_item_t *item, void *opaque)
{
    (void)item;
    (void)opaque;
    freed++;
}

static wr_item_t *push(wr_part_t *p, int64_t off)
{
    wr_item_t *it = wr_item_new(off, "k", 1, 10);
    cr_assert_not_null(it);
    cr_assert_eq(wr_part_push(p, it), DW_OK);
    return it;
}

Test(writer_queue, watermark_is_the_contiguous_done_prefix)
{
    freed = 0;
    wr_part_t *p = wr_part_new("dw.x.to-dv", 3, free_cb, NULL);
    wr_item_t *a = push(p, 10), *b = push(p, 11), *c = push(p, 13);
    cr_assert_eq(wr_part_watermark(p), -1);
    b->state = WR_ST_DONE;
    cr_assert_eq(wr_part_watermark(p), -1, "a is not done: nothing to commit");
    cr_assert_eq(wr_part_count(p), 3);
    a->state = WR_ST_DONE;
    cr_assert_eq(wr_part_watermark(p), 12);
    cr_assert_eq(wr_part_count(p), 1);
    cr_assert_eq(freed, 2);
    c->state = WR_ST_DONE;
    cr_assert_eq(wr_part_watermark(p), 14, "gaps (transaction markers) are skipped");
    cr_assert_eq(wr_part_count(p), 0);
    cr_assert_eq(wr_part_bytes(p), 0);
    wr_part_destroy(p);
    cr_assert_eq(freed, 3);
}

Test(writer_queue, done_marks_superseded_items)
{
    wr_part_t *p = wr_part_new("t", 0, NULL, NULL);
    wr_item_t *a = push(p, 0), *b = push(p, 1);
    cr_assert_eq(wr_item_add_sup(b, a), DW_OK);
    wr_item_done(b);
    cr_assert_eq(a->state, WR_ST_DONE);
    cr_assert_eq(wr_part_watermark(p), 2);
    wr_part_destroy(p);
}

Test(writer_queue, grows_and_compacts_under_load)
{
    wr_part_t *p = wr_part_new("t", 0, NULL, NULL);
    int64_t off = 0;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 100; i++)
            push(p, off++);
        for (size_t i = 0; i < wr_part_count(p); i++)
            wr_part_at(p, i)->state = WR_ST_DONE;
        cr_assert_eq(wr_part_watermark(p), off);
    }
    cr_assert_eq(wr_part_count(p), 0);
    wr_part_destroy(p);
}
