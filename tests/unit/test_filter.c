/*
 * Unit tests for dw_filter: the OData $filter subset of map scope filters — grammar, precedence,
 * literals, exact decimal comparison, null and missing-column semantics, strict evaluation,
 * error messages with their columns, canonical form, and hostile inputs.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dw_filter.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static dw_filter_t *compile_ok(const char *text)
{
    char err[256] = "";
    dw_filter_t *f = dw_filter_compile(text, err, sizeof(err));
    cr_assert_not_null(f, "compile failed for \"%.200s\": %s", text, err);
    return f;
}

static json_t *record(const char *json)
{
    json_error_t jerr;
    json_t *r = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    cr_assert_not_null(r, "bad test record %s: %s", json, jerr.text);
    return r;
}

/* Lenient match of filter against the record, also checking that the canonical form of the
 * filter compiles to the same canonical form and gives the same answer. */
static bool matches(const char *filter, const char *json)
{
    dw_filter_t *f = compile_ok(filter);
    json_t *r = record(json);
    bool m = dw_filter_match(f, r);

    char *canon = dw_filter_to_string(f);
    cr_assert_not_null(canon);
    dw_filter_t *g = compile_ok(canon);
    char *canon2 = dw_filter_to_string(g);
    cr_assert_str_eq(canon2, canon, "canonical form not stable for \"%s\"", filter);
    cr_assert_eq(dw_filter_match(g, r), m, "canonical form \"%s\" answers differently", canon);

    free(canon2);
    free(canon);
    dw_filter_destroy(g);
    dw_filter_destroy(f);
    json_decref(r);
    return m;
}

/* Strict evaluation; returns the error code, fills *result and err. */
static dw_err_t strict(const char *filter, const char *json, bool *result, char *err, size_t n)
{
    dw_filter_t *f = compile_ok(filter);
    json_t *r = record(json);
    dw_err_t e = dw_filter_eval(f, r, result, err, n);
    dw_filter_destroy(f);
    json_decref(r);
    return e;
}

/* Compile must fail; returns the column number of the message (asserting its form) and copies
 * the message into err. */
static size_t error_column(const char *text, char *err, size_t n)
{
    dw_filter_t *f = dw_filter_compile(text, err, n);
    cr_assert_null(f, "\"%.200s\" should not compile", text);
    size_t col = 0;
    cr_assert_eq(sscanf(err, "column %zu:", &col), 1, "message without a column: %s", err);
    return col;
}

static void expect_error(const char *text, size_t column, const char *needle)
{
    char err[256] = "";
    size_t col = error_column(text, err, sizeof(err));
    cr_assert_eq(col, column, "\"%s\": expected column %zu, message: %s", text, column, err);
    cr_assert_not_null(strstr(err, needle), "\"%s\": message \"%s\" lacks \"%s\"", text, err,
                       needle);
}

static void expect_canonical(const char *text, const char *canonical)
{
    dw_filter_t *f = compile_ok(text);
    char *s = dw_filter_to_string(f);
    cr_assert_str_eq(s, canonical);
    free(s);
    dw_filter_destroy(f);
}

/* ---- comparison operators ----------------------------------------------------------------- */

Test(filter, eq_and_ne_compare_strings_numbers_and_booleans)
{
    const char *rec = "{\"Name\":\"Contoso\",\"Qty\":5,\"Active\":true}";
    cr_assert(matches("Name eq 'Contoso'", rec));
    cr_assert_not(matches("Name eq 'contoso'", rec));
    cr_assert(matches("Name ne 'Fabrikam'", rec));
    cr_assert_not(matches("Name ne 'Contoso'", rec));
    cr_assert(matches("Qty eq 5", rec));
    cr_assert(matches("Qty ne 6", rec));
    cr_assert(matches("Active eq true", rec));
    cr_assert(matches("Active ne false", rec));
    cr_assert_not(matches("Active eq false", rec));
}

Test(filter, ordering_operators_on_numbers)
{
    const char *rec = "{\"Qty\":5}";
    cr_assert(matches("Qty gt 4", rec));
    cr_assert_not(matches("Qty gt 5", rec));
    cr_assert(matches("Qty ge 5", rec));
    cr_assert_not(matches("Qty ge 6", rec));
    cr_assert(matches("Qty lt 6", rec));
    cr_assert_not(matches("Qty lt 5", rec));
    cr_assert(matches("Qty le 5", rec));
    cr_assert_not(matches("Qty le 4", rec));
    cr_assert(matches("Qty gt -10", rec));
}

Test(filter, ordering_operators_on_strings_are_bytewise)
{
    const char *rec = "{\"Code\":\"B\"}";
    cr_assert(matches("Code gt 'A'", rec));
    cr_assert(matches("Code lt 'C'", rec));
    cr_assert(matches("Code ge 'B'", rec));
    cr_assert(matches("Code le 'B'", rec));
    cr_assert(matches("Code lt 'BA'", rec));
    cr_assert(matches("Code gt 'A'", rec));
    /* bytewise: upper case sorts before lower case */
    cr_assert(matches("Code lt 'a'", rec));
}

Test(filter, ordering_operators_on_booleans_put_false_first)
{
    cr_assert(matches("Active gt false", "{\"Active\":true}"));
    cr_assert_not(matches("Active lt false", "{\"Active\":true}"));
}

Test(filter, literal_on_the_left_is_mirrored)
{
    const char *rec = "{\"Qty\":5}";
    cr_assert(matches("4 lt Qty", rec));
    cr_assert_not(matches("5 lt Qty", rec));
    cr_assert(matches("5 le Qty", rec));
    cr_assert(matches("6 gt Qty", rec));
    cr_assert(matches("5 eq Qty", rec));
}

Test(filter, column_compared_with_column)
{
    const char *rec = "{\"A\":3,\"B\":\"3.0\",\"C\":4,\"S\":\"x\",\"T\":\"x\"}";
    cr_assert(matches("A eq B", rec));
    cr_assert(matches("A lt C", rec));
    cr_assert(matches("S eq T", rec));
    cr_assert_not(matches("S eq A", rec));
}

/* ---- logic, precedence, parentheses ------------------------------------------------------- */

Test(filter, and_or_not_truth_tables)
{
    const char *rec = "{\"T\":1,\"F\":0}";
    cr_assert(matches("T eq 1 and T eq 1", rec));
    cr_assert_not(matches("T eq 1 and F eq 1", rec));
    cr_assert(matches("T eq 1 or F eq 1", rec));
    cr_assert_not(matches("F eq 1 or F eq 1", rec));
    cr_assert(matches("not F eq 1", rec));
    cr_assert_not(matches("not T eq 1", rec));
    cr_assert(matches("not not T eq 1", rec));
}

Test(filter, and_binds_tighter_than_or)
{
    /* A or (B and C) */
    cr_assert(matches("A eq 1 or B eq 1 and C eq 1", "{\"A\":1,\"B\":0,\"C\":0}"));
    cr_assert(matches("B eq 1 and C eq 1 or A eq 1", "{\"A\":1,\"B\":0,\"C\":0}"));
    expect_canonical("A eq 1 or B eq 1 and C eq 1", "A eq 1 or B eq 1 and C eq 1");
    expect_canonical("(A eq 1 or B eq 1) and C eq 1", "(A eq 1 or B eq 1) and C eq 1");
}

Test(filter, not_binds_tighter_than_and)
{
    /* (not A) and B */
    cr_assert_not(matches("not A eq 1 and B eq 1", "{\"A\":1,\"B\":1}"));
    cr_assert(matches("not A eq 1 and B eq 1", "{\"A\":0,\"B\":1}"));
    expect_canonical("not A eq 1 and B eq 1", "not (A eq 1) and B eq 1");
    expect_canonical("not (A eq 1 and B eq 1)", "not (A eq 1 and B eq 1)");
}

Test(filter, parentheses_change_grouping)
{
    const char *rec = "{\"A\":1,\"B\":0,\"C\":0}";
    cr_assert(matches("A eq 1 or B eq 1 and C eq 1", rec));
    cr_assert_not(matches("(A eq 1 or B eq 1) and C eq 1", rec));
    cr_assert(matches("((A eq 1))", rec));
    cr_assert_not(matches("not (A eq 1 or B eq 1)", rec));
}

Test(filter, keywords_are_lower_case_only)
{
    expect_error("A eq 1 AND B eq 2", 8, "keywords are lower case");
    expect_error("A EQ 1", 3, "expected a comparison operator");
    /* an upper-case keyword is an ordinary column name */
    cr_assert(matches("AND eq 1", "{\"AND\":1}"));
}

Test(filter, whitespace_is_flexible)
{
    cr_assert(matches("  (A  eq\t1)\n and\r\nB eq 2 ", "{\"A\":1,\"B\":2}"));
    cr_assert(matches("(A eq 1)and(B eq 2)", "{\"A\":1,\"B\":2}"));
}

/* ---- literals ----------------------------------------------------------------------------- */

Test(filter, doubled_quote_escapes_a_quote)
{
    cr_assert(matches("Name eq 'O''Brien'", "{\"Name\":\"O'Brien\"}"));
    cr_assert(matches("Name eq ''''", "{\"Name\":\"'\"}"));
    cr_assert(matches("Name eq ''", "{\"Name\":\"\"}"));
    cr_assert_not(matches("Name eq 'O''Brien'", "{\"Name\":\"O''Brien\"}"));
    expect_canonical("Name eq 'O''Brien'", "Name eq 'O''Brien'");
}

Test(filter, strings_are_case_sensitive)
{
    cr_assert_not(matches("Name eq 'CONTOSO'", "{\"Name\":\"Contoso\"}"));
}

Test(filter, unicode_strings_compare_bytewise)
{
    cr_assert(matches("Name eq 'Müller'", "{\"Name\":\"M\\u00fcller\"}"));
    cr_assert(matches("Name eq '東京'", "{\"Name\":\"東京\"}"));
    cr_assert(matches("startswith(Name, '東')", "{\"Name\":\"東京\"}"));
    cr_assert_not(matches("Name eq 'Muller'", "{\"Name\":\"Müller\"}"));
}

Test(filter, string_against_a_number_is_read_as_a_decimal)
{
    /* whichever side is the literal: a string meeting a number is read as a decimal */
    cr_assert(matches("Qty eq '5.0'", "{\"Qty\":5}"));
    cr_assert(matches("Qty gt '4.99'", "{\"Qty\":5}"));
    /* a string that is not a decimal is a mismatch: false, even for ne */
    cr_assert_not(matches("Qty eq 'five'", "{\"Qty\":5}"));
    cr_assert_not(matches("Qty ne 'five'", "{\"Qty\":5}"));
    /* two strings compare bytewise, never as numbers */
    cr_assert_not(matches("Code eq '7'", "{\"Code\":\"007\"}"));
}

Test(filter, null_literal_matches_missing_and_json_null)
{
    cr_assert(matches("Name eq null", "{}"));
    cr_assert(matches("Name eq null", "{\"Name\":null}"));
    cr_assert_not(matches("Name eq null", "{\"Name\":\"x\"}"));
    cr_assert_not(matches("Name ne null", "{}"));
    cr_assert_not(matches("Name ne null", "{\"Name\":null}"));
    cr_assert(matches("Name ne null", "{\"Name\":\"\"}"));
    cr_assert(matches("null eq Name", "{}"));
}

Test(filter, null_with_ordering_operators_is_false)
{
    cr_assert_not(matches("Qty gt null", "{\"Qty\":5}"));
    cr_assert_not(matches("Qty lt null", "{\"Qty\":5}"));
    cr_assert_not(matches("Qty gt 1", "{\"Qty\":null}"));
    cr_assert_not(matches("Qty le 1", "{\"Qty\":null}"));
    cr_assert_not(matches("Qty ge null", "{\"Qty\":null}"));
}

Test(filter, json_null_follows_odata_ne)
{
    /* null ne 'x' is true in OData; a missing column is unknown and matches nothing but eq null */
    cr_assert(matches("Name ne 'x'", "{\"Name\":null}"));
    cr_assert_not(matches("Name eq 'x'", "{\"Name\":null}"));
}

Test(filter, missing_column_makes_other_comparisons_false)
{
    cr_assert_not(matches("Name eq 'x'", "{}"));
    cr_assert_not(matches("Name ne 'x'", "{}"));
    cr_assert_not(matches("Qty gt 1", "{}"));
    cr_assert_not(matches("Name in ('x', 'y')", "{}"));
    cr_assert_not(matches("startswith(Name, 'x')", "{}"));
    /* not negates the (false) result */
    cr_assert(matches("not (Name eq 'x')", "{}"));
}

Test(filter, missing_column_is_not_an_error_in_strict_mode)
{
    bool r = true;
    char err[256] = "";
    cr_assert_eq(strict("Name eq 'x'", "{}", &r, err, sizeof(err)), DW_OK);
    cr_assert_not(r);
    cr_assert_eq(strict("Name eq null", "{}", &r, err, sizeof(err)), DW_OK);
    cr_assert(r);
}

/* ---- numbers ------------------------------------------------------------------------------ */

Test(filter, decimal_strings_compare_exactly_with_numbers)
{
    cr_assert(matches("Amount eq 1500", "{\"Amount\":\"1500.00\"}"));
    cr_assert(matches("Amount eq 1500.000", "{\"Amount\":\"1500\"}"));
    cr_assert(matches("Amount eq 0.3", "{\"Amount\":\"0.30\"}"));
    cr_assert(matches("Amount gt 1499.999", "{\"Amount\":\"1500.00\"}"));
    cr_assert(matches("Amount lt 1500.0001", "{\"Amount\":\"1500.00\"}"));
    cr_assert(matches("Amount eq 12.50", "{\"Amount\":12.5}"));
    cr_assert(matches("Amount eq -3", "{\"Amount\":\"-3.000\"}"));
    cr_assert(matches("Amount eq 0", "{\"Amount\":\"-0.0\"}"));
    cr_assert(matches("Amount eq 0", "{\"Amount\":0.0}"));
    cr_assert(matches("Amount eq 7", "{\"Amount\":\"007\"}"));
}

Test(filter, json_reals_compare_as_their_shortest_decimal)
{
    cr_assert(matches("Amount eq 0.3", "{\"Amount\":0.3}"));
    cr_assert(matches("Amount eq 0.1", "{\"Amount\":0.1}"));
    /* 0.1 + 0.2 as a double is 0.30000000000000004, which is not 0.3 */
    cr_assert_not(matches("Amount eq 0.3", "{\"Amount\":0.30000000000000004}"));
    cr_assert(matches("Amount gt 0.3", "{\"Amount\":0.30000000000000004}"));
    cr_assert(matches("Amount eq 1500", "{\"Amount\":1500.0}"));
    cr_assert(matches("Amount eq 1e300", "{\"Amount\":1e300}"));
    cr_assert(matches("Amount lt -1e-300", "{\"Amount\":-2e-300}"));
}

Test(filter, big_integers_beyond_double_precision_are_exact)
{
    cr_assert(matches("Id ne 9007199254740992", "{\"Id\":9007199254740993}"));
    cr_assert(matches("Id eq 9007199254740993", "{\"Id\":9007199254740993}"));
    cr_assert(matches("Id gt 9007199254740992", "{\"Id\":9007199254740993}"));
    cr_assert(matches("Id ne 9007199254740992", "{\"Id\":\"9007199254740993\"}"));
    cr_assert(matches("Id eq 9223372036854775807", "{\"Id\":9223372036854775807}"));
    cr_assert(matches("Id eq -9223372036854775808", "{\"Id\":-9223372036854775808}"));
    cr_assert(matches("Id gt 123456789012345678901234567889",
                      "{\"Id\":\"123456789012345678901234567890\"}"));
    cr_assert(matches("Id eq 1e20", "{\"Id\":\"100000000000000000000\"}"));
    cr_assert(matches("Id ne 1e20", "{\"Id\":\"100000000000000000001\"}"));
}

Test(filter, exponents_are_accepted_in_literals_and_strings)
{
    cr_assert(matches("Qty eq 1e3", "{\"Qty\":1000}"));
    cr_assert(matches("Qty eq 1.5E+2", "{\"Qty\":150}"));
    cr_assert(matches("Qty eq 25e-1", "{\"Qty\":\"2.5\"}"));
    cr_assert(matches("Qty eq 2.5", "{\"Qty\":\"25E-1\"}"));
}

Test(filter, negative_numbers_order_correctly)
{
    cr_assert(matches("Qty lt -1", "{\"Qty\":-2}"));
    cr_assert(matches("Qty gt -2", "{\"Qty\":-1.5}"));
    cr_assert(matches("Qty lt 0", "{\"Qty\":\"-0.001\"}"));
    cr_assert(matches("Qty gt -0.001", "{\"Qty\":0}"));
    cr_assert(matches("Qty lt -10", "{\"Qty\":-11}"));
    cr_assert(matches("Qty gt -0.12", "{\"Qty\":-0.119}"));
}

Test(filter, numbers_render_in_canonical_form)
{
    expect_canonical("Qty eq 12.50", "Qty eq 12.5");
    expect_canonical("Qty eq 1e3", "Qty eq 1000");
    expect_canonical("Qty eq -0.0", "Qty eq 0");
    expect_canonical("Qty eq 0.00120", "Qty eq 0.0012");
    expect_canonical("Qty eq 1e300", "Qty eq 1e300");
    expect_canonical("Qty eq -15e-31", "Qty eq -1.5e-30");
    expect_canonical("Qty eq 007", "Qty eq 7");
}

/* ---- in-lists ----------------------------------------------------------------------------- */

Test(filter, in_list_matches_any_item)
{
    const char *rec = "{\"Status\":\"B\",\"Qty\":2}";
    cr_assert(matches("Status in ('A','B')", rec));
    cr_assert(matches("Status in ('B')", rec));
    cr_assert_not(matches("Status in ('A', 'C')", rec));
    cr_assert(matches("Qty in (1, 2.0, 3)", rec));
    cr_assert(matches("not (Status in ('A'))", rec));
    expect_canonical("Status in ('A','B')", "Status in ('A', 'B')");
}

Test(filter, in_list_with_null_item_matches_null_and_missing)
{
    cr_assert(matches("Status in ('A', null)", "{}"));
    cr_assert(matches("Status in ('A', null)", "{\"Status\":null}"));
    cr_assert_not(matches("Status in ('A')", "{\"Status\":null}"));
}

Test(filter, in_list_syntax_errors_name_the_column)
{
    char err[256];
    error_column("Status in ('AB' and X eq 1", err, sizeof(err));
    cr_assert_str_eq(err, "column 17: expected ')' after in-list, found 'and'");
    expect_error("Status in ()", 12, "expected a literal in in-list");
    expect_error("Status in 'A'", 11, "expected '(' after 'in'");
    expect_error("Status in (Other)", 12, "expected a literal in in-list");
    expect_error("Status in ('A',)", 16, "expected a literal in in-list");
}

/* ---- functions ---------------------------------------------------------------------------- */

Test(filter, string_functions)
{
    const char *rec = "{\"Name\":\"Contoso Ltd\"}";
    cr_assert(matches("startswith(Name,'Con')", rec));
    cr_assert_not(matches("startswith(Name,'Ltd')", rec));
    cr_assert(matches("endswith(Name, 'Ltd')", rec));
    cr_assert_not(matches("endswith(Name, 'Con')", rec));
    cr_assert(matches("contains(Name, 'oso L')", rec));
    cr_assert_not(matches("contains(Name, 'oso  L')", rec));
    cr_assert(matches("contains(Name, '')", rec));
    cr_assert_not(matches("contains(Name, 'contoso')", rec));
    cr_assert_not(matches("startswith(Name, 'Contoso Ltd and more')", rec));
    cr_assert(matches("not startswith(Name, 'X')", rec));
}

Test(filter, function_compared_with_true_or_false)
{
    const char *rec = "{\"Name\":\"Contoso\"}";
    cr_assert(matches("startswith(Name,'Con') eq true", rec));
    cr_assert_not(matches("startswith(Name,'Con') eq false", rec));
    cr_assert(matches("startswith(Name,'X') ne true", rec));
    expect_canonical("startswith(Name,'Con') eq true", "startswith(Name, 'Con')");
    expect_canonical("startswith(Name,'Con') eq false", "not startswith(Name, 'Con')");
    expect_error("startswith(Name,'Con') eq 1", 27, "expected true or false");
}

Test(filter, functions_on_non_strings_are_mismatches)
{
    cr_assert_not(matches("contains(Qty, '1')", "{\"Qty\":123}"));
    cr_assert_not(matches("contains(Name, 'x')", "{\"Name\":null}"));
    bool r = true;
    char err[256] = "";
    cr_assert_eq(strict("contains(Qty, '1')", "{\"Qty\":123}", &r, err, sizeof(err)),
                 DW_ERR_INVALID_ARG);
    cr_assert_str_eq(err, "column 'Qty': contains needs string arguments, found number value");
    cr_assert_not(r);
}

Test(filter, function_syntax_errors)
{
    expect_error("upper(Name) eq 'X'", 1, "unknown function 'upper'");
    expect_error("startswith(Name)", 16, "expected ',' after argument 1 of startswith");
    expect_error("startswith(Name, 5)", 18, "expected a column name or a string literal");
    expect_error("startswith()", 12, "startswith needs two arguments");
    expect_error("Name eq startswith(Name, 'x')", 9, "found function call");
    expect_error("startswith(Name, 'a', 'b')", 21, "expected ')' after argument 2");
}

/* ---- enum literals ------------------------------------------------------------------------ */

Test(filter, enum_literal_compares_with_member_name)
{
    const char *yes = "{\"IsActive\":\"Yes\"}";
    cr_assert(matches("IsActive eq Microsoft.Dynamics.DataEntities.NoYes'Yes'", yes));
    cr_assert_not(matches("IsActive eq Microsoft.Dynamics.DataEntities.NoYes'No'", yes));
    cr_assert(matches("IsActive ne Microsoft.Dynamics.DataEntities.NoYes'No'", yes));
    cr_assert(matches("IsActive in (Microsoft.Dynamics.DataEntities.NoYes'No', "
                      "Microsoft.Dynamics.DataEntities.NoYes'Yes')",
                      yes));
    expect_canonical("IsActive eq Microsoft.Dynamics.DataEntities.NoYes'Yes'",
                     "IsActive eq Microsoft.Dynamics.DataEntities.NoYes'Yes'");
}

Test(filter, enum_literal_against_an_integer_is_false)
{
    const char *f = "IsActive eq Microsoft.Dynamics.DataEntities.NoYes'Yes'";
    cr_assert_not(matches(f, "{\"IsActive\":1}"));
    bool r = true;
    char err[256] = "";
    cr_assert_eq(strict(f, "{\"IsActive\":1}", &r, err, sizeof(err)), DW_ERR_INVALID_ARG);
    cr_assert_str_eq(err, "column 'IsActive': cannot compare number value with enum literal "
                          "using 'eq'");
}

Test(filter, enum_literals_are_listed_with_their_column)
{
    dw_filter_t *f =
        compile_ok("IsActive eq NS.NoYes'Yes' and Kind in (NS.Kind'A', NS.Kind'B''s')");
    dw_filter_enum_t e[4];
    cr_assert_eq(dw_filter_enums(f, e, 4), 3);
    cr_assert_str_eq(e[0].column, "IsActive");
    cr_assert_str_eq(e[0].type, "NS.NoYes");
    cr_assert_str_eq(e[0].member, "Yes");
    cr_assert_str_eq(e[1].column, "Kind");
    cr_assert_str_eq(e[1].type, "NS.Kind");
    cr_assert_str_eq(e[2].member, "B's");
    cr_assert_eq(dw_filter_enums(f, NULL, 0), 3);
    dw_filter_destroy(f);
}

Test(filter, enum_literal_errors)
{
    expect_error("IsActive eq NoYes'Yes'", 13, "namespace-qualified type name");
    expect_error("IsActive eq NS.NoYes", 21, "expected a quoted enum member");
    expect_error("IsActive gt NS.NoYes'Yes'", 10, "'gt' cannot order enum values");
    expect_error("IsActive eq NS.NoYes'Yes", 13, "unterminated string literal");
}

/* ---- dates, times and guids --------------------------------------------------------------- */

Test(filter, dates_and_times_compare_as_instants)
{
    const char *rec = "{\"Modified\":\"2024-03-01T10:00:00Z\",\"Day\":\"2024-03-01\"}";
    cr_assert(matches("Modified gt 2024-01-01", rec));
    cr_assert(matches("Modified ge 2024-03-01T10:00:00Z", rec));
    cr_assert(matches("Modified eq 2024-03-01T11:00:00+01:00", rec));
    cr_assert(matches("Modified eq 2024-03-01T10:00Z", rec));
    cr_assert(matches("Modified lt 2024-03-01T10:00:00.0000001Z", rec));
    cr_assert(matches("Modified eq 2024-03-01T10:00:00.000Z", rec));
    cr_assert(matches("Day eq 2024-03-01", rec));
    cr_assert(matches("Day lt 2024-03-01T00:00:01Z", rec));
    cr_assert_not(matches("Modified gt 2024-03-01T10:00:00Z", rec));
    expect_error("Modified gt 2024-02-30", 13, "malformed date/time");
    expect_error("Modified gt 2024-01-01T25:00:00Z", 13, "malformed date/time");
}

Test(filter, date_against_a_non_date_string_is_a_mismatch)
{
    bool r = true;
    char err[256] = "";
    cr_assert_eq(strict("Modified gt 2024-01-01", "{\"Modified\":\"yesterday\"}", &r, err,
                        sizeof(err)),
                 DW_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err, "column 'Modified'"), "%s", err);
    cr_assert_not_null(strstr(err, "not a date/time"), "%s", err);
}

Test(filter, guids_compare_case_insensitively)
{
    const char *rec = "{\"_parentaccountid_value\":\"7a4814f9-b0b8-ea11-a812-000d3a122b89\"}";
    cr_assert(matches("_parentaccountid_value eq 7A4814F9-B0B8-EA11-A812-000D3A122B89", rec));
    cr_assert(matches("_parentaccountid_value eq 7a4814f9-b0b8-ea11-a812-000d3a122b89", rec));
    cr_assert(matches("_parentaccountid_value ne 00000000-0000-0000-0000-000000000000", rec));
    cr_assert(matches("_parentaccountid_value in (ab4814f9-b0b8-ea11-a812-000d3a122b89, "
                      "7a4814f9-b0b8-ea11-a812-000d3a122b89)",
                      rec));
    expect_error("X gt 7a4814f9-b0b8-ea11-a812-000d3a122b89", 3, "cannot order guid values");
}

/* ---- navigation paths --------------------------------------------------------------------- */

Test(filter, navigation_path_prefers_the_flat_key)
{
    cr_assert(matches("Customer/Name eq 'flat'",
                      "{\"Customer/Name\":\"flat\",\"Customer\":{\"Name\":\"nested\"}}"));
    cr_assert(matches("Customer/Name eq 'nested'", "{\"Customer\":{\"Name\":\"nested\"}}"));
    cr_assert(matches("a/b/c eq 1", "{\"a\":{\"b\":{\"c\":1}}}"));
    cr_assert(matches("Customer/Name eq null", "{\"Customer\":null}"));
    cr_assert(matches("Customer/Name eq null", "{}"));
    cr_assert_not(matches("Customer/Name eq 'x'", "{\"Customer\":\"x\"}"));
    expect_error("Customer/ eq 1", 10, "expected a name after '/'");
}

/* ---- type mismatches and strict evaluation ------------------------------------------------ */

Test(filter, type_mismatch_is_false_when_lenient)
{
    cr_assert_not(matches("Name gt 5", "{\"Name\":\"abc\"}"));
    cr_assert_not(matches("Name ne 5", "{\"Name\":\"abc\"}"));
    cr_assert_not(matches("Active eq 1", "{\"Active\":true}"));
    cr_assert_not(matches("Obj eq 1", "{\"Obj\":{\"a\":1}}"));
    cr_assert_not(matches("Arr eq 'x'", "{\"Arr\":[\"x\"]}"));
    cr_assert_not(matches("Active eq 'true'", "{\"Active\":true}"));
}

Test(filter, strict_evaluation_names_the_column)
{
    bool r = true;
    char err[256] = "";
    cr_assert_eq(strict("Qty gt 1 and Name gt 5", "{\"Qty\":2,\"Name\":\"abc\"}", &r, err,
                        sizeof(err)),
                 DW_ERR_INVALID_ARG);
    cr_assert_not(r);
    cr_assert_str_eq(err, "column 'Name': cannot compare string value with number literal using "
                          "'gt' (the string is not a decimal number)");
    cr_assert_eq(strict("Arr eq 1", "{\"Arr\":[]}", &r, err, sizeof(err)), DW_ERR_INVALID_ARG);
    cr_assert_str_eq(err,
                     "column 'Arr': cannot compare array value with number literal using 'eq'");
    cr_assert_eq(strict("A eq B", "{\"A\":true,\"B\":\"x\"}", &r, err, sizeof(err)),
                 DW_ERR_INVALID_ARG);
    cr_assert_str_eq(err, "columns 'A' and 'B': cannot compare boolean value with string value "
                          "using 'eq'");
}

Test(filter, strict_evaluation_short_circuits)
{
    bool r = false;
    char err[256] = "";
    cr_assert_eq(strict("Qty eq 2 or Name gt 5", "{\"Qty\":2,\"Name\":\"abc\"}", &r, err,
                        sizeof(err)),
                 DW_OK);
    cr_assert(r);
    cr_assert_eq(strict("not (Name gt 5)", "{\"Name\":\"abc\"}", &r, err, sizeof(err)),
                 DW_ERR_INVALID_ARG);
    cr_assert_not(r);
}

Test(filter, strict_evaluation_agrees_with_match_when_types_fit)
{
    bool r = false;
    char err[256] = "";
    cr_assert_eq(strict("Name eq 'x' and Qty ge 1.5", "{\"Name\":\"x\",\"Qty\":\"1.50\"}", &r,
                        err, sizeof(err)),
                 DW_OK);
    cr_assert(r);
}

Test(filter, record_must_be_an_object)
{
    dw_filter_t *f = compile_ok("A eq 1");
    json_t *arr = json_array();
    bool r = true;
    char err[128] = "";
    cr_assert_not(dw_filter_match(f, arr));
    cr_assert_not(dw_filter_match(f, NULL));
    cr_assert_eq(dw_filter_eval(f, arr, &r, err, sizeof(err)), DW_ERR_INVALID_ARG);
    cr_assert_not(r);
    cr_assert_str_eq(err, "record is not a JSON object");
    json_decref(arr);
    dw_filter_destroy(f);
}

/* ---- syntax errors ------------------------------------------------------------------------ */

Test(filter, syntax_errors_name_the_column_and_what_was_expected)
{
    expect_error("", 1, "expected a column name, a literal, 'not' or '(', found end of filter");
    expect_error("   ", 4, "found end of filter");
    expect_error("Name", 5, "expected a comparison operator");
    expect_error("Name eq", 8, "expected a column name or a literal after 'eq'");
    expect_error("Name eq 'x' and", 16, "found end of filter");
    expect_error("Name eq 'x' Qty eq 1", 13, "expected 'and', 'or' or end of filter, found 'Qty'");
    expect_error("(Name eq 'x'", 13, "expected ')' to close '(' at column 1");
    expect_error("Name eq 'x')", 12, "unexpected ')'");
    expect_error("Name = 'x'", 6, "unexpected character '='");
    expect_error("Name eq \"x\"", 9, "strings are in single quotes");
    expect_error("A eq 1 && B eq 2", 8, "logical operators are and, or, not");
    expect_error("Name eq 'x' and and", 17, "found 'and'");
    expect_error("not", 4, "found end of filter");
    expect_error("Qty eq 12m", 8, "malformed number '12m'");
    expect_error("Qty eq 1.", 8, "malformed number");
    expect_error("Qty eq 1e", 8, "malformed number");
    expect_error("Qty eq 1.2.3", 8, "malformed number");
    expect_error("Qty eq 1e99999999999999999999", 8, "out of range");
    expect_error("Name eq 'x' é", 13, "non-ASCII");
    expect_error("Name eq\x01'x'", 8, "control character 0x01");
}

Test(filter, error_column_counts_characters_not_bytes)
{
    expect_error("Name eq 'Müller' xx", 18, "found 'xx'");
    expect_error("Name eq '東京' xx", 14, "found 'xx'");
}

Test(filter, unterminated_string_points_at_its_quote)
{
    expect_error("Name eq 'abc", 9, "unterminated string literal");
    expect_error("Name eq 'it''s", 9, "unterminated string literal");
    expect_error("'", 1, "unterminated string literal");
}

Test(filter, compile_without_an_error_buffer)
{
    cr_assert_null(dw_filter_compile("Name eq", NULL, 0));
    cr_assert_null(dw_filter_compile(NULL, NULL, 0));
    char tiny[4];
    cr_assert_null(dw_filter_compile("Name eq", tiny, sizeof(tiny)));
    cr_assert_eq(strlen(tiny), 3);
}

/* ---- limits and hostile input ------------------------------------------------------------- */

static char *repeat(const char *head, size_t times, const char *middle, const char *tail,
                    size_t tail_times)
{
    size_t hl = strlen(head), ml = strlen(middle), tl = strlen(tail);
    char *s = malloc(hl * times + ml + tl * tail_times + 1);
    cr_assert_not_null(s);
    char *p = s;
    for (size_t i = 0; i < times; i++, p += hl)
        memcpy(p, head, hl);
    memcpy(p, middle, ml);
    p += ml;
    for (size_t i = 0; i < tail_times; i++, p += tl)
        memcpy(p, tail, tl);
    *p = '\0';
    return s;
}

Test(filter, nesting_up_to_the_limit_compiles)
{
    char *s = repeat("(", DW_FILTER_MAX_DEPTH, "A eq 1", ")", DW_FILTER_MAX_DEPTH);
    cr_assert(matches(s, "{\"A\":1}"));
    free(s);
    s = repeat("not ", DW_FILTER_MAX_DEPTH, "A eq 1", "", 0);
    cr_assert(matches(s, "{\"A\":1}")); /* an even number of nots */
    free(s);
    s = repeat("not (", DW_FILTER_MAX_DEPTH, "A eq 1", ")", DW_FILTER_MAX_DEPTH);
    cr_assert(matches(s, "{\"A\":1}"));
    free(s);
}

Test(filter, deep_nesting_is_an_error_not_a_crash)
{
    char err[256];
    char *s = repeat("(", 100000, "A eq 1", ")", 100000);
    cr_assert_null(dw_filter_compile(s, err, sizeof(err)));
    cr_assert_str_eq(err, "filter is longer than 65536 bytes");
    free(s);
    s = repeat("(", 32000, "A eq 1", ")", 32000);
    size_t col = error_column(s, err, sizeof(err));
    cr_assert_eq(col, DW_FILTER_MAX_DEPTH + 1, "%s", err);
    cr_assert_not_null(strstr(err, "nested deeper than 64"), "%s", err);
    free(s);
    s = repeat("not ", 16000, "A eq 1", "", 0);
    col = error_column(s, err, sizeof(err));
    cr_assert_eq(col, DW_FILTER_MAX_DEPTH * 4 + 1, "%s", err);
    free(s);
    s = repeat("(", DW_FILTER_MAX_DEPTH + 1, "A eq 1", ")", DW_FILTER_MAX_DEPTH + 1);
    cr_assert_eq(error_column(s, err, sizeof(err)), DW_FILTER_MAX_DEPTH + 1);
    free(s);
}

Test(filter, text_longer_than_the_limit_is_rejected)
{
    char *s = repeat(" ", DW_FILTER_MAX_TEXT, "A eq 1", "", 0);
    char err[256] = "";
    cr_assert_null(dw_filter_compile(s, err, sizeof(err)));
    cr_assert_str_eq(err, "filter is longer than 65536 bytes");
    free(s);
    s = repeat(" ", DW_FILTER_MAX_TEXT - 6, "A eq 1", "", 0);
    dw_filter_t *f = compile_ok(s);
    dw_filter_destroy(f);
    free(s);
}

Test(filter, very_long_identifiers_and_strings)
{
    size_t n = 60000;
    char *name = repeat("x", n, "", "", 0);
    char *text = malloc(n + 32), *json = malloc(n + 32);
    snprintf(text, n + 32, "%s eq 'v'", name);
    snprintf(json, n + 32, "{\"%s\":\"v\"}", name);
    cr_assert(matches(text, json));
    free(text);
    free(json);
    free(name);

    char *lit = repeat("ab", 30000, "", "", 0);
    text = malloc(2 * 30000 + 32);
    json = malloc(2 * 30000 + 32);
    snprintf(text, 2 * 30000 + 32, "S eq '%s'", lit);
    snprintf(json, 2 * 30000 + 32, "{\"S\":\"%s\"}", lit);
    cr_assert(matches(text, json));
    free(text);
    free(json);
    free(lit);
}

Test(filter, many_terms_compile_in_linear_time)
{
    /* ~64 KiB of or-ed distinct columns and a long in-list: quadratic work would time out */
    size_t cap = DW_FILTER_MAX_TEXT;
    char *s = malloc(cap + 1);
    size_t len = 0;
    for (int i = 0; len + 32 < cap; i++)
        len += (size_t)snprintf(s + len, cap - len, "%sC%d eq %d", i ? " or " : "", i, i);
    dw_filter_t *f = compile_ok(s);
    size_t ncols = dw_filter_columns(f, NULL, 0);
    cr_assert_gt(ncols, 3000);
    json_t *r = json_pack("{s:i}", "C3000", 3000);
    cr_assert(dw_filter_match(f, r));
    json_decref(r);
    dw_filter_destroy(f);

    len = (size_t)snprintf(s, cap, "Q in (");
    for (int i = 0; len + 16 < cap; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%d", i ? "," : "", i);
    snprintf(s + len, cap - len, ")");
    f = compile_ok(s);
    r = json_pack("{s:i}", "Q", 5000);
    cr_assert(dw_filter_match(f, r));
    json_decref(r);
    dw_filter_destroy(f);
    free(s);
}

/* ---- accessors ---------------------------------------------------------------------------- */

Test(filter, columns_are_listed_once_in_order_of_appearance)
{
    dw_filter_t *f = compile_ok("B eq 1 or A eq 2 and B gt 0 or startswith(C/D, 'x') or "
                                "E in (1) or 1 eq F");
    const char *cols[8];
    cr_assert_eq(dw_filter_columns(f, cols, 8), 5);
    cr_assert_str_eq(cols[0], "B");
    cr_assert_str_eq(cols[1], "A");
    cr_assert_str_eq(cols[2], "C/D");
    cr_assert_str_eq(cols[3], "E");
    cr_assert_str_eq(cols[4], "F");
    const char *two[2] = {NULL, NULL};
    cr_assert_eq(dw_filter_columns(f, two, 1), 5);
    cr_assert_str_eq(two[0], "B");
    cr_assert_null(two[1]);
    dw_filter_destroy(f);
}

Test(filter, text_returns_the_compiled_text)
{
    const char *t = "  Name  eq 'x' ";
    dw_filter_t *f = compile_ok(t);
    cr_assert_str_eq(dw_filter_text(f), t);
    cr_assert_neq(dw_filter_text(f), t);
    dw_filter_destroy(f);
    dw_filter_destroy(NULL);
}

Test(filter, canonical_form_flattens_and_drops_redundant_parentheses)
{
    expect_canonical("((A eq 1) or (B eq 2)) or (C eq 3)", "A eq 1 or B eq 2 or C eq 3");
    expect_canonical("(A eq 1 and (B eq 2 and C eq 3))", "A eq 1 and B eq 2 and C eq 3");
    expect_canonical("A eq 1 and (B eq 2 or C eq 3)", "A eq 1 and (B eq 2 or C eq 3)");
    expect_canonical("not(not(A eq 1))", "not not (A eq 1)");
    expect_canonical("not not A eq 1", "not not (A eq 1)");
    expect_canonical("Name eq 'a''b'  and  Ok eq true and N eq null",
                     "Name eq 'a''b' and Ok eq true and N eq null");
    expect_canonical("D ge 2024-01-01T00:00:00+02:00", "D ge 2024-01-01T00:00:00+02:00");
}

/* ---- threads ------------------------------------------------------------------------------ */

struct thread_arg {
    const dw_filter_t *f;
    json_t *yes, *no;
    int wrong;
};

static void *hammer(void *p)
{
    struct thread_arg *a = p;
    for (int i = 0; i < 20000; i++) {
        bool r = false;
        if (!dw_filter_match(a->f, a->yes) || dw_filter_match(a->f, a->no))
            a->wrong++;
        if (dw_filter_eval(a->f, a->yes, &r, NULL, 0) != DW_OK || !r)
            a->wrong++;
    }
    return NULL;
}

Test(filter, one_compiled_filter_is_usable_from_many_threads)
{
    dw_filter_t *f = compile_ok("Amount ge 100.5 and (Status in ('A','B') or "
                                "startswith(Name, 'Con')) and Price eq 0.3");
    json_t *yes = record("{\"Amount\":\"100.50\",\"Status\":\"B\",\"Name\":\"x\",\"Price\":0.3}");
    json_t *no = record("{\"Amount\":100.4,\"Status\":\"B\",\"Name\":\"x\",\"Price\":0.3}");
    pthread_t t[8];
    struct thread_arg args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (struct thread_arg){f, yes, no, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, hammer, &args[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(args[i].wrong, 0);
    }
    json_decref(yes);
    json_decref(no);
    dw_filter_destroy(f);
}
