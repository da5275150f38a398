/*
 * transform_pool: maps captured messages on several threads, ahead of the loop thread that
 * produces them. A ring of slots: the loop thread pushes the messages it takes from the
 * consumer (in consumption order), the mapping threads claim them one at a time and fill in
 * their outcomes (tx_process is pure: the map set is read-only, the mapper thread-safe), and the
 * loop thread takes the mapped outcomes from the head, in order, produces them and pops them.
 * So mapping goes on while the loop thread produces, sends the offsets and waits for a commit.
 * Only the loop thread touches Kafka; it alone pushes, pops and clears.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "transform.h"
#include "dw_time.h"

struct tx_pool_s {
    pthread_t *threads;
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* an item to claim, or quit */
    pthread_cond_t cv_done; /* an item mapped while the loop thread waits */
    bool quit;
    const dw_mapset_t *set; /* borrowed; changed only while the ring is empty */
    size_t max_bytes;
    tx_item_t *items; /* the ring: item s lives in items[s % cap] */
    size_t cap;
    /* sequence numbers, under mu: head <= claim <= tail. [head, tail) are held, [head, claim)
     * were claimed (mapped or being mapped), [claim, tail) wait for a thread */
    uint64_t head, claim, tail;
    int busy;    /* items being mapped */
    int idle;    /* threads waiting for work */
    int waiters; /* the loop thread waits in cv_done */
};

static tx_item_t *slot(const tx_pool_t *pool, uint64_t s)
{
    return &pool->items[s % pool->cap];
}

/* Claim the next item, map it outside the lock, mark it done. Called and returns with mu held;
 * false when there is nothing to claim. */
static bool map_one_locked(tx_pool_t *pool)
{
    if (pool->claim == pool->tail)
        return false;
    tx_item_t *it = slot(pool, pool->claim++);
    const dw_mapset_t *set = pool->set;
    size_t max_bytes = pool->max_bytes;
    pool->busy++;
    pthread_mutex_unlock(&pool->mu);
    rd_kafka_message_t *m = it->msg;
    dw_err_t err =
        tx_process(set, rd_kafka_topic_name(m->rkt), m->payload, m->len, max_bytes, &it->out);
    pthread_mutex_lock(&pool->mu);
    it->err = err;
    it->done = true;
    pool->busy--;
    if (pool->waiters > 0)
        pthread_cond_broadcast(&pool->cv_done);
    return true;
}

static void *worker(void *arg)
{
    tx_pool_t *pool = arg;
    pthread_mutex_lock(&pool->mu);
    while (!pool->quit) {
        if (map_one_locked(pool))
            continue;
        pool->idle++;
        pthread_cond_wait(&pool->cv_work, &pool->mu);
        pool->idle--;
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

tx_pool_t *tx_pool_new(int nthreads, size_t capacity, size_t max_bytes)
{
    tx_pool_t *pool = calloc(1, sizeof(*pool));
    pthread_condattr_t ca;
    if (!pool)
        return NULL;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pool->cv_work, NULL);
    pthread_cond_init(&pool->cv_done, &ca);
    pthread_condattr_destroy(&ca);
    pool->cap = capacity > 0 ? capacity : 1;
    pool->max_bytes = max_bytes;
    if (!(pool->items = calloc(pool->cap, sizeof(*pool->items)))) {
        tx_pool_destroy(pool);
        return NULL;
    }
    if (nthreads > 0) {
        if (!(pool->threads = calloc((size_t)nthreads, sizeof(pthread_t)))) {
            tx_pool_destroy(pool);
            return NULL;
        }
        for (int i = 0; i < nthreads; i++) {
            if (pthread_create(&pool->threads[i], NULL, worker, pool) != 0) {
                tx_pool_destroy(pool);
                return NULL;
            }
            pool->nthreads++;
        }
    }
    return pool;
}

void tx_pool_set_maps(tx_pool_t *pool, const dw_mapset_t *set)
{
    pthread_mutex_lock(&pool->mu);
    pool->set = set;
    pthread_mutex_unlock(&pool->mu);
}

size_t tx_pool_count(const tx_pool_t *pool)
{
    return (size_t)(pool->tail - pool->head); /* both written by the caller's thread only */
}

size_t tx_pool_room(const tx_pool_t *pool)
{
    return pool->cap - tx_pool_count(pool);
}

void tx_pool_push(tx_pool_t *pool, rd_kafka_message_t **msgs, size_t n, int64_t t0_us)
{
    for (size_t i = 0; i < n; i++) {
        tx_item_t *it = slot(pool, pool->tail + i); /* free: no thread looks at it */
        it->msg = msgs[i];
        it->err = DW_OK;
        it->done = false;
        it->t0_us = t0_us;
        msgs[i] = NULL;
    }
    pthread_mutex_lock(&pool->mu);
    pool->tail += n;
    if (pool->idle > 0)
        pthread_cond_broadcast(&pool->cv_work);
    pthread_mutex_unlock(&pool->mu);
}

size_t tx_pool_ready(tx_pool_t *pool)
{
    size_t k = 0;
    pthread_mutex_lock(&pool->mu);
    while (pool->head + k < pool->claim && slot(pool, pool->head + k)->done)
        k++;
    pthread_mutex_unlock(&pool->mu);
    return k;
}

tx_item_t *tx_pool_item(tx_pool_t *pool, size_t k)
{
    return slot(pool, pool->head + k);
}

bool tx_pool_help(tx_pool_t *pool)
{
    pthread_mutex_lock(&pool->mu);
    bool did = map_one_locked(pool);
    pthread_mutex_unlock(&pool->mu);
    return did;
}

bool tx_pool_wait_head(tx_pool_t *pool, int timeout_ms)
{
    struct timespec ts = dw_time_deadline(CLOCK_MONOTONIC, timeout_ms);
    pthread_mutex_lock(&pool->mu);
    pool->waiters++;
    while (pool->head < pool->tail && !slot(pool, pool->head)->done) {
        if (pool->nthreads == 0 && pool->head == pool->claim)
            break; /* nobody will map it: the caller must help */
        if (pthread_cond_timedwait(&pool->cv_done, &pool->mu, &ts) != 0)
            break;
    }
    pool->waiters--;
    bool ready = pool->head < pool->tail && slot(pool, pool->head)->done;
    pthread_mutex_unlock(&pool->mu);
    return ready;
}

static void release(tx_item_t *it)
{
    tx_outcome_clear(&it->out);
    if (it->msg)
        rd_kafka_message_destroy(it->msg);
    it->msg = NULL;
    it->done = false;
}

void tx_pool_pop(tx_pool_t *pool, size_t k)
{
    for (size_t i = 0; i < k; i++)
        release(slot(pool, pool->head + i)); /* mapped: no thread looks at it */
    pthread_mutex_lock(&pool->mu);
    pool->head += k;
    pthread_mutex_unlock(&pool->mu);
}

void tx_pool_clear(tx_pool_t *pool)
{
    pthread_mutex_lock(&pool->mu);
    pool->claim = pool->tail; /* what nobody claimed yet is never mapped */
    pool->waiters++;
    while (pool->busy > 0)
        pthread_cond_wait(&pool->cv_done, &pool->mu);
    pool->waiters--;
    uint64_t head = pool->head, tail = pool->tail;
    pthread_mutex_unlock(&pool->mu);
    for (uint64_t s = head; s < tail; s++)
        release(slot(pool, s));
    pthread_mutex_lock(&pool->mu);
    pool->head = tail;
    pthread_mutex_unlock(&pool->mu);
}

void tx_pool_destroy(tx_pool_t *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->mu);
    pool->quit = true;
    pthread_cond_broadcast(&pool->cv_work);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    free(pool->threads);
    if (pool->items) {
        for (uint64_t s = pool->head; s < pool->tail; s++)
            release(slot(pool, s));
        free(pool->items);
    }
    pthread_cond_destroy(&pool->cv_work);
    pthread_cond_destroy(&pool->cv_done);
    pthread_mutex_destroy(&pool->mu);
    free(pool);
}
