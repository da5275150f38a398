/*
 * dw_filter: the OData $filter subset of dwfleet's map scope filters (both the F&O and the
 * Dataverse side), compiled once and evaluated locally against a record (a jansson object:
 * column name -> value). The language and its semantics are described in docs/filters.md.
 *
 * A compiled filter is immutable: one filter may be evaluated from many threads at once, as long
 * as nobody modifies the record being evaluated at the same time.
 */
#ifndef DW_FILTER_H
#define DW_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "dw_err.h"

/* Longest accepted filter text in bytes, and deepest nesting of '(' and 'not'. */
#define DW_FILTER_MAX_TEXT  65536
#define DW_FILTER_MAX_DEPTH 64

typedef struct dw_filter_s dw_filter_t;

/* An enum literal of the filter (e.g. Microsoft.Dynamics.DataEntities.NoYes'Yes'), for checking
 * against metadata. All pointers are borrowed from the filter and live as long as it does. */
typedef struct {
    const char *column; /* the column it is compared with (eq, ne, in); NULL when there is none */
    const char *type;   /* namespace-qualified type name: "Microsoft.Dynamics.DataEntities.NoYes" */
    const char *member; /* member name: "Yes" */
} dw_filter_enum_t;

/*
 * Compile a filter. Returns a new filter (free with dw_filter_destroy), or NULL with a message in
 * errstr naming the 1-based column (in characters) and what was expected, e.g.
 * "column 17: expected ')' after in-list, found 'and'". text: borrowed (copied).
 * Compilation is linear in the length of text.
 */
dw_filter_t *dw_filter_compile(const char *text, char *errstr, size_t errstr_size);

/* NULL-safe. */
void dw_filter_destroy(dw_filter_t *f);

/*
 * True when record matches. Lenient: a type mismatch (e.g. a string value against a number with
 * gt) makes that comparison false, as does a missing column (except `eq null`). A record that is
 * not a JSON object never matches. record: borrowed.
 */
bool dw_filter_match(const dw_filter_t *f, const json_t *record);

/*
 * Strict evaluation: like dw_filter_match, but the first type mismatch met while evaluating
 * (left to right, with short-circuit and/or) returns DW_ERR_INVALID_ARG with a message naming
 * the column, and *result false. A record that is not an object is DW_ERR_INVALID_ARG too.
 * Missing columns and nulls are not errors. Record values never appear in the message.
 */
dw_err_t dw_filter_eval(const dw_filter_t *f, const json_t *record, bool *result, char *errstr,
                        size_t errstr_size);

/* The text the filter was compiled from (borrowed). */
const char *dw_filter_text(const dw_filter_t *f);

/*
 * The distinct column names (paths such as "Customer/Name" included) the filter references, in
 * order of first appearance. Fills out[0 .. min(count, max)) with borrowed pointers and returns
 * the total count (call with out NULL and max 0 to size a buffer).
 */
size_t dw_filter_columns(const dw_filter_t *f, const char **out, size_t max);

/* The enum literals of the filter, in order of appearance; same contract as dw_filter_columns. */
size_t dw_filter_enums(const dw_filter_t *f, dw_filter_enum_t *out, size_t max);

/*
 * The canonical form of the filter (new string, free() it; NULL when out of memory): single
 * spaces, only the parentheses precedence needs, and/or chains flattened, numbers normalised
 * (12.50 -> 12.5, 1e3 -> 1000), `f(..) eq true` -> `f(..)`, `f(..) eq false` -> `not f(..)`,
 * `not` always followed by a parenthesised operand unless that is a function call or a `not`.
 * Compiling the canonical form yields the same canonical form.
 */
char *dw_filter_to_string(const dw_filter_t *f);

#endif
