/*
 * emu_admin: fault injection and control of a running emulator, under /_admin (JSON; requests
 * need "Authorization: Bearer <emulator.admin_secret>"):
 *   GET  /_admin/state         faults, limits and write counters
 *   POST /_admin/faults        {"unavailable":bool,"latency_ms":N,
 *                               "fail_writes":{"count":N,"status":S,"code":"0x...","message":"..."},
 *                               "no_multiple":["accounts"]}
 *   POST /_admin/limits        {"spec":"off"|"microsoft"|"R/W[,C[,E]]"}
 *   POST /_admin/drop-column   {"table":"account","column":"telephone1"}   (schema drift)
 *   POST /_admin/expire-tokens change-tracking tokens issued so far become expired
 *   POST /_admin/reset         drop all data, restore columns, clear faults and counters
 */
#ifndef EMU_ADMIN_H
#define EMU_ADMIN_H

#include <stdbool.h>

#include "emu_http.h"

typedef struct emu_faults_s emu_faults_t;
struct emu_ctx_s;

emu_faults_t *emu_faults_new(void);
void emu_faults_destroy(emu_faults_t *f);
/* True when the service is to answer 503. */
bool emu_faults_unavailable(emu_faults_t *f);
/* Added latency in milliseconds. */
int emu_faults_latency_ms(emu_faults_t *f);
/* Dataverse: true when the entity set's type is not to bind CreateMultiple, UpdateMultiple and
 * UpsertMultiple (a table that does not take them: the action's segment is not found). */
#define EMU_FAULTS_SETS_MAX 8
bool emu_faults_no_multiple(emu_faults_t *f, const char *entity_set);
/* When a write failure is armed (and, with a "match" string, req's path or body holds it),
 * consume one and fill resp; returns true. */
bool emu_faults_take_write(emu_faults_t *f, const emu_req_t *req, emu_resp_t *resp);

/* Handle a request under /_admin (authenticates it first). */
void emu_admin_handle(struct emu_ctx_s *ctx, emu_req_t *req, emu_resp_t *resp);

#endif
