/*
 * dw_event: the event envelope of schemas/event.schema.json as the producers build it (dw-capture
 * for live changes, dwctl initial-sync for snapshots), with its name-based event id and its
 * timestamps, so every producer writes the same shape.
 */
#ifndef DW_EVENT_H
#define DW_EVENT_H

#include <stddef.h>

#include <jansson.h>

/* RFC 3339 UTC time of now with milliseconds ("2024-05-01T10:00:00.125Z") into out. */
void dw_event_now_rfc3339(char out[32]);

/* A name-based UUID (SHA-256 of the parts joined by '\x1f', version 8 layout) into out: the same
 * captured change gives the same event id when it is captured again. parts NULL-terminated. */
void dw_event_uuid_from(char out[37], const char *const *parts);

/* The envelope. key, data borrowed (data NULL: a delete, "data": null); record_id NULL for F&O
 * (omitted). Returns a new compact JSON text (free()) and its length in *len, NULL when out of
 * memory. */
char *dw_event_build(const char *event_id, const char *map, const char *source, const char *op,
                     const json_t *key, const char *record_id, const json_t *data,
                     const char *source_version, const char *source_ts, const char *capture_ts,
                     const char *correlation_id, size_t *len);

#endif
