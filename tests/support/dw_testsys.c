/*
 * dw_testsys: a configuration pointing at an emulator (see dw_testsys.h).
 */
#include "dw_testsys.h"

#include <stdio.h>
#include <string.h>

#include "dw_system.h"

dw_conf_t *dw_testsys_conf(dw_testemu_t *emu, const char *prefix, char *errstr, size_t errstr_size)
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

int dw_testsys_start(dw_testsys_t *ts, const char *system, const char *admin_secret,
                     const char *limits, size_t chunk_max, char *errstr, size_t errstr_size)
{
    char admin[256], prefix[16];
    snprintf(admin, sizeof(admin), "emulator.admin_secret=%s", admin_secret);
    snprintf(prefix, sizeof(prefix), "tgt_%s", system);
    const char *args[] = {"-X", admin, limits ? "--limits" : NULL, limits, NULL};
    memset(ts, 0, sizeof(*ts));
    ts->emu = dw_testemu_start(system, prefix, args, NULL, errstr, errstr_size);
    if (!ts->emu)
        return -1;
    dw_err_t err;
    ts->conf = dw_testsys_conf(ts->emu, system, errstr, errstr_size);
    if (ts->conf)
        ts->sys = dw_system_new(ts->conf, system, &err, errstr, errstr_size);
    if (ts->sys) {
        dw_target_opts_t o;
        dw_target_opts_init(&o);
        o.chunk_max = chunk_max;
        ts->tgt = strcmp(system, "fo") == 0 ? dw_target_fo_new(ts->sys, &o, errstr, errstr_size)
                                            : dw_target_dv_new(ts->sys, &o, errstr, errstr_size);
    }
    if (!ts->tgt) {
        dw_testsys_stop(ts);
        return -1;
    }
    return 0;
}

void dw_testsys_stop(dw_testsys_t *ts)
{
    dw_target_destroy(ts->tgt);
    dw_system_destroy(ts->sys);
    dw_conf_destroy(ts->conf);
    dw_testemu_destroy(ts->emu);
    memset(ts, 0, sizeof(*ts));
}
