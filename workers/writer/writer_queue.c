/*
 * writer_queue: a partition's commands in offset order, from the oldest not yet released to the
 * newest consumed, and the watermark: the offset after the longest run of done commands from the
 * head, the only offset that is safe to commit (everything before it is written, dropped or
 * dead-lettered). Pure: no Kafka, no clock.
 */
#include <stdlib.h>
#include <string.h>

#include "writer.h"

struct wr_part_s {
    char *topic;
    int32_t partition;
    wr_item_t **items; /* [head, tail) */
    size_t head, tail, cap;
    size_t bytes;
    int64_t released; /* offset after the last released item, -1: none */
    int64_t committed;
    bool paused;
    void *user;
    wr_item_free_cb *free_cb;
    void *opaque;
};

wr_item_t *wr_item_new(int64_t offset, const void *key, size_t klen, size_t bytes)
{
    wr_item_t *it = calloc(1, sizeof(*it));
    if (!it)
        return NULL;
    it->key = malloc(klen + 1);
    if (!it->key) {
        free(it);
        return NULL;
    }
    if (klen)
        memcpy(it->key, key, klen);
    it->key[klen] = '\0';
    it->offset = offset;
    it->bytes = bytes + klen + sizeof(*it);
    return it;
}

void wr_item_done(wr_item_t *item)
{
    item->state = WR_ST_DONE;
    for (size_t i = 0; i < item->nsup; i++)
        item->sup[i]->state = WR_ST_DONE;
    item->nsup = 0;
}

dw_err_t wr_item_add_sup(wr_item_t *item, wr_item_t *sup)
{
    if (item->nsup == item->supcap) {
        size_t cap = item->supcap ? item->supcap * 2 : 4;
        wr_item_t **n = realloc(item->sup, cap * sizeof(*n));
        if (!n)
            return DW_ERR_NOMEM;
        item->sup = n;
        item->supcap = cap;
    }
    item->sup[item->nsup++] = sup;
    return DW_OK;
}

void wr_item_release_sup(wr_item_t *item)
{
    for (size_t i = 0; i < item->nsup; i++)
        if (item->sup[i]->state == WR_ST_INFLIGHT)
            item->sup[i]->state = WR_ST_PENDING;
    item->nsup = 0;
}

void wr_item_free(wr_item_t *item, wr_item_free_cb *free_cb, void *opaque)
{
    if (!item)
        return;
    if (free_cb)
        free_cb(item, opaque);
    wr_cmd_clear(&item->cmd);
    free(item->fail);
    free(item->sup);
    free(item->key);
    free(item);
}

wr_part_t *wr_part_new(const char *topic, int32_t partition, wr_item_free_cb *free_cb, void *opaque)
{
    wr_part_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    if (!(p->topic = strdup(topic))) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    p->released = -1;
    p->committed = -1;
    p->free_cb = free_cb;
    p->opaque = opaque;
    return p;
}

void wr_part_destroy(wr_part_t *part)
{
    if (!part)
        return;
    for (size_t i = part->head; i < part->tail; i++)
        wr_item_free(part->items[i], part->free_cb, part->opaque);
    free(part->items);
    free(part->topic);
    free(part);
}

const char *wr_part_topic(const wr_part_t *part)
{
    return part->topic;
}

int32_t wr_part_partition(const wr_part_t *part)
{
    return part->partition;
}

dw_err_t wr_part_push(wr_part_t *part, wr_item_t *item)
{
    if (part->tail == part->cap) {
        if (part->head > 0 && part->head >= part->cap / 2) {
            memmove(part->items, part->items + part->head,
                    (part->tail - part->head) * sizeof(*part->items));
            part->tail -= part->head;
            part->head = 0;
        } else {
            size_t cap = part->cap ? part->cap * 2 : 64;
            wr_item_t **n = realloc(part->items, cap * sizeof(*n));
            if (!n)
                return DW_ERR_NOMEM;
            part->items = n;
            part->cap = cap;
        }
    }
    item->part = part;
    part->items[part->tail++] = item;
    part->bytes += item->bytes;
    return DW_OK;
}

size_t wr_part_count(const wr_part_t *part)
{
    return part->tail - part->head;
}

size_t wr_part_bytes(const wr_part_t *part)
{
    return part->bytes;
}

wr_item_t *wr_part_at(const wr_part_t *part, size_t i)
{
    return part->items[part->head + i];
}

int64_t wr_part_watermark(wr_part_t *part)
{
    while (part->head < part->tail && part->items[part->head]->state == WR_ST_DONE) {
        wr_item_t *it = part->items[part->head++];
        part->released = it->offset + 1;
        part->bytes -= it->bytes;
        wr_item_free(it, part->free_cb, part->opaque);
    }
    if (part->head == part->tail)
        part->head = part->tail = 0;
    return part->released;
}

int64_t wr_part_committed(const wr_part_t *part)
{
    return part->committed;
}

void wr_part_set_committed(wr_part_t *part, int64_t offset)
{
    part->committed = offset;
}

void wr_part_set_user(wr_part_t *part, void *user)
{
    part->user = user;
}

void *wr_part_user(const wr_part_t *part)
{
    return part->user;
}

bool wr_part_paused(const wr_part_t *part)
{
    return part->paused;
}

void wr_part_set_paused(wr_part_t *part, bool paused)
{
    part->paused = paused;
}
