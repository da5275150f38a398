/*
 * dw_testsys: a configuration pointing at an emulator (see dw_testsys.h).
 */
#include "dw_testsys.h"

#include <stdio.h>

#include "dw_system.h"

dw_conf_t *dw_testsys_conf(dw_testemu_t *emu, const char *prefix, char *errstr,
                           size_t errstr_size)
{
    const dw_conf_def_t *tables[] = {dw_conf_common_defs, dw_system_conf_defs, NULL};
    dw_conf_t *conf = dw_conf_new(tables, NULL, errstr, errstr_size);
    if (!conf)
        return NULL;
    char url[128], tok[160];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", dw_testemu_port(emu));
    snprintf(tok, sizeof(tok), "http://127.0.0.1:%d/contoso/oauth2/v2.0/token",
             dw_testemu_port(emu));
    const char *kv[][2] = {{"url", url},
                           {"token_url", tok},
                           {"client_id", "dwfleet"},
                           {"client_secret", "dwfleet-local-secret"}};
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
        char key[64];
        snprintf(key, sizeof(key), "%s.%s", prefix, kv[i][0]);
        if (dw_conf_set(conf, key, kv[i][1], DW_CONF_SRC_FLAG, "test", errstr, errstr_size)) {
            dw_conf_destroy(conf);
            return NULL;
        }
    }
    return conf;
}
