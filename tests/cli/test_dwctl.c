/*
 * dwctl's command line, run as a process: help, version, exit codes, and every kind of bad
 * configuration (unknown key, wrong type, out of range, unreadable or malformed file, a kafka.*
 * property librdkafka rejects), each a clear message naming what and where, exit code 2.
 * Needs no services.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <string.h>

#include "dw_testutil.h"

#define DWCTL DW_BIN_DIR "/dwctl"

static dw_test_run_t r;

static void run(dw_test_run_t *res, const char *const *args, const char *const *env)
{
    dw_test_run(res, DWCTL, args, env, 0);
}

static void setup_tmp(void)
{
    dw_test_tmpdir_new();
}

#define write_file dw_test_write_file

TestSuite(dwctl, .init = setup_tmp, .fini = dw_test_tmpdir_remove);

Test(dwctl, help_goes_to_stdout_and_exits_0)
{
    run(&r, (const char *[]){"--help", NULL}, NULL);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert(strstr(r.out, "Usage: dwctl"), "%s", r.out);
    cr_assert(strstr(r.out, "topics create"));
    cr_assert(strstr(r.out, "db migrate"));
    cr_assert_str_empty(r.err);
}

Test(dwctl, every_command_answers_help)
{
    const char *cmds[][3] = {{"check", "--help"}, {"db", "migrate", "--help"},
                             {"db", "status", "--help"}, {"topics", "create", "--help"},
                             {"topics", "list", "--help"}};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        const char *args[] = {cmds[i][0], cmds[i][1], cmds[i][2], NULL};
        run(&r, args, NULL);
        cr_assert_eq(r.status, 0, "%s %s: %s", cmds[i][0], cmds[i][1], r.err);
        cr_assert(strstr(r.out, "Usage: dwctl"), "%s", r.out);
    }
}

Test(dwctl, version_names_the_program_and_librdkafka)
{
    run(&r, (const char *[]){"--version", NULL}, NULL);
    cr_assert_eq(r.status, 0);
    cr_assert(strncmp(r.out, "dwctl 0.", 8) == 0, "%s", r.out);
    cr_assert(strstr(r.out, "librdkafka"), "%s", r.out);
}

Test(dwctl, unknown_command_is_a_usage_error)
{
    run(&r, (const char *[]){"frobnicate", NULL}, NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "unknown command 'frobnicate'"), "%s", r.err);
    cr_assert_str_empty(r.out);
}

Test(dwctl, unknown_option_is_a_usage_error)
{
    run(&r, (const char *[]){"topics", "list", "--bogus", NULL}, NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "--bogus"), "%s", r.err);
}

Test(dwctl, missing_command_is_a_usage_error)
{
    run(&r, (const char *[]){NULL}, NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
}

Test(dwctl, unknown_key_in_file_names_file_and_key)
{
    const char *path = write_file("bad.json", "{\"pg\": {\"dsn\": \"x\", \"dns\": \"typo\"}}");
    run(&r, (const char *[]){"--config", path, "--dump-config", NULL}, NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_assert(strstr(r.err, path), "%s", r.err);
    cr_assert(strstr(r.err, "pg.dns"), "%s", r.err);
}

Test(dwctl, wrong_type_names_key_and_origin)
{
    run(&r, (const char *[]){"-X", "topics.partitions=many", "--dump-config", NULL}, NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "topics.partitions"), "%s", r.err);
    cr_assert(strstr(r.err, "many"), "%s", r.err);
}

Test(dwctl, wrong_type_in_file_names_key)
{
    const char *path = write_file("type.json", "{\"topics\": {\"partitions\": [1, 2]}}");
    run(&r, (const char *[]){"-c", path, "--dump-config", NULL}, NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "topics.partitions"), "%s", r.err);
}

Test(dwctl, out_of_range_from_environment_names_the_variable)
{
    run(&r, (const char *[]){"--dump-config", NULL},
        (const char *[]){"DW_TOPICS_PARTITIONS=0", NULL});
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "DW_TOPICS_PARTITIONS"), "%s", r.err);
    cr_assert(strstr(r.err, "topics.partitions"), "%s", r.err);
}

Test(dwctl, unreadable_config_file_is_a_config_error)
{
    run(&r, (const char *[]){"-c", "/nonexistent/dw.json", "--dump-config", NULL}, NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "/nonexistent/dw.json"), "%s", r.err);
}

Test(dwctl, malformed_json_reports_line_and_column)
{
    const char *path = write_file("broken.json", "{\n  \"log\": {\"level\": \"info\",}\n}\n");
    run(&r, (const char *[]){"-c", path, "--dump-config", NULL}, NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, path), "%s", r.err);
    cr_assert(strstr(r.err, ":2:"), "line number expected: %s", r.err);
}

Test(dwctl, invalid_kafka_property_shows_librdkafkas_text)
{
    run(&r, (const char *[]){"-X", "kafka.acks=banana", "--dump-config", NULL}, NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "kafka.acks"), "%s", r.err);
    cr_assert(strstr(r.err, "Invalid value"), "librdkafka's own text expected: %s", r.err);
}

Test(dwctl, unknown_kafka_property_shows_librdkafkas_text)
{
    run(&r, (const char *[]){"-X", "kafka.no.such.property=1", "--dump-config", NULL}, NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "No such configuration property"), "%s", r.err);
}

Test(dwctl, dump_config_masks_secrets)
{
    run(&r,
        (const char *[]){"-X", "kafka.sasl.password=hunter2-secret", "-X",
                         "pg.dsn=postgresql://dw:pg-pass-word@db.example:5432/dw", "--dump-config",
                         NULL},
        NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_null(strstr(r.out, "hunter2-secret"), "%s", r.out);
    cr_assert_null(strstr(r.out, "pg-pass-word"), "%s", r.out);
    cr_assert_null(strstr(r.err, "hunter2-secret"));
    cr_assert(strstr(r.out, "kafka.sasl.password"), "%s", r.out);
    cr_assert(strstr(r.out, "***"), "%s", r.out);
    cr_assert(strstr(r.out, "db.example"), "the DSN's other parts stay visible: %s", r.out);
}

Test(dwctl, precedence_is_file_then_environment_then_flags)
{
    const char *path = write_file("prec.json", "{\"topics\": {\"partitions\": 3, "
                                               "\"retention_ms\": 1000, \"dlq_retention_ms\": 5}}");
    run(&r, (const char *[]){"-c", path, "-X", "topics.retention_ms=2000", "--dump-config=json",
                             NULL},
        (const char *[]){"DW_TOPICS_RETENTION_MS=1500", "DW_TOPICS_PARTITIONS=4", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t jerr;
    json_t *dump = json_loads(r.out, 0, &jerr);
    cr_assert(dump, "--dump-config=json is not JSON: %s: %s", jerr.text, r.out);
    /* partitions: file 3 < env 4; retention: env 1500 < flag 2000; dlq: file only */
    cr_assert_eq(json_integer_value(json_object_get(dump, "topics.partitions")), 4, "%s", r.out);
    cr_assert_eq(json_integer_value(json_object_get(dump, "topics.retention_ms")), 2000, "%s",
                 r.out);
    cr_assert_eq(json_integer_value(json_object_get(dump, "topics.dlq_retention_ms")), 5, "%s",
                 r.out);
    json_decref(dump);
}

Test(dwctl, bad_map_name_is_a_usage_error)
{
    run(&r, (const char *[]){"-X", "kafka.bootstrap.servers=127.0.0.1:1", "topics", "create",
                             "--map", "Bad Name!", NULL},
        NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "Bad Name!"), "%s", r.err);
}

Test(dwctl, check_without_services_configured_is_a_usage_error)
{
    run(&r, (const char *[]){"check", NULL}, NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "kafka.bootstrap.servers"), "%s", r.err);
}

Test(dwctl, check_against_closed_ports_fails_with_exit_1)
{
    run(&r, (const char *[]){"-X", "kafka.bootstrap.servers=127.0.0.1:9", "-X",
                             "pg.dsn=postgresql://dw@127.0.0.1:9/dw", "-X",
                             "pg.connect_timeout_ms=500", "check", "--timeout", "1000", "--json", NULL},
        NULL);
    cr_assert_eq(r.status, 1, "%s", r.err);
    cr_assert(strstr(r.out, "\"ok\":false"), "%s", r.out);
}
