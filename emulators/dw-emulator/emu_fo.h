/*
 * emu_fo: the F&O OData emulator (/data/...) over emu_store: entity collections named by the
 * metadata's entity_set, full-key addressing (dataAreaId='usmf',CustomerAccount='US-001'), the
 * default company unless cross-company=true, $filter (with enum literals) $select $top $skip
 * $orderby $count, server-driven paging (10,000 rows, Prefer: odata.maxpagesize, @odata.nextLink),
 * POST/PATCH/DELETE validated from the metadata, $metadata (CSDL), and data events recorded in
 * the transaction of each change (emu_fo_events).
 */
#ifndef EMU_FO_H
#define EMU_FO_H

#include <stddef.h>

#include "dw_err.h"
#include "emu_http.h"

struct emu_ctx_s;

#define EMU_FO_MAX_PAGE 10000

/* Prepare the store for F&O (row versions). Call once after emu_store_open. */
dw_err_t emu_fo_init(struct emu_ctx_s *ctx, char *errstr, size_t errstr_size);

/* Handle one authenticated request; rel: the path after "/data/" ("CustomersV3(...)"). */
void emu_fo_handle(struct emu_ctx_s *ctx, emu_req_t *req, emu_resp_t *resp, const char *rel);

/* Turn a 429 filled by emu_limits into F&O's shape (Retry-After kept). */
void emu_fo_throttled(emu_resp_t *resp);

/* After the admin reset recreated the schema: row versions and the outbox again. */
dw_err_t emu_fo_after_reset(struct emu_ctx_s *ctx, char *errstr, size_t errstr_size);

/* The odata.maxpagesize of a Prefer header (0 when absent or malformed). */
int emu_fo_prefer_maxpagesize(const char *prefer);
/* True when the Prefer header asks for return=minimal / return=representation. */
int emu_fo_prefer_return(const char *prefer); /* -1 minimal, 1 representation, 0 neither */

/* The F&O error body: {"error":{"code":"","message":msg,"innererror":{"message":msg,"type":type,
 * "stacktrace":""}}}. */
void emu_fo_error(emu_resp_t *resp, unsigned status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
