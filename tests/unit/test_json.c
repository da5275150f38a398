/*
 * Unit tests for dw_json's strict reader: dw_json_loadb builds the trees json_loadb builds and
 * refuses what it refuses (the fuzz target fuzz_json_load checks the same against random texts),
 * says where a text is wrong, and honours JSON_REJECT_DUPLICATES and JSON_DECODE_ANY.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "dw_json.h"

/* Both readers on text: they agree; returns dw_json_loadb's tree (or NULL, err filled). */
static json_t *both(const char *text, size_t flags, json_error_t *err)
{
    json_error_t je;
    json_t *want = json_loadb(text, strlen(text), flags, &je);
    json_t *got = dw_json_loadb(text, strlen(text), flags, err);
    cr_assert_eq(got != NULL, want != NULL, "%s: dw_json_loadb %s, jansson %s (%s)", text,
                 got ? "accepts" : "refuses", want ? "accepts" : "refuses", want ? "" : je.text);
    if (got)
        cr_assert(json_equal(got, want), "%s: different trees", text);
    json_decref(want);
    return got;
}

Test(json, reads_what_jansson_reads_into_equal_trees)
{
    const char *texts[] = {
        "{}",
        "[]",
        " {\"a\" : [1, -2, 3.5, -0, 0.0, 1e3, 2E-2, true, false, null, \"x\"]}\n",
        "{\"Targets\":[{\"@odata.type\":\"Microsoft.Dynamics.CRM.account\",\"name\":\"A\\\"b\\\\c\"}]}",
        "{\"s\":\"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00 \\/\\b\\f\\n\\r\\t\"}",
        "[9223372036854775807,-9223372036854775808,123456789012345678,1e-400]",
        "[[[[[[[[[[{\"deep\":[]}]]]]]]]]]]",
        "{\"a\":1,\"a\":2}",
    };
    json_error_t err;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        json_t *v = both(texts[i], 0, &err);
        cr_assert_not_null(v, "%s: %s", texts[i], err.text);
        json_decref(v);
    }
    json_t *v = both("{\"n\":-12,\"r\":2.5}", 0, &err);
    cr_assert(json_is_integer(json_object_get(v, "n")));
    cr_assert_eq(json_integer_value(json_object_get(v, "n")), -12);
    cr_assert(json_is_real(json_object_get(v, "r")));
    json_decref(v);
}

Test(json, refuses_what_jansson_refuses_and_says_where)
{
    const char *texts[] = {
        "",
        "   ",
        "\"top-level string\"",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "[1 2]",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":-}",
        "{\"a\":tru}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\udc00x\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"tab\there\"}",
        "{\"a\":\"\xc3\"}",
        "{\"a\":\"\xc0\xaf\"}",
        "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":99999999999999999999}",
        "{\"a\":1e400}",
        "{\"a\":1} x",
        "{\"a\":\"open",
    };
    json_error_t err;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        memset(&err, 0, sizeof(err));
        cr_assert_null(both(texts[i], JSON_REJECT_DUPLICATES, &err), "%s", texts[i]);
        cr_assert_gt(strlen(err.text), 0, "%s: no reason", texts[i]);
        cr_assert_geq(err.line, 1);
    }
    cr_assert_null(dw_json_loadb("{\n  \"a\": 1,\n  \"b\": tru\n}", 24, 0, &err));
    cr_assert_eq(err.line, 3, "line %d", err.line);
    cr_assert_str_eq(err.text, "invalid token");
    cr_assert_null(dw_json_loadb("{\"a\":99999999999999999999}", 26, 0, &err));
    cr_assert_str_eq(err.text, "too big integer");
}

Test(json, rejects_duplicate_members_only_when_asked)
{
    json_error_t err;
    cr_assert_null(both("{\"a\":1,\"b\":{\"c\":1,\"c\":2}}", JSON_REJECT_DUPLICATES, &err));
    cr_assert_str_eq(err.text, "duplicate object key");
    json_t *v = both("{\"a\":1,\"a\":2}", 0, &err);
    cr_assert_eq(json_integer_value(json_object_get(v, "a")), 2, "the last one wins");
    json_decref(v);
    /* an escaped name equal to a plain one is the same name */
    cr_assert_null(both("{\"ab\":1,\"a\\u0062\":2}", JSON_REJECT_DUPLICATES, &err));
}

Test(json, reads_any_value_with_decode_any_and_bounds_the_depth)
{
    json_error_t err;
    json_t *v = both("  \"x\\u00e9\" ", JSON_DECODE_ANY, &err);
    cr_assert_str_eq(json_string_value(v), "x\xc3\xa9");
    json_decref(v);
    v = both("42", JSON_DECODE_ANY, &err);
    cr_assert_eq(json_integer_value(v), 42);
    json_decref(v);
    cr_assert_null(both("42", 0, &err));
    /* 2048 levels are read, 2049 are not */
    for (int depth = 2048; depth <= 2049; depth++) {
        char *t = malloc((size_t)depth * 2 + 1);
        memset(t, '[', (size_t)depth);
        memset(t + depth, ']', (size_t)depth);
        t[depth * 2] = '\0';
        v = both(t, 0, &err);
        cr_assert_eq(v != NULL, depth == 2048, "depth %d", depth);
        if (!v)
            cr_assert_str_eq(err.text, "maximum parsing depth reached");
        json_decref(v);
        free(t);
    }
}

Test(json, passes_other_flags_to_jansson)
{
    json_error_t err;
    /* JSON_DISABLE_EOF_CHECK is jansson's own: the text after the value is left unread */
    json_t *v = dw_json_loadb("{\"a\":1} trailing", 16, JSON_DISABLE_EOF_CHECK, &err);
    cr_assert_not_null(v, "%s", err.text);
    json_decref(v);
}
