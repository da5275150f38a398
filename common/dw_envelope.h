/*
 * dw_envelope: the event envelope (schemas/event.schema.json) read strictly, and the write
 * command (schemas/command.schema.json) built from a mapper result.
 *
 * dw_event_parse reads JSON text with dw_mapper_loadb (exact numbers, duplicate keys rejected),
 * extracts every member with one strict json_unpack_ex, then checks each value against the schema
 * (patterns, enums, lengths, RFC 3339 times, the op/data/key/record_id rules). Every error names
 * the envelope member it is about ("" for the whole document) and never quotes record data.
 */
#ifndef DW_ENVELOPE_H
#define DW_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "dw_err.h"
#include "dw_map.h"
#include "dw_mapper.h"

typedef enum {
    DW_EVENT_UPSERT = 0,
    DW_EVENT_DELETE,
    DW_EVENT_SNAPSHOT,
} dw_event_op_t;

/* "upsert" | "delete" | "snapshot" (static). */
const char *dw_event_op_name(dw_event_op_t op);

/* Why an envelope was rejected. */
typedef enum {
    DW_ENVELOPE_OK = 0,
    DW_ENVELOPE_MALFORMED,    /* not JSON (or duplicate keys): unparseable */
    DW_ENVELOPE_INVALID_UTF8, /* bytes that are not UTF-8 */
    DW_ENVELOPE_TOO_LARGE,    /* longer than the caller's limit */
    DW_ENVELOPE_INVALID,      /* JSON, but not a valid event envelope */
} dw_envelope_reason_t;

/* "malformed_json", "invalid_utf8", "too_large", "invalid_envelope" (static). */
const char *dw_envelope_reason_name(dw_envelope_reason_t reason);

typedef struct dw_envelope_error_s {
    dw_envelope_reason_t reason;
    char field[64];    /* the envelope member ("source_version", "key/CustomerAccount"), or "" */
    char message[256]; /* "source_version: not a decimal string of at most 39 digits" */
} dw_envelope_error_t;

/* One parsed event. Every pointer is borrowed from root and lives until dw_event_clear. */
typedef struct dw_event_s {
    json_t *root; /* owned */
    const char *event_id;
    const char *map;
    dw_map_side_t source;
    const char *source_name; /* "fo" | "dv" */
    dw_event_op_t op;
    const json_t *key;     /* object (may be empty only for a delete with record_id) */
    const char *record_id; /* or NULL */
    const json_t *data;    /* object, or NULL (delete) */
    const char *source_version;
    const char *source_ts;
    const char *capture_ts;
    const char *correlation_id;
} dw_event_t;

/* Parse and validate text (len bytes; need not be NUL-terminated). max_len > 0: longer input is
 * DW_ENVELOPE_TOO_LARGE without being parsed. DW_OK with ev filled (dw_event_clear it), or
 * DW_ERR_PARSE (malformed, invalid UTF-8, too large) / DW_ERR_INVALID_ARG (invalid envelope) /
 * DW_ERR_NOMEM with err filled (err may be NULL) and ev empty. */
dw_err_t dw_event_parse(const void *text, size_t len, size_t max_len, dw_event_t *ev,
                        dw_envelope_error_t *err);
void dw_event_clear(dw_event_t *ev);

/* Check an RFC 3339 date-time ("2024-03-01T10:00:00Z", "...T10:00:00.125+01:00"); on success
 * *epoch_ms (may be NULL) is its time in milliseconds since the epoch. */
bool dw_envelope_rfc3339(const char *s, long long *epoch_ms);

/* The command_id of the command made from event_id for target: a UUID (version 8 layout) from
 * the SHA-256 of "<event_id>/<target>", so a re-run yields the same id. out: 37 bytes. */
void dw_envelope_command_id(const char *event_id, dw_map_side_t target, char out[37]);

/*
 * Build the command for ev mapped by map (borrowed) to target. res (borrowed) is the mapper's
 * result: for an upsert/snapshot its payload, key and hash are used; for a delete its key only
 * (fields {}). res NULL: a delete with no key (a Dataverse delete that carries only record_id):
 * target_key {} and record_id. Returns a new object, or NULL when out of memory.
 */
json_t *dw_command_build(const dw_event_t *ev, const dw_map_t *map, dw_map_side_t target,
                         const dw_mapper_result_t *res);

/*
 * The same command as dw_command_build, written straight to JSON text (compact), with the
 * loop-prevention members of a map that runs both ways: origin_hash (NULL: omitted) and
 * origin_key (the event's key, when with_origin_key and the key is not empty). fields is
 * res->payload_text (sorted keys: the text content_hash is the hash of). Members in the order
 * of dw_command_build, then record_id, origin_hash, origin_key. New string (free()) with its
 * length in *len, or NULL when out of memory.
 */
char *dw_command_text(const dw_event_t *ev, const dw_map_t *map, dw_map_side_t target,
                      const dw_mapper_result_t *res, const char *origin_hash, bool with_origin_key,
                      size_t *len);

#endif
