/*
 * dw_testreceiver: a small libmicrohttpd server inside a test process that receives the data
 * events dw-emulator --system fo posts (RemoteExecutionContext JSON). It records every POST it
 * accepts, counts POSTs without the expected X-Event-Secret header, and can be told to answer 503;
 * and the F&O emulator started to post to it. Never depends on Criterion: failures come back as -1
 * with a message in the caller's errstr.
 */
#ifndef DW_TESTRECEIVER_H
#define DW_TESTRECEIVER_H

#include <stddef.h>

#include <jansson.h>
#include <pthread.h>

#include "dw_testemu.h"

#define DW_TESTRECEIVER_MAX 256

/* Fields are read by the tests; take mu around reads while the receiver runs. */
typedef struct dw_testreceiver_s {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    json_t *events[DW_TESTRECEIVER_MAX]; /* accepted POSTs, in arrival order (owned) */
    int n;
    int refused;        /* POSTs answered 503 */
    int fail;           /* answer 503 while set */
    int bad_auth;       /* POSTs without the shared secret */
    const char *secret; /* the expected X-Event-Secret value (borrowed) */
} dw_testreceiver_t;

#define DW_TESTRECEIVER_INIT                                                                       \
    {                                                                                              \
        .mu = PTHREAD_MUTEX_INITIALIZER                                                            \
    }

/* Start rx (initialised with DW_TESTRECEIVER_INIT) on a free loopback port, counters reset;
 * secret is borrowed for as long as rx runs. 0, or -1 with errstr filled. */
int dw_testreceiver_start(dw_testreceiver_t *rx, const char *secret, char *errstr,
                          size_t errstr_size);

/* Stop the server and drop the recorded events. Safe on a receiver that never started. */
void dw_testreceiver_stop(dw_testreceiver_t *rx);

/* Answer 503 to every POST while on is set. */
void dw_testreceiver_set_fail(dw_testreceiver_t *rx, int on);

/* Wait until at least n events were accepted (at most ms milliseconds); returns the count. */
int dw_testreceiver_wait(dw_testreceiver_t *rx, int n, int ms);

/* Start dw-emulator --system fo (its schema named from schema_prefix, admin secret admin_secret,
 * company usmf, body limit 64 KiB) posting its data events to rx, which runs, with rx's
 * X-Event-Secret and quick retries (50 to 200 ms). New handle, or NULL with errstr filled. */
dw_testemu_t *dw_testreceiver_start_fo(dw_testreceiver_t *rx, const char *schema_prefix,
                                       const char *admin_secret, char *errstr, size_t errstr_size);

/* Stop and destroy *emu (NULL: none; set to NULL), then stop rx. Returns the emulator's exit
 * status, 0 when there was none. */
int dw_testreceiver_stop_fo(dw_testreceiver_t *rx, dw_testemu_t **emu);

/* The value of key in a RemoteExecutionContext key/value list (borrowed), NULL when absent. */
json_t *dw_testreceiver_kv_get(json_t *list, const char *key);

/* An event's InputParameters Target entity, its PreEntityImages PreImage, and an entity's
 * attribute name; all borrowed, NULL when absent. */
json_t *dw_testreceiver_ev_target(json_t *ev);
json_t *dw_testreceiver_ev_pre(json_t *ev);
json_t *dw_testreceiver_attr(json_t *entity, const char *name);

#endif
