/*
 * Unit tests of dw_config: defaults, the file < environment < flag precedence, every kind of bad
 * value and where it is reported, kafka.* passthrough checked by librdkafka, pattern keys,
 * secrets and DSN passwords masked in dumps and logs.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "dw_config.h"
#include "dw_log.h"

#define ASSERT_CONTAINS(hay, needle)                                                               \
    cr_assert(strstr((hay), (needle)) != NULL, "expected \"%s\" in:\n%s", (needle), (hay))
#define ASSERT_LACKS(hay, needle)                                                                  \
    cr_assert(strstr((hay), (needle)) == NULL, "did not expect \"%s\" in:\n%s", (needle), (hay))

/* A per-test temporary directory holding the files a test writes. */
static char tmpdir[64];
static char tmpfiles[8][128];
static int ntmpfiles;

static void tmp_setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/dw_test_config.XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    ntmpfiles = 0;
}

static void tmp_teardown(void)
{
    for (int k = 0; k < ntmpfiles; k++)
        unlink(tmpfiles[k]);
    rmdir(tmpdir);
    dw_log_clear_secrets();
}

/* Write text to a new file in tmpdir; returns its path (static storage). */
static const char *write_file(const char *name, const char *text)
{
    cr_assert(ntmpfiles < 8);
    char *path = tmpfiles[ntmpfiles++];
    snprintf(path, sizeof(tmpfiles[0]), "%s/%s", tmpdir, name);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fputs(text, fp);
    fclose(fp);
    return path;
}

static const dw_conf_def_t test_defs[] = {
    {"maps.*.partitions", DW_CONF_INT, "3", 1, 1000, NULL, 0, NULL, "partitions per map"},
    {"maps.*.on_unavailable", DW_CONF_ENUM, "queue", 0, 0, "queue|fail", 0, NULL, "policy"},
    {"fo.client_secret", DW_CONF_STR, NULL, 0, 0, NULL, DW_CONF_F_SECRET, NULL, "secret"},
    {"fo.url", DW_CONF_STR, NULL, 0, 0, NULL, DW_CONF_F_REQUIRED, NULL, "F&O base URL"},
    {"writer.ratio", DW_CONF_DOUBLE, "0.5", 0, 1, NULL, 0, NULL, "a fraction"},
    {"writer.dry_run", DW_CONF_BOOL, "false", 0, 0, NULL, 0, NULL, "a switch"},
    DW_CONF_END,
};

static dw_conf_t *new_conf(const char *const *foreign)
{
    static const dw_conf_def_t *const tables[] = {dw_conf_common_defs, test_defs, NULL};
    char errstr[512];
    dw_conf_t *conf = dw_conf_new(tables, foreign, errstr, sizeof(errstr));
    cr_assert_not_null(conf, "dw_conf_new: %s", errstr);
    return conf;
}

/* The output of dw_conf_dump as a new string. */
static char *dump(const dw_conf_t *conf, bool json)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    cr_assert_not_null(fp);
    dw_conf_dump(conf, fp, json);
    fclose(fp);
    return buf;
}

TestSuite(config, .init = tmp_setup, .fini = tmp_teardown);

Test(config, defaults_apply_when_nothing_is_set)
{
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_str_eq(dw_conf_get_str(conf, "log.level"), "info");
    cr_assert_str_eq(dw_conf_get_str(conf, "log.format"), "text");
    cr_assert_eq(dw_conf_get_int(conf, "pg.connect_timeout_ms"), 30000);
    cr_assert_str_eq(dw_conf_get_str(conf, "maps.dir"), DW_SOURCE_DIR "/schemas/maps");
    cr_assert_null(dw_conf_get_str(conf, "kafka.bootstrap.servers"));
    cr_assert_null(dw_conf_get_str(conf, "pg.dsn"));
    cr_assert_not(dw_conf_is_set(conf, "pg.dsn"));
    cr_assert(dw_conf_is_set(conf, "log.level"));
    cr_assert_eq(dw_conf_source(conf, "log.level"), DW_CONF_SRC_DEFAULT);
    cr_assert_float_eq(dw_conf_get_double(conf, "writer.ratio"), 0.5, 1e-12);
    cr_assert_not(dw_conf_get_bool(conf, "writer.dry_run"));
    dw_conf_destroy(conf);
}

Test(config, file_then_environment_then_flag_take_precedence)
{
    const char *path = write_file("c.json", "{\"log\": {\"level\": \"debug\"},\n"
                                            " \"pg\": {\"connect_timeout_ms\": 1000}}\n");
    char *env[] = {"DW_LOG_LEVEL=warn", "HOME=/root", NULL};
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);

    cr_assert_eq(dw_conf_load_file(conf, path, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_str_eq(dw_conf_get_str(conf, "log.level"), "debug");
    cr_assert_eq(dw_conf_source(conf, "log.level"), DW_CONF_SRC_FILE);

    cr_assert_eq(dw_conf_load_env(conf, env, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_str_eq(dw_conf_get_str(conf, "log.level"), "warn");
    cr_assert_eq(dw_conf_source(conf, "log.level"), DW_CONF_SRC_ENV);
    /* a key the environment does not name keeps the file's value */
    cr_assert_eq(dw_conf_get_int(conf, "pg.connect_timeout_ms"), 1000);
    cr_assert_eq(dw_conf_source(conf, "pg.connect_timeout_ms"), DW_CONF_SRC_FILE);

    cr_assert_eq(
        dw_conf_set(conf, "log.level", "error", DW_CONF_SRC_FLAG, "--set", errstr, sizeof(errstr)),
        DW_OK, "%s", errstr);
    cr_assert_str_eq(dw_conf_get_str(conf, "log.level"), "error");
    cr_assert_eq(dw_conf_source(conf, "log.level"), DW_CONF_SRC_FLAG);
    dw_conf_destroy(conf);
}

Test(config, environment_alias_and_canonical_name_with_canonical_winning)
{
    char *alias_only[] = {"DW_KAFKA_BOOTSTRAP=alias:9092", "DW_PG_DSN=host=db", NULL};
    char *both[] = {"DW_KAFKA_BOOTSTRAP_SERVERS=canon:9092", "DW_KAFKA_BOOTSTRAP=alias:9092", NULL};
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_env(conf, alias_only, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_str_eq(dw_conf_get_str(conf, "kafka.bootstrap.servers"), "alias:9092");
    cr_assert_str_eq(dw_conf_get_str(conf, "pg.dsn"), "host=db");
    cr_assert_eq(dw_conf_load_env(conf, both, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_str_eq(dw_conf_get_str(conf, "kafka.bootstrap.servers"), "canon:9092");
    dw_conf_destroy(conf);
}

Test(config, environment_ignores_unrelated_and_empty_variables)
{
    char *env[] = {"PATH=/bin", "DW_SOMETHING_ELSE=1", "DW_LOG_LEVEL=", "NOEQUALS", NULL};
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_env(conf, env, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_str_eq(dw_conf_get_str(conf, "log.level"), "info");
    dw_conf_destroy(conf);
}

Test(config, bad_environment_value_names_variable_and_key)
{
    char *env[] = {"DW_LOG_LEVEL=loud", NULL};
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_env(conf, env, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    cr_assert_str_eq(errstr, "environment DW_LOG_LEVEL: log.level: 'loud' is not one of "
                             "debug|info|warn|error");
    dw_conf_destroy(conf);
}

Test(config, unknown_key_in_file_names_file_and_key)
{
    const char *path = write_file("c.json", "{\"pg\": {\"dns\": \"host=x\"}}");
    char errstr[512], want[256];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_file(conf, path, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    snprintf(want, sizeof(want), "%s: pg.dns: unknown configuration key", path);
    cr_assert_str_eq(errstr, want);
    dw_conf_destroy(conf);
}

Test(config, unknown_key_on_set_is_an_error)
{
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(
        dw_conf_set(conf, "log.colour", "red", DW_CONF_SRC_FLAG, "--set", errstr, sizeof(errstr)),
        DW_ERR_CONFIG);
    cr_assert_str_eq(errstr, "--set: log.colour: unknown configuration key");
    dw_conf_destroy(conf);
}

Test(config, wrong_type_is_rejected_with_the_reason)
{
    const char *path = write_file("c.json", "{\"pg\": {\"connect_timeout_ms\": \"12abc\"},\n"
                                            " \"log\": {\"level\": {\"nested\": 1}},\n"
                                            " \"writer\": {\"dry_run\": \"maybe\","
                                            " \"ratio\": [1]}}");
    char errstr[1024];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_file(conf, path, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    ASSERT_CONTAINS(errstr, "pg.connect_timeout_ms: '12abc' is not an integer");
    ASSERT_CONTAINS(errstr, "log.level: expected one of the choices, got an object");
    ASSERT_CONTAINS(errstr, "writer.dry_run: 'maybe' is not a boolean");
    ASSERT_CONTAINS(errstr, "writer.ratio: expected a number, got an array");
    dw_conf_destroy(conf);
}

Test(config, integers_and_numbers_are_parsed_strictly)
{
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    static const char *const bad_ints[] = {
        "", " 100", "100 ", "1e3", "0x100", "1000.0", "99999999999999999999"};
    for (size_t k = 0; k < sizeof(bad_ints) / sizeof(bad_ints[0]); k++)
        cr_assert_eq(dw_conf_set(conf, "pg.connect_timeout_ms", bad_ints[k], DW_CONF_SRC_FLAG,
                                 "--set", errstr, sizeof(errstr)),
                     DW_ERR_CONFIG, "'%s' accepted", bad_ints[k]);
    ASSERT_CONTAINS(errstr, "does not fit in a 64-bit integer");
    cr_assert_eq(dw_conf_set(conf, "pg.connect_timeout_ms", "+2500", DW_CONF_SRC_FLAG, "--set",
                             errstr, sizeof(errstr)),
                 DW_OK, "%s", errstr);
    cr_assert_eq(dw_conf_get_int(conf, "pg.connect_timeout_ms"), 2500);
    cr_assert_str_eq(dw_conf_get_str(conf, "pg.connect_timeout_ms"), "2500");

    static const char *const bad_doubles[] = {"", "0.5x", "nan", "inf", "1e999", " 0.5"};
    for (size_t k = 0; k < sizeof(bad_doubles) / sizeof(bad_doubles[0]); k++)
        cr_assert_eq(dw_conf_set(conf, "writer.ratio", bad_doubles[k], DW_CONF_SRC_FLAG, "--set",
                                 errstr, sizeof(errstr)),
                     DW_ERR_CONFIG, "'%s' accepted", bad_doubles[k]);
    cr_assert_eq(dw_conf_set(conf, "writer.ratio", "0.25", DW_CONF_SRC_FLAG, "--set", errstr,
                             sizeof(errstr)),
                 DW_OK, "%s", errstr);
    cr_assert_float_eq(dw_conf_get_double(conf, "writer.ratio"), 0.25, 1e-12);
    dw_conf_destroy(conf);
}

Test(config, booleans_accept_the_usual_spellings)
{
    static const char *const yes[] = {"true", "1", "yes", "on", "TRUE", "On"};
    static const char *const no[] = {"false", "0", "no", "off", "False"};
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    for (size_t k = 0; k < sizeof(yes) / sizeof(yes[0]); k++) {
        cr_assert_eq(dw_conf_set(conf, "writer.dry_run", yes[k], DW_CONF_SRC_FLAG, NULL, errstr,
                                 sizeof(errstr)),
                     DW_OK);
        cr_assert(dw_conf_get_bool(conf, "writer.dry_run"), "%s", yes[k]);
        cr_assert_str_eq(dw_conf_get_str(conf, "writer.dry_run"), "true");
    }
    for (size_t k = 0; k < sizeof(no) / sizeof(no[0]); k++) {
        cr_assert_eq(dw_conf_set(conf, "writer.dry_run", no[k], DW_CONF_SRC_FLAG, NULL, errstr,
                                 sizeof(errstr)),
                     DW_OK);
        cr_assert_not(dw_conf_get_bool(conf, "writer.dry_run"), "%s", no[k]);
    }
    cr_assert_eq(
        dw_conf_set(conf, "writer.dry_run", "2", DW_CONF_SRC_FLAG, NULL, errstr, sizeof(errstr)),
        DW_ERR_CONFIG);
    dw_conf_destroy(conf);
}

Test(config, json_scalars_are_accepted_where_sensible)
{
    const char *path = write_file("c.json", "{\"pg\": {\"connect_timeout_ms\": \"5000\"},\n"
                                            " \"writer\": {\"ratio\": 0.1, \"dry_run\": true},\n"
                                            " \"kafka\": {\"linger.ms\": 5, "
                                            "\"enable.idempotence\": true}}");
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_file(conf, path, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_eq(dw_conf_get_int(conf, "pg.connect_timeout_ms"), 5000);
    cr_assert_str_eq(dw_conf_get_str(conf, "writer.ratio"), "0.1");
    cr_assert(dw_conf_get_bool(conf, "writer.dry_run"));
    cr_assert_str_eq(dw_conf_get_str(conf, "kafka.linger.ms"), "5");
    cr_assert_str_eq(dw_conf_get_str(conf, "kafka.enable.idempotence"), "true");
    dw_conf_destroy(conf);
}

Test(config, null_value_in_file_is_an_error)
{
    const char *path = write_file("c.json", "{\"pg\": {\"dsn\": null}}");
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_file(conf, path, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    ASSERT_CONTAINS(errstr, "pg.dsn: expected a string, got null");
    dw_conf_destroy(conf);
}

Test(config, out_of_range_value_names_range)
{
    const char *path = write_file("x.json", "{\"pg\": {\"connect_timeout_ms\": 5}}");
    char errstr[512], want[256];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_file(conf, path, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    snprintf(want, sizeof(want), "%s: pg.connect_timeout_ms: 5 is out of range [100, 600000]",
             path);
    cr_assert_str_eq(errstr, want);
    cr_assert_eq(dw_conf_get_int(conf, "pg.connect_timeout_ms"), 30000, "bad value not stored");
    cr_assert_eq(
        dw_conf_set(conf, "writer.ratio", "1.5", DW_CONF_SRC_FLAG, "--set", errstr, sizeof(errstr)),
        DW_ERR_CONFIG);
    cr_assert_str_eq(errstr, "--set: writer.ratio: 1.5 is out of range [0, 1]");
    dw_conf_destroy(conf);
}

Test(config, unreadable_file_is_reported_with_its_path)
{
    char path[128], errstr[512];
    snprintf(path, sizeof(path), "%s/missing.json", tmpdir);
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_file(conf, path, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    ASSERT_CONTAINS(errstr, path);
    ASSERT_CONTAINS(errstr, "No such file or directory");
    /* a directory opens but cannot be read */
    cr_assert_eq(dw_conf_load_file(conf, tmpdir, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    ASSERT_CONTAINS(errstr, tmpdir);
    ASSERT_CONTAINS(errstr, "Is a directory");
    dw_conf_destroy(conf);
}

Test(config, malformed_json_reports_line_and_column)
{
    const char *path =
        write_file("bad.json", "{\n  \"log\": {\n    \"level\": \"debug\",\n  }\n}\n");
    char errstr[512], want[256];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_file(conf, path, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    snprintf(want, sizeof(want), "%s:4:", path);
    cr_assert(strncmp(errstr, want, strlen(want)) == 0, "expected %s..., got %s", want, errstr);
    /* path:line:column: text */
    const char *col = errstr + strlen(want);
    cr_assert(col[0] >= '0' && col[0] <= '9', "%s", errstr);
    ASSERT_CONTAINS(col, ": ");
    dw_conf_destroy(conf);
}

Test(config, top_level_must_be_an_object)
{
    const char *path = write_file("arr.json", "[1, 2]");
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_file(conf, path, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    ASSERT_CONTAINS(errstr, "must be a JSON object");
    dw_conf_destroy(conf);
}

Test(config, duplicate_keys_are_rejected)
{
    const char *dup =
        write_file("dup.json", "{\"log\": {\"level\": \"debug\", \"level\": \"info\"}}");
    const char *twice =
        write_file("twice.json", "{\"pg\": {\"dsn\": \"host=a\"}, \"pg.dsn\": \"host=b\"}");
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_file(conf, dup, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    ASSERT_CONTAINS(errstr, dup);
    ASSERT_CONTAINS(errstr, "duplicate");
    cr_assert_eq(dw_conf_load_file(conf, twice, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    ASSERT_CONTAINS(errstr, "pg.dsn: set more than once in this file");
    dw_conf_destroy(conf);
}

Test(config, dotted_and_nested_names_are_the_same_key)
{
    const char *path = write_file("c.json", "{\"log.level\": \"warn\", \"kafka\": "
                                            "{\"bootstrap.servers\": \"k:9092\"}}");
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_file(conf, path, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_str_eq(dw_conf_get_str(conf, "log.level"), "warn");
    cr_assert_str_eq(dw_conf_get_str(conf, "kafka.bootstrap.servers"), "k:9092");
    dw_conf_destroy(conf);
}

Test(config, foreign_sections_are_ignored)
{
    static const char *const foreign[] = {"capture", "monitor", NULL};
    const char *path = write_file("c.json", "{\"capture\": {\"port\": 8080, \"hooks\": [1, 2], "
                                            "\"x\": {\"y\": null}},\n"
                                            " \"monitor.port\": 9100, \"log\": {\"level\": "
                                            "\"debug\"}}");
    char errstr[512];
    dw_conf_t *conf = new_conf(foreign);
    cr_assert_eq(dw_conf_load_file(conf, path, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_str_eq(dw_conf_get_str(conf, "log.level"), "debug");
    dw_conf_destroy(conf);

    /* the same file for a binary that does not know these sections */
    conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_file(conf, path, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    ASSERT_CONTAINS(errstr, "capture.port: unknown configuration key");
    ASSERT_CONTAINS(errstr, "monitor.port: unknown configuration key");
    dw_conf_destroy(conf);
}

Test(config, invalid_kafka_property_carries_librdkafkas_message)
{
    char errstr[512], rkerr[512], want[600];
    rd_kafka_conf_t *rk = rd_kafka_conf_new();
    cr_assert_neq(rd_kafka_conf_set(rk, "acks", "banana", rkerr, sizeof(rkerr)), RD_KAFKA_CONF_OK);
    rd_kafka_conf_destroy(rk);

    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_set(conf, "kafka.acks", "banana", DW_CONF_SRC_FLAG, "--set", errstr,
                             sizeof(errstr)),
                 DW_ERR_CONFIG);
    snprintf(want, sizeof(want), "--set: kafka.acks: %s", rkerr);
    cr_assert_str_eq(errstr, want);

    cr_assert_eq(dw_conf_set(conf, "kafka.no.such.property", "1", DW_CONF_SRC_FLAG, "--set", errstr,
                             sizeof(errstr)),
                 DW_ERR_CONFIG);
    ASSERT_CONTAINS(errstr, "--set: kafka.no.such.property: ");
    ASSERT_CONTAINS(errstr, "No such configuration property");
    dw_conf_destroy(conf);
}

static int collect(const char *name, const char *value, void *opaque)
{
    char *buf = opaque;
    size_t l = strlen(buf);
    snprintf(buf + l, 512 - l, "%s=%s;", name, value);
    return 0;
}

static int stop_at_second(const char *name, const char *value, void *opaque)
{
    int *n = opaque;
    return ++*n == 2 ? 42 : 0;
}

Test(config, kafka_properties_pass_through_in_name_order)
{
    char *env[] = {"DW_KAFKA_CLIENT_ID=dw-test", "DW_KAFKA_BOOTSTRAP=b:9092", NULL};
    char errstr[512], seen[512] = "";
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(
        dw_conf_set(conf, "kafka.acks", "all", DW_CONF_SRC_FLAG, "--set", errstr, sizeof(errstr)),
        DW_OK, "%s", errstr);
    cr_assert_eq(dw_conf_load_env(conf, env, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_eq(dw_conf_foreach(conf, "kafka.", collect, seen), 0);
    cr_assert_str_eq(seen, "kafka.acks=all;kafka.bootstrap.servers=b:9092;"
                           "kafka.client.id=dw-test;");
    cr_assert_str_eq(dw_conf_get_str(conf, "kafka.client.id"), "dw-test");
    cr_assert_eq(dw_conf_source(conf, "kafka.client.id"), DW_CONF_SRC_ENV);
    cr_assert_null(dw_conf_get_str(conf, "kafka.linger.ms"));

    int n = 0;
    cr_assert_eq(dw_conf_foreach(conf, "kafka.", stop_at_second, &n), 42);
    cr_assert_eq(n, 2);
    dw_conf_destroy(conf);
}

Test(config, pattern_keys_match_one_concrete_segment)
{
    const char *path = write_file("c.json", "{\"maps\": {\"dir\": \"/srv/maps\",\n"
                                            "  \"customers\": {\"partitions\": 12,"
                                            " \"on_unavailable\": \"fail\"}}}");
    char *env[] = {"DW_MAPS_VENDOR_GROUPS_PARTITIONS=7", NULL};
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_get_int(conf, "maps.anything.partitions"), 3, "pattern default");
    cr_assert(dw_conf_is_set(conf, "maps.anything.partitions"));
    cr_assert_eq(dw_conf_load_file(conf, path, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_str_eq(dw_conf_get_str(conf, "maps.dir"), "/srv/maps");
    cr_assert_eq(dw_conf_get_int(conf, "maps.customers.partitions"), 12);
    cr_assert_str_eq(dw_conf_get_str(conf, "maps.customers.on_unavailable"), "fail");
    cr_assert_str_eq(dw_conf_get_str(conf, "maps.orders.on_unavailable"), "queue");
    cr_assert_eq(dw_conf_load_env(conf, env, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    cr_assert_eq(dw_conf_get_int(conf, "maps.vendor_groups.partitions"), 7);

    cr_assert_eq(dw_conf_set(conf, "maps.a.b.partitions", "4", DW_CONF_SRC_FLAG, "--set", errstr,
                             sizeof(errstr)),
                 DW_ERR_CONFIG, "two segments must not match one '*'");
    cr_assert_eq(dw_conf_set(conf, "maps.*.partitions", "4", DW_CONF_SRC_FLAG, "--set", errstr,
                             sizeof(errstr)),
                 DW_ERR_CONFIG, "the pattern itself is not a concrete key");
    cr_assert_eq(dw_conf_set(conf, "maps.x.partitions", "0", DW_CONF_SRC_FLAG, "--set", errstr,
                             sizeof(errstr)),
                 DW_ERR_CONFIG);
    cr_assert_str_eq(errstr, "--set: maps.x.partitions: 0 is out of range [1, 1000]");
    dw_conf_destroy(conf);
}

Test(config, secrets_are_masked_in_dumps_and_logs)
{
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert(dw_conf_is_secret(conf, "fo.client_secret"));
    cr_assert(dw_conf_is_secret(conf, "kafka.sasl.password"));
    cr_assert(dw_conf_is_secret(conf, "kafka.ssl.key.pem"));
    cr_assert(dw_conf_is_secret(conf, "kafka.sasl.oauthbearer.config"));
    cr_assert_not(dw_conf_is_secret(conf, "kafka.sasl.username"));
    cr_assert_not(dw_conf_is_secret(conf, "log.level"));

    cr_assert_eq(dw_conf_set(conf, "fo.client_secret", "TopSecretValue", DW_CONF_SRC_ENV, NULL,
                             errstr, sizeof(errstr)),
                 DW_OK, "%s", errstr);
    cr_assert_eq(dw_conf_set(conf, "kafka.sasl.password", "KafkaPassw0rd", DW_CONF_SRC_FLAG,
                             "--set", errstr, sizeof(errstr)),
                 DW_OK, "%s", errstr);
    cr_assert_str_eq(dw_conf_get_str(conf, "fo.client_secret"), "TopSecretValue",
                     "the getter returns the real value");

    char *text = dump(conf, false);
    ASSERT_CONTAINS(text, "fo.client_secret = ***  # env\n");
    ASSERT_CONTAINS(text, "kafka.sasl.password = ***  # flag\n");
    ASSERT_LACKS(text, "TopSecretValue");
    ASSERT_LACKS(text, "KafkaPassw0rd");
    free(text);

    char *js = dump(conf, true);
    ASSERT_LACKS(js, "TopSecretValue");
    json_error_t jerr;
    json_t *root = json_loads(js, 0, &jerr);
    cr_assert_not_null(root, "dump is not JSON: %s", jerr.text);
    cr_assert_str_eq(json_string_value(json_object_get(root, "fo.client_secret")), "***");
    json_decref(root);
    free(js);

    /* registered with dw_log: a log line never shows them */
    char line[256];
    dw_log_redact("secret=TopSecretValue pw=KafkaPassw0rd", line, sizeof(line));
    cr_assert_str_eq(line, "secret=*** pw=***");
    dw_conf_destroy(conf);
}

Test(config, secret_values_are_not_echoed_in_errors)
{
    static const dw_conf_def_t defs[] = {
        {"fo.pin", DW_CONF_INT, NULL, 0, 0, NULL, DW_CONF_F_SECRET, NULL, "a secret number"},
        DW_CONF_END,
    };
    static const dw_conf_def_t *const tables[] = {defs, NULL};
    char errstr[512];
    dw_conf_t *conf = dw_conf_new(tables, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(conf, "%s", errstr);
    cr_assert_eq(
        dw_conf_set(conf, "fo.pin", "hunter2x", DW_CONF_SRC_FLAG, "--set", errstr, sizeof(errstr)),
        DW_ERR_CONFIG);
    ASSERT_LACKS(errstr, "hunter2x");
    cr_assert_str_eq(errstr, "--set: fo.pin: '***' is not an integer");
    dw_conf_destroy(conf);
}

Test(config, dsn_password_is_masked_in_dump_and_logs)
{
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_set(conf, "pg.dsn", "host=db user=dw password=s3cretPw dbname=dw",
                             DW_CONF_SRC_ENV, NULL, errstr, sizeof(errstr)),
                 DW_OK, "%s", errstr);
    char *text = dump(conf, false);
    ASSERT_CONTAINS(text, "pg.dsn = host=db user=dw password=*** dbname=dw  # env\n");
    ASSERT_LACKS(text, "s3cretPw");
    free(text);

    cr_assert_eq(dw_conf_set(conf, "pg.dsn", "postgresql://dw:UriPassw0rd@db:5432/dw",
                             DW_CONF_SRC_FLAG, NULL, errstr, sizeof(errstr)),
                 DW_OK, "%s", errstr);
    text = dump(conf, false);
    ASSERT_CONTAINS(text, "pg.dsn = postgresql://dw:***@db:5432/dw  # flag\n");
    free(text);

    char line[256];
    dw_log_redact("connect host=db password=s3cretPw / postgresql://dw:UriPassw0rd@db", line,
                  sizeof(line));
    cr_assert_str_eq(line, "connect host=db password=*** / postgresql://dw:***@db");
    dw_conf_destroy(conf);
}

Test(config, dsn_mask_handles_quotes_uris_and_no_password)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"host=db password='a b\\'c' user=x", "host=db password='***' user=x"},
        {"password = plain host=db", "password = *** host=db"},
        {"host=db user=dw", "host=db user=dw"},
        {"postgres://u:p%40ss@h/db?sslmode=disable", "postgres://u:***@h/db?sslmode=disable"},
        {"postgresql://u:pa/ss@h:5432/db", "postgresql://u:***@h:5432/db"},
        {"postgresql://u@h/db?password=qq1&sslmode=require",
         "postgresql://u@h/db?password=***&sslmode=require"},
        {"postgresql://h/db", "postgresql://h/db"},
        {"", ""},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char *m = dw_conf_dsn_mask(cases[k].in);
        cr_assert_not_null(m);
        cr_assert_str_eq(m, cases[k].out, "mask(%s)", cases[k].in);
        free(m);
    }
    cr_assert_null(dw_conf_dsn_mask(NULL));
}

Test(config, every_problem_in_a_file_is_reported_one_per_line)
{
    const char *path =
        write_file("c.json", "{\"log\": {\"level\": \"loud\", \"format\": \"xml\"},\n"
                             " \"pg\": {\"connect_timeout_ms\": 5, \"dns\": 1},\n"
                             " \"kafka\": {\"acks\": \"banana\"}}");
    char errstr[2048];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_file(conf, path, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    int lines = 1;
    for (const char *p = errstr; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, 5, "%s", errstr);
    ASSERT_CONTAINS(errstr, "log.level: 'loud'");
    ASSERT_CONTAINS(errstr, "log.format: 'xml'");
    ASSERT_CONTAINS(errstr, "pg.connect_timeout_ms: 5 is out of range");
    ASSERT_CONTAINS(errstr, "pg.dns: unknown configuration key");
    ASSERT_CONTAINS(errstr, "kafka.acks: ");
    for (char *line = strtok(errstr, "\n"); line; line = strtok(NULL, "\n"))
        cr_assert(strncmp(line, path, strlen(path)) == 0, "line without origin: %s", line);
    dw_conf_destroy(conf);
}

Test(config, many_problems_are_truncated_at_a_line_boundary)
{
    char json[4096] = "{\"pg\": {";
    for (int k = 0; k < 40; k++) {
        size_t l = strlen(json);
        snprintf(json + l, sizeof(json) - l, "%s\"unknown_%02d\": 1", k ? ", " : "", k);
    }
    strcat(json, "}}");
    const char *path = write_file("many.json", json);
    char errstr[300];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_load_file(conf, path, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    cr_assert_lt(strlen(errstr), sizeof(errstr));
    ASSERT_CONTAINS(errstr, "pg.unknown_00: unknown configuration key\n");
    ASSERT_CONTAINS(errstr, "more problems");
    const char *last = strrchr(errstr, '\n');
    cr_assert(strncmp(last, "\n... and ", 9) == 0, "%s", errstr);
    dw_conf_destroy(conf);
}

Test(config, dump_lists_every_key_in_name_order_with_its_source)
{
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_set(conf, "log.format", "json", DW_CONF_SRC_FILE, "/x.json", errstr,
                             sizeof(errstr)),
                 DW_OK);
    char *text = dump(conf, false);
    const char *a = strstr(text, "log.format = json  # file\n");
    const char *b = strstr(text, "log.level = info  # default\n");
    const char *c = strstr(text, "# pg.dsn is not set\n");
    const char *d = strstr(text, "pg.connect_timeout_ms = 30000  # default\n");
    cr_assert(a && b && c && d, "%s", text);
    cr_assert(a < b && b < d, "not in name order:\n%s", text);
    free(text);

    char *js = dump(conf, true);
    json_t *root = json_loads(js, JSON_REJECT_DUPLICATES, NULL);
    cr_assert_not_null(root, "%s", js);
    cr_assert_eq(json_integer_value(json_object_get(root, "pg.connect_timeout_ms")), 30000);
    cr_assert(json_is_null(json_object_get(root, "pg.dsn")));
    cr_assert(json_is_false(json_object_get(root, "writer.dry_run")));
    json_decref(root);
    free(js);
    dw_conf_destroy(conf);
}

Test(config, a_key_declared_twice_is_refused)
{
    static const dw_conf_def_t again[] = {
        {"log.level", DW_CONF_STR, NULL, 0, 0, NULL, 0, NULL, "again"},
        DW_CONF_END,
    };
    static const dw_conf_def_t *const tables[] = {dw_conf_common_defs, again, NULL};
    char errstr[512];
    cr_assert_null(dw_conf_new(tables, NULL, errstr, sizeof(errstr)));
    cr_assert_str_eq(errstr, "log.level: declared twice");
}

Test(config, a_bad_default_is_refused)
{
    static const dw_conf_def_t bad[] = {
        {"x.n", DW_CONF_INT, "lots", 0, 0, NULL, 0, NULL, "bad default"},
        DW_CONF_END,
    };
    static const dw_conf_def_t *const tables[] = {bad, NULL};
    char errstr[512];
    cr_assert_null(dw_conf_new(tables, NULL, errstr, sizeof(errstr)));
    cr_assert_str_eq(errstr, "default: x.n: 'lots' is not an integer");
}

Test(config, required_keys_are_checked)
{
    char errstr[512];
    dw_conf_t *conf = new_conf(NULL);
    cr_assert_eq(dw_conf_check(conf, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    ASSERT_CONTAINS(errstr, "fo.url: required but not set");
    ASSERT_CONTAINS(errstr, "DW_FO_URL");
    cr_assert_eq(
        dw_conf_set(conf, "fo.url", "http://fo", DW_CONF_SRC_FLAG, NULL, errstr, sizeof(errstr)),
        DW_OK);
    cr_assert_eq(dw_conf_check(conf, errstr, sizeof(errstr)), DW_OK);
    dw_conf_destroy(conf);
}

Test(config, help_lists_keys_with_type_default_and_environment)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    dw_conf_t *conf = new_conf(NULL);
    dw_conf_print_help(conf, fp);
    fclose(fp);
    ASSERT_CONTAINS(buf, "pg.connect_timeout_ms (integer, range [100, 600000], default 30000)");
    ASSERT_CONTAINS(buf, "DW_KAFKA_BOOTSTRAP_SERVERS, DW_KAFKA_BOOTSTRAP");
    ASSERT_CONTAINS(buf, "log.level (enum: debug|info|warn|error, default info)");
    free(buf);
    dw_conf_destroy(conf);
}

Test(config, a_null_table_list_means_the_common_keys)
{
    char errstr[256];
    dw_conf_t *conf = dw_conf_new(NULL, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(conf, "%s", errstr);
    cr_assert_str_eq(dw_conf_get_str(conf, "log.level"), "info");
    dw_conf_destroy(conf);
}
