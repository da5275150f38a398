/*
 * emu_dv: the Dataverse Web API (v9.2) over emu_store: entity sets, single rows by id or
 * alternate key, collections ($select $filter $top $orderby $count, odata.maxpagesize paging),
 * POST/PATCH(upsert)/DELETE with ETags and conditional headers, @odata.bind, validation from
 * metadata, CreateMultiple/UpdateMultiple/UpsertMultiple, change tracking (delta links) and
 * EntityDefinitions metadata.
 */
#ifndef EMU_DV_H
#define EMU_DV_H

#include "emu_http.h"

struct emu_ctx_s;

/* Handle one authenticated request; rel: the path after the service root ("accounts(...)"). */
void emu_dv_handle(struct emu_ctx_s *ctx, emu_req_t *req, emu_resp_t *resp, const char *rel);

/* Make every change-tracking token issued so far expired (admin). */
dw_err_t emu_dv_expire_tokens(struct emu_ctx_s *ctx, char *errstr, size_t errstr_size);

#endif
