/*
 * transform_pool: maps a batch of messages on several threads. tx_process is pure (the map set
 * is read-only, the mapper thread-safe), so the batch is split by an atomic index between the
 * calling thread and the pool's threads; the caller waits until every message has its outcome
 * and every thread has let go of the batch, then produces the outcomes in order itself. Only
 * the calling thread touches Kafka. tx_pool_start/tx_pool_wait split it, so the caller can
 * produce the previous batch (and commit) while the threads map the next one.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "transform.h"

struct tx_pool_s {
    pthread_t *threads;
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    uint64_t gen; /* job number, under mu */
    bool quit;    /* under mu */
    int active;   /* threads holding the current job, under mu */
    /* the current job, written under mu while no thread holds it */
    const dw_mapset_t *set;
    rd_kafka_message_t **msgs;
    tx_outcome_t *outs;
    dw_err_t *errs;
    size_t n;
    size_t max_bytes;
    atomic_size_t next, done;
};

static void run_items(tx_pool_t *pool)
{
    for (;;) {
        size_t i = atomic_fetch_add(&pool->next, 1);
        if (i >= pool->n)
            break;
        rd_kafka_message_t *m = pool->msgs[i];
        pool->errs[i] = tx_process(pool->set, rd_kafka_topic_name(m->rkt), m->payload, m->len,
                                   pool->max_bytes, &pool->outs[i]);
        atomic_fetch_add(&pool->done, 1);
    }
}

static void *worker(void *arg)
{
    tx_pool_t *pool = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        while (!pool->quit && pool->gen == seen)
            pthread_cond_wait(&pool->cv_work, &pool->mu);
        if (pool->quit)
            break;
        seen = pool->gen;
        pool->active++;
        pthread_mutex_unlock(&pool->mu);
        run_items(pool);
        pthread_mutex_lock(&pool->mu);
        pool->active--;
        pthread_cond_signal(&pool->cv_done);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

tx_pool_t *tx_pool_new(int nthreads)
{
    tx_pool_t *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return NULL;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv_work, NULL);
    pthread_cond_init(&pool->cv_done, NULL);
    atomic_init(&pool->next, 0);
    atomic_init(&pool->done, 0);
    if (nthreads > 0) {
        pool->threads = calloc((size_t)nthreads, sizeof(pthread_t));
        if (!pool->threads) {
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

void tx_pool_start(tx_pool_t *pool, const dw_mapset_t *set, rd_kafka_message_t **msgs, size_t n,
                   size_t max_bytes, tx_outcome_t *outs, dw_err_t *errs)
{
    pthread_mutex_lock(&pool->mu);
    /* a thread that woke late for the previous batch (and found it finished) lets go first */
    while (pool->active > 0)
        pthread_cond_wait(&pool->cv_done, &pool->mu);
    pool->set = set;
    pool->msgs = msgs;
    pool->outs = outs;
    pool->errs = errs;
    pool->n = n;
    pool->max_bytes = max_bytes;
    atomic_store(&pool->next, 0);
    atomic_store(&pool->done, 0);
    if (pool->nthreads > 0 && n > 0) {
        pool->gen++;
        pthread_cond_broadcast(&pool->cv_work);
    }
    pthread_mutex_unlock(&pool->mu);
}

void tx_pool_wait(tx_pool_t *pool)
{
    run_items(pool);
    pthread_mutex_lock(&pool->mu);
    while (atomic_load(&pool->done) < pool->n || pool->active > 0)
        pthread_cond_wait(&pool->cv_done, &pool->mu);
    pool->n = 0;
    pthread_mutex_unlock(&pool->mu);
}

void tx_pool_map(tx_pool_t *pool, const dw_mapset_t *set, rd_kafka_message_t **msgs, size_t n,
                 size_t max_bytes, tx_outcome_t *outs, dw_err_t *errs)
{
    tx_pool_start(pool, set, msgs, n, max_bytes, outs, errs);
    tx_pool_wait(pool);
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
    pthread_cond_destroy(&pool->cv_work);
    pthread_cond_destroy(&pool->cv_done);
    pthread_mutex_destroy(&pool->mu);
    free(pool);
}
