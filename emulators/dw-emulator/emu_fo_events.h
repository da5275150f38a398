/*
 * emu_fo_events: F&O data events ("Data events", learn.microsoft.com/dynamics365/fin-ops-core/
 * dev-itpro/business-events/data-events). Every committed create, update and delete of an entity
 * is written to an outbox table (_fo_outbox) inside the transaction of the change, so an event
 * exists if and only if the change committed; a delivery thread POSTs each outbox row, as a
 * RemoteExecutionContext JSON document, to every configured endpoint, strictly in outbox (=
 * commit) order per endpoint: it stops at the first row an endpoint refuses and retries that row
 * with exponential backoff, so nothing is lost while an endpoint is down. Each endpoint's
 * position is kept in _fo_event_cursor. State (pending, delivered, last error) is shown by the
 * admin endpoint.
 */
#ifndef EMU_FO_EVENTS_H
#define EMU_FO_EVENTS_H

#include <stdbool.h>

#include <jansson.h>

#include "dw_err.h"
#include "dw_pg.h"
#include "emu_store.h"

typedef struct emu_fo_events_s emu_fo_events_t;

typedef struct {
    const char *endpoints;   /* comma-separated URLs; NULL/"" : events are recorded, not sent */
    const char *auth_header; /* "Name: value" sent with every POST (e.g. "Authorization: Bearer x"); NULL */
    int retry_initial_ms;    /* first backoff (e.g. 200) */
    int retry_max_ms;        /* backoff cap (e.g. 30000) */
    int timeout_ms;          /* per POST */
} emu_fo_events_conf_t;

/* Create the outbox tables in st's schema and load each endpoint's position. conf strings are
 * copied. NULL with errstr on failure. */
emu_fo_events_t *emu_fo_events_new(emu_store_t *st, const emu_fo_events_conf_t *conf, char *errstr,
                                   size_t errstr_size);
/* Start / stop the delivery thread (stop is NULL-safe and joins). */
dw_err_t emu_fo_events_start(emu_fo_events_t *ev, char *errstr, size_t errstr_size);
void emu_fo_events_destroy(emu_fo_events_t *ev);

/* Build the RemoteExecutionContext document of one change (pure; new reference).
 * message: "Create", "Update" or "Delete". after/before: stored rows (to_jsonb, borrowed);
 * after NULL for Delete, before NULL for Create. correlation_id: the request's (or NULL: new). */
json_t *emu_fo_event_build(const emu_table_t *t, const char *message, json_t *after, json_t *before,
                           const char *correlation_id, long long now_ms);

/* Record the event of one change in the outbox, on pg inside the caller's (write) transaction. */
dw_err_t emu_fo_events_record(emu_fo_events_t *ev, dw_pg_t *pg, const emu_table_t *t,
                              const char *message, json_t *after, json_t *before,
                              const char *correlation_id, char *errstr, size_t errstr_size);

/* Wake the delivery thread (after a commit). NULL-safe. */
void emu_fo_events_notify(emu_fo_events_t *ev);

/* After the admin reset dropped the schema: recreate the tables, positions back to 0. */
dw_err_t emu_fo_events_reset(emu_fo_events_t *ev, char *errstr, size_t errstr_size);

/* {"outbox_rows":N,"endpoints":[{"url","delivered","pending","position","attempts",
 *  "last_error","last_error_at","retry_in_ms"}]} (new reference). */
json_t *emu_fo_events_state(emu_fo_events_t *ev);

#endif
