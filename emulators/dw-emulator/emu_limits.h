/*
 * emu_limits: Dataverse service protection API limits, per client (per user in Dataverse's
 * words): requests in a sliding window, combined execution time in the window, concurrent
 * requests. Over a limit: 429 with Retry-After and the documented code ("Service protection API
 * limits", learn.microsoft.com/power-apps/developer/data-platform/api-limits):
 *   0x80072322 Number of requests exceeded the limit of N over time window of W seconds.
 *   0x80072321 Combined execution time of incoming requests exceeded limit of N milliseconds over time window of W seconds.
 *   0x80072326 Number of concurrent requests exceeded the limit of N.
 * Off when every limit is 0.
 */
#ifndef EMU_LIMITS_H
#define EMU_LIMITS_H

#include <stdbool.h>

#include <jansson.h>

#include "emu_http.h"

/* A request that arrives from a client while a Retry-After it was answered has not elapsed is an
 * "early request" (Retry-After not honoured), unless it arrived within this many milliseconds of
 * the 429: such a request was already on its way (in flight) when the client got the answer. */
#define EMU_LIMITS_EARLY_GRACE_MS 250

typedef struct {
    int requests;       /* per window; 0: unlimited */
    int window_s;
    int concurrent;     /* 0: unlimited */
    int exec_ms;        /* combined execution time per window; 0: unlimited */
} emu_limits_conf_t;

typedef struct emu_limits_s emu_limits_t;

/* "off", "microsoft" (6000 requests / 300 s, 52 concurrent, 1,200,000 ms), or
 * "REQUESTS/WINDOW_S[,CONCURRENT[,EXEC_MS]]". false on a bad spec. */
bool emu_limits_parse(const char *spec, emu_limits_conf_t *out);

emu_limits_t *emu_limits_new(const emu_limits_conf_t *conf);
void emu_limits_destroy(emu_limits_t *l);
void emu_limits_set(emu_limits_t *l, const emu_limits_conf_t *conf);
void emu_limits_get(emu_limits_t *l, emu_limits_conf_t *conf);

/* Admit one request of client: true when admitted (call emu_limits_leave when done), otherwise
 * resp is filled with 429. */
bool emu_limits_enter(emu_limits_t *l, const char *client, emu_resp_t *resp);
void emu_limits_leave(emu_limits_t *l, const char *client, long long elapsed_ms);
/* Forget all counters. */
void emu_limits_reset(emu_limits_t *l);

/* The throttling record per client (new reference), for GET /_admin/state:
 *   {"early_grace_ms":250,"throttled":N,"early_requests":N,
 *    "clients":[{"client":"…","throttled":N,"retry_after_s":S,"retry_wait_ms":MS,
 *                "early_requests":N}]}
 * throttled: 429s answered; retry_after_s: the Retry-After of the last 429; retry_wait_ms: how
 * long the client must still wait (0: none); early_requests: requests that arrived before a
 * Retry-After answered to that client had elapsed (more than EMU_LIMITS_EARLY_GRACE_MS after that
 * 429). Top-level counters are sums over the clients. Forgotten with the other counters (limits
 * set, reset). */
json_t *emu_limits_state(emu_limits_t *l);

#endif
