/*
 * writer_batch: which commands go into the next write call. A key whose command is being retried
 * (or whose dead letter is on its way) holds back every other command of that key, and only of
 * that key; the due commands of one key are coalesced into one write, the newest source version
 * winning. Pure: no Kafka, no clock (now is an argument).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "writer.h"

/* ---------------------------------------------------------------- a small key set */

typedef struct slot_s {
    const char *key; /* borrowed; NULL: empty */
    size_t mi;
    size_t val;
} slot_t;

typedef struct keyset_s {
    slot_t *slots;
    size_t mask;
} keyset_t;

static uint64_t key_hash(const char *key, size_t mi)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)mi;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h;
}

static bool keyset_init(keyset_t *ks, size_t n)
{
    size_t cap = 16;
    while (cap < n * 2 + 1)
        cap <<= 1;
    ks->slots = calloc(cap, sizeof(*ks->slots));
    ks->mask = cap - 1;
    return ks->slots != NULL;
}

/* The slot of (key, mi): found (slot->key set) or the empty one to fill. */
static slot_t *keyset_slot(keyset_t *ks, const char *key, size_t mi)
{
    size_t i = (size_t)key_hash(key, mi) & ks->mask;
    for (;;) {
        slot_t *s = &ks->slots[i];
        if (!s->key || (s->mi == mi && strcmp(s->key, key) == 0))
            return s;
        i = (i + 1) & ks->mask;
    }
}

/* ---------------------------------------------------------------- batches */

static bool held(const wr_item_t *it, int64_t now_ms)
{
    return it->state == WR_ST_INFLIGHT ||
           (it->state == WR_ST_PENDING && it->not_before_ms > now_ms);
}

size_t wr_batch_build(wr_part_t *const *parts, const wr_part_batchinfo_t *info, size_t nparts,
                      size_t start, int64_t now_ms, size_t max, size_t *map_counts, size_t nmaps,
                      wr_item_t **out)
{
    size_t total = 0;
    for (size_t p = 0; p < nparts; p++)
        total += wr_part_count(parts[p]);
    if (total == 0 || max == 0)
        return 0;
    /* size the key sets by what they hold (the held keys, the groups picked), not by every
     * command queued: a large calloc per batch costs more than the batch's bookkeeping */
    size_t nheld = 0;
    for (size_t p = 0; p < nparts; p++) {
        size_t n = wr_part_count(parts[p]);
        for (size_t i = 0; i < n; i++) {
            const wr_item_t *it = wr_part_at(parts[p], i);
            nheld += it->valid && held(it, now_ms);
        }
    }
    keyset_t blocked = {0}, chosen = {0};
    if (!keyset_init(&blocked, nheld) || !keyset_init(&chosen, max < total ? max : total)) {
        free(blocked.slots);
        free(chosen.slots);
        return (size_t)-1;
    }
    memset(map_counts, 0, nmaps * sizeof(*map_counts));
    for (size_t p = 0; p < nparts; p++) {
        size_t n = wr_part_count(parts[p]);
        for (size_t i = 0; i < n; i++) {
            wr_item_t *it = wr_part_at(parts[p], i);
            if (it->valid && held(it, now_ms)) {
                slot_t *s = keyset_slot(&blocked, it->key, info[p].map_index);
                s->key = it->key;
                s->mi = info[p].map_index;
            }
        }
    }
    size_t ng = 0;
    bool nomem = false;
    for (size_t k = 0; k < nparts && !nomem; k++) {
        size_t p = (start + k) % nparts;
        size_t mi = info[p].map_index;
        size_t n = wr_part_count(parts[p]);
        for (size_t i = 0; i < n && !nomem; i++) {
            wr_item_t *it = wr_part_at(parts[p], i);
            if (!it->valid || it->state != WR_ST_PENDING || it->not_before_ms > now_ms)
                continue;
            if (keyset_slot(&blocked, it->key, mi)->key)
                continue;
            slot_t *s = keyset_slot(&chosen, it->key, mi);
            if (s->key) {
                wr_item_t *win = out[s->val];
                if (win->part != it->part)
                    continue; /* the same key in another partition: next batch */
                /* scanning in offset order: it has the higher offset, so it wins ties */
                if (wr_version_cmp(it->cmd.source_version, win->cmd.source_version) >= 0) {
                    if (wr_item_add_sup(it, win) != DW_OK) {
                        nomem = true;
                        break;
                    }
                    for (size_t j = 0; j < win->nsup && !nomem; j++)
                        nomem = wr_item_add_sup(it, win->sup[j]) != DW_OK;
                    win->nsup = 0;
                    out[s->val] = it;
                    s->key = it->key;
                } else if (wr_item_add_sup(win, it) != DW_OK) {
                    nomem = true;
                    break;
                }
                it->state = WR_ST_INFLIGHT;
                continue;
            }
            if (ng >= max || map_counts[mi] >= info[p].map_batch_max)
                continue;
            s->key = it->key;
            s->mi = mi;
            s->val = ng;
            out[ng++] = it;
            map_counts[mi]++;
            it->state = WR_ST_INFLIGHT;
        }
    }
    free(blocked.slots);
    free(chosen.slots);
    if (nomem) {
        for (size_t g = 0; g < ng; g++) {
            wr_item_release_sup(out[g]);
            out[g]->state = WR_ST_PENDING;
        }
        return (size_t)-1;
    }
    return ng;
}

bool wr_batch_due(wr_part_t *const *parts, size_t nparts, int64_t now_ms, size_t max,
                  int64_t linger_ms, int64_t *wake_ms)
{
    size_t ready = 0;
    int64_t oldest = INT64_MAX, wake = INT64_MAX;
    bool retry_due = false;
    for (size_t p = 0; p < nparts; p++) {
        size_t n = wr_part_count(parts[p]);
        for (size_t i = 0; i < n; i++) {
            const wr_item_t *it = wr_part_at(parts[p], i);
            if (!it->valid || it->state != WR_ST_PENDING)
                continue;
            if (it->not_before_ms > now_ms) {
                if (it->not_before_ms < wake)
                    wake = it->not_before_ms;
                continue;
            }
            ready++;
            if (it->arrived_ms < oldest)
                oldest = it->arrived_ms;
            if (it->attempts > 0)
                retry_due = true;
        }
    }
    bool due = ready > 0 && (ready >= max || retry_due || now_ms - oldest >= linger_ms);
    if (ready > 0 && !due && oldest + linger_ms < wake)
        wake = oldest + linger_ms;
    *wake_ms = due ? now_ms : wake;
    return due;
}
