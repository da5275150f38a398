/*
 * dwctl against the real services (DW_KAFKA_BOOTSTRAP, DW_PG_DSN from scripts/services.sh env):
 * check answers ok; db migrate applied twice is a no-op the second time; topics create is
 * idempotent and honours per-map partition overrides; topics create --all makes the five topics of
 * every map of maps.dir plus dw._unknown.dlq and dw._capture.dlq.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dw_config.h"
#include "dw_kafka.h"
#include "dw_testutil.h"

#define DWCTL DW_BIN_DIR "/dwctl"

static dw_test_run_t r;

static void need_services(void)
{
    cr_assert(getenv("DW_KAFKA_BOOTSTRAP") && getenv("DW_PG_DSN"),
              "DW_KAFKA_BOOTSTRAP and DW_PG_DSN must be set: eval \"$(scripts/services.sh env)\"");
}

TestSuite(dwctl_services, .init = need_services);

static json_t *parse_out(void)
{
    json_error_t jerr;
    json_t *v = json_loads(r.out, JSON_DECODE_ANY, &jerr);
    cr_assert(v, "not JSON (%s): %s", jerr.text, r.out);
    return v;
}

Test(dwctl_services, check_reports_both_services_ok)
{
    dw_test_run(&r, DWCTL, (const char *[]){"check", "--json", NULL}, NULL, 1);
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    json_t *v = parse_out();
    cr_assert(json_is_true(json_object_get(json_object_get(v, "kafka"), "ok")), "%s", r.out);
    cr_assert(json_is_true(json_object_get(json_object_get(v, "postgresql"), "ok")), "%s", r.out);
    json_decref(v);
}

Test(dwctl_services, migrate_twice_applies_nothing_the_second_time)
{
    dw_test_run(&r, DWCTL, (const char *[]){"db", "migrate", "--json", NULL}, NULL, 1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    dw_test_run(&r, DWCTL, (const char *[]){"db", "migrate", "--json", NULL}, NULL, 1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *v = parse_out();
    cr_assert_eq(json_integer_value(json_object_get(v, "applied")), 0, "%s", r.out);
    json_decref(v);

    dw_test_run(&r, DWCTL, (const char *[]){"db", "status", "--json", NULL}, NULL, 1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    v = parse_out();
    cr_assert(json_array_size(v) >= 1, "%s", r.out);
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m)
    {
        cr_assert(json_is_string(json_object_get(m, "applied_at")), "pending after migrate: %s",
                  r.out);
    }
    json_decref(v);
}

Test(dwctl_services, topics_create_is_idempotent_with_per_map_partitions)
{
    char map[64], key[96], set[128];
    snprintf(map, sizeof(map), "%s", dw_test_unique("itest"));
    snprintf(key, sizeof(key), "maps.%s.partitions=2", map);
    snprintf(set, sizeof(set), "%s", key);
    dw_test_run(&r, DWCTL,
                (const char *[]){"-X", set, "topics", "create", "--map", map, "--json", NULL}, NULL,
                1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_eq(strstr(r.out, "\"state\":\"created\"") != NULL, 1, "%s", r.out);
    /* the map's five are new (dw._unknown.dlq and dw._capture.dlq may exist already) */
    char pat[160];
    snprintf(pat, sizeof(pat), "\"topic\":\"dw.%s.", map);
    size_t mine = 0;
    char *copy = strdup(r.out), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strstr(line, pat))
            continue;
        cr_assert_not_null(strstr(line, "\"created\""), "%s", r.out);
        mine++;
    }
    free(copy);
    cr_assert_eq(mine, 5, "%s", r.out);

    dw_test_run(&r, DWCTL, (const char *[]){"topics", "create", "--map", map, "--json", NULL}, NULL,
                1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_null(strstr(r.out, "\"state\":\"created\""), "%s", r.out);

    char prefix[96];
    snprintf(prefix, sizeof(prefix), "dw.%s.", map);
    dw_test_run(&r, DWCTL, (const char *[]){"topics", "list", "--prefix", prefix, "--json", NULL},
                NULL, 1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *v = parse_out();
    cr_assert_eq(json_array_size(v), 5, "%s", r.out);
    size_t i;
    json_t *t;
    json_array_foreach(v, i, t)
    {
        cr_assert_eq(json_integer_value(json_object_get(t, "partitions")), 2, "%s", r.out);
    }
    json_decref(v);
}

/* Delete the five topics of each map (the shared dead-letter topics stay). */
static void delete_map_topics(const char *const *maps, size_t nmaps)
{
    static const dw_conf_def_t *const tables[] = {dw_conf_common_defs, NULL};
    char errstr[512] = "";
    char names[2][DW_KAFKA_TOPIC__COUNT][DW_KAFKA_TOPIC_MAX + 1];
    const char *list[2 * DW_KAFKA_TOPIC__COUNT];
    size_t n = 0;
    dw_conf_t *conf = dw_conf_new(tables, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(conf, "%s", errstr);
    cr_assert_eq(dw_conf_set(conf, "kafka.bootstrap.servers", getenv("DW_KAFKA_BOOTSTRAP"),
                             DW_CONF_SRC_ENV, "DW_KAFKA_BOOTSTRAP", errstr, sizeof(errstr)),
                 DW_OK, "%s", errstr);
    rd_kafka_t *rk = dw_kafka_admin_new(conf, errstr, sizeof(errstr));
    cr_assert_not_null(rk, "%s", errstr);
    for (size_t m = 0; m < nmaps && m < 2; m++)
        for (int k = 0; k < DW_KAFKA_TOPIC__COUNT; k++, n++) {
            dw_kafka_topic_name(names[m][k], sizeof(names[m][k]), maps[m], (dw_kafka_topic_kind_t)k,
                                NULL, 0);
            list[n] = names[m][k];
        }
    if (dw_kafka_topics_delete(rk, list, n, 30000, errstr, sizeof(errstr)) != DW_OK)
        cr_log_warn("cleanup: %s", errstr);
    rd_kafka_destroy(rk);
    dw_conf_destroy(conf);
}

/* A copy of schemas/maps/<src>.json named `name` in dir. */
static void copy_map(const char *dir, const char *src, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), DW_SOURCE_DIR "/schemas/maps/%s.json", src);
    json_error_t jerr;
    json_t *m = json_load_file(path, 0, &jerr);
    cr_assert_not_null(m, "%s: %s", path, jerr.text);
    json_object_set_new(m, "name", json_string(name));
    snprintf(path, sizeof(path), "%s/%s.json", dir, name);
    cr_assert_eq(json_dump_file(m, path, JSON_INDENT(1)), 0, "%s", path);
    json_decref(m);
}

Test(dwctl_services, topics_create_all_makes_every_map_s_five_topics_and_the_special_ones)
{
    char a[64], b[64], set_dir[400];
    snprintf(a, sizeof(a), "%s", dw_test_unique("itall_a"));
    snprintf(b, sizeof(b), "%s", dw_test_unique("itall_b"));
    const char *dir = dw_test_tmpdir_new();
    /* two maps without lookups, so the scratch folder is a complete map set */
    copy_map(dir, "currencies", a);
    copy_map(dir, "legal_entities", b);
    snprintf(set_dir, sizeof(set_dir), "maps.dir=%s", dir);
    dw_test_run(&r, DWCTL,
                (const char *[]){"-X", set_dir, "topics", "create", "--all", "--partitions", "1",
                                 "--json", NULL},
                NULL, 1);
    int status1 = r.status;
    char *out1 = strdup(r.out);
    dw_test_run(&r, DWCTL,
                (const char *[]){"-X", set_dir, "topics", "create", "--all", "--json", NULL}, NULL,
                1);
    int status2 = r.status;
    const char *const maps[] = {a, b};
    delete_map_topics(maps, 2);
    dw_test_tmpdir_remove();

    cr_assert_eq(status1, 0, "%s", out1);
    size_t lines = 0, created = 0;
    for (const char *p = out1; *p; p++) {
        lines += *p == '\n';
        if (*p == '"' && strncmp(p, "\"created\"", 9) == 0)
            created++;
    }
    cr_assert_eq(lines, 2 * 5 + 2, "%s", out1); /* 2 maps x 5, dw._unknown.dlq, dw._capture.dlq */
    cr_assert(created >= 10, "%s", out1);
    cr_assert_not_null(strstr(out1, "\"topic\":\"dw._unknown.dlq\""), "%s", out1);
    cr_assert_not_null(strstr(out1, "\"topic\":\"dw._capture.dlq\""), "%s", out1);
    char t[128];
    snprintf(t, sizeof(t), "\"topic\":\"dw.%s.to-fo\"", b);
    cr_assert_not_null(strstr(out1, t), "%s", out1);
    /* the second run creates nothing */
    free(out1);
    cr_assert_eq(status2, 0, "%s", r.err);
    cr_assert_null(strstr(r.out, "\"created\""), "%s", r.out);

    dw_test_run(&r, DWCTL, (const char *[]){"topics", "create", "--all", "--map", a, NULL}, NULL,
                1);
    cr_assert_eq(r.status, 2, "%s", r.err);
}
