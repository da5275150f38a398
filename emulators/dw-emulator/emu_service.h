/*
 * emu_service: what the Dataverse (emu_dv) and F&O (emu_fo) request handlers share because the
 * two OData services behave the same there: the service document at the service root, the
 * @odata.context URL of an entity set, and ending a $batch change set that failed.
 */
#ifndef EMU_SERVICE_H
#define EMU_SERVICE_H

#include <stddef.h>

#include "emu_ctx.h"
#include "emu_http.h"
#include "emu_odata.h"
#include "emu_store.h"

/* Answer 200 with the service document: every table's entity set, context <base_url>$metadata. */
void emu_service_document(const emu_ctx_t *ctx, emu_resp_t *resp);

/* The @odata.context URL of table t into out: <base_url>$metadata#<entity_set>, then the
 * $select list of q in parentheses (q NULL or without $select: none), then suffix ("",
 * "/$entity", "/$delta"). Truncated to size. */
void emu_service_context(const emu_ctx_t *ctx, const emu_table_t *t, const emu_odata_query_t *q,
                         const char *suffix, char *out, size_t size);

/* emu_batch_ops_t.rollback for both systems: opaque is the emu_ctx_t, txn the change set's
 * connection, rolled back and released. */
void emu_service_batch_rollback(void *opaque, void *txn);

#endif
