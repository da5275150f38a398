/*
 * dwctl against the real services (DW_KAFKA_BOOTSTRAP, DW_PG_DSN from scripts/services.sh env):
 * check answers ok; db migrate applied twice is a no-op the second time; topics create is
 * idempotent and honours per-map partition overrides.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

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
                (const char *[]){"-X", set, "topics", "create", "--map", map, "--json", NULL},
                NULL, 1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_eq(strstr(r.out, "\"state\":\"created\"") != NULL, 1, "%s", r.out);
    cr_assert_null(strstr(r.out, "\"state\":\"exists\""), "%s", r.out);

    dw_test_run(&r, DWCTL, (const char *[]){"topics", "create", "--map", map, "--json", NULL},
                NULL, 1);
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
