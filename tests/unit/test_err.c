/*
 * Unit tests of dw_err: every code has a text and a name, retriability is a property of the code,
 * dw_errf fills the caller's buffer and hands the code back.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "dw_err.h"

Test(err, every_code_has_a_text_and_a_name)
{
    for (int e = 0; e < DW_ERR__COUNT; e++) {
        cr_assert_not_null(dw_err2str((dw_err_t)e));
        cr_assert_neq(strlen(dw_err2str((dw_err_t)e)), 0, "code %d", e);
        cr_assert(strncmp(dw_err_name((dw_err_t)e), "DW_", 3) == 0, "code %d", e);
    }
    cr_assert_str_eq(dw_err_name(DW_OK), "DW_OK");
    cr_assert_str_eq(dw_err_name(DW_ERR_CONFIG), "DW_ERR_CONFIG");
}

Test(err, unknown_codes_are_handled)
{
    cr_assert_str_eq(dw_err_name((dw_err_t)9999), "DW_ERR_UNKNOWN");
    cr_assert_str_eq(dw_err2str((dw_err_t)-1), "unknown error code");
    cr_assert_not(dw_err_is_retriable((dw_err_t)9999));
}

Test(err, transient_failures_are_retriable)
{
    cr_assert(dw_err_is_retriable(DW_ERR_TIMEOUT));
    cr_assert(dw_err_is_retriable(DW_ERR_UNAVAILABLE));
    cr_assert(dw_err_is_retriable(DW_ERR_QUEUE_FULL));
    cr_assert(dw_err_is_retriable(DW_ERR_KAFKA_RETRIABLE));
    cr_assert(dw_err_is_retriable(DW_ERR_PG_CONN));
}

Test(err, input_and_fatal_errors_are_not_retriable)
{
    static const dw_err_t fatal[] = {
        DW_OK,           DW_ERR_INVALID_ARG, DW_ERR_CONFIG,     DW_ERR_PARSE, DW_ERR_NOT_FOUND,
        DW_ERR_CONFLICT, DW_ERR_NOMEM,       DW_ERR_IO,         DW_ERR_KAFKA, DW_ERR_PG,
        DW_ERR_FENCED,   DW_ERR_INTERNAL,    DW_ERR_INTERRUPTED};
    for (size_t k = 0; k < sizeof(fatal) / sizeof(fatal[0]); k++)
        cr_assert_not(dw_err_is_retriable(fatal[k]), "%s", dw_err_name(fatal[k]));
}

Test(err, errf_fills_the_buffer_and_returns_the_code)
{
    char buf[32];
    cr_assert_eq(dw_errf(DW_ERR_CONFIG, buf, sizeof(buf), "%s: %d", "key", 42), DW_ERR_CONFIG);
    cr_assert_str_eq(buf, "key: 42");
    /* truncated safely */
    dw_errf(DW_ERR_PARSE, buf, 8, "%s", "a very long message");
    cr_assert_str_eq(buf, "a very ");
    /* a NULL buffer is allowed */
    cr_assert_eq(dw_errf(DW_ERR_IO, NULL, 0, "ignored"), DW_ERR_IO);
}
