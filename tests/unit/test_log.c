/*
 * Unit tests of dw_log: level gating, the text and JSON line formats, secret masking, level and
 * format names, and the librdkafka log callback.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dw_log.h"

#define ASSERT_CONTAINS(hay, needle)                                                               \
    cr_assert(strstr((hay), (needle)) != NULL, "expected \"%s\" in:\n%s", (needle), (hay))

static char *buf;
static size_t len;
static FILE *fp;

static void log_setup(void)
{
    fp = open_memstream(&buf, &len);
    dw_log_init("/usr/bin/dw-test");
    dw_log_set_level(DW_LOG_INFO);
    dw_log_set_format(DW_LOG_FMT_TEXT);
    dw_log_set_output(fp);
}

static void log_teardown(void)
{
    dw_log_set_output(NULL);
    dw_log_clear_secrets();
    fclose(fp);
    free(buf);
}

/* Everything written so far. */
static const char *logged(void)
{
    fflush(fp);
    return buf ? buf : "";
}

TestSuite(log, .init = log_setup, .fini = log_teardown);

Test(log, lines_below_the_level_are_dropped)
{
    dw_log_set_level(DW_LOG_WARN);
    cr_assert_not(dw_log_enabled(DW_LOG_INFO));
    cr_assert(dw_log_enabled(DW_LOG_WARN));
    cr_assert(dw_log_enabled(DW_LOG_ERROR));
    DW_INFO("test", "quiet %d", 1);
    DW_DEBUG("test", "quieter");
    cr_assert_eq(strlen(logged()), 0);
    DW_WARN("test", "loud %d", 2);
    ASSERT_CONTAINS(logged(), "loud 2");
}

Test(log, text_line_has_program_level_facility_and_message)
{
    DW_INFO("kafka", "connected to %s", "broker:9092");
    const char *line = logged();
    ASSERT_CONTAINS(line, " dw-test info  [kafka] connected to broker:9092\n");
    cr_assert(line[4] == '-' && line[10] == 'T', "ISO 8601 timestamp first: %s", line);
}

Test(log, json_line_parses_with_every_field)
{
    dw_log_set_format(DW_LOG_FMT_JSON);
    DW_ERROR("pg", "query failed: \"%s\"\n(tab\t)", "x");
    json_error_t jerr;
    json_t *obj = json_loads(logged(), JSON_REJECT_DUPLICATES, &jerr);
    cr_assert_not_null(obj, "%s: %s", jerr.text, logged());
    const char *ts = NULL, *level = NULL, *program = NULL, *fac = NULL, *msg = NULL;
    cr_assert_eq(json_unpack_ex(obj, &jerr, JSON_STRICT, "{s:s, s:s, s:s, s:s, s:s}", "ts", &ts,
                                "level", &level, "program", &program, "fac", &fac, "msg", &msg),
                 0, "%s", jerr.text);
    cr_assert_str_eq(level, "error");
    cr_assert_str_eq(program, "dw-test");
    cr_assert_str_eq(fac, "pg");
    cr_assert_str_eq(msg, "query failed: \"x\"\n(tab\t)");
    cr_assert_eq(strlen(ts), 24, "%s", ts);
    json_decref(obj);
    /* one line per call */
    cr_assert_eq(strchr(logged(), '\n'), logged() + strlen(logged()) - 1);
}

Test(log, registered_secrets_are_masked)
{
    dw_log_add_secret("hunter22");
    dw_log_add_secret("ab"); /* too short to mask */
    DW_INFO("auth", "token=hunter22 and again hunter22, ab stays");
    ASSERT_CONTAINS(logged(), "token=*** and again ***, ab stays");
    cr_assert_null(strstr(logged(), "hunter22"));

    dw_log_set_format(DW_LOG_FMT_JSON);
    DW_INFO("auth", "json hunter22");
    cr_assert_null(strstr(logged(), "hunter22"));
}

Test(log, the_longest_secret_wins_when_they_overlap)
{
    char out[64];
    dw_log_add_secret("pass");
    dw_log_add_secret("password1");
    dw_log_redact("x password1 pass", out, sizeof(out));
    cr_assert_str_eq(out, "x *** ***");
}

Test(log, level_and_format_names_parse)
{
    dw_log_level_t l;
    dw_log_format_t f;
    cr_assert_eq(dw_log_level_parse("debug", &l), DW_OK);
    cr_assert_eq(l, DW_LOG_DEBUG);
    cr_assert_eq(dw_log_level_parse("error", &l), DW_OK);
    cr_assert_eq(l, DW_LOG_ERROR);
    cr_assert_eq(dw_log_level_parse("loud", &l), DW_ERR_INVALID_ARG);
    cr_assert_eq(dw_log_level_parse(NULL, &l), DW_ERR_INVALID_ARG);
    cr_assert_eq(dw_log_format_parse("json", &f), DW_OK);
    cr_assert_eq(f, DW_LOG_FMT_JSON);
    cr_assert_eq(dw_log_format_parse("xml", &f), DW_ERR_INVALID_ARG);
    cr_assert_str_eq(dw_log_level_name(DW_LOG_WARN), "warn");
}

Test(log, librdkafka_levels_map_to_ours)
{
    dw_log_set_level(DW_LOG_DEBUG);
    dw_log_rdkafka_cb(NULL, 3, "FAIL", "broker down");
    dw_log_rdkafka_cb(NULL, 4, "WARN", "slow");
    dw_log_rdkafka_cb(NULL, 7, "PROTO", "bytes");
    ASSERT_CONTAINS(logged(), "error [kafka.FAIL] rdkafka: broker down");
    ASSERT_CONTAINS(logged(), "warn  [kafka.WARN] rdkafka: slow");
    ASSERT_CONTAINS(logged(), "debug [kafka.PROTO] rdkafka: bytes");
}
