/*
 * dw_testsys: a dwfleet configuration pointing at an emulator, for tests that build a
 * dw_system_t (connectors, capture pieces) in process: the common and dv.* / fo.* keys, with the
 * emulator's URL, token endpoint and default client credentials set.
 */
#ifndef DW_TESTSYS_H
#define DW_TESTSYS_H

#include <stddef.h>

#include "dw_config.h"
#include "dw_testemu.h"

/* New configuration (dw_conf_common_defs + dw_system_conf_defs) with <prefix>.url,
 * <prefix>.token_url, <prefix>.client_id and <prefix>.client_secret for emu; prefix "dv" or
 * "fo". NULL with errstr filled. */
dw_conf_t *dw_testsys_conf(dw_testemu_t *emu, const char *prefix, char *errstr,
                           size_t errstr_size);

#endif
