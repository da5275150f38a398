/*
 * emu_ctx: what every request handler of one emulator process shares: the store, auth, limits,
 * injected faults and the settings that shape responses. Owned by main.
 */
#ifndef EMU_CTX_H
#define EMU_CTX_H

#include "emu_admin.h"
#include "emu_auth.h"
#include "emu_limits.h"
#include "emu_store.h"

typedef struct emu_ctx_s {
    const char *system;   /* "dv" or "fo" */
    emu_store_t *store;
    emu_auth_t *auth;
    emu_limits_t *limits;
    emu_faults_t *faults;
    char base_url[512];   /* service root with a trailing '/', e.g. http://127.0.0.1:8080/api/data/v9.2/ */
    const char *api_prefix; /* path of the service root, e.g. "/api/data/v9.2/" */
    int max_page_size;    /* Dataverse: 5000 */
    long long change_retention_s; /* change-tracking token lifetime (Dataverse default: 7 days) */
    const char *admin_secret; /* NULL: admin endpoint disabled */
    const char *fo_company;   /* F&O: the default company (dataAreaId), e.g. "usmf" */
    struct emu_fo_events_s *fo_events; /* F&O: data events outbox and delivery (NULL for dv) */
} emu_ctx_t;

#endif
