/*
 * fuzz_writer_json: differential libFuzzer target for the writer's tree-less JSON check
 * (workers/writer/writer_json.c), run by tests/fuzz/run.sh. The input is a document; the check
 * must accept exactly what jansson accepts with JSON_REJECT_DUPLICATES as an object, and for the
 * member "fields" it must report the span jansson read: the same kind, the same member count of an
 * object, the same text of a string, and wr_json_flat_object must agree with jansson on a flat
 * object's members. One difference is allowed: a NUL byte outside a string, which jansson
 * sometimes reads past and the check always refuses.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "writer.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char *kind_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    case JSON_REAL:
        return "real";
    case JSON_INTEGER:
        return "integer";
    }
    return "?";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[512], unknown[128];
    wr_jmember_t m[2] = {{.name = "fields"}, {.name = "op"}};
    dw_err_t err = wr_json_check((const char *)data, size, m, 2, unknown, sizeof(unknown), why,
                                 sizeof(why));
    json_error_t je;
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    bool jok = doc && json_is_object(doc);
    /* jansson reads a NUL byte after a number as the end of it (json_loadb accepts
     * {"a":1<NUL>}); the check refuses every NUL outside a string, which is the stricter reading:
     * only that difference is allowed */
    if (err != DW_OK && jok && memchr(data, 0, size))
        jok = false;
    if ((err == DW_OK) != jok) {
        fprintf(stderr, "disagree: check %s (%s), jansson %s (%s)\n", err == DW_OK ? "ok" : "fails",
                why, jok ? "ok" : "fails", doc ? "not an object" : je.text);
        abort();
    }
    if (!jok) {
        CHECK(strncmp(why, "line ", 5) == 0); /* the fault says where */
        json_decref(doc);
        return 0;
    }
    json_t *f = json_object_get(doc, "fields");
    CHECK((m[0].v.p != NULL) == (f != NULL));
    if (f) {
        CHECK(strcmp(wr_json_kind(&m[0].v), kind_of(f)) == 0);
        if (json_is_object(f))
            CHECK(m[0].nmembers == json_object_size(f));
        if (json_is_string(f)) {
            char *s = malloc(m[0].v.n + 1);
            size_t len = 0;
            CHECK(s && wr_json_string(&m[0].v, s, &len));
            CHECK(len == json_string_length(f) && memcmp(s, json_string_value(f), len) == 0);
            free(s);
        }
        if (json_is_object(f)) {
            json_t *flat = NULL;
            bool is_flat = true;
            const char *k;
            json_t *v;
            json_object_foreach(f, k, v) {
                if (json_is_object(v) || json_is_array(v) || json_is_null(v))
                    is_flat = false;
            }
            dw_err_t fe = wr_json_flat_object(&m[0].v, &flat);
            CHECK(fe != DW_ERR_NOMEM);
            CHECK((fe == DW_OK) == is_flat);
            if (fe == DW_OK)
                CHECK(json_equal(flat, f));
            json_decref(flat);
        }
    }
    json_t *op = json_object_get(doc, "op");
    CHECK((m[1].v.p != NULL) == (op != NULL));
    /* unknown names the first member that is neither "fields" nor "op" (as far as it fits) */
    const char *k, *first = "";
    json_t *v;
    json_object_foreach(doc, k, v) {
        if (strcmp(k, "fields") && strcmp(k, "op")) {
            first = k;
            break;
        }
    }
    if (!*first && json_object_size(doc) > (size_t)(f != NULL) + (size_t)(op != NULL))
        first = "\"\""; /* an empty name, shown quoted */
    CHECK(strncmp(unknown, first, sizeof(unknown) - 1) == 0);
    json_decref(doc);
    return 0;
}
