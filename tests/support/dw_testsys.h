/*
 * dw_testsys: a dwfleet configuration pointing at an emulator, for tests that build a
 * dw_system_t (connectors, capture pieces) in process: the common and dv.* / fo.* keys, with the
 * emulator's URL, token endpoint and default client credentials set.
 */
#ifndef DW_TESTSYS_H
#define DW_TESTSYS_H

#include <stddef.h>

#include "dw_config.h"
#include "dw_system.h"
#include "dw_target.h"
#include "dw_testemu.h"

/* New configuration (dw_conf_common_defs + dw_system_conf_defs) with <prefix>.url,
 * <prefix>.token_url, <prefix>.client_id and <prefix>.client_secret for emu; prefix "dv" or
 * "fo". NULL with errstr filled. */
dw_conf_t *dw_testsys_conf(dw_testemu_t *emu, const char *prefix, char *errstr, size_t errstr_size);

/* An emulator with a connection and a write target on it: what the connector tests run on. */
typedef struct dw_testsys_s {
    dw_testemu_t *emu;
    dw_conf_t *conf;
    dw_system_t *sys;
    dw_target_t *tgt;
} dw_testsys_t;

/* Start dw-emulator --system system ("dv" or "fo") with /_admin behind admin_secret and the
 * service protection limits (NULL: none), then the configuration, the dw_system_t and the
 * dw_target_t (chunk_max records per request) pointing at it. 0, or -1 with errstr filled (what
 * was started is stopped again). */
int dw_testsys_start(dw_testsys_t *ts, const char *system, const char *admin_secret,
                     const char *limits, size_t chunk_max, char *errstr, size_t errstr_size);

/* Destroy what dw_testsys_start made and zero ts. */
void dw_testsys_stop(dw_testsys_t *ts);

#endif
