/*
 * dw_target_int: the parts of dw_target that need no network, for the unit tests: the error-body
 * classifier of both services, the multipart/mixed ($batch) response parser, the key path and
 * request body builders.
 */
#ifndef DW_TARGET_INT_H
#define DW_TARGET_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "dw_err.h"
#include "dw_target.h"

/*
 * The class of one response: status (0: no response), body (the JSON error body of Dataverse
 * {"error":{"code":"0x...","message":...}} or F&O {"error":{"code":"","message":...,
 * "innererror":{"message":...}}}; may be NULL). fo: F&O's messages. The target's error code and
 * message are copied into code/message (may be NULL; truncated, "" when none). 2xx/3xx: OK.
 * Deletes answered 404, F&O "already exists" and PATCH 404 are the caller's business.
 */
dw_wclass_t dw_target_classify(bool fo, long status, const char *body, size_t len, char *code,
                               size_t code_size, char *message, size_t message_size);

/* True when an F&O error says a POST found the record already there. */
bool dw_target_fo_already_exists(long status, const char *message);

/* One sub-response of a $batch response (change set members flattened, in order). */
typedef struct dw_tpart_s {
    long status;         /* from the "HTTP/1.1 <status> <reason>" line */
    char content_id[64]; /* Content-ID (MIME or inner header), "" when none */
    char entity_id[512]; /* OData-EntityId or Location, "" when none */
    long retry_after_ms; /* Retry-After of the part, -1 when none */
    int changeset;       /* index of the change set it was answered in, -1 when none */
    char *body;          /* new, NUL-terminated ("" when none) */
    size_t body_len;
} dw_tpart_t;

/*
 * Parse a multipart/mixed $batch response (content_type: the response's Content-Type with its
 * boundary). *parts: new array (dw_target_parts_free), *n its length. DW_OK when the whole
 * response was read; DW_ERR_PARSE when it is malformed or truncated (the complete parts before
 * the damage are still returned); DW_ERR_NOMEM.
 */
dw_err_t dw_target_multipart_parse(const char *content_type, const char *body, size_t len,
                                   dw_tpart_t **parts, size_t *n);
void dw_target_parts_free(dw_tpart_t *parts, size_t n);

/*
 * "<set>(<k>=<literal>,...)" for key (object, borrowed; one part: the same with its name, as
 * OData allows "set(k='v')" either way). Strings are quoted with every quote doubled and, when
 * encode, percent-encoded for a URL path (dw_http_odata_literal); integers, reals and booleans as
 * OData literals; null as null. guids (may be NULL): column -> GUID string of key parts that are
 * lookups, written unquoted. record_id (may be NULL) is used when key is empty: "<set>(<guid>)".
 * New string, NULL when a value cannot be a key literal (object/array) or out of memory.
 */
char *dw_target_key_path(const char *set, const json_t *key, const json_t *guids,
                         const char *record_id, bool encode);

/* One request of a $batch body. */
typedef struct dw_treq_s {
    const char *method;         /* "POST", "PATCH", "DELETE" */
    const char *url;            /* absolute, or relative to the service root */
    const char *body;           /* JSON or NULL */
    const char *correlation_id; /* may be NULL */
} dw_treq_t;

/*
 * A multipart/mixed $batch body with boundary (e.g. "batch_<uuid>"): request i carries
 * Content-ID i+1; changesets: each request in a change set of its own (F&O), else plain parts
 * (Dataverse with continue-on-error). New string (*len its length), NULL when out of memory.
 */
char *dw_target_batch_body(const char *boundary, const dw_treq_t *reqs, size_t n, bool changesets,
                           size_t *len);

/* The members of the text of a JSON object that is known to be valid (dw_wrec_t.fields_text),
 * one after the other, without building it. */
typedef struct dw_tobj_s {
    const char *p, *end;
} dw_tobj_t;

void dw_tobj_init(dw_tobj_t *it, const char *text, size_t len);
/* The next member: its name as written between its quotes (*kesc: it holds an escape) and its
 * value as written. false after the last. */
bool dw_tobj_next(dw_tobj_t *it, const char **key, size_t *klen, bool *kesc, const char **val,
                  size_t *vlen);

/* The GUID inside the last parentheses of an entity id ("…/accounts(<guid>)") into out (37
 * bytes); false (out "") when there is none. */
bool dw_target_entity_guid(const char *entity_id, char out[37]);

/* The row id of a Dataverse record read as JSON (object, borrowed) from entity set set: the
 * property "<x>id" holding a GUID whose <x> starts set's name (cdm_companies -> cdm_companyid),
 * else the only such property. NULL when none (borrowed from row otherwise). */
const char *dw_target_row_guid(const json_t *row, const char *set);

#endif
