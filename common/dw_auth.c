/*
 * dw_auth: the OAuth2 client-credentials token cache (Entra ID v2). Contracts in dw_auth.h.
 */
#include "dw_auth.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dw_log.h"

#define DW_AUTH_FAC "auth"

struct dw_auth_s {
    pthread_mutex_t lock;
    char *token_url, *client_id, *client_secret, *scope;
    int margin_s;
    dw_http_opts_t http;
    dw_http_req_t *req; /* created on first fetch */
    char *token;        /* cached, or NULL */
    long expires_in;
    double fetched_at;
    unsigned long fetches;
    double (*now)(void);
};

static double dw_auth_real_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void dw_auth_opts_init(dw_auth_opts_t *opts)
{
    *opts = (dw_auth_opts_t){.refresh_margin_s = 300};
    dw_http_opts_init(&opts->http);
}

static void dw_auth_wipe_free(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

dw_auth_t *dw_auth_new(const dw_auth_opts_t *opts, char *errstr, size_t errstr_size)
{
    const char *missing = !opts->token_url       ? "token URL"
                          : !opts->client_id     ? "client id"
                          : !opts->client_secret ? "client secret"
                          : !opts->scope         ? "scope"
                                                 : NULL;
    if (missing) {
        dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "OAuth2 client credentials: no %s", missing);
        return NULL;
    }
    dw_auth_t *auth = calloc(1, sizeof(*auth));
    if (!auth)
        goto nomem;
    pthread_mutex_init(&auth->lock, NULL);
    auth->margin_s = opts->refresh_margin_s > 0 ? opts->refresh_margin_s : 0;
    auth->http = opts->http;
    auth->http.ca_file = NULL; /* copied by the request handle below: keep ours NULL */
    auth->now = dw_auth_real_now;
    if (!(auth->token_url = strdup(opts->token_url)) || !(auth->client_id = strdup(opts->client_id)) ||
        !(auth->client_secret = strdup(opts->client_secret)) || !(auth->scope = strdup(opts->scope)))
        goto nomem;
    dw_log_add_secret(auth->client_secret);
    dw_http_opts_t h = opts->http;
    if (!(auth->req = dw_http_req_new(&h, errstr, errstr_size))) {
        dw_auth_destroy(auth);
        return NULL;
    }
    return auth;
nomem:
    dw_auth_destroy(auth);
    dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    return NULL;
}

void dw_auth_destroy(dw_auth_t *auth)
{
    if (!auth)
        return;
    dw_http_req_destroy(auth->req);
    free(auth->token_url);
    free(auth->client_id);
    dw_auth_wipe_free(auth->client_secret);
    free(auth->scope);
    dw_auth_wipe_free(auth->token);
    pthread_mutex_destroy(&auth->lock);
    free(auth);
}

void dw_auth_set_clock(dw_auth_t *auth, double (*now)(void))
{
    auth->now = now ? now : dw_auth_real_now;
}

bool dw_auth_needs_refresh(double fetched_at, long expires_in, int margin_s, double now)
{
    double margin = margin_s;
    if (margin > expires_in / 2.0)
        margin = expires_in / 2.0;
    return now >= fetched_at + (double)expires_in - margin;
}

bool dw_auth_expired(double fetched_at, long expires_in, double now)
{
    /* a few seconds of slack for the request in flight and clock differences */
    return now >= fetched_at + (double)expires_in - 5.0;
}

static dw_err_t dw_auth_cache_put_locked(dw_auth_t *auth, char *token, long expires_in)
{
    dw_auth_wipe_free(auth->token);
    auth->token = token;
    auth->expires_in = expires_in;
    auth->fetched_at = auth->now();
    dw_log_add_secret(token);
    return DW_OK;
}

dw_err_t dw_auth_cache_put(dw_auth_t *auth, const char *token, long expires_in)
{
    char *copy = strdup(token);
    if (!copy)
        return DW_ERR_NOMEM;
    pthread_mutex_lock(&auth->lock);
    dw_err_t rc = dw_auth_cache_put_locked(auth, copy, expires_in);
    pthread_mutex_unlock(&auth->lock);
    return rc;
}

void dw_auth_invalidate(dw_auth_t *auth)
{
    pthread_mutex_lock(&auth->lock);
    dw_auth_wipe_free(auth->token);
    auth->token = NULL;
    pthread_mutex_unlock(&auth->lock);
}

unsigned long dw_auth_fetch_count(const dw_auth_t *auth)
{
    return auth->fetches;
}

char *dw_auth_form(const char *client_id, const char *client_secret, const char *scope)
{
    size_t n = 3 * (strlen(client_id) + strlen(client_secret) + strlen(scope)) + 128;
    char *form = malloc(n), *a = malloc(n), *b = malloc(n), *c = malloc(n);
    char *out = NULL;
    if (!form || !a || !b || !c)
        goto done;
    if (dw_http_urlencode(client_id, true, a, n) || dw_http_urlencode(client_secret, true, b, n) ||
        dw_http_urlencode(scope, true, c, n))
        goto done;
    snprintf(form, n, "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s", a,
             b, c);
    out = form;
    form = NULL;
done:
    if (b)
        memset(b, 0, n);
    free(form);
    free(a);
    free(b);
    free(c);
    return out;
}

dw_err_t dw_auth_parse_response(long status, const char *body, size_t len, char **token,
                                long *expires_in, char *errstr, size_t errstr_size)
{
    dw_err_t rc;
    json_error_t jerr;
    *token = NULL;
    *expires_in = 0;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (status != 200) {
        const char *e = json_string_value(json_object_get(doc, "error"));
        const char *d = json_string_value(json_object_get(doc, "error_description"));
        if (status == 429 || status >= 500 || status == 408)
            rc = status == 408 ? DW_ERR_TIMEOUT : DW_ERR_UNAVAILABLE;
        else if (e && (strcmp(e, "temporarily_unavailable") == 0))
            rc = DW_ERR_UNAVAILABLE;
        else
            rc = DW_ERR_CONFIG;
        dw_errf(rc, errstr, errstr_size, "token endpoint answered %ld%s%s%s%.200s", status,
                e ? " " : "", e ? e : "", d ? ": " : "", d ? d : "");
        json_decref(doc);
        return rc;
    }
    if (!doc) {
        json_decref(doc);
        return dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                       "token response is not JSON (line %d column %d: %s)", jerr.line,
                       jerr.column, jerr.text);
    }
    const char *tok = NULL, *type = NULL;
    json_int_t exp = 0;
    if (json_unpack_ex(doc, &jerr, 0, "{s:s, s?s, s:I}", "access_token", &tok, "token_type",
                       &type, "expires_in", &exp) != 0) {
        /* some servers send expires_in as a string */
        const char *exps = NULL;
        if (json_unpack_ex(doc, &jerr, 0, "{s:s, s:s}", "access_token", &tok, "expires_in",
                           &exps) == 0)
            exp = strtoll(exps, NULL, 10);
        else {
            json_decref(doc);
            return dw_errf(DW_ERR_PARSE, errstr, errstr_size, "token response: %s", jerr.text);
        }
    }
    if (type && strcasecmp(type, "Bearer") != 0) {
        dw_errf(DW_ERR_PARSE, errstr, errstr_size, "token type %.40s is not Bearer", type);
        json_decref(doc);
        return DW_ERR_PARSE;
    }
    if (!tok[0] || exp <= 0) {
        json_decref(doc);
        return dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                       "token response without a token or a positive expires_in");
    }
    *token = strdup(tok);
    *expires_in = (long)exp;
    json_decref(doc);
    return *token ? DW_OK : DW_ERR_NOMEM;
}

/* Fetch a new token (lock held). */
static dw_err_t dw_auth_fetch(dw_auth_t *auth, char *errstr, size_t errstr_size)
{
    dw_err_t rc;
    char *form = dw_auth_form(auth->client_id, auth->client_secret, auth->scope);
    char *token = NULL;
    long expires_in = 0;
    if (!form)
        return dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    rc = dw_http_req_setup(auth->req, "POST", auth->token_url, form, strlen(form));
    memset(form, 0, strlen(form));
    free(form);
    if (rc || (rc = dw_http_req_header(auth->req, "Content-Type",
                                       "application/x-www-form-urlencoded")) ||
        (rc = dw_http_req_header(auth->req, "Accept", "application/json")))
        return dw_errf(rc, errstr, errstr_size, "could not build the token request");
    char terr[512];
    if ((rc = dw_http_req_perform(auth->req, terr, sizeof(terr))))
        return dw_errf(rc, errstr, errstr_size, "could not reach the token endpoint: %s", terr);
    size_t len;
    const char *body = dw_http_req_body(auth->req, &len);
    if ((rc = dw_auth_parse_response(dw_http_req_status(auth->req), body, len, &token,
                                     &expires_in, errstr, errstr_size)))
        return rc;
    auth->fetches++;
    DW_DEBUG(DW_AUTH_FAC, "new access token for client %s, valid %ld s", auth->client_id,
             expires_in);
    return dw_auth_cache_put_locked(auth, token, expires_in);
}

dw_err_t dw_auth_token(dw_auth_t *auth, char *out, size_t out_size, char *errstr,
                       size_t errstr_size)
{
    dw_err_t rc = DW_OK;
    pthread_mutex_lock(&auth->lock);
    double now = auth->now();
    if (!auth->token ||
        dw_auth_needs_refresh(auth->fetched_at, auth->expires_in, auth->margin_s, now)) {
        char ferr[512];
        rc = dw_auth_fetch(auth, ferr, sizeof(ferr));
        if (rc) {
            if (auth->token && !dw_auth_expired(auth->fetched_at, auth->expires_in, now)) {
                DW_WARN(DW_AUTH_FAC, "token refresh failed, using the current token: %s", ferr);
                rc = DW_OK;
            } else {
                dw_errf(rc, errstr, errstr_size, "%s", ferr);
                goto out;
            }
        }
    }
    if (strlen(auth->token) + 1 > out_size) {
        rc = dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "token longer than %zu bytes",
                     out_size - 1);
        goto out;
    }
    memcpy(out, auth->token, strlen(auth->token) + 1);
out:
    pthread_mutex_unlock(&auth->lock);
    return rc;
}

char *dw_auth_scope_for(const char *resource_url)
{
    const char *p = strstr(resource_url, "://");
    if (!p || p == resource_url)
        return NULL;
    const char *host = p + 3;
    size_t hl = strcspn(host, "/?#");
    if (!hl)
        return NULL;
    size_t n = (size_t)(host - resource_url) + hl + sizeof("/.default");
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%.*s/.default", (int)((host - resource_url) + (long)hl), resource_url);
    return out;
}
