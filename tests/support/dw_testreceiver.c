/*
 * dw_testreceiver: the data events receiver of the F&O emulator integration tests (see
 * dw_testreceiver.h). One libmicrohttpd daemon, a thread per connection, the body collected per
 * request and parsed as JSON when the request completes.
 */
#include "dw_testreceiver.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dw_testemu.h"

typedef struct {
    char *buf;
    size_t len;
} rx_body_t;

static enum MHD_Result rx_handler(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **state)
{
    dw_testreceiver_t *rx = cls;
    (void)url;
    (void)version;
    rx_body_t *b = *state;
    if (!b) {
        *state = calloc(1, sizeof(rx_body_t));
        return *state ? MHD_YES : MHD_NO;
    }
    if (*size) {
        char *nb = realloc(b->buf, b->len + *size + 1);
        if (!nb)
            return MHD_NO;
        b->buf = nb;
        memcpy(b->buf + b->len, data, *size);
        b->len += *size;
        b->buf[b->len] = '\0';
        *size = 0;
        return MHD_YES;
    }
    unsigned status = 200;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Event-Secret");
    pthread_mutex_lock(&rx->mu);
    if (strcmp(method, "POST") != 0) {
        status = 405;
    } else if (rx->fail) {
        rx->refused++;
        status = 503;
    } else {
        if (!auth || !rx->secret || strcmp(auth, rx->secret) != 0)
            rx->bad_auth++;
        json_t *j = b->buf ? json_loads(b->buf, 0, NULL) : NULL;
        if (j && rx->n < DW_TESTRECEIVER_MAX)
            rx->events[rx->n++] = j;
        else
            json_decref(j);
    }
    pthread_mutex_unlock(&rx->mu);
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static void rx_done(void *cls, struct MHD_Connection *c, void **state,
                    enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    rx_body_t *b = *state;
    if (b) {
        free(b->buf);
        free(b);
    }
    *state = NULL;
}

int dw_testreceiver_start(dw_testreceiver_t *rx, const char *secret, char *errstr,
                          size_t errstr_size)
{
    rx->port = dw_testemu_free_port();
    rx->n = rx->refused = rx->fail = rx->bad_auth = 0;
    rx->secret = secret;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)rx->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rx->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
                             (uint16_t)rx->port, NULL, NULL, rx_handler, rx, MHD_OPTION_SOCK_ADDR,
                             &sa, MHD_OPTION_NOTIFY_COMPLETED, rx_done, NULL, MHD_OPTION_END);
    if (!rx->d) {
        snprintf(errstr, errstr_size, "could not start the event receiver on port %d", rx->port);
        return -1;
    }
    return 0;
}

void dw_testreceiver_stop(dw_testreceiver_t *rx)
{
    if (rx->d)
        MHD_stop_daemon(rx->d);
    rx->d = NULL;
    for (int i = 0; i < rx->n; i++)
        json_decref(rx->events[i]);
    rx->n = 0;
}

void dw_testreceiver_set_fail(dw_testreceiver_t *rx, int on)
{
    pthread_mutex_lock(&rx->mu);
    rx->fail = on;
    pthread_mutex_unlock(&rx->mu);
}

int dw_testreceiver_wait(dw_testreceiver_t *rx, int n, int ms)
{
    int got = 0;
    for (int waited = 0; waited <= ms; waited += 20) {
        pthread_mutex_lock(&rx->mu);
        got = rx->n;
        pthread_mutex_unlock(&rx->mu);
        if (got >= n)
            break;
        usleep(20000);
    }
    return got;
}

dw_testemu_t *dw_testreceiver_start_fo(dw_testreceiver_t *rx, const char *schema_prefix,
                                       const char *admin_secret, char *errstr, size_t errstr_size)
{
    char adm[300], evu[300], auth[300];
    snprintf(adm, sizeof(adm), "emulator.admin_secret=%s", admin_secret);
    snprintf(evu, sizeof(evu), "emulator.fo.event_endpoints=http://127.0.0.1:%d/events", rx->port);
    snprintf(auth, sizeof(auth), "emulator.fo.event_auth_header=X-Event-Secret: %s",
             rx->secret ? rx->secret : "");
    const char *args[] = {"--limits", "off",
                          "-X",       adm,
                          "-X",       "emulator.max_body_bytes=65536",
                          "-X",       "emulator.fo.company=usmf",
                          "-X",       evu,
                          "-X",       auth,
                          "-X",       "emulator.fo.event_retry_initial_ms=50",
                          "-X",       "emulator.fo.event_retry_max_ms=200",
                          NULL};
    return dw_testemu_start("fo", schema_prefix, args, NULL, errstr, errstr_size);
}

int dw_testreceiver_stop_fo(dw_testreceiver_t *rx, dw_testemu_t **emu)
{
    int status = *emu ? dw_testemu_stop(*emu) : 0;
    dw_testreceiver_stop(rx);
    dw_testemu_destroy(*emu);
    *emu = NULL;
    return status;
}

json_t *dw_testreceiver_kv_get(json_t *list, const char *key)
{
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        const char *k = json_string_value(json_object_get(e, "key"));
        if (k && strcmp(k, key) == 0)
            return json_object_get(e, "value");
    }
    return NULL;
}

json_t *dw_testreceiver_ev_target(json_t *ev)
{
    return dw_testreceiver_kv_get(json_object_get(ev, "InputParameters"), "Target");
}

json_t *dw_testreceiver_ev_pre(json_t *ev)
{
    return dw_testreceiver_kv_get(json_object_get(ev, "PreEntityImages"), "PreImage");
}

json_t *dw_testreceiver_attr(json_t *entity, const char *name)
{
    return dw_testreceiver_kv_get(json_object_get(entity, "Attributes"), name);
}
