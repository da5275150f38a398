/*
 * emu_auth: client-credentials tokens, kept in memory (a restart invalidates them, as a key
 * rollover would). Tokens are 32 random bytes in hex; secrets are never logged.
 * Shapes follow "Microsoft identity platform and the OAuth 2.0 client credentials flow"
 * (learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
 */
#include "emu_auth.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "dw_log.h"

#define EMU_AUTH_MAX_TOKENS 4096

typedef struct {
    char token[65];
    char client[128];
    time_t expires;
} emu_token_t;

struct emu_auth_s {
    char *clients; /* "id:secret,..." */
    char *resource;
    int ttl;
    pthread_mutex_t mu;
    emu_token_t tokens[EMU_AUTH_MAX_TOKENS];
    size_t next;
};

emu_auth_t *emu_auth_new(const char *clients, int token_ttl, const char *resource_url)
{
    emu_auth_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->clients = strdup(clients ? clients : "");
    a->resource = strdup(resource_url ? resource_url : "");
    a->ttl = token_ttl;
    pthread_mutex_init(&a->mu, NULL);
    /* register every secret with the log masker */
    char *copy = strdup(a->clients), *save = NULL;
    for (char *p = copy ? strtok_r(copy, ",", &save) : NULL; p; p = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(p, ':');
        if (colon)
            dw_log_add_secret(colon + 1);
    }
    free(copy);
    return a;
}

void emu_auth_destroy(emu_auth_t *a)
{
    if (!a)
        return;
    pthread_mutex_destroy(&a->mu);
    free(a->clients);
    free(a->resource);
    free(a);
}

bool emu_auth_is_token_path(const char *path)
{
    const char *suffix = "/oauth2/v2.0/token";
    size_t l = strlen(path), sl = strlen(suffix);
    return path[0] == '/' && l > sl + 1 && strcmp(path + l - sl, suffix) == 0 &&
           memchr(path + 1, '/', l - sl - 1) == NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool emu_form_get(const char *body, const char *name, char *out, size_t out_size)
{
    size_t nl = strlen(name);
    const char *p = body;
    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t seg = end ? (size_t)(end - p) : strlen(p);
        if (seg > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t o = 0;
            for (size_t i = nl + 1; i < seg && o + 1 < out_size; i++) {
                char c = p[i];
                if (c == '+')
                    c = ' ';
                else if (c == '%' && i + 2 < seg + 1 && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
                    c = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
                    i += 2;
                }
                out[o++] = c;
            }
            out[o] = '\0';
            return true;
        }
        p = end ? end + 1 : NULL;
    }
    return false;
}

static bool client_ok(const emu_auth_t *a, const char *id, const char *secret)
{
    size_t il = strlen(id), sl = strlen(secret);
    const char *p = a->clients;
    bool ok = false;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t seg = end ? (size_t)(end - p) : strlen(p);
        if (seg == il + 1 + sl && strncmp(p, id, il) == 0 && p[il] == ':' &&
            strncmp(p + il + 1, secret, sl) == 0)
            ok = true;
        if (!end)
            break;
        p = end + 1;
    }
    return ok;
}

static void aad_error(emu_resp_t *resp, unsigned status, const char *err, const char *desc)
{
    emu_resp_json(resp, status,
                  json_pack("{s:s,s:s,s:[i]}", "error", err, "error_description", desc,
                            "error_codes", status == 401 ? 7000215 : 900144));
}

void emu_auth_token(emu_auth_t *a, emu_req_t *req, emu_resp_t *resp)
{
    char id[128], secret[256], grant[64], scope[512];
    if (strcmp(req->method, "POST") != 0) {
        aad_error(resp, 405, "invalid_request", "AADSTS900561: The endpoint only accepts POST requests.");
        return;
    }
    const char *ct = emu_req_header(req, "Content-Type");
    if (!ct || strncmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
        aad_error(resp, 400, "invalid_request",
                  "AADSTS900144: The request body must contain the following parameter: 'grant_type'.");
        return;
    }
    if (!emu_form_get(req->body, "grant_type", grant, sizeof(grant))) {
        aad_error(resp, 400, "invalid_request",
                  "AADSTS900144: The request body must contain the following parameter: 'grant_type'.");
        return;
    }
    if (strcmp(grant, "client_credentials") != 0) {
        aad_error(resp, 400, "unsupported_grant_type",
                  "AADSTS70003: The app requested an unsupported grant type.");
        return;
    }
    if (!emu_form_get(req->body, "client_id", id, sizeof(id)) || !id[0]) {
        aad_error(resp, 400, "invalid_request",
                  "AADSTS900144: The request body must contain the following parameter: 'client_id'.");
        return;
    }
    if (!emu_form_get(req->body, "scope", scope, sizeof(scope)) ||
        strlen(scope) < 9 || strcmp(scope + strlen(scope) - 9, "/.default") != 0) {
        aad_error(resp, 400, "invalid_scope",
                  "AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).");
        return;
    }
    if (!emu_form_get(req->body, "client_secret", secret, sizeof(secret)) ||
        !client_ok(a, id, secret)) {
        aad_error(resp, 401, "invalid_client",
                  "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.");
        return;
    }
    unsigned char rnd[32];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        emu_resp_error(resp, 500, "0x80040216", "no randomness");
        return;
    }
    emu_token_t t;
    memset(&t, 0, sizeof(t));
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(t.token + 2 * i, 3, "%02x", rnd[i]);
    snprintf(t.client, sizeof(t.client), "%s", id);
    t.expires = time(NULL) + a->ttl;
    pthread_mutex_lock(&a->mu);
    a->tokens[a->next % EMU_AUTH_MAX_TOKENS] = t;
    a->next++;
    pthread_mutex_unlock(&a->mu);
    DW_INFO("auth", "issued a token to client %s", id);
    emu_resp_json(resp, 200,
                  json_pack("{s:s,s:i,s:i,s:s}", "token_type", "Bearer", "expires_in", a->ttl,
                            "ext_expires_in", a->ttl, "access_token", t.token));
    emu_resp_header(resp, "Cache-Control", "no-store, no-cache");
}

bool emu_auth_check(emu_auth_t *a, emu_req_t *req, emu_resp_t *resp)
{
    const char *h = emu_req_header(req, "Authorization");
    bool ok = false;
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        const char *tok = h + 7;
        time_t now = time(NULL);
        pthread_mutex_lock(&a->mu);
        for (size_t i = 0; i < EMU_AUTH_MAX_TOKENS && i < a->next; i++) {
            emu_token_t *t = &a->tokens[i];
            if (t->token[0] && strcmp(t->token, tok) == 0 && t->expires > now) {
                snprintf(req->client, sizeof(req->client), "%s", t->client);
                ok = true;
                break;
            }
        }
        pthread_mutex_unlock(&a->mu);
    }
    if (!ok) {
        /* Dataverse answers 401 with an empty body and a Bearer challenge naming the authority */
        char chal[1024];
        snprintf(chal, sizeof(chal),
                 "Bearer authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize, resource_id=%s",
                 a->resource);
        emu_resp_raw(resp, 401, "text/plain", "", 0);
        emu_resp_header(resp, "WWW-Authenticate", chal);
    }
    return ok;
}
