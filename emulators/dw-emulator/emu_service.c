/*
 * emu_service: the parts of request handling the Dataverse and F&O emulators share (see
 * emu_service.h).
 */
#include "emu_service.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

void emu_service_document(const emu_ctx_t *ctx, emu_resp_t *resp)
{
    json_t *v = json_array();
    for (size_t i = 0; i < emu_store_ntables(ctx->store); i++) {
        emu_table_t *t = emu_store_table_at(ctx->store, i);
        json_array_append_new(v, json_pack("{s:s,s:s,s:s}", "name", t->entity_set, "kind",
                                           "EntitySet", "url", t->entity_set));
    }
    char cx[600];
    snprintf(cx, sizeof(cx), "%s$metadata", ctx->base_url);
    emu_resp_json(resp, 200, json_pack("{s:s,s:o}", "@odata.context", cx, "value", v));
}

void emu_service_context(const emu_ctx_t *ctx, const emu_table_t *t, const emu_odata_query_t *q,
                         const char *suffix, char *out, size_t size)
{
    snprintf(out, size, "%s$metadata#%s", ctx->base_url, t->entity_set);
    if (q && q->nselect) {
        strncat(out, "(", size - strlen(out) - 1);
        for (size_t i = 0; i < q->nselect; i++) {
            if (i)
                strncat(out, ",", size - strlen(out) - 1);
            strncat(out, q->select[i], size - strlen(out) - 1);
        }
        strncat(out, ")", size - strlen(out) - 1);
    }
    strncat(out, suffix, size - strlen(out) - 1);
}

void emu_service_batch_rollback(void *opaque, void *txn)
{
    emu_ctx_t *ctx = opaque;
    emu_store_rollback_release(ctx->store, txn);
}
