/*
 * dw_json: small jansson helpers shared by the modules that validate JSON documents and report
 * what they found (the map loader's schema checks, the mapper).
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

#endif
