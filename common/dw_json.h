/*
 * dw_json: small jansson helpers shared by the modules that validate JSON documents and report
 * what they found (the map loader's schema checks, the mapper), and a strict fast reader.
 */
#ifndef DW_JSON_H
#define DW_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* How v's type reads in a message: "an object", "an array", "a string", "an integer",
 * "a number", "a boolean" or "null". Static string. */
const char *dw_json_kind(const json_t *v);

/* The value of the 4 hex digits at p (a \uXXXX escape), -1 when one is not a hex digit. */
static inline long dw_json_hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The inside of a JSON string as written, raw[0..n), unescaped into out (UTF-8, NUL-terminated;
 * *len, when not NULL, its length). False when an escape is invalid (a lone surrogate too) or
 * out_size is too small. */
bool dw_json_unescape(const char *raw, size_t n, char *out, size_t out_size, size_t *len);

/* ---- strict reading: the rules jansson applies with JSON_REJECT_DUPLICATES -------------------
 * RFC 8259 grammar, UTF-8 (no overlong form, no surrogate, nothing above U+10FFFF), no "\u0000",
 * no lone surrogate escape, integers that fit 64 bits, reals that do not overflow, at most
 * JSON_PARSER_MAX_DEPTH (2048) levels. The lexing steps below are shared by the readers that
 * follow them (dw_json_loadb here, the writer's tree-less check): each returns NULL, or what is
 * wrong (a static string) with *p left at the fault. */

/* The length of the UTF-8 sequence at p (its lead byte not ASCII), 0 when it is invalid. */
size_t dw_json_utf8_len(const unsigned char *p, const unsigned char *e);
/* A string: *p at its opening quote, left after its closing one. *esc: it holds an escape. */
const char *dw_json_scan_string(const unsigned char **p, const unsigned char *e, bool *esc);
/* A number: *p at its first character, left after its last. *real: a fraction or an exponent. */
const char *dw_json_scan_number(const unsigned char **p, const unsigned char *e, bool *real);
/* The value of a scanned number s[0..n) with jansson's limits: "too big integer" beyond 64 bits,
 * "real number overflow" beyond a double (an underflow reads as the nearest double). iv or dv
 * (either may be NULL) receives it. */
const char *dw_json_number_value(const char *s, size_t n, bool real, long long *iv, double *dv);

/* A JSON text as jansson trees, read faster than json_loadb reads it (a string is scanned a run
 * at a time instead of a byte at a time through a stream: about four times less CPU for a bulk
 * request body) and accepting exactly what json_loadb(text, len, flags, err) accepts, into equal
 * trees (tests/fuzz/fuzz_json_load.c checks both against jansson). flags: JSON_REJECT_DUPLICATES
 * and JSON_DECODE_ANY; any other flag is passed to json_loadb itself. err (may be NULL) gets
 * the line, column, position and a message, as jansson's do. One difference: a NUL byte outside
 * a string is always refused (jansson reads one after a number as the end of the text). */
json_t *dw_json_loadb(const char *text, size_t len, size_t flags, json_error_t *err);

#endif
