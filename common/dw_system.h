/*
 * dw_system: the connection to one Microsoft system, Dataverse ("dv") or Finance & Operations
 * ("fo"), as the configuration describes it: the <prefix>.* keys (url, tenant or token_url,
 * client credentials, scope, timeouts, TLS) declared once in dw_system_conf_defs, and the
 * constructor that turns them into what a client needs: the OAuth2 token cache (dw_auth), the
 * HTTP options of its requests and the base URL of the API (<dv.url>/<dv.api_path>/ or
 * <fo.url>/data/). dw-capture and dwctl initial-sync both build their connections here.
 */
#ifndef DW_SYSTEM_H
#define DW_SYSTEM_H

#include <stddef.h>

#include "dw_auth.h"
#include "dw_config.h"
#include "dw_err.h"
#include "dw_http.h"

/* The dv.* and fo.* keys for a binary's configuration tables. */
extern const dw_conf_def_t dw_system_conf_defs[];

typedef struct dw_system_s dw_system_t;

/* New connection of system prefix ("dv" or "fo") from conf (borrowed; must know the keys of
 * dw_system_conf_defs and outlive the connection). The scope defaults to
 * "<url scheme and host>/.default", the token URL to Entra's for <prefix>.tenant. Nothing is
 * fetched yet. NULL with errstr on error: *err DW_ERR_CONFIG when <prefix>.url is unset or the
 * credentials are incomplete, DW_ERR_NOMEM. */
dw_system_t *dw_system_new(const dw_conf_t *conf, const char *prefix, dw_err_t *err, char *errstr,
                           size_t errstr_size);
void dw_system_destroy(dw_system_t *sys);

/* The token cache (borrowed; lives as long as sys). */
dw_auth_t *dw_system_auth(const dw_system_t *sys);

/* The HTTP options of the system's requests: <prefix>.timeout_ms, .tls_insecure, .ca_file
 * (borrowed; lives as long as sys). */
const dw_http_opts_t *dw_system_http_opts(const dw_system_t *sys);

/* The API's base URL, ending in '/' (borrowed): "<dv.url>/<dv.api_path>/" or "<fo.url>/data/". */
const char *dw_system_base(const dw_system_t *sys);

#endif
