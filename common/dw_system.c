/*
 * dw_system: the dv.* / fo.* connection keys and the constructor of a system's token cache, HTTP
 * options and API base URL (see dw_system.h).
 */
#include "dw_system.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One system's keys; DW_SYSTEM_DEFS("dv", "Dataverse ...") expands to its rows. */
#define DW_SYSTEM_DEFS(p, what)                                                                   \
    {p ".url", DW_CONF_STR, NULL, 0, 0, NULL, 0, NULL, what},                                     \
    {p ".tenant", DW_CONF_STR, NULL, 0, 0, NULL, 0, NULL,                                         \
     "Entra ID tenant (id or domain): the token URL is "                                         \
     "https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token unless " p ".token_url is set"}, \
    {p ".token_url", DW_CONF_STR, NULL, 0, 0, NULL, 0, NULL, "OAuth2 v2 token endpoint URL"},    \
    {p ".client_id", DW_CONF_STR, NULL, 0, 0, NULL, 0, NULL, "app registration (client) id"},    \
    {p ".client_secret", DW_CONF_STR, NULL, 0, 0, NULL, DW_CONF_F_SECRET, NULL,                  \
     "app registration client secret"},                                                           \
    {p ".scope", DW_CONF_STR, NULL, 0, 0, NULL, 0, NULL,                                          \
     "OAuth2 scope; default <" p ".url scheme and host>/.default"},                               \
    {p ".token_refresh_margin_s", DW_CONF_INT, "300", 0, 86400, NULL, 0, NULL,                    \
     "refresh a token this long before it expires"},                                              \
    {p ".timeout_ms", DW_CONF_INT, "60000", 100, 600000, NULL, 0, NULL,                           \
     "timeout of one request"},                                                                   \
    {p ".tls_insecure", DW_CONF_BOOL, "false", 0, 0, NULL, 0, NULL,                               \
     "do NOT verify the server's TLS certificate (never in production)"},                         \
    {p ".ca_file", DW_CONF_STR, NULL, 0, 0, NULL, 0, NULL, "CA bundle; default: the system's"}

const dw_conf_def_t dw_system_conf_defs[] = {
    DW_SYSTEM_DEFS("dv", "Dataverse environment URL, e.g. https://org.crm.dynamics.com"),
    {"dv.api_path", DW_CONF_STR, "/api/data/v9.2", 0, 0, NULL, 0, NULL,
     "Web API path under dv.url"},
    DW_SYSTEM_DEFS("fo", "F&O environment URL, e.g. https://contoso.operations.dynamics.com"),
    DW_CONF_END,
};

struct dw_system_s {
    dw_auth_t *auth;
    dw_http_opts_t http;
    char *base;
};

/* conf value of "<prefix>.<name>" */
static const char *sys_str(const dw_conf_t *conf, const char *prefix, const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), "%s.%s", prefix, name);
    return dw_conf_get_str(conf, key);
}

static long long sys_int(const dw_conf_t *conf, const char *prefix, const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), "%s.%s", prefix, name);
    return dw_conf_get_int(conf, key);
}

/* "<url>/<path>/" with the slashes between and around them folded; path may be empty. New. */
static char *sys_base(const char *url, const char *path)
{
    size_t ul = strlen(url);
    while (ul && url[ul - 1] == '/')
        ul--;
    while (*path == '/')
        path++;
    size_t pl = strlen(path);
    while (pl && path[pl - 1] == '/')
        pl--;
    size_t n = ul + pl + 3;
    char *base = malloc(n);
    if (base)
        snprintf(base, n, "%.*s/%.*s%s", (int)ul, url, (int)pl, path, pl ? "/" : "");
    return base;
}

dw_system_t *dw_system_new(const dw_conf_t *conf, const char *prefix, dw_err_t *err, char *errstr,
                           size_t errstr_size)
{
    dw_system_t *sys = NULL;
    char *scope = NULL;
    char key[64], token_url[1024];
    const char *url = sys_str(conf, prefix, "url");
    if (!url || !*url) {
        snprintf(key, sizeof(key), "%s.url", prefix);
        *err = dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "%s is required", key);
        goto fail;
    }
    if (!(sys = calloc(1, sizeof(*sys)))) {
        *err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto fail;
    }
    dw_http_opts_init(&sys->http);
    sys->http.timeout_ms = (long)sys_int(conf, prefix, "timeout_ms");
    snprintf(key, sizeof(key), "%s.tls_insecure", prefix);
    sys->http.insecure = dw_conf_get_bool(conf, key);
    sys->http.ca_file = sys_str(conf, prefix, "ca_file");
    const char *api_path = strcmp(prefix, "dv") == 0 ? sys_str(conf, prefix, "api_path") : "data";
    if (!(sys->base = sys_base(url, api_path ? api_path : ""))) {
        *err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto fail;
    }

    dw_auth_opts_t ao;
    dw_auth_opts_init(&ao);
    ao.token_url = sys_str(conf, prefix, "token_url");
    const char *tenant = sys_str(conf, prefix, "tenant");
    if (!ao.token_url && tenant) {
        snprintf(token_url, sizeof(token_url),
                 "https://login.microsoftonline.com/%s/oauth2/v2.0/token", tenant);
        ao.token_url = token_url;
    }
    ao.client_id = sys_str(conf, prefix, "client_id");
    ao.client_secret = sys_str(conf, prefix, "client_secret");
    ao.scope = sys_str(conf, prefix, "scope");
    if (!ao.scope)
        ao.scope = scope = dw_auth_scope_for(url);
    ao.refresh_margin_s = (int)sys_int(conf, prefix, "token_refresh_margin_s");
    ao.http = sys->http;
    char aerr[512];
    if (!(sys->auth = dw_auth_new(&ao, aerr, sizeof(aerr)))) {
        *err = dw_errf(DW_ERR_CONFIG, errstr, errstr_size,
                       "%s credentials: %s (set %s.token_url or %s.tenant, %s.client_id, "
                       "%s.client_secret)",
                       prefix, aerr, prefix, prefix, prefix, prefix);
        goto fail;
    }
    free(scope);
    *err = DW_OK;
    return sys;
fail:
    free(scope);
    dw_system_destroy(sys);
    return NULL;
}

void dw_system_destroy(dw_system_t *sys)
{
    if (!sys)
        return;
    dw_auth_destroy(sys->auth);
    free(sys->base);
    free(sys);
}

dw_auth_t *dw_system_auth(const dw_system_t *sys)
{
    return sys->auth;
}

const dw_http_opts_t *dw_system_http_opts(const dw_system_t *sys)
{
    return &sys->http;
}

const char *dw_system_base(const dw_system_t *sys)
{
    return sys->base;
}
