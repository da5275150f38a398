/*
 * dw_json: small jansson helpers shared by the modules that validate JSON documents and report
 * what they found (the map loader's schema checks, the mapper).
 */
#ifndef DW_JSON_H
#define DW_JSON_H

#include <jansson.h>

/* How v's type reads in a message: "an object", "an array", "a string", "an integer",
 * "a number", "a boolean" or "null". Static string. */
const char *dw_json_kind(const json_t *v);

#endif
