/*
 * dw_auth: OAuth2 client credentials against an Entra ID v2 token endpoint
 * (POST https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token, form client_id,
 * client_secret, grant_type=client_credentials, scope=<resource>/.default) with a token cache
 * that refreshes before expiry.
 *
 * A dw_auth_t holds one client's credentials and its current token. dw_auth_token() returns the
 * cached token while it is fresh, fetches a new one when it is within the refresh margin of its
 * expiry (or when dw_auth_invalidate() was called after a 401), and keeps using the old one while
 * it is still valid if a refresh fails. Thread-safe (one mutex; the fetch happens under it, so
 * concurrent callers wait for one fetch instead of each fetching).
 *
 * The client secret and every token are registered with dw_log as secrets and never logged.
 */
#ifndef DW_AUTH_H
#define DW_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "dw_err.h"
#include "dw_http.h"

typedef struct dw_auth_opts_s {
    const char *token_url;     /* full token endpoint URL (borrowed, copied); required */
    const char *client_id;     /* required */
    const char *client_secret; /* required; a secret */
    const char *scope;         /* e.g. "https://org.crm.dynamics.com/.default"; required */
    int refresh_margin_s;      /* refresh this long before expiry (default 300; at most half the
                                  token's lifetime is used for short-lived tokens) */
    dw_http_opts_t http;       /* timeouts and TLS of the token requests */
} dw_auth_opts_t;

typedef struct dw_auth_s dw_auth_t;

/* Defaults (margin 300 s, http defaults); the strings NULL. */
void dw_auth_opts_init(dw_auth_opts_t *opts);

/* New cache for one client. Nothing is fetched yet. NULL with errstr when a required option is
 * missing (DW_ERR_CONFIG) or out of memory. */
dw_auth_t *dw_auth_new(const dw_auth_opts_t *opts, char *errstr, size_t errstr_size);
void dw_auth_destroy(dw_auth_t *auth);

/* The current access token copied into out (out_size bytes; 4096 suffices for Entra tokens).
 * Fetches when needed. Errors: DW_ERR_CONFIG (invalid_client / invalid_scope /
 * unauthorized_client: the credentials are wrong, not retriable), DW_ERR_UNAVAILABLE /
 * DW_ERR_TIMEOUT (endpoint unreachable, 5xx, 429: retriable), DW_ERR_PARSE (not a token
 * response), DW_ERR_INVALID_ARG (out too small). */
dw_err_t dw_auth_token(dw_auth_t *auth, char *out, size_t out_size, char *errstr,
                       size_t errstr_size);

/* Forget the cached token (after a 401 from the resource): the next dw_auth_token fetches. */
void dw_auth_invalidate(dw_auth_t *auth);

/* How many tokens were fetched so far (metrics, tests). */
unsigned long dw_auth_fetch_count(const dw_auth_t *auth);

/* ---- pieces testable without a network ------------------------------------------------------ */

/* Replace the clock (seconds, monotonic; NULL restores the real one). For tests. */
void dw_auth_set_clock(dw_auth_t *auth, double (*now)(void));

/* Put a token into the cache as if fetched at the clock's now with expires_in seconds. */
dw_err_t dw_auth_cache_put(dw_auth_t *auth, const char *token, long expires_in);

/* True when a token obtained with lifetime expires_in at fetched_at must be refreshed at now with
 * margin_s (the margin is capped at half the lifetime). */
bool dw_auth_needs_refresh(double fetched_at, long expires_in, int margin_s, double now);

/* True when the token is past its expiry at now (unusable even as a fallback). */
bool dw_auth_expired(double fetched_at, long expires_in, double now);

/* The form body of a token request, every value form-urlencoded. New string (free() it after
 * wiping: it holds the secret); NULL when out of memory. */
char *dw_auth_form(const char *client_id, const char *client_secret, const char *scope);

/* Parse a token endpoint response (status, body): on 200 a new token in *token and its lifetime
 * in *expires_in; otherwise the error class as dw_auth_token returns it, with Entra's error and
 * error_description (never the secret) in errstr. */
dw_err_t dw_auth_parse_response(long status, const char *body, size_t len, char **token,
                                long *expires_in, char *errstr, size_t errstr_size);

/* The scope for a resource URL: "<scheme>://<host>/.default" (path dropped). New string, NULL
 * when url has no scheme and host or out of memory. */
char *dw_auth_scope_for(const char *resource_url);

#endif
