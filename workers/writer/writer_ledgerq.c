/*
 * writer_ledgerq: the ledger's own thread. The loop thread never waits for PostgreSQL: it hands
 * a ledger read (wr_ledger_fetch) or a batch's ledger transaction (wr_ledger_store) to this
 * thread as a job and keeps driving its HTTP transfers and the consumer; the thread runs the jobs
 * one at a time, in the order submitted, on its own connection (which it owns: a dw_pg handle is
 * not shared across threads), and after a lost connection reconnects (with dw_pg's backoff)
 * before the next job. The loop learns that a job is over with wr_lq_done() / wr_lq_wait().
 *
 * Because the jobs run in submission order on one connection, a read submitted after a store
 * sees what the store committed.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dw_log.h"
#include "dw_time.h"
#include "writer.h"

#define FAC "writer"

struct wr_lq_s {
    dw_pg_t *pg; /* borrowed; used by the thread only while it runs */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* a job submitted, or quit */
    pthread_cond_t cv_done; /* a job is over */
    wr_lq_job_t *head, *tail;
    size_t outstanding; /* submitted and not over */
    uint64_t completed; /* jobs over so far */
    bool quit;
};

static void run_job(wr_lq_t *lq, wr_lq_job_t *job)
{
    if (job->kind == WR_LQ_FETCH)
        job->err = wr_ledger_fetch(lq->pg, job->n, job->maps, job->cks, job->rids, job->rows,
                                   job->errstr, sizeof(job->errstr));
    else
        job->err = wr_ledger_store(lq->pg, job->puts, job->nput, job->ids, job->errstr,
                                   sizeof(job->errstr));
}

static void *lq_main(void *arg)
{
    wr_lq_t *lq = arg;
    pthread_mutex_lock(&lq->mu);
    for (;;) {
        while (!lq->head && !lq->quit)
            pthread_cond_wait(&lq->cv_work, &lq->mu);
        if (lq->quit)
            break;
        wr_lq_job_t *job = lq->head;
        lq->head = job->next;
        if (!lq->head)
            lq->tail = NULL;
        job->next = NULL;
        pthread_mutex_unlock(&lq->mu);

        int64_t t0 = dw_time_mono_us();
        run_job(lq, job);
        job->run_us = dw_time_mono_us() - t0;
        bool lost = job->err == DW_ERR_PG_CONN;

        pthread_mutex_lock(&lq->mu);
        job->done = true;
        lq->outstanding--;
        lq->completed++;
        pthread_cond_broadcast(&lq->cv_done);
        if (lost && !lq->quit) {
            /* reconnect before the next job, without holding the lock */
            pthread_mutex_unlock(&lq->mu);
            char e2[512];
            if (dw_pg_reset(lq->pg, e2, sizeof(e2)) != DW_OK ||
                wr_ledger_session(lq->pg, e2, sizeof(e2)) != DW_OK)
                DW_ERROR(FAC, "ledger: %s", e2);
            pthread_mutex_lock(&lq->mu);
        }
    }
    pthread_mutex_unlock(&lq->mu);
    return NULL;
}

wr_lq_t *wr_lq_new(dw_pg_t *pg, char *errstr, size_t errstr_size)
{
    wr_lq_t *lq = calloc(1, sizeof(*lq));
    if (!lq) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    lq->pg = pg;
    pthread_mutex_init(&lq->mu, NULL);
    pthread_cond_init(&lq->cv_work, NULL);
    pthread_cond_init(&lq->cv_done, NULL);
    int rc = pthread_create(&lq->thread, NULL, lq_main, lq);
    if (rc != 0) {
        dw_errf(DW_ERR_INTERNAL, errstr, errstr_size, "could not start the ledger thread: %s",
                strerror(rc));
        wr_lq_destroy(lq);
        return NULL;
    }
    lq->started = true;
    return lq;
}

void wr_lq_destroy(wr_lq_t *lq)
{
    if (!lq)
        return;
    if (lq->started) {
        pthread_mutex_lock(&lq->mu);
        lq->quit = true;
        pthread_cond_broadcast(&lq->cv_work);
        pthread_mutex_unlock(&lq->mu);
        pthread_join(lq->thread, NULL);
    }
    /* jobs never run end as interrupted */
    for (wr_lq_job_t *j = lq->head; j; j = j->next) {
        j->err = DW_ERR_INTERRUPTED;
        j->done = true;
    }
    pthread_cond_destroy(&lq->cv_work);
    pthread_cond_destroy(&lq->cv_done);
    pthread_mutex_destroy(&lq->mu);
    free(lq);
}

void wr_lq_submit(wr_lq_t *lq, wr_lq_job_t *job)
{
    job->done = false;
    job->err = DW_OK;
    job->errstr[0] = '\0';
    job->next = NULL;
    pthread_mutex_lock(&lq->mu);
    if (lq->tail)
        lq->tail->next = job;
    else
        lq->head = job;
    lq->tail = job;
    lq->outstanding++;
    pthread_cond_signal(&lq->cv_work);
    pthread_mutex_unlock(&lq->mu);
}

bool wr_lq_done(wr_lq_t *lq, const wr_lq_job_t *job)
{
    pthread_mutex_lock(&lq->mu);
    bool done = job->done;
    pthread_mutex_unlock(&lq->mu);
    return done;
}

size_t wr_lq_outstanding(wr_lq_t *lq)
{
    pthread_mutex_lock(&lq->mu);
    size_t n = lq->outstanding;
    pthread_mutex_unlock(&lq->mu);
    return n;
}

uint64_t wr_lq_completed(wr_lq_t *lq)
{
    pthread_mutex_lock(&lq->mu);
    uint64_t n = lq->completed;
    pthread_mutex_unlock(&lq->mu);
    return n;
}

bool wr_lq_wait(wr_lq_t *lq, uint64_t seen, int timeout_ms)
{
    struct timespec ts = dw_time_deadline(CLOCK_REALTIME, timeout_ms);
    pthread_mutex_lock(&lq->mu);
    int rc = 0;
    while (lq->completed == seen && lq->outstanding > 0 && rc == 0)
        rc = pthread_cond_timedwait(&lq->cv_done, &lq->mu, &ts);
    bool changed = lq->completed != seen;
    pthread_mutex_unlock(&lq->mu);
    return changed;
}
