/*
 * emu_odata: the OData URL grammar the emulators accept, as pure functions (no I/O), so the unit
 * tests and the libFuzzer target drive them directly.
 *   resource path:  Segment[(key)][/rest]   e.g. accounts(00000000-0000-0000-0000-000000000001),
 *                   accounts(accountnumber='A''1',msdyn_company=<guid>), EntityDefinitions(LogicalName='account')/Attributes
 *   key values:     'text' (a quote inside is doubled), or a bare token (guid, number, true/false)
 *   query options:  $select $filter $top $orderby $count $skiptoken $deltatoken $expand $skip
 *                   (the caller says which it accepts); an unknown $option is an error.
 * Every function fills a caller errstr with a message fit for an OData error body.
 */
#ifndef EMU_ODATA_H
#define EMU_ODATA_H

#include <stdbool.h>
#include <stddef.h>

#include "dw_err.h"

#define EMU_ODATA_MAX_KEYS    16
#define EMU_ODATA_MAX_SELECT  256
#define EMU_ODATA_MAX_ORDERBY 16

typedef struct {
    char *name;  /* NULL for an unnamed key: accounts(<guid>) */
    char *value; /* unescaped text of the value (quotes removed, '' -> ') */
    bool quoted; /* the value was a 'string' literal */
} emu_odata_key_t;

typedef struct {
    char *segment;               /* first segment (entity set, $batch, EntityDefinitions, ...) */
    bool has_key;                /* "(...)" followed the segment */
    emu_odata_key_t keys[EMU_ODATA_MAX_KEYS];
    size_t nkeys;
    char *rest;                  /* what follows "/" after the key or segment; NULL when none */
} emu_odata_path_t;

/* Parse a resource path relative to the service root (no leading '/'; already percent-decoded).
 * out: caller's, cleared first; free with emu_odata_path_clear. DW_ERR_PARSE on bad syntax
 * (unbalanced quotes or parentheses, empty key, junk after ')'), DW_ERR_NOMEM. */
dw_err_t emu_odata_path_parse(const char *path, emu_odata_path_t *out, char *errstr,
                              size_t errstr_size);
void emu_odata_path_clear(emu_odata_path_t *p);

/* The value of the named key part (borrowed), or NULL. */
const char *emu_odata_key_get(const emu_odata_path_t *p, const char *name);

/* True when s is a GUID in the 8-4-4-4-12 hexadecimal form. */
bool emu_odata_is_guid(const char *s);

/* True when s is a non-empty [A-Za-z0-9_] identifier of at most 128 characters. */
bool emu_odata_is_ident(const char *s);

typedef struct {
    char *col;
    bool desc;
} emu_odata_order_t;

#define EMU_Q_SELECT     0x001
#define EMU_Q_FILTER     0x002
#define EMU_Q_TOP        0x004
#define EMU_Q_ORDERBY    0x008
#define EMU_Q_COUNT      0x010
#define EMU_Q_SKIPTOKEN  0x020
#define EMU_Q_DELTATOKEN 0x040
#define EMU_Q_SKIP       0x080
#define EMU_Q_EXPAND     0x100

typedef struct {
    unsigned present; /* EMU_Q_* bits of the options given */
    char *select[EMU_ODATA_MAX_SELECT];
    size_t nselect;
    char *filter;
    long long top; /* -1 when absent */
    long long skip;
    emu_odata_order_t orderby[EMU_ODATA_MAX_ORDERBY];
    size_t norderby;
    bool count;
    char *skiptoken;
    char *deltatoken;
    char *expand;
} emu_odata_query_t;

/* Parse query options given as decoded name/value pairs. allowed: EMU_Q_* bits the resource
 * accepts. Names not starting with '$' are ignored (custom options, parameter aliases).
 * Errors (DW_ERR_PARSE): an unknown $option, one not allowed here (message says which), a
 * repeated option, bad $top/$count/$orderby/$select syntax. */
dw_err_t emu_odata_query_parse(const char *const *names, const char *const *values, size_t n,
                               unsigned allowed, emu_odata_query_t *q, char *errstr,
                               size_t errstr_size);
void emu_odata_query_clear(emu_odata_query_t *q);

/* Append s to out as an OData string literal ('...' with quotes doubled). Returns the length
 * needed (like snprintf). */
size_t emu_odata_quote(const char *s, char *out, size_t out_size);

/* The length of UTF-8 text s in characters (what an Edm.String MaxLength counts). */
size_t emu_odata_utf8_len(const char *s);

/* Append s to out (size bytes in all) percent-encoded for a URL the service returns
 * (@odata.nextLink, @odata.id); the characters of OData paths and keys are kept. Stops before
 * overflowing. */
void emu_odata_url_encode(char *out, size_t size, const char *s);

/* Is s a date (YYYY-MM-DD) or, unless date_only, a date and time with an offset
 * (YYYY-MM-DDTHH:MM[:SS[.fff]](Z|+HH:MM|-HH:MM))? A lexical check only. */
bool emu_odata_datetime_ok(const char *s, bool date_only);

/* Is s an Edm.Decimal in its string form ([-+]digits[.digits][e[-+]digits]), as clients send
 * decimals with Content-Type IEEE754Compatible=true? A lexical check only. */
bool emu_odata_decimal_ok(const char *s);

#endif
