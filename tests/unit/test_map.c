/*
 * Unit tests for dw_map: the golden cases (every tests/maps/invalid/<case>.json yields exactly the
 * "pointer: keyword" set of its .expect; every valid/ and every standard map validates clean),
 * every problem of every file reported in one run, JSON-schema structure problems with their
 * pointers, metadata problems, the dependency order of the standard maps, a cycle of lookups, and
 * the accessors the workers use.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dw_map.h"
#include "dw_mapper.h"
#include "dw_testutil.h"

#define SCHEMAS  DW_SOURCE_DIR "/schemas"
#define MAPS     SCHEMAS "/maps"
#define METADATA SCHEMAS "/metadata"
#define GOLDEN   DW_SOURCE_DIR "/tests/maps"

/* ---- helpers ---------------------------------------------------------------------------- */

typedef struct lines_s {
    char *v[256];
    size_t n;
} lines_t;

static void lines_add(lines_t *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i], s) == 0)
            return;
    }
    cr_assert_lt(l->n, 256);
    l->v[l->n++] = strdup(s);
}

static void lines_free(lines_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    l->n = 0;
}

static bool lines_has(const lines_t *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i], s) == 0)
            return true;
    }
    return false;
}

static void lines_text(const lines_t *l, char *out, size_t size)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < l->n && o < size; i++)
        o += (size_t)snprintf(out + o, size - o, "%s[%s]", i ? " " : "", l->v[i]);
}

/* Validate paths against the standard maps and metadata; the set of "pointer: keyword" of the
 * problems of file (NULL: any file). Returns the report (destroy it). */
static dw_map_report_t *validate(const char *const *paths, size_t n, const char *maps_dir)
{
    char errstr[1024];
    dw_map_report_t *r = dw_map_report_new();
    cr_assert_not_null(r);
    dw_err_t err = dw_map_validate(paths, n, maps_dir, METADATA, r, errstr, sizeof(errstr));
    cr_assert(err == DW_OK || err == DW_ERR_INVALID_ARG, "validate: %s", errstr);
    cr_assert_eq(err == DW_OK, dw_map_report_count(r) == 0, "%s", errstr);
    return r;
}

static void problems_of(const dw_map_report_t *r, const char *file, lines_t *out)
{
    char line[1024];
    for (size_t i = 0; i < dw_map_report_count(r); i++) {
        const dw_map_problem_t *p = dw_map_report_get(r, i);
        if (file && strcmp(p->file, file) != 0)
            continue;
        snprintf(line, sizeof(line), "%s: %s", p->pointer, p->keyword);
        lines_add(out, line);
    }
}

static void read_expect(const char *path, lines_t *out)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r' || line[l - 1] == ' '))
            line[--l] = '\0';
        if (l)
            lines_add(out, line);
    }
    fclose(f);
}

/* The *.json files of dir, sorted. */
static size_t json_files(const char *dir, char out[][512], size_t max)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < max) {
        size_t l = strlen(de->d_name);
        if (l > 5 && strcmp(de->d_name + l - 5, ".json") == 0)
            snprintf(out[n++], 512, "%s/%s", dir, de->d_name);
    }
    closedir(d);
    qsort(out, n, 512, (int (*)(const void *, const void *))strcmp);
    return n;
}

static void print_report(const dw_map_report_t *r, char *out, size_t size)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < dw_map_report_count(r) && o < size; i++) {
        const dw_map_problem_t *p = dw_map_report_get(r, i);
        o += (size_t)snprintf(out + o, size - o, "\n  %s: %s: %s: %s", p->file, p->pointer,
                              p->keyword, p->message);
    }
}

static char files[64][512];

/* ---- the golden cases ------------------------------------------------------------------------ */

Test(map, every_invalid_golden_case_gives_exactly_its_expected_problems)
{
    size_t n = json_files(GOLDEN "/invalid", files, 64);
    cr_assert_geq(n, 19, "golden cases: %zu", n);
    for (size_t i = 0; i < n; i++) {
        const char *path = files[i];
        char expect_path[600];
        snprintf(expect_path, sizeof(expect_path), "%.*s.expect", (int)(strlen(path) - 5), path);
        lines_t want = {0}, got = {0};
        read_expect(expect_path, &want);
        dw_map_report_t *r = validate((const char *[]){path}, 1, MAPS);
        problems_of(r, NULL, &got);
        char a[2048], b[2048], all[8192];
        lines_text(&want, a, sizeof(a));
        lines_text(&got, b, sizeof(b));
        print_report(r, all, sizeof(all));
        cr_assert_eq(want.n, got.n, "%s: expected %s, got %s%s", path, a, b, all);
        for (size_t k = 0; k < want.n; k++)
            cr_assert(lines_has(&got, want.v[k]), "%s: expected %s, got %s%s", path, a, b, all);
        /* each line names the file and carries a message */
        for (size_t k = 0; k < dw_map_report_count(r); k++) {
            cr_assert_str_eq(dw_map_report_get(r, k)->file, path);
            cr_assert(strlen(dw_map_report_get(r, k)->message) > 0);
        }
        dw_map_report_destroy(r);
        lines_free(&want);
        lines_free(&got);
    }
}

Test(map, every_problem_of_every_file_in_one_run)
{
    size_t n = json_files(GOLDEN "/invalid", files, 64);
    const char *paths[64];
    size_t expected = 0;
    for (size_t i = 0; i < n; i++) {
        paths[i] = files[i];
        char expect_path[600];
        lines_t want = {0};
        snprintf(expect_path, sizeof(expect_path), "%.*s.expect", (int)(strlen(files[i]) - 5),
                 files[i]);
        read_expect(expect_path, &want);
        expected += want.n;
        lines_free(&want);
    }
    dw_map_report_t *r = validate(paths, n, MAPS);
    for (size_t i = 0; i < n; i++) {
        lines_t got = {0};
        problems_of(r, files[i], &got);
        cr_assert_gt(got.n, 0, "no problem reported for %s", files[i]);
        lines_free(&got);
    }
    lines_t all = {0};
    for (size_t i = 0; i < dw_map_report_count(r); i++) {
        char line[1200];
        const dw_map_problem_t *p = dw_map_report_get(r, i);
        snprintf(line, sizeof(line), "%s %s %s", p->file, p->pointer, p->keyword);
        lines_add(&all, line);
    }
    cr_assert_eq(all.n, expected);
    lines_free(&all);
    dw_map_report_destroy(r);
}

Test(map, valid_golden_cases_validate_clean)
{
    size_t n = json_files(GOLDEN "/valid", files, 64);
    cr_assert_geq(n, 2);
    for (size_t i = 0; i < n; i++) {
        dw_map_report_t *r = validate((const char *[]){files[i]}, 1, MAPS);
        char all[4096];
        print_report(r, all, sizeof(all));
        cr_assert_eq(dw_map_report_count(r), 0, "%s:%s", files[i], all);
        dw_map_report_destroy(r);
    }
}

Test(map, every_standard_map_validates_clean)
{
    size_t n = json_files(MAPS, files, 64);
    cr_assert_geq(n, 17);
    for (size_t i = 0; i < n; i++) {
        dw_map_report_t *r = validate((const char *[]){files[i]}, 1, MAPS);
        char all[4096];
        print_report(r, all, sizeof(all));
        cr_assert_eq(dw_map_report_count(r), 0, "%s:%s", files[i], all);
        dw_map_report_destroy(r);
    }
    /* the folder itself, and with no maps folder for lookups but the files named */
    dw_map_report_t *r = validate((const char *[]){MAPS}, 1, MAPS);
    cr_assert_eq(dw_map_report_count(r), 0);
    dw_map_report_destroy(r);
    r = validate((const char *[]){MAPS}, 1, NULL);
    cr_assert_eq(dw_map_report_count(r), 0);
    dw_map_report_destroy(r);
}

Test(map, standard_metadata_loads_clean)
{
    char errstr[1024];
    dw_map_report_t *r = dw_map_report_new();
    dw_meta_t *meta = dw_meta_load(METADATA, r, errstr, sizeof(errstr));
    cr_assert_not_null(meta, "%s", errstr);
    cr_assert_eq(dw_map_report_count(r), 0);
    cr_assert_geq(dw_meta_table_count(meta, DW_MAP_FO), 16);
    cr_assert_geq(dw_meta_table_count(meta, DW_MAP_DV), 17);
    const dw_meta_table_t *acc = dw_meta_table(meta, DW_MAP_DV, "account");
    cr_assert_not_null(acc);
    cr_assert_str_eq(dw_meta_table_entity_set(acc), "accounts");
    cr_assert_str_eq(dw_meta_table_id_column(acc), "accountid");
    const dw_meta_akey_t *ak = dw_meta_table_akey_find(acc, "account_key");
    cr_assert_not_null(ak);
    cr_assert_eq(ak->ncolumns, 2);
    const dw_meta_column_t *c = dw_meta_table_column(acc, "msdyn_onholdstatus");
    cr_assert_eq(c->type, DW_COL_ENUM);
    cr_assert_eq(c->nmembers, 6);
    cr_assert_eq(c->members[1].value, 806380001);
    c = dw_meta_table_column(acc, "name");
    cr_assert_eq(c->max_length, 160);
    cr_assert(c->required);
    const dw_meta_table_t *cust = dw_meta_table(meta, DW_MAP_FO, "CustomerV3");
    cr_assert(dw_meta_table_company_specific(cust));
    cr_assert_str_eq(dw_meta_table_key(cust, 0), "dataAreaId");
    dw_meta_destroy(meta);
    dw_map_report_destroy(r);
}

/* ---- structure problems --------------------------------------------------------------------- */

static dw_map_report_t *validate_text(const char *name, const char *text)
{
    const char *path = dw_test_write_file(name, text);
    return validate((const char *[]){path}, 1, MAPS);
}

#define MINIMAL_FMT                                                                                \
    "{\"name\": \"%s\", \"version\": 1, \"description\": \"d\","                                   \
    " \"fo\": {\"entity\": \"Currency\", \"entity_set\": \"Currencies\", \"company_specific\": "   \
    "false},"                                                                                      \
    " \"dv\": {\"table\": \"transactioncurrency\", \"entity_set\": \"transactioncurrencies\","     \
    " \"id_column\": \"transactioncurrencyid\", \"alternate_key\": \"transactioncurrency_key\"},"  \
    " \"direction\": \"fo-to-dv\","                                                                \
    " \"keys\": [{\"fo\": \"CurrencyCode\", \"dv\": \"isocurrencycode\"}],"                        \
    " \"fields\": [{\"fo\": \"CurrencyCode\", \"dv\": \"isocurrencycode\", \"direction\": "        \
    "\"fo-to-dv\"}"                                                                                \
    "%s]}"

Test(map, a_minimal_map_is_valid, .init = (void (*)(void))dw_test_tmpdir_new,
     .fini = dw_test_tmpdir_remove)
{
    char text[4096];
    snprintf(text, sizeof(text), MINIMAL_FMT, "mini", "");
    dw_map_report_t *r = validate_text("mini.json", text);
    char all[4096];
    print_report(r, all, sizeof(all));
    /* transactioncurrency requires its name and other columns: that is the only rule broken */
    for (size_t i = 0; i < dw_map_report_count(r); i++)
        cr_assert_str_eq(dw_map_report_get(r, i)->keyword, "required", "%s", all);
    dw_map_report_destroy(r);
}

Test(map, schema_problems_each_at_their_pointer, .init = (void (*)(void))dw_test_tmpdir_new,
     .fini = dw_test_tmpdir_remove)
{
    const char *text =
        "{\"name\": \"Bad-Name\", \"version\": 0, \"description\": \"\", \"extra\": 1,"
        " \"fo\": {\"entity\": \"9x\", \"entity_set\": \"S\", \"company_specific\": \"yes\"},"
        " \"dv\": {\"table\": \"t\", \"entity_set\": \"s\", \"id_column\": \"i\"},"
        " \"direction\": \"both\", \"on_unavailable\": \"retry\","
        " \"keys\": [],"
        " \"fields\": [{\"fo\": null, \"dv\": \"x\", \"direction\": \"both\"},"
        "  {\"fo\": \"a\", \"dv\": \"b\", \"direction\": \"both\", \"transform\": {\"constant\": 1,"
        "   \"default\": {\"dv\": 1}}},"
        "  {\"fo\": \"a/b~c\", \"dv\": \"b\", \"direction\": \"both\", \"transform\":"
        "   {\"lookup\": {\"key\": \"k\", \"map\": \"m\", \"table\": \"t\", \"oops\": true}}},"
        "  {\"fo\": \"a\", \"dv\": \"b\", \"direction\": \"both\", \"transform\":"
        "   {\"value_map\": [{\"fo\": \"x\", \"dv\": [1]}]}, \"a~b/c\": 1}]}";
    dw_map_report_t *r = validate_text("Bad-Name.json", text);
    lines_t got = {0};
    problems_of(r, NULL, &got);
    const char *want[] = {
        "/name: schema",
        "/version: schema",
        "/description: schema",
        "/extra: schema",
        "/fo/entity: schema",
        "/fo/company_specific: schema",
        "/dv: schema",
        "/on_unavailable: schema",
        "/keys: schema",
        "/fields/0: schema",
        "/fields/0/direction: schema",
        "/fields/1: schema",
        "/fields/1/transform: schema",
        "/fields/2/fo: schema",
        "/fields/2/transform/lookup: schema",
        "/fields/2/transform/lookup/oops: schema",
        "/fields/3/transform/value_map/0/dv: schema",
        "/fields/3/a~0b~1c: schema",
    };
    char a[4096], all[8192];
    lines_text(&got, a, sizeof(a));
    print_report(r, all, sizeof(all));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_assert(lines_has(&got, want[i]), "missing %s in %s%s", want[i], a, all);
    /* only schema problems when the structure fails */
    for (size_t i = 0; i < dw_map_report_count(r); i++)
        cr_assert_str_eq(dw_map_report_get(r, i)->keyword, "schema", "%s", all);
    cr_assert_eq(got.n, sizeof(want) / sizeof(want[0]), "%s%s", a, all);
    lines_free(&got);
    dw_map_report_destroy(r);
}

Test(map, malformed_json_names_line_and_column, .init = (void (*)(void))dw_test_tmpdir_new,
     .fini = dw_test_tmpdir_remove)
{
    dw_map_report_t *r =
        validate_text("broken.json", "{\n  \"name\": \"broken\",\n  \"version\": 1,,\n}");
    cr_assert_eq(dw_map_report_count(r), 1);
    const dw_map_problem_t *p = dw_map_report_get(r, 0);
    cr_assert_str_eq(p->keyword, "parse");
    cr_assert_str_eq(p->pointer, "");
    cr_assert(strstr(p->message, "line 3"), "%s", p->message);
    dw_map_report_destroy(r);

    r = validate_text("dup.json", "{\"name\": \"dup\", \"name\": \"dup\"}");
    cr_assert_eq(dw_map_report_count(r), 1);
    cr_assert(strstr(dw_map_report_get(r, 0)->message, "duplicate"), "%s",
              dw_map_report_get(r, 0)->message);
    dw_map_report_destroy(r);
}

Test(map, unreadable_path_is_an_io_problem)
{
    dw_map_report_t *r = validate((const char *[]){"/nonexistent/x.json"}, 1, MAPS);
    cr_assert_eq(dw_map_report_count(r), 1);
    cr_assert_str_eq(dw_map_report_get(r, 0)->keyword, "io");
    cr_assert_str_eq(dw_map_report_get(r, 0)->file, "/nonexistent/x.json");
    dw_map_report_destroy(r);
}

Test(map, a_file_named_stands_in_for_the_standard_map, .init = (void (*)(void))dw_test_tmpdir_new,
     .fini = dw_test_tmpdir_remove)
{
    /* a "currencies" with another table: customers_accounts' currency lookup must now fail */
    char text[4096];
    snprintf(text, sizeof(text), MINIMAL_FMT, "currencies", "");
    char *p = strstr(text, "\"table\": \"transactioncurrency\"");
    cr_assert_not_null(p);
    memcpy(p, "\"table\": \"uom\"                ", strlen("\"table\": \"transactioncurrency\""));
    const char *path = dw_test_write_file("currencies.json", text);
    dw_map_report_t *r = validate((const char *[]){path, MAPS "/customers_accounts.json"}, 2, MAPS);
    lines_t got = {0};
    problems_of(r, MAPS "/customers_accounts.json", &got);
    cr_assert(lines_has(&got, "/fields/4/transform/lookup: lookup-target"));
    lines_free(&got);
    dw_map_report_destroy(r);
}

Test(map, metadata_problems_are_reported_with_the_metadata_file,
     .init = (void (*)(void))dw_test_tmpdir_new, .fini = dw_test_tmpdir_remove)
{
    char cmd[1024];
    const char *dir = dw_test_write_file("x", "");
    char meta[512];
    snprintf(meta, sizeof(meta), "%.*s/meta", (int)(strlen(dir) - 2), dir);
    snprintf(cmd, sizeof(cmd), "cp -r %s %s", METADATA, meta);
    cr_assert_eq(system(cmd), 0);
    char bad[600];
    snprintf(bad, sizeof(bad), "%s/dv/uom.json", meta);
    FILE *f = fopen(bad, "w");
    cr_assert_not_null(f);
    fputs("{\"system\": \"dv\", \"name\": \"uom\", \"entity_set\": \"uoms\", \"id_column\": "
          "\"uomid\", \"alternate_keys\": [], \"ownership\": \"organization\", \"colums\": []}",
          f);
    fclose(f);
    char errstr[1024];
    dw_map_report_t *r = dw_map_report_new();
    dw_meta_t *m = dw_meta_load(meta, r, errstr, sizeof(errstr));
    cr_assert_null(m);
    lines_t got = {0};
    problems_of(r, bad, &got);
    cr_assert(lines_has(&got, ": schema"));        /* columns missing */
    cr_assert(lines_has(&got, "/colums: schema")); /* unknown member */
    lines_free(&got);
    cr_assert(strstr(errstr, "uom.json"), "%s", errstr);
    dw_map_report_destroy(r);
}

Test(map, a_relation_is_checked_like_the_schema_says, .init = (void (*)(void))dw_test_tmpdir_new,
     .fini = dw_test_tmpdir_remove)
{
    char cmd[1024];
    const char *dir = dw_test_write_file("x", "");
    char meta[512];
    snprintf(meta, sizeof(meta), "%.*s/meta", (int)(strlen(dir) - 2), dir);
    snprintf(cmd, sizeof(cmd), "cp -r %s %s", METADATA, meta);
    cr_assert_eq(system(cmd), 0);
    char bad[600];
    snprintf(bad, sizeof(bad), "%s/fo/Bad.json", meta);
    FILE *f = fopen(bad, "w");
    cr_assert_not_null(f);
    fputs("{\"system\": \"fo\", \"name\": \"Bad\", \"entity_set\": \"Bads\", "
          "\"company_specific\": false, \"key\": [\"Id\"], \"columns\": ["
          "{\"name\": \"Id\", \"type\": \"string\", \"required\": true, \"read_only\": false},"
          "{\"name\": \"N\", \"type\": \"integer\", \"required\": false, \"read_only\": false,"
          " \"relation\": {\"entity\": \"Currency\", \"label\": \"N\", \"table_label\": \"C\"}},"
          "{\"name\": \"G\", \"type\": \"string\", \"required\": false, \"read_only\": false,"
          " \"relation\": {\"entity\": \"CustomerGroup\", \"label\": \"\"}},"
          "{\"name\": \"C\", \"type\": \"string\", \"required\": false, \"read_only\": false,"
          " \"relation\": {\"entity\": \"Currency\", \"label\": \"Currency\", \"table_label\": "
          "\"Currency\"}}]}",
          f);
    fclose(f);
    char errstr[1024];
    dw_map_report_t *r = dw_map_report_new();
    dw_meta_t *m = dw_meta_load(meta, r, errstr, sizeof(errstr));
    cr_assert_null(m);
    lines_t got = {0};
    problems_of(r, bad, &got);
    char all[2048];
    lines_text(&got, all, sizeof(all));
    cr_assert(lines_has(&got, "/columns/1: schema"), "%s", all);                /* not a string */
    cr_assert(lines_has(&got, "/columns/2/relation: schema"), "%s", all);       /* no table_label */
    cr_assert(lines_has(&got, "/columns/2/relation/label: schema"), "%s", all); /* empty */
    cr_assert_eq(got.n, 3, "only those: %s", all); /* column 3 is fine */
    lines_free(&got);
    dw_map_report_destroy(r);
}

/* ---- the set: order and cycles ------------------------------------------------------------- */

static size_t index_of(const dw_map_t **order, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(dw_map_name(order[i]), name) == 0)
            return i;
    }
    cr_assert_fail("%s not in the order", name);
    return 0;
}

Test(map, dependency_order_puts_what_a_map_looks_up_first)
{
    char errstr[1024];
    dw_mapset_t *set = dw_mapset_load(MAPS, METADATA, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(set, "%s", errstr);
    size_t n = dw_mapset_count(set);
    cr_assert_geq(n, 17);
    const dw_map_t *order[32];
    cr_assert_eq(dw_mapset_order(set, order), DW_OK);
    size_t cust = index_of(order, n, "customers_accounts");
    cr_assert_lt(index_of(order, n, "legal_entities"), cust);
    cr_assert_lt(index_of(order, n, "currencies"), cust);
    cr_assert_lt(index_of(order, n, "customer_groups"), cust);
    cr_assert_lt(index_of(order, n, "payment_terms"), cust);
    cr_assert_lt(index_of(order, n, "sales_order_headers"),
                 index_of(order, n, "sales_order_lines"));
    /* every map after every map it depends on */
    for (size_t i = 0; i < n; i++) {
        for (size_t d = 0; d < dw_map_dep_count(order[i]); d++)
            cr_assert_lt(index_of(order, n, dw_map_dep(order[i], d)), i, "%s before %s",
                         dw_map_dep(order[i], d), dw_map_name(order[i]));
    }
    dw_mapset_destroy(set);
}

#define CYCLE_FMT                                                                                  \
    "{\"name\": \"%s\", \"version\": 1, \"description\": \"d\","                                   \
    " \"fo\": {\"entity\": \"CustomerGroup\", \"entity_set\": \"CustomerGroups\", "                \
    "\"company_specific\": true},"                                                                 \
    " \"dv\": {\"table\": \"msdyn_customergroup\", \"entity_set\": \"msdyn_customergroups\","      \
    " \"id_column\": \"msdyn_customergroupid\", \"alternate_key\": \"msdyn_customergroup_key\"},"  \
    " \"direction\": \"fo-to-dv\","                                                                \
    " \"keys\": [{\"fo\": \"dataAreaId\", \"dv\": \"msdyn_company\"}, {\"fo\": "                   \
    "\"CustomerGroupId\", \"dv\": \"msdyn_groupid\"}],"                                            \
    " \"fields\": [{\"fo\": \"dataAreaId\", \"dv\": \"msdyn_company\", \"direction\": "            \
    "\"fo-to-dv\","                                                                                \
    "   \"transform\": {\"lookup\": {\"map\": \"%s\", \"key\": \"cdm_companycode\"}}},"            \
    "  {\"fo\": \"CustomerGroupId\", \"dv\": \"msdyn_groupid\", \"direction\": \"fo-to-dv\"}]}"

Test(map, a_cycle_of_lookups_is_reported_naming_the_maps,
     .init = (void (*)(void))dw_test_tmpdir_new, .fini = dw_test_tmpdir_remove)
{
    char text[4096];
    snprintf(text, sizeof(text), CYCLE_FMT, "ring_a", "ring_b");
    const char *pa = strdup(dw_test_write_file("ring_a.json", text));
    snprintf(text, sizeof(text), CYCLE_FMT, "ring_b", "ring_c");
    const char *pb = strdup(dw_test_write_file("ring_b.json", text));
    snprintf(text, sizeof(text), CYCLE_FMT, "ring_c", "ring_a");
    const char *pc = strdup(dw_test_write_file("ring_c.json", text));
    dw_map_report_t *r = validate((const char *[]){pa, pb, pc}, 3, NULL);
    size_t cycles = 0;
    for (size_t i = 0; i < dw_map_report_count(r); i++) {
        const dw_map_problem_t *p = dw_map_report_get(r, i);
        if (strcmp(p->keyword, "cycle") != 0)
            continue;
        cycles++;
        cr_assert_str_eq(p->pointer, "/fields/0/transform/lookup/map");
        cr_assert(strstr(p->message, "ring_a") && strstr(p->message, "ring_b") &&
                      strstr(p->message, "ring_c"),
                  "%s", p->message);
    }
    cr_assert_eq(cycles, 3);
    lines_t got = {0};
    problems_of(r, pa, &got);
    cr_assert(lines_has(&got, "/fields/0/transform/lookup/map: cycle"));
    lines_free(&got);
    dw_map_report_destroy(r);

    /* the strict load refuses the folder */
    char errstr[1024];
    char dir[600];
    snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(pa, '/') - pa), pa);
    r = dw_map_report_new();
    dw_mapset_t *set = dw_mapset_load(dir, METADATA, r, errstr, sizeof(errstr));
    cr_assert_null(set);
    lines_t all = {0};
    problems_of(r, NULL, &all);
    cr_assert(lines_has(&all, "/fields/0/transform/lookup/map: cycle"));
    lines_free(&all);
    dw_map_report_destroy(r);
    free((void *)pa);
    free((void *)pb);
    free((void *)pc);
}

Test(map, a_map_looking_up_itself_is_not_a_cycle, .init = (void (*)(void))dw_test_tmpdir_new,
     .fini = dw_test_tmpdir_remove)
{
    char text[4096];
    snprintf(text, sizeof(text), CYCLE_FMT, "selfish", "selfish");
    dw_map_report_t *r = validate_text("selfish.json", text);
    for (size_t i = 0; i < dw_map_report_count(r); i++)
        cr_assert_str_neq(dw_map_report_get(r, i)->keyword, "cycle");
    dw_map_report_destroy(r);
}

/* ---- accessors ------------------------------------------------------------------------------ */

Test(map, accessors_expose_what_the_workers_need)
{
    char errstr[1024];
    dw_mapset_t *set = dw_mapset_load(MAPS, METADATA, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(set, "%s", errstr);
    const dw_map_t *m = dw_mapset_find(set, "customers_accounts");
    cr_assert_not_null(m);
    cr_assert_null(dw_mapset_find(set, "nope"));
    cr_assert_str_eq(dw_map_name(m), "customers_accounts");
    cr_assert_eq(dw_map_version(m), 1);
    cr_assert_eq(dw_map_direction(m), DW_MAP_BOTH);
    cr_assert(dw_map_runs(m, DW_MAP_FO_TO_DV) && dw_map_runs(m, DW_MAP_DV_TO_FO));
    cr_assert_eq(dw_map_on_unavailable(m), DW_MAP_UNAVAILABLE_QUEUE);
    cr_assert_str_eq(dw_map_fo_entity(m), "CustomerV3");
    cr_assert_str_eq(dw_map_fo_entity_set(m), "CustomersV3");
    cr_assert(dw_map_fo_company_specific(m));
    cr_assert_str_eq(dw_map_dv_table(m), "account");
    cr_assert_str_eq(dw_map_dv_entity_set(m), "accounts");
    cr_assert_str_eq(dw_map_dv_id_column(m), "accountid");
    cr_assert_str_eq(dw_map_dv_alternate_key(m), "account_key");
    cr_assert_eq(dw_map_key_count(m), 2);
    cr_assert_str_eq(dw_map_key(m, 0)->fo, "dataAreaId");
    cr_assert_str_eq(dw_map_key(m, 1)->dv, "accountnumber");
    cr_assert(dw_map_key(m, 0)->field->is_key);
    cr_assert_eq(dw_map_key(m, 0)->field->transform, DW_MAP_XF_LOOKUP);
    cr_assert_str_eq(dw_map_key(m, 0)->field->lookup->entity_set, "cdm_companies");
    cr_assert_str_eq(dw_map_key(m, 0)->field->lookup->table, "cdm_company");

    const dw_map_field_t *f = dw_map_field_by_source(m, DW_MAP_FO_TO_DV, "OnHoldStatus");
    cr_assert_not_null(f);
    cr_assert_eq(f->transform, DW_MAP_XF_VALUE_MAP);
    cr_assert_eq(f->npairs, 6);
    cr_assert_eq(f->fo_column->type, DW_COL_ENUM);
    cr_assert_eq(f->dv_column->type, DW_COL_ENUM);
    f = dw_map_field_by_source(m, DW_MAP_FO_TO_DV, "CustomerGroupId");
    cr_assert_str_eq(f->lookup->company, "msdyn_company");
    cr_assert_str_eq(f->lookup->map, "customer_groups");
    cr_assert_not_null(f->lookup->key_column);
    f = dw_map_field_by_source(m, DW_MAP_DV_TO_FO, "customertypecode");
    cr_assert_null(f); /* a constant written fo-to-dv only */
    size_t constants = 0;
    for (size_t i = 0; i < dw_map_field_count(m); i++)
        constants += dw_map_field(m, i)->transform == DW_MAP_XF_CONSTANT;
    cr_assert_eq(constants, 3);

    const dw_filter_t *flt = dw_map_filter(m, DW_MAP_FO);
    cr_assert_not_null(flt);
    cr_assert_str_eq(dw_map_filter_text(m, DW_MAP_FO), "PartyType eq 'Organization'");
    json_t *rec = json_pack("{s:s}", "PartyType", "Organization");
    cr_assert(dw_filter_match(flt, rec));
    json_object_set_new(rec, "PartyType", json_string("Person"));
    cr_assert_not(dw_filter_match(flt, rec));
    json_decref(rec);
    cr_assert_not_null(dw_map_filter(m, DW_MAP_DV));

    cr_assert_eq(dw_map_dep_count(m), 4);
    cr_assert_str_eq(dw_map_dep(m, 0), "legal_entities");
    cr_assert_str_eq(json_string_value(json_object_get(dw_map_json(m), "name")),
                     "customers_accounts");
    cr_assert_eq(dw_meta_table_side(dw_map_meta(m, DW_MAP_DV)), DW_MAP_DV);

    const dw_map_t *lines = dw_mapset_find(set, "sales_order_lines");
    const dw_map_field_t *uom = dw_map_field_by_source(lines, DW_MAP_FO_TO_DV, "SalesUnitSymbol");
    cr_assert_null(uom->lookup->map);
    cr_assert_str_eq(uom->lookup->entity_set, "uoms");
    dw_mapset_destroy(set);
}

Test(map, direction_names_round_trip)
{
    dw_map_dir_t d;
    cr_assert_eq(dw_map_dir_parse("fo-to-dv", &d), DW_OK);
    cr_assert_eq(d, DW_MAP_FO_TO_DV);
    cr_assert_eq(dw_map_dir_parse("dv-to-fo", &d), DW_OK);
    cr_assert_eq(d, DW_MAP_DV_TO_FO);
    cr_assert_eq(dw_map_dir_parse("both", &d), DW_OK);
    cr_assert_eq(dw_map_dir_parse("sideways", &d), DW_ERR_INVALID_ARG);
    cr_assert_str_eq(dw_map_dir_name(DW_MAP_BOTH), "both");
    cr_assert_eq(dw_map_dir_source(DW_MAP_DV_TO_FO), DW_MAP_DV);
    cr_assert_eq(dw_map_dir_target(DW_MAP_DV_TO_FO), DW_MAP_FO);
    cr_assert_str_eq(dw_col_type_name(DW_COL_DATETIME), "datetime");
    cr_assert_str_eq(dw_map_xf_name(DW_MAP_XF_LOOKUP), "lookup");
}

Test(map, report_prints_one_line_per_problem, .init = (void (*)(void))dw_test_tmpdir_new,
     .fini = dw_test_tmpdir_remove)
{
    dw_map_report_t *r =
        validate((const char *[]){GOLDEN "/invalid/duplicate_source.json"}, 1, MAPS);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    dw_map_report_print(r, f);
    fclose(f);
    cr_assert_str_eq(buf, GOLDEN
                     "/invalid/duplicate_source.json: /fields/3/dv: duplicate-source: "
                     "msdyn_description is used by two bidirectional fields (also fields/2)\n");
    free(buf);
    dw_map_report_destroy(r);
}
