/*
 * capture_fo: dw-capture --system fo. An HTTP endpoint (libmicrohttpd, one thread per
 * connection) receiving F&O data events: a RemoteExecutionContext document (or a JSON array of
 * them) per POST. Each event is routed to every map that reads its entity, made into an event
 * envelope on dw.<map>.fo keyed by the canonical key, and the request is answered 2xx only after
 * Kafka acknowledged every record of it; 503 (with Retry-After) when Kafka did not acknowledge
 * within capture.ack_timeout_ms, so the sender retries. Authentication: a bearer token or a
 * shared-secret header (capture.fo_auth); a body over capture.max_body_bytes is refused with 413;
 * a malformed body gets 400, is counted, and is kept raw on dw._capture.dlq.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "capture.h"
#include "dw_dlq.h"
#include "dw_cli.h"
#include "dw_http.h"
#include "dw_log.h"
#include "dw_mapper.h"
#include "dw_sha256.h"
#include "dw_signal.h"

#define FO_FAC "capture.fo"

typedef struct fo_s {
    capture_t *cap;
    const char *path;
    const char *auth_mode; /* bearer | header | none */
    const char *secret;
    const char *secret_header;
    size_t max_body;
    int ack_timeout_ms;
    atomic_int stop_poller;
    atomic_ulong events, requests_ok, unauthorized, too_large, unavailable, ignored;
} fo_t;

typedef struct fo_conn_s {
    char *body;
    size_t len, cap;
    bool too_large;
    int early_status; /* answered before reading the body (401, 413, 404, 405) */
} fo_conn_t;

/* ---- helpers -------------------------------------------------------------------------------- */

static bool fo_secret_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

static enum MHD_Result fo_reply(struct MHD_Connection *c, unsigned int status, const char *json,
                                const char *retry_after)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (retry_after)
        MHD_add_response_header(r, "Retry-After", retry_after);
    if (status == 401)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static void fo_error_json(char *out, size_t size, const char *code, const char *msg)
{
    json_t *o = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg);
    char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
    snprintf(out, size, "%s", t ? t : "{}");
    free(t);
    json_decref(o);
}

/* "/Date(1714557600000)/" -> RFC 3339; false when it is not that form. */
static bool fo_date_rfc3339(const char *s, char out[32])
{
    long long ms;
    int used = 0;
    if (!s || sscanf(s, "/Date(%lld)/%n", &ms, &used) != 1 || used == 0 || s[used] != '\0')
        return false;
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03uZ", (unsigned)((ms % 1000 + 1000) % 1000));
    return true;
}

/* Attributes as [{"key","value"}] (the contract's form) or a plain object -> new object. */
static json_t *fo_attrs(const json_t *a)
{
    if (json_is_object(a))
        return json_deep_copy(a);
    if (!json_is_array(a))
        return NULL;
    json_t *o = json_object();
    size_t i;
    json_t *kv;
    json_array_foreach(a, i, kv)
    {
        const char *k = json_string_value(json_object_get(kv, "key"));
        json_t *v = json_object_get(kv, "value");
        if (!k || !v) {
            json_decref(o);
            return NULL;
        }
        json_object_set(o, k, v);
    }
    return o;
}

static const json_t *fo_param(const json_t *list, const char *name)
{
    size_t i;
    json_t *kv;
    json_array_foreach(list, i, kv)
    {
        const char *k = json_string_value(json_object_get(kv, "key"));
        if (k && strcmp(k, name) == 0)
            return json_object_get(kv, "value");
    }
    return NULL;
}

static void fo_version(const json_t *v, char *out, size_t size)
{
    out[0] = '\0';
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        snprintf(out, size, "%lld", (long long)json_integer_value(v));
    else if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 40 &&
             strspn(json_string_value(v), "0123456789") == json_string_length(v))
        snprintf(out, size, "%s", json_string_value(v));
    size_t z = strspn(out, "0");
    if (z && out[z])
        memmove(out, out + z, strlen(out + z) + 1);
    else if (z)
        snprintf(out, size, "0");
}

/* ---- one event ------------------------------------------------------------------------------ */

/* Produce the envelopes of one RemoteExecutionContext into ack. DW_ERR_PARSE / INVALID_ARG with
 * why: the event is malformed (nothing of it was produced); other errors: Kafka refused. */
static dw_err_t fo_event(fo_t *fo, const json_t *ctx, const char *hdr_corr, capture_ack_t *ack,
                         int *routed, char *why, size_t why_size)
{
    dw_err_t rc = DW_OK;
    const char *message = NULL, *entity = NULL, *corr = NULL, *created = NULL;
    json_t *params = NULL, *pre = NULL;
    json_error_t jerr;
    if (!json_is_object(ctx) ||
        json_unpack_ex((json_t *)ctx, &jerr, 0, "{s:s, s:s, s:o, s?o, s?s, s?s}", "MessageName",
                       &message, "PrimaryEntityName", &entity, "InputParameters", &params,
                       "PreEntityImages", &pre, "CorrelationId", &corr, "OperationCreatedOn",
                       &created) != 0)
        return dw_errf(DW_ERR_PARSE, why, why_size, "not a RemoteExecutionContext: %s",
                       json_is_object(ctx) ? jerr.text : "not a JSON object");
    const char *op;
    if (strcmp(message, "Create") == 0 || strcmp(message, "Update") == 0)
        op = "upsert";
    else if (strcmp(message, "Delete") == 0)
        op = "delete";
    else
        return dw_errf(DW_ERR_PARSE, why, why_size, "MessageName %.40s is not Create, Update "
                       "or Delete", message);
    const json_t *target = json_is_array(params) ? fo_param(params, "Target") : NULL;
    if (!json_is_object(target))
        return dw_errf(DW_ERR_PARSE, why, why_size, "InputParameters has no Target");
    const json_t *preimg = json_is_array(pre) ? fo_param(pre, "PreImage") : NULL;
    bool del = strcmp(op, "delete") == 0;
    json_t *record = NULL;
    if (!del) {
        record = fo_attrs(json_object_get(target, "Attributes"));
    } else {
        /* a delete: the key attributes of the reference, over the pre-image when there is one */
        record = preimg ? fo_attrs(json_object_get(preimg, "Attributes")) : json_object();
        json_t *ka = fo_attrs(json_object_get(target, "KeyAttributes"));
        if (record && ka)
            json_object_update(record, ka);
        json_decref(ka);
    }
    if (!record)
        return dw_errf(DW_ERR_PARSE, why, why_size, "Target has no Attributes");
    char version[48], ts[32], capture_ts[32], cid[130];
    fo_version(json_object_get(target, "RowVersion"), version, sizeof(version));
    if (!version[0] && del && preimg) {
        fo_version(json_object_get(preimg, "RowVersion"), version, sizeof(version));
        if (version[0]) /* the delete comes after the last version it had */
            snprintf(version, sizeof(version), "%llu", strtoull(version, NULL, 10) + 1);
    }
    if (!version[0])
        snprintf(version, sizeof(version), "0");
    dw_event_now_rfc3339(capture_ts);
    if (!fo_date_rfc3339(created, ts))
        snprintf(ts, sizeof(ts), "%s", capture_ts);
    if (corr && *corr && strlen(corr) <= 128)
        snprintf(cid, sizeof(cid), "%s", corr);
    else if (hdr_corr && *hdr_corr && strlen(hdr_corr) <= 128)
        snprintf(cid, sizeof(cid), "%s", hdr_corr);
    else
        dw_http_uuid4(cid);

    /* route: every active map of this entity; all keys first, so a bad event produces nothing */
    capture_t *cap = fo->cap;
    size_t nm = 0;
    const dw_map_t *maps[64];
    char *cks[64] = {0};
    json_t *keys[64] = {0};
    for (size_t i = 0; i < cap->nactive && nm < 64; i++) {
        if (strcasecmp(dw_map_fo_entity(cap->active[i]), entity) != 0)
            continue;
        dw_mapper_error_t merr;
        if (dw_mapper_source_key(cap->active[i], DW_MAP_FO_TO_DV, record, &keys[nm], &cks[nm],
                                 &merr)) {
            rc = dw_errf(DW_ERR_INVALID_ARG, why, why_size, "map %s: no record key: %s",
                         dw_map_name(cap->active[i]), merr.message);
            goto out;
        }
        maps[nm++] = cap->active[i];
    }
    *routed = (int)nm;
    for (size_t i = 0; i < nm; i++) {
        const char *mname = dw_map_name(maps[i]);
        char topic[DW_KAFKA_TOPIC_MAX + 1], event_id[37], bodyhash[DW_SHA256_HEX_SIZE] = "";
        dw_kafka_topic_name(topic, sizeof(topic), mname, DW_KAFKA_TOPIC_FO, NULL, 0);
        if (strcmp(version, "0") == 0) {
            char *t = json_dumps(record, JSON_COMPACT | JSON_SORT_KEYS);
            if (t)
                dw_sha256_hex(t, strlen(t), bodyhash);
            free(t);
        }
        const char *parts[] = {mname, "fo", op, cks[i], version, bodyhash, NULL};
        dw_event_uuid_from(event_id, parts);
        size_t len = 0;
        char *text = dw_event_build(event_id, mname, "fo", op, keys[i], NULL,
                                    del ? NULL : record, version, ts, capture_ts, cid, &len);
        if (!text) {
            rc = dw_errf(DW_ERR_NOMEM, why, why_size, "out of memory");
            goto out;
        }
        rc = capture_produce(cap, ack, topic, cks[i], strlen(cks[i]), text, len, mname, "fo", op,
                             cid, NULL, 1000, why, why_size);
        free(text);
        if (rc)
            goto out;
        atomic_fetch_add(&fo->events, 1);
    }
out:
    for (size_t i = 0; i < 64; i++) {
        free(cks[i]);
        json_decref(keys[i]);
    }
    json_decref(record);
    return rc;
}

/* Keep a malformed body on dw._capture.dlq (best effort, bounded wait). */
static void fo_dead_letter(fo_t *fo, const char *body, size_t len, const char *why)
{
    char errstr[256];
    capture_ack_t ack;
    capture_ack_init(&ack);
    dw_dlq_info_t info = {.cls = DW_DLQ_CLASS_POISON,
                          .reason = "malformed_event",
                          .message = why,
                          .stage = "capture"};
    rd_kafka_headers_t *h = dw_dlq_headers(NULL, &info);
    if (capture_produce(fo->cap, &ack, fo->cap->dlq_topic, NULL, 0, body, len, CAPTURE_DLQ_MAP,
                        "fo", NULL, NULL, h, 1000, errstr, sizeof(errstr)) == DW_OK) {
        if (capture_ack_wait(&ack, fo->ack_timeout_ms) == DW_OK)
            atomic_fetch_add(&fo->cap->dlq, 1);
        else
            DW_WARN(FO_FAC, "the malformed event could not be kept on %s", fo->cap->dlq_topic);
    }
    /* wait for the report before ack goes out of scope */
    while (capture_ack_pending(&ack) > 0)
        capture_ack_wait(&ack, 1000);
    capture_ack_destroy(&ack);
}

static enum MHD_Result fo_handle(fo_t *fo, struct MHD_Connection *c, fo_conn_t *fc)
{
    char msg[1024], reply[1400], why[700];
    dw_mapper_error_t merr;
    const char *hdr_corr =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, DW_HTTP_CORRELATION_HEADER);
    json_t *doc = dw_mapper_loadb(fc->body ? fc->body : "", fc->len, &merr);
    if (!doc) {
        snprintf(why, sizeof(why), "malformed JSON: %s", merr.message);
        goto malformed;
    }
    capture_ack_t ack;
    capture_ack_init(&ack);
    dw_err_t rc = DW_OK;
    int routed = 0, n = 0;
    if (json_is_array(doc)) {
        size_t i;
        json_t *e;
        json_array_foreach(doc, i, e)
        {
            int r = 0;
            if ((rc = fo_event(fo, e, hdr_corr, &ack, &r, why, sizeof(why))))
                break;
            routed += r;
            n++;
        }
    } else {
        rc = fo_event(fo, doc, hdr_corr, &ack, &routed, why, sizeof(why));
        n = 1;
    }
    json_decref(doc);
    dw_err_t arc = capture_ack_wait(&ack, fo->ack_timeout_ms);
    /* the ack group lives on this stack: wait for every report before leaving */
    while (capture_ack_pending(&ack) > 0)
        capture_ack_wait(&ack, 1000);
    capture_ack_destroy(&ack);
    if (rc == DW_ERR_PARSE || rc == DW_ERR_INVALID_ARG)
        goto malformed; /* events before it in a batch may be on Kafka: at least once */
    if (rc || arc) {
        atomic_fetch_add(&fo->unavailable, 1);
        snprintf(msg, sizeof(msg), "Kafka did not acknowledge the event: %s",
                 rc ? why : (ack.errstr[0] ? ack.errstr : dw_err2str(arc)));
        DW_WARN(FO_FAC, "%s; answered 503", msg);
        fo_error_json(reply, sizeof(reply), "unavailable", msg);
        return fo_reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, reply, "5");
    }
    if (!routed)
        atomic_fetch_add(&fo->ignored, 1);
    atomic_fetch_add(&fo->requests_ok, 1);
    snprintf(reply, sizeof(reply), "{\"accepted\":%d,\"records\":%d}", n, routed);
    return fo_reply(c, MHD_HTTP_OK, reply, NULL);
malformed:
    atomic_fetch_add(&fo->cap->malformed, 1);
    DW_WARN(FO_FAC, "malformed data event (%zu bytes): %s", fc->len, why);
    fo_dead_letter(fo, fc->body ? fc->body : "", fc->len, why);
    fo_error_json(reply, sizeof(reply), "malformed", why);
    return fo_reply(c, MHD_HTTP_BAD_REQUEST, reply, NULL);
}

static bool fo_authorized(fo_t *fo, struct MHD_Connection *c)
{
    if (strcmp(fo->auth_mode, "none") == 0)
        return true;
    if (!fo->secret || !*fo->secret)
        return false;
    if (strcmp(fo->auth_mode, "bearer") == 0) {
        const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        return a && strncasecmp(a, "Bearer ", 7) == 0 && fo_secret_eq(a + 7, fo->secret);
    }
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, fo->secret_header);
    return v && fo_secret_eq(v, fo->secret);
}

static enum MHD_Result fo_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    fo_t *fo = cls;
    fo_conn_t *fc = *con_cls;
    char reply[256];
    if (!fc) {
        if (!(fc = calloc(1, sizeof(*fc))))
            return MHD_NO;
        *con_cls = fc;
        if (strcmp(url, "/healthz") == 0 && strcmp(method, "GET") == 0)
            fc->early_status = 200;
        else if (strcmp(url, fo->path) != 0)
            fc->early_status = 404;
        else if (strcmp(method, "POST") != 0)
            fc->early_status = 405;
        else if (!fo_authorized(fo, c))
            fc->early_status = 401;
        else {
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
            if (cl && strtoull(cl, NULL, 10) > fo->max_body)
                fc->early_status = 413;
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!fc->early_status && !fc->too_large) {
            if (fc->len + *upload_size > fo->max_body) {
                fc->too_large = true;
            } else {
                if (fc->len + *upload_size + 1 > fc->cap) {
                    size_t ncap = fc->cap ? fc->cap * 2 : 8192;
                    while (ncap < fc->len + *upload_size + 1)
                        ncap *= 2;
                    char *nb = realloc(fc->body, ncap);
                    if (!nb)
                        return MHD_NO;
                    fc->body = nb;
                    fc->cap = ncap;
                }
                memcpy(fc->body + fc->len, upload, *upload_size);
                fc->len += *upload_size;
                fc->body[fc->len] = '\0';
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (fc->too_large && !fc->early_status)
        fc->early_status = 413;
    switch (fc->early_status) {
    case 200:
        return fo_reply(c, 200, "{\"status\":\"ok\"}", NULL);
    case 404:
        fo_error_json(reply, sizeof(reply), "not_found", "no such endpoint");
        return fo_reply(c, 404, reply, NULL);
    case 405:
        fo_error_json(reply, sizeof(reply), "method_not_allowed", "POST data events here");
        return fo_reply(c, 405, reply, NULL);
    case 401:
        atomic_fetch_add(&fo->unauthorized, 1);
        DW_WARN(FO_FAC, "refused an unauthenticated data event request");
        fo_error_json(reply, sizeof(reply), "unauthorized", "missing or wrong credentials");
        return fo_reply(c, 401, reply, NULL);
    case 413:
        atomic_fetch_add(&fo->too_large, 1);
        snprintf(reply, sizeof(reply),
                 "{\"error\":{\"code\":\"too_large\",\"message\":\"the body exceeds %zu bytes\"}}",
                 fo->max_body);
        return fo_reply(c, 413, reply, NULL);
    default:
        break;
    }
    return fo_handle(fo, c, fc);
}

static void fo_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    fo_conn_t *fc = *con_cls;
    if (fc) {
        free(fc->body);
        free(fc);
    }
    *con_cls = NULL;
}

static void *fo_poller(void *arg)
{
    fo_t *fo = arg;
    while (!fo->stop_poller)
        rd_kafka_poll(fo->cap->rk, 100);
    return NULL;
}

int capture_fo_run(capture_t *cap)
{
    fo_t fo = {0};
    const dw_conf_t *conf = cap->conf;
    fo.cap = cap;
    fo.path = dw_conf_get_str(conf, "capture.fo_path");
    fo.auth_mode = dw_conf_get_str(conf, "capture.fo_auth");
    fo.secret = dw_conf_get_str(conf, "capture.fo_secret");
    fo.secret_header = dw_conf_get_str(conf, "capture.fo_secret_header");
    fo.max_body = (size_t)dw_conf_get_int(conf, "capture.max_body_bytes");
    fo.ack_timeout_ms = (int)dw_conf_get_int(conf, "capture.ack_timeout_ms");
    if (strcmp(fo.auth_mode, "none") != 0 && (!fo.secret || !*fo.secret)) {
        fprintf(stderr, "dw-capture: capture.fo_secret is required unless capture.fo_auth=none\n");
        return DW_EXIT_USAGE;
    }
    if (strcmp(fo.auth_mode, "none") == 0)
        DW_WARN(FO_FAC, "capture.fo_auth=none: data events are accepted without authentication");
    const char *listen = dw_conf_get_str(conf, "capture.listen");
    char host[256];
    int port = 0;
    const char *colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= sizeof(host) || (port = atoi(colon + 1)) <= 0 ||
        port > 65535) {
        fprintf(stderr, "dw-capture: capture.listen: '%s' is not HOST:PORT\n", listen);
        return DW_EXIT_USAGE;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &sa.sin_addr) != 1) {
        fprintf(stderr, "dw-capture: capture.listen: '%s' is not an IPv4 address\n", host);
        return DW_EXIT_USAGE;
    }
    pthread_t poller;
    if (pthread_create(&poller, NULL, fo_poller, &fo) != 0)
        return DW_EXIT_FAILURE;
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
        (uint16_t)port, NULL, NULL, fo_access, &fo, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_COMPLETED, fo_completed, &fo, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)60, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)256, MHD_OPTION_END);
    int rc = DW_EXIT_OK;
    if (!d) {
        fprintf(stderr, "dw-capture: could not listen on %s\n", listen);
        rc = DW_EXIT_FAILURE;
    } else {
        DW_INFO(FO_FAC, "receiving F&O data events on http://%s%s for %zu map(s)", listen,
                fo.path, cap->nactive);
        while (!dw_signal_stop_requested())
            usleep(100000);
        DW_INFO(FO_FAC, "stopping: finishing the requests in flight");
        MHD_quiesce_daemon(d);
        MHD_stop_daemon(d); /* waits for the connection threads */
    }
    fo.stop_poller = 1;
    pthread_join(poller, NULL);
    DW_INFO(FO_FAC, "events %lu, requests ok %lu, malformed %lu, unauthorized %lu, too large %lu, "
            "refused (Kafka) %lu", (unsigned long)fo.events, (unsigned long)fo.requests_ok,
            (unsigned long)cap->malformed, (unsigned long)fo.unauthorized,
            (unsigned long)fo.too_large, (unsigned long)fo.unavailable);
    return rc;
}
