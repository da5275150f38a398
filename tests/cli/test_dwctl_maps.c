/*
 * dwctl maps validate | list | show | apply, run as a process: exit codes, one
 * "FILE: POINTER: KEYWORD: MESSAGE" line per problem for the golden cases, the dependency order,
 * a cycle, and a record through apply from stdin to stdout. Needs no services.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_testutil.h"

#define DWCTL  DW_BIN_DIR "/dwctl"
#define MAPS   DW_SOURCE_DIR "/schemas/maps"
#define GOLDEN DW_SOURCE_DIR "/tests/maps"

static dw_test_run_t r;

/* A sanitizer report of the child (an ASan build) fails the test: the child's stderr is ours
 * to read, ctest does not see it. */
static void no_sanitizer_report(void)
{
    cr_assert(!strstr(r.err, "Sanitizer") && !strstr(r.err, "runtime error:"), "%s", r.err);
}

static void run(const char *const *args)
{
    dw_test_run(&r, DWCTL, args, NULL, 0);
    no_sanitizer_report();
}

/* dwctl with args and the text on its stdin. */
static void run_stdin(const char *input, const char *const *args)
{
    const char *path = dw_test_write_file("stdin.json", input);
    char env[600];
    snprintf(env, sizeof(env), "DWCTL_TEST_STDIN=%s", path);
    const char *argv[40] = {"-c", "exec \"$0\" \"$@\" < \"$DWCTL_TEST_STDIN\"", DWCTL};
    size_t n = 3;
    for (size_t i = 0; args[i] && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    dw_test_run(&r, "/bin/sh", argv, (const char *[]){env, NULL}, 0);
    no_sanitizer_report();
}

static void setup(void)
{
    dw_test_tmpdir_new();
}

TestSuite(dwctl_maps, .init = setup, .fini = dw_test_tmpdir_remove);

/* The "pointer: keyword" of every line of out that starts with "file: ". */
static size_t problem_lines(const char *out, const char *file, char lines[][256], size_t max)
{
    size_t n = 0, fl = strlen(file);
    const char *p = out;
    while (*p && n < max) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > fl + 2 && strncmp(p, file, fl) == 0 && p[fl] == ':' && p[fl + 1] == ' ') {
            const char *ptr = p + fl + 2;
            const char *sep = strstr(ptr, ": ");
            cr_assert(sep && sep < p + len, "line without a pointer: %.*s", (int)len, p);
            const char *kw = sep + 2;
            const char *sep2 = strstr(kw, ": ");
            cr_assert(sep2 && sep2 < p + len, "line without a keyword: %.*s", (int)len, p);
            snprintf(lines[n++], 256, "%.*s: %.*s", (int)(sep - ptr), ptr, (int)(sep2 - kw), kw);
        }
        p = eol ? eol + 1 : p + len;
    }
    return n;
}

Test(dwctl_maps, validate_reports_each_golden_case_with_its_expected_lines)
{
    DIR *d = opendir(GOLDEN "/invalid");
    cr_assert_not_null(d);
    struct dirent *de;
    size_t cases = 0;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        char path[512], expect[512];
        snprintf(path, sizeof(path), "%s/invalid/%s", GOLDEN, de->d_name);
        snprintf(expect, sizeof(expect), "%s/invalid/%.*s.expect", GOLDEN, (int)(l - 5),
                 de->d_name);
        run((const char *[]){"maps", "validate", path, NULL});
        cr_assert_eq(r.status, 2, "%s: %s", path, r.err);
        char got[32][256];
        size_t n = problem_lines(r.out, path, got, 32);
        FILE *f = fopen(expect, "r");
        cr_assert_not_null(f);
        char line[256];
        size_t want = 0;
        while (fgets(line, sizeof(line), f)) {
            line[strcspn(line, "\r\n")] = '\0';
            if (!line[0])
                continue;
            want++;
            bool found = false;
            for (size_t i = 0; i < n && !found; i++)
                found = strcmp(got[i], line) == 0;
            cr_assert(found, "%s: expected \"%s\" in\n%s", path, line, r.out);
        }
        fclose(f);
        cr_assert_eq(n, want, "%s:\n%s", path, r.out);
        cr_assert(strstr(r.err, "problem"), "%s", r.err);
        cases++;
    }
    closedir(d);
    cr_assert_geq(cases, 19);
}

Test(dwctl_maps, validate_exits_0_silently_for_valid_maps)
{
    run((const char *[]){"maps", "validate", MAPS, GOLDEN "/valid", NULL});
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    cr_assert_str_empty(r.out);
    run((const char *[]){"maps", "validate", MAPS "/customers_accounts.json", NULL});
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
}

Test(dwctl_maps, validate_reports_every_file_in_one_run)
{
    run((const char *[]){"maps", "validate", GOLDEN "/valid", GOLDEN "/invalid", MAPS, NULL});
    cr_assert_eq(r.status, 2);
    /* one line per expected problem of every invalid case, none for the valid files */
    size_t lines = 0, expected = 0, files = 0;
    for (const char *p = r.out; (p = strchr(p, '\n')); p++)
        lines++;
    cr_assert_null(strstr(r.out, GOLDEN "/valid/"), "%s", r.out);
    cr_assert_null(strstr(r.out, MAPS "/"), "%s", r.out);
    DIR *d = opendir(GOLDEN "/invalid");
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 8 || strcmp(de->d_name + l - 7, ".expect") != 0)
            continue;
        char path[600], line[256];
        snprintf(path, sizeof(path), "%s/invalid/%s", GOLDEN, de->d_name);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof(line), f))
            expected += line[0] != '\n';
        if (f)
            fclose(f);
        files++;
    }
    closedir(d);
    cr_assert_eq(lines, expected, "%s", r.out);
    char summary[128];
    snprintf(summary, sizeof(summary), "%zu problems in %zu files", expected, files);
    cr_assert(strstr(r.err, summary), "%s (want %s)", r.err, summary);
    /* --json: one object per problem */
    run((const char *[]){"maps", "validate", "--json", GOLDEN "/invalid/type_mismatch.json", NULL});
    cr_assert_eq(r.status, 2);
    json_error_t jerr;
    json_t *j = json_loads(r.out, JSON_DISABLE_EOF_CHECK, &jerr);
    cr_assert_not_null(j, "%s", r.out);
    cr_assert_str_eq(json_string_value(json_object_get(j, "pointer")), "/fields/4");
    cr_assert_str_eq(json_string_value(json_object_get(j, "keyword")), "type-mismatch");
    json_decref(j);
}

Test(dwctl_maps, validate_resolves_lookups_against_the_maps_option)
{
    const char *empty = dw_test_write_file("empty.json", "{}");
    char dir[512];
    snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(empty, '/') - empty), empty);
    /* a folder with only a broken file: the standard maps are not there for lookups */
    run((const char *[]){"maps", "validate", "--maps", dir, MAPS "/customer_groups.json", NULL});
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.out, "/fields/0/transform/lookup/map: unknown-map"), "%s", r.out);
    run((const char *[]){"maps", "validate", "--metadata", "/nonexistent", MAPS, NULL});
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "/nonexistent"), "%s", r.err);
}

Test(dwctl_maps, validate_of_a_missing_file_is_exit_2)
{
    run((const char *[]){"maps", "validate", "/nonexistent/map.json", NULL});
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.out, "/nonexistent/map.json: : io:"), "%s", r.out);
    run((const char *[]){"maps", "validate", NULL});
    cr_assert_eq(r.status, 2);
}

Test(dwctl_maps, list_prints_the_dependency_order)
{
    run((const char *[]){"maps", "list", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    const char *le = strstr(r.out, " legal_entities ");
    const char *cur = strstr(r.out, " currencies ");
    const char *cust = strstr(r.out, " customers_accounts ");
    cr_assert(le && cur && cust, "%s", r.out);
    cr_assert(le < cust && cur < cust, "%s", r.out);
    cr_assert(strstr(cust, "CustomerV3") && strstr(cust, "account"), "%s", r.out);
    run((const char *[]){"maps", "list", "--json", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t jerr;
    json_t *a = json_loads(r.out, 0, &jerr);
    cr_assert(json_is_array(a), "%s", r.out);
    cr_assert_geq(json_array_size(a), 17);
    size_t ile = 0, icust = 0;
    for (size_t i = 0; i < json_array_size(a); i++) {
        const char *name = json_string_value(json_object_get(json_array_get(a, i), "name"));
        if (strcmp(name, "legal_entities") == 0)
            ile = i;
        if (strcmp(name, "customers_accounts") == 0)
            icust = i;
    }
    cr_assert_lt(ile, icust);
    json_t *c = json_array_get(a, icust);
    cr_assert_str_eq(json_string_value(json_object_get(c, "direction")), "both");
    cr_assert_str_eq(json_string_value(json_object_get(c, "fo_entity")), "CustomerV3");
    cr_assert_str_eq(json_string_value(json_object_get(c, "dv_table")), "account");
    json_decref(a);
}

#define RING_FMT                                                                                   \
    "{\"name\": \"%s\", \"version\": 1, \"description\": \"d\","                                   \
    " \"fo\": {\"entity\": \"CustomerGroup\", \"entity_set\": \"CustomerGroups\","                 \
    " \"company_specific\": true},"                                                                \
    " \"dv\": {\"table\": \"msdyn_customergroup\", \"entity_set\": \"msdyn_customergroups\","      \
    " \"id_column\": \"msdyn_customergroupid\", \"alternate_key\": \"msdyn_customergroup_key\"},"  \
    " \"direction\": \"fo-to-dv\", \"keys\": [{\"fo\": \"dataAreaId\", \"dv\": "                   \
    "\"msdyn_company\"},"                                                                          \
    " {\"fo\": \"CustomerGroupId\", \"dv\": \"msdyn_groupid\"}],"                                  \
    " \"fields\": [{\"fo\": \"dataAreaId\", \"dv\": \"msdyn_company\", \"direction\": "            \
    "\"fo-to-dv\","                                                                                \
    " \"transform\": {\"lookup\": {\"map\": \"%s\", \"key\": \"cdm_companycode\"}}},"              \
    " {\"fo\": \"CustomerGroupId\", \"dv\": \"msdyn_groupid\", \"direction\": \"fo-to-dv\"}]}"

Test(dwctl_maps, list_refuses_a_cycle_naming_its_maps)
{
    char text[4096];
    snprintf(text, sizeof(text), RING_FMT, "ring_a", "ring_b");
    const char *pa = dw_test_write_file("ring_a.json", text);
    char dir[512];
    snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(pa, '/') - pa), pa);
    snprintf(text, sizeof(text), RING_FMT, "ring_b", "ring_a");
    dw_test_write_file("ring_b.json", text);
    run((const char *[]){"maps", "list", "--maps", dir, NULL});
    cr_assert_eq(r.status, 2);
    cr_assert(
        strstr(r.err, "cycle: the lookups of these maps form a cycle: ring_a -> ring_b -> ring_a"),
        "%s", r.err);
    cr_assert_str_empty(r.out);
}

Test(dwctl_maps, show_prints_one_map)
{
    run((const char *[]){"maps", "show", "sales_order_lines", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "CDSSalesOrderLine"), "%s", r.out);
    cr_assert(strstr(r.out, "salesorders(msdyn_salesordernumber,msdyn_company)"), "%s", r.out);
    cr_assert(strstr(r.out, "sales_order_headers"), "%s", r.out);
    run((const char *[]){"maps", "show", "--json", "currencies", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t jerr;
    json_t *j = json_loads(r.out, 0, &jerr);
    cr_assert_not_null(j, "%s", r.out);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "map"), "name")),
                     "currencies");
    json_decref(j);
    run((const char *[]){"maps", "show", "nope", NULL});
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "nope"), "%s", r.err);
}

Test(dwctl_maps, apply_maps_stdin_to_stdout)
{
    run_stdin("{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"US-001\",\"OrganizationName\":"
              "\"O'Brien (Contoso)\",\"SalesCurrencyCode\":\"USD\",\"CreditLimit\":1234567.89,"
              "\"OnHoldStatus\":\"Invoice\",\"PartyType\":\"Organization\"}",
              (const char *[]){"maps", "apply", "--map", "customers_accounts", "--direction",
                               "fo-to-dv", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_str_empty(r.err);
    cr_assert_str_eq(
        r.out,
        "{\"msdyn_company@odata.bind\":\"/cdm_companies(cdm_companycode='usmf')\","
        "\"accountnumber\":\"US-001\",\"name\":\"O'Brien (Contoso)\","
        "\"transactioncurrencyid@odata.bind\":\"/transactioncurrencies(isocurrencycode='USD')\","
        "\"creditlimit\":1234567.89,\"msdyn_onholdstatus\":806380001,"
        "\"customertypecode\":3}\n");
    run_stdin("{\"msdyn_company\":\"usmf\",\"accountnumber\":\"US-001\",\"creditlimit\":\"0.1\","
              "\"customertypecode\":3}",
              (const char *[]){"maps", "apply", "-m", "customers_accounts", "-d", "dv-to-fo",
                               "--full", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t jerr;
    json_t *j = json_loads(r.out, 0, &jerr);
    cr_assert_not_null(j, "%s", r.out);
    cr_assert_str_eq(json_string_value(json_object_get(j, "canonical_key")),
                     "[\"usmf\",\"us-001\"]");
    cr_assert_eq(strlen(json_string_value(json_object_get(j, "content_hash"))), 64);
    cr_assert_str_eq(
        json_string_value(json_object_get(json_object_get(j, "payload"), "CreditLimit")), "0.1");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "key"), "dataAreaId")),
                     "usmf");
    cr_assert(json_is_true(json_object_get(j, "in_scope")));
    json_decref(j);
}

Test(dwctl_maps, apply_rejects_bad_input_with_exit_2)
{
    const char *args[] = {"maps",        "apply",    "--map", "customers_accounts",
                          "--direction", "fo-to-dv", NULL};
    run_stdin("{\"dataAreaId\":\"usmf\"", args);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "malformed"), "%s", r.err);
    cr_assert_str_empty(r.out);
    run_stdin("{\"dataAreaId\":\"usmf\",\"OrganizationName\":\"x\"}", args);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "missing_key: CustomerAccount"), "%s", r.err);
    run_stdin("{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"OnHoldStatus\":\"Maybe\"}",
              args);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "unmapped_value: OnHoldStatus"), "%s", r.err);
    run_stdin("{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"OrganizationName\":\"\xff\"}",
              args);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "invalid_utf8: OrganizationName"), "%s", r.err);
    run_stdin("[]", args);
    cr_assert_eq(r.status, 2);
    /* usage */
    run_stdin("{}", (const char *[]){"maps", "apply", "--direction", "fo-to-dv", NULL});
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "--map"), "%s", r.err);
    run_stdin("{}",
              (const char *[]){"maps", "apply", "--map", "currencies", "--direction", "up", NULL});
    cr_assert_eq(r.status, 2);
    run_stdin("{}", (const char *[]){"maps", "apply", "--map", "legal_entities", "--direction",
                                     "dv-to-fo", NULL});
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "fo-to-dv"), "%s", r.err);
    run_stdin("{}",
              (const char *[]){"maps", "apply", "--map", "nope", "--direction", "fo-to-dv", NULL});
    cr_assert_eq(r.status, 2);
}

Test(dwctl_maps, apply_notes_a_record_out_of_scope)
{
    run_stdin("{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"PartyType\":\"Person\"}",
              (const char *[]){"maps", "apply", "--map", "customers_accounts", "--direction",
                               "fo-to-dv", NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.err, "outside"), "%s", r.err);
}

Test(dwctl_maps, every_maps_command_answers_help)
{
    const char *cmds[] = {"validate", "list", "show", "apply"};
    for (size_t i = 0; i < 4; i++) {
        run((const char *[]){"maps", cmds[i], "--help", NULL});
        cr_assert_eq(r.status, 0, "%s", cmds[i]);
        cr_assert(strstr(r.out, "Usage: dwctl maps"), "%s", r.out);
    }
    run((const char *[]){"--help", NULL});
    cr_assert(strstr(r.out, "maps validate"), "%s", r.out);
}
