/*
 * emu_admin: the fault switches and the /_admin endpoint. The admin secret is compared in
 * constant time and never logged.
 */
#include "emu_admin.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_log.h"
#include "emu_ctx.h"
#include "emu_dv.h"
#include "emu_fo.h"
#include "emu_fo_events.h"

struct emu_faults_s {
    pthread_mutex_t mu;
    bool unavailable;
    int latency_ms;
    int fail_count;
    int fail_status;
    char fail_code[32];
    char fail_message[256];
    char fail_match[128]; /* "" or: only writes whose path or body holds it fail */
    long long failed_writes;
    char no_multiple[EMU_FAULTS_SETS_MAX][128]; /* entity sets without the *Multiple actions */
    int nno_multiple;
};

emu_faults_t *emu_faults_new(void)
{
    emu_faults_t *f = calloc(1, sizeof(*f));
    if (f)
        pthread_mutex_init(&f->mu, NULL);
    return f;
}

void emu_faults_destroy(emu_faults_t *f)
{
    if (!f)
        return;
    pthread_mutex_destroy(&f->mu);
    free(f);
}

bool emu_faults_unavailable(emu_faults_t *f)
{
    pthread_mutex_lock(&f->mu);
    bool u = f->unavailable;
    pthread_mutex_unlock(&f->mu);
    return u;
}

int emu_faults_latency_ms(emu_faults_t *f)
{
    pthread_mutex_lock(&f->mu);
    int l = f->latency_ms;
    pthread_mutex_unlock(&f->mu);
    return l;
}

bool emu_faults_take_write(emu_faults_t *f, const emu_req_t *req, emu_resp_t *resp)
{
    bool fail = false;
    pthread_mutex_lock(&f->mu);
    /* the match is looked for only while failures are armed: bodies are large */
    if (f->fail_count > 0 &&
        (!f->fail_match[0] ||
         (req && ((req->path && strstr(req->path, f->fail_match)) ||
                  (req->body && strstr(req->body, f->fail_match)))))) {
        f->fail_count--;
        f->failed_writes++;
        fail = true;
        emu_resp_error(resp, (unsigned)f->fail_status, f->fail_code, "%s", f->fail_message);
    }
    pthread_mutex_unlock(&f->mu);
    return fail;
}

bool emu_faults_no_multiple(emu_faults_t *f, const char *entity_set)
{
    bool found = false;
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->nno_multiple && !found; i++)
        found = strcmp(f->no_multiple[i], entity_set) == 0;
    pthread_mutex_unlock(&f->mu);
    return found;
}

static void faults_clear(emu_faults_t *f)
{
    pthread_mutex_lock(&f->mu);
    f->unavailable = false;
    f->latency_ms = 0;
    f->fail_count = 0;
    f->fail_match[0] = '\0';
    f->nno_multiple = 0;
    pthread_mutex_unlock(&f->mu);
}

static bool secret_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

static json_t *state_json(emu_ctx_t *ctx)
{
    emu_faults_t *f = ctx->faults;
    emu_limits_conf_t lc;
    emu_limits_get(ctx->limits, &lc);
    pthread_mutex_lock(&f->mu);
    json_t *j = json_pack(
        "{s:s,s:b,s:i,s:{s:i,s:i,s:s,s:s},s:I,s:{s:i,s:i,s:i,s:i}}", "system", ctx->system,
        "unavailable", f->unavailable, "latency_ms", f->latency_ms, "fail_writes", "count",
        f->fail_count, "status", f->fail_status, "code", f->fail_code, "message", f->fail_message,
        "failed_writes", (json_int_t)f->failed_writes, "limits", "requests", lc.requests,
        "window_s", lc.window_s, "concurrent", lc.concurrent, "exec_ms", lc.exec_ms);
    json_t *nm = json_array();
    for (int i = 0; i < f->nno_multiple; i++)
        json_array_append_new(nm, json_string(f->no_multiple[i]));
    json_object_set_new(j, "no_multiple", nm);
    pthread_mutex_unlock(&f->mu);
    /* the service protection record per client: 429s, Retry-After, requests before it elapsed */
    json_object_set_new(j, "throttling", emu_limits_state(ctx->limits));
    return j;
}

void emu_admin_handle(emu_ctx_t *ctx, emu_req_t *req, emu_resp_t *resp)
{
    const char *auth = emu_req_header(req, "Authorization");
    if (!ctx->admin_secret || !*ctx->admin_secret) {
        emu_resp_error(resp, 403, "admin_disabled",
                       "the admin endpoint is disabled: set emulator.admin_secret");
        return;
    }
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 || !secret_eq(auth + 7, ctx->admin_secret)) {
        emu_resp_raw(resp, 401, "text/plain", "", 0);
        emu_resp_header(resp, "WWW-Authenticate", "Bearer realm=\"dw-emulator admin\"");
        return;
    }
    const char *what = req->path + strlen("/_admin");
    bool post = strcmp(req->method, "POST") == 0;
    json_error_t je;
    json_t *body = NULL;
    char errstr[512] = "";
    if (post && req->body_len) {
        body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
        if (!body || !json_is_object(body)) {
            emu_resp_error(resp, 400, "bad_request", "body is not a JSON object: %s", je.text);
            goto out;
        }
    }
    if (strcmp(what, "/state") == 0 && strcmp(req->method, "GET") == 0) {
        emu_resp_json(resp, 200, state_json(ctx));
    } else if (strcmp(what, "/faults") == 0 && post) {
        emu_faults_t *f = ctx->faults;
        json_t *fw = json_object_get(body, "fail_writes");
        json_t *nm = json_object_get(body, "no_multiple");
        if (nm && (!json_is_array(nm) || json_array_size(nm) > EMU_FAULTS_SETS_MAX)) {
            emu_resp_error(resp, 400, "bad_request",
                           "no_multiple: an array of at most %d entity set names",
                           EMU_FAULTS_SETS_MAX);
            goto out;
        }
        for (size_t i = 0; i < json_array_size(nm); i++) {
            const char *set = json_string_value(json_array_get(nm, i));
            if (!set || !emu_store_table_by_set(ctx->store, set)) {
                emu_resp_error(resp, 400, "bad_request", "no_multiple[%zu]: not an entity set", i);
                goto out;
            }
        }
        pthread_mutex_lock(&f->mu);
        if (nm) {
            f->nno_multiple = 0;
            for (size_t i = 0; i < json_array_size(nm); i++)
                snprintf(f->no_multiple[f->nno_multiple++], sizeof(f->no_multiple[0]), "%s",
                         json_string_value(json_array_get(nm, i)));
        }
        if (json_object_get(body, "unavailable"))
            f->unavailable = json_is_true(json_object_get(body, "unavailable"));
        if (json_is_integer(json_object_get(body, "latency_ms")))
            f->latency_ms = (int)json_integer_value(json_object_get(body, "latency_ms"));
        if (json_is_object(fw)) {
            f->fail_count = (int)json_integer_value(json_object_get(fw, "count"));
            json_int_t s = json_integer_value(json_object_get(fw, "status"));
            f->fail_status = s >= 400 && s <= 599 ? (int)s : 503;
            const char *code = json_string_value(json_object_get(fw, "code"));
            const char *msg = json_string_value(json_object_get(fw, "message"));
            snprintf(f->fail_code, sizeof(f->fail_code), "%s", code ? code : "0x80040216");
            snprintf(f->fail_message, sizeof(f->fail_message), "%s",
                     msg ? msg : "An unexpected error occurred (injected by dw-emulator).");
            const char *m = json_string_value(json_object_get(fw, "match"));
            snprintf(f->fail_match, sizeof(f->fail_match), "%s", m ? m : "");
        }
        pthread_mutex_unlock(&f->mu);
        DW_INFO("admin", "faults changed");
        emu_resp_json(resp, 200, state_json(ctx));
    } else if (strcmp(what, "/limits") == 0 && post) {
        emu_limits_conf_t lc;
        if (!emu_limits_parse(json_string_value(json_object_get(body, "spec")), &lc)) {
            emu_resp_error(resp, 400, "bad_request", "spec must be off, microsoft or R/W[,C[,E]]");
            goto out;
        }
        emu_limits_set(ctx->limits, &lc);
        emu_resp_json(resp, 200, state_json(ctx));
    } else if (strcmp(what, "/drop-column") == 0 && post) {
        const char *t = json_string_value(json_object_get(body, "table"));
        const char *c = json_string_value(json_object_get(body, "column"));
        dw_err_t err = t && c ? emu_store_drop_column(ctx->store, t, c, errstr, sizeof(errstr))
                              : dw_errf(DW_ERR_INVALID_ARG, errstr, sizeof(errstr),
                                        "table and column are required");
        if (err)
            emu_resp_error(resp, err == DW_ERR_NOT_FOUND ? 404 : 400, "bad_request", "%s", errstr);
        else {
            DW_INFO("admin", "dropped column %s.%s", t, c);
            emu_resp_json(resp, 200, json_pack("{s:s,s:s}", "dropped", t, "column", c));
        }
    } else if (strcmp(what, "/expire-tokens") == 0 && post) {
        dw_err_t err =
            strcmp(ctx->system, "dv") == 0
                ? emu_dv_expire_tokens(ctx, errstr, sizeof(errstr))
                : dw_errf(DW_ERR_INVALID_ARG, errstr, sizeof(errstr), "not for %s", ctx->system);
        if (err)
            emu_resp_error(resp, 500, "internal", "%s", errstr);
        else
            emu_resp_json(resp, 200, json_pack("{s:b}", "expired", 1));
    } else if (strcmp(what, "/events") == 0 && strcmp(req->method, "GET") == 0 && ctx->fo_events) {
        emu_resp_json(resp, 200,
                      emu_fo_events_state(ctx->fo_events)); /* F&O data events delivery */
    } else if (strcmp(what, "/reset") == 0 && post) {
        faults_clear(ctx->faults);
        emu_limits_reset(ctx->limits);
        dw_err_t err = emu_store_reset(ctx->store, errstr, sizeof(errstr));
        if (!err && strcmp(ctx->system, "fo") == 0)
            err = emu_fo_after_reset(ctx, errstr, sizeof(errstr));
        if (err)
            emu_resp_error(resp, 500, "internal", "%s", errstr);
        else {
            DW_INFO("admin", "reset");
            emu_resp_json(resp, 200, state_json(ctx));
        }
    } else {
        emu_resp_error(resp, 404, "not_found", "no admin resource %s %s", req->method, req->path);
    }
out:
    json_decref(body);
}
