/*
 * dw_mapschema: the structural checks of schemas/map.schema.json and schemas/metadata.schema.json,
 * in C (Debian has no JSON Schema library for C). The two schemas are transcribed into static
 * tables that a small checker walks: types, required members, closed objects
 * (additionalProperties false), enums, patterns, lengths, minimum, array sizes, unique items,
 * and the conditional rules (if/then, oneOf) written as functions. Every problem is reported with
 * the JSON pointer of the offending member, as the Python jsonschema library reports them: an
 * unknown member at its own pointer, a missing member at its parent's, a wrong value at its own.
 * When a schema file changes, the tables here change with it; tests/unit/test_map.c checks the
 * golden cases.
 */
#ifndef DW_MAPSCHEMA_H
#define DW_MAPSCHEMA_H

#include <stddef.h>

#include <jansson.h>

/* One problem: pointer ("" for the root, else "/a/0/b") and message, both borrowed for the
 * call only. */
typedef void(dw_mapschema_cb)(void *opaque, const char *pointer, const char *message);

/* Check doc (borrowed) against map.schema.json; returns the number of problems, each passed to
 * cb. */
size_t dw_mapschema_check_map(const json_t *doc, dw_mapschema_cb *cb, void *opaque);

/* Check doc (borrowed) against metadata.schema.json; same contract. */
size_t dw_mapschema_check_metadata(const json_t *doc, dw_mapschema_cb *cb, void *opaque);

/* The patterns both schemas use, for the loaders' own checks.
 * ^[A-Za-z_][A-Za-z0-9_]*$ and ^[a-z][a-z0-9_]*$ (no length limit here). */
int dw_mapschema_is_identifier(const char *s);
int dw_mapschema_is_map_name(const char *s);

#endif
