/*
 * emu_limits: sliding-window counters per client under one mutex. Request times are kept in a
 * ring as large as the request limit; execution times as (end time, milliseconds) events.
 */
#include "emu_limits.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EMU_LIM_CLIENTS 64
#define EMU_LIM_EXEC    8192

typedef struct {
    char client[128];
    double *req_times; /* ring of conf.requests */
    size_t req_head, req_count;
    double exec_t[EMU_LIM_EXEC];
    long long exec_ms[EMU_LIM_EXEC];
    size_t exec_head, exec_count;
    int inflight;
    /* Retry-After honoured? hold_from: the first 429 of the current hold, hold_until: the end of
     * the latest Retry-After answered (seconds, monotonic; 0: none) */
    double hold_from, hold_until;
    int last_retry_after;
    long long throttled, early;
} emu_lim_client_t;

struct emu_limits_s {
    pthread_mutex_t mu;
    emu_limits_conf_t conf;
    emu_lim_client_t *clients[EMU_LIM_CLIENTS];
    size_t nclients;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool emu_limits_parse(const char *spec, emu_limits_conf_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!spec || !*spec || strcmp(spec, "off") == 0)
        return true;
    if (strcmp(spec, "microsoft") == 0) {
        out->requests = 6000;
        out->window_s = 300;
        out->concurrent = 52;
        out->exec_ms = 1200000;
        return true;
    }
    int r = 0, w = 0, c = 0, e = 0, used = 0;
    int n = sscanf(spec, "%d/%d%n,%d%n,%d%n", &r, &w, &used, &c, &used, &e, &used);
    if (n < 2 || spec[used] != '\0' || r < 0 || w <= 0 || c < 0 || e < 0)
        return false;
    out->requests = r;
    out->window_s = w;
    out->concurrent = c;
    out->exec_ms = e;
    return true;
}

static void clients_free(emu_limits_t *l)
{
    for (size_t i = 0; i < l->nclients; i++) {
        free(l->clients[i]->req_times);
        free(l->clients[i]);
    }
    l->nclients = 0;
}

emu_limits_t *emu_limits_new(const emu_limits_conf_t *conf)
{
    emu_limits_t *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    pthread_mutex_init(&l->mu, NULL);
    l->conf = *conf;
    return l;
}

void emu_limits_destroy(emu_limits_t *l)
{
    if (!l)
        return;
    clients_free(l);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

void emu_limits_set(emu_limits_t *l, const emu_limits_conf_t *conf)
{
    pthread_mutex_lock(&l->mu);
    l->conf = *conf;
    clients_free(l);
    pthread_mutex_unlock(&l->mu);
}

void emu_limits_get(emu_limits_t *l, emu_limits_conf_t *conf)
{
    pthread_mutex_lock(&l->mu);
    *conf = l->conf;
    pthread_mutex_unlock(&l->mu);
}

void emu_limits_reset(emu_limits_t *l)
{
    pthread_mutex_lock(&l->mu);
    clients_free(l);
    pthread_mutex_unlock(&l->mu);
}

static emu_lim_client_t *client_get(emu_limits_t *l, const char *client)
{
    for (size_t i = 0; i < l->nclients; i++)
        if (strcmp(l->clients[i]->client, client) == 0)
            return l->clients[i];
    if (l->nclients == EMU_LIM_CLIENTS)
        return NULL;
    emu_lim_client_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    snprintf(c->client, sizeof(c->client), "%s", client);
    if (l->conf.requests > 0) {
        c->req_times = calloc((size_t)l->conf.requests, sizeof(double));
        if (!c->req_times) {
            free(c);
            return NULL;
        }
    }
    l->clients[l->nclients++] = c;
    return c;
}

static void too_many(emu_lim_client_t *c, double t, emu_resp_t *resp, int retry_after,
                     const char *code, const char *msg)
{
    char ra[32];
    if (retry_after < 1)
        retry_after = 1;
    snprintf(ra, sizeof(ra), "%d", retry_after);
    /* remember what the client was told: no request before t + Retry-After */
    if (t >= c->hold_until)
        c->hold_from = t; /* a new hold */
    if (t + retry_after > c->hold_until)
        c->hold_until = t + retry_after;
    c->last_retry_after = retry_after;
    c->throttled++;
    emu_resp_error(resp, 429, code, "%s", msg);
    emu_resp_header(resp, "Retry-After", ra);
}

bool emu_limits_enter(emu_limits_t *l, const char *client, emu_resp_t *resp)
{
    bool ok = true;
    pthread_mutex_lock(&l->mu);
    emu_limits_conf_t cf = l->conf;
    if (!cf.requests && !cf.concurrent && !cf.exec_ms)
        goto out;
    emu_lim_client_t *c = client_get(l, client);
    if (!c)
        goto out;
    double t = now_s(), from = t - cf.window_s;
    if (t < c->hold_until && t >= c->hold_from + EMU_LIMITS_EARLY_GRACE_MS / 1000.0)
        c->early++; /* a Retry-After answered to this client has not elapsed */
    if (cf.requests > 0) {
        while (c->req_count && c->req_times[c->req_head] <= from) {
            c->req_head = (c->req_head + 1) % (size_t)cf.requests;
            c->req_count--;
        }
        if (c->req_count >= (size_t)cf.requests) {
            int ra = (int)(c->req_times[c->req_head] - from + 0.999);
            char msg[200];
            snprintf(msg, sizeof(msg),
                     "Number of requests exceeded the limit of %d over time window of %d seconds.",
                     cf.requests, cf.window_s);
            too_many(c, t, resp, ra, "0x80072322", msg);
            ok = false;
            goto out;
        }
    }
    if (cf.exec_ms > 0) {
        long long sum = 0;
        while (c->exec_count && c->exec_t[c->exec_head] <= from) {
            c->exec_head = (c->exec_head + 1) % EMU_LIM_EXEC;
            c->exec_count--;
        }
        for (size_t i = 0; i < c->exec_count; i++)
            sum += c->exec_ms[(c->exec_head + i) % EMU_LIM_EXEC];
        if (sum > cf.exec_ms) {
            int ra = c->exec_count ? (int)(c->exec_t[c->exec_head] - from + 0.999) : 1;
            char msg[200];
            snprintf(msg, sizeof(msg),
                     "Combined execution time of incoming requests exceeded limit of %d milliseconds over time window of %d seconds.",
                     cf.exec_ms, cf.window_s);
            too_many(c, t, resp, ra, "0x80072321", msg);
            ok = false;
            goto out;
        }
    }
    if (cf.concurrent > 0 && c->inflight >= cf.concurrent) {
        char msg[200];
        snprintf(msg, sizeof(msg), "Number of concurrent requests exceeded the limit of %d.", cf.concurrent);
        too_many(c, t, resp, 1, "0x80072326", msg);
        ok = false;
        goto out;
    }
    if (cf.requests > 0) {
        c->req_times[(c->req_head + c->req_count) % (size_t)cf.requests] = t;
        c->req_count++;
    }
    c->inflight++;
out:
    pthread_mutex_unlock(&l->mu);
    return ok;
}

void emu_limits_leave(emu_limits_t *l, const char *client, long long elapsed_ms)
{
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < l->nclients; i++) {
        emu_lim_client_t *c = l->clients[i];
        if (strcmp(c->client, client) != 0)
            continue;
        if (c->inflight > 0)
            c->inflight--;
        if (l->conf.exec_ms > 0) {
            if (c->exec_count == EMU_LIM_EXEC) {
                c->exec_head = (c->exec_head + 1) % EMU_LIM_EXEC;
                c->exec_count--;
            }
            size_t at = (c->exec_head + c->exec_count) % EMU_LIM_EXEC;
            c->exec_t[at] = now_s();
            c->exec_ms[at] = elapsed_ms;
            c->exec_count++;
        }
    }
    pthread_mutex_unlock(&l->mu);
}

json_t *emu_limits_state(emu_limits_t *l)
{
    json_t *clients = json_array();
    long long throttled = 0, early = 0;
    pthread_mutex_lock(&l->mu);
    double t = now_s();
    for (size_t i = 0; i < l->nclients; i++) {
        emu_lim_client_t *c = l->clients[i];
        long long wait = c->hold_until > t ? (long long)((c->hold_until - t) * 1000.0 + 0.5) : 0;
        json_array_append_new(clients,
                              json_pack("{s:s,s:I,s:i,s:I,s:I}", "client", c->client, "throttled",
                                        (json_int_t)c->throttled, "retry_after_s",
                                        c->last_retry_after, "retry_wait_ms", (json_int_t)wait,
                                        "early_requests", (json_int_t)c->early));
        throttled += c->throttled;
        early += c->early;
    }
    pthread_mutex_unlock(&l->mu);
    return json_pack("{s:i,s:I,s:I,s:o}", "early_grace_ms", EMU_LIMITS_EARLY_GRACE_MS, "throttled",
                     (json_int_t)throttled, "early_requests", (json_int_t)early, "clients",
                     clients);
}
