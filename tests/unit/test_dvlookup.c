/*
 * Unit tests of dw_dvlookup: lookup GUIDs resolved to key values through a fake row reader
 * (no server): plain and company-striped lookups, the cache, fallbacks, bad GUIDs, filling a row.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "dw_dvlookup.h"
#include "dw_map.h"

#define MAPS     DW_SOURCE_DIR "/schemas/maps"
#define METADATA DW_SOURCE_DIR "/schemas/metadata"

#define G_GROUP   "11111111-1111-1111-1111-111111111111"
#define G_COMPANY "22222222-2222-2222-2222-222222222222"
#define G_MISSING "33333333-3333-3333-3333-333333333333"

/* The fake Web API: a few rows by path, and a log of the paths read. */
typedef struct {
    int reads;
} fake_t;

static json_t *fake_get(const char *path, void *opaque)
{
    fake_t *f = opaque;
    f->reads++;
    if (strcmp(path, "msdyn_customergroups(" G_GROUP
                     ")?$select=msdyn_groupid,_msdyn_company_value") == 0)
        return json_pack("{s:s, s:s}", "msdyn_groupid", "10", "_msdyn_company_value", G_COMPANY);
    if (strcmp(path, "cdm_companies(" G_COMPANY ")?$select=cdm_companycode") == 0)
        return json_pack("{s:s}", "cdm_companycode", "USMF");
    if (strncmp(path, "cdm_companies(" G_GROUP ")", strlen("cdm_companies(" G_GROUP ")")) == 0)
        return json_pack("{s:i}", "cdm_companycode", 7); /* not a string: unresolvable */
    return NULL;
}

static dw_mapset_t *maps;

static void setup(void)
{
    char errstr[1024];
    maps = dw_mapset_load(MAPS, METADATA, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(maps, "%s", errstr);
}

static void teardown(void)
{
    dw_mapset_destroy(maps);
}

/* the lookup that fills dv column col of map */
static const dw_map_lookup_t *lookup_of(const char *map, const char *col)
{
    const dw_map_t *m = dw_mapset_find(maps, map);
    cr_assert_not_null(m);
    for (size_t i = 0; i < dw_map_field_count(m); i++) {
        const dw_map_field_t *f = dw_map_field(m, i);
        if (f->dv && strcmp(f->dv, col) == 0 && f->lookup)
            return f->lookup;
    }
    cr_assert_fail("%s has no lookup on %s", map, col);
    return NULL;
}

Test(dvlookup, guids_in_their_canonical_form_are_accepted)
{
    cr_assert(dw_dvlookup_guid_ok(G_GROUP));
    cr_assert(dw_dvlookup_guid_ok("aBcDeF01-2345-6789-abcd-ef0123456789"));
    cr_assert_not(dw_dvlookup_guid_ok(NULL));
    cr_assert_not(dw_dvlookup_guid_ok(""));
    cr_assert_not(dw_dvlookup_guid_ok("{" G_GROUP "}"));
    cr_assert_not(dw_dvlookup_guid_ok("11111111x1111-1111-1111-111111111111"));
    cr_assert_not(dw_dvlookup_guid_ok("g1111111-1111-1111-1111-111111111111"));
}

Test(dvlookup, a_plain_lookup_resolves_to_the_key_and_is_cached, .init = setup,
     .fini = teardown)
{
    fake_t f = {0};
    dw_dvlookup_t *dvl = dw_dvlookup_new(maps, 100, fake_get, &f);
    cr_assert_not_null(dvl);
    const dw_map_lookup_t *lk = lookup_of("customer_groups", "msdyn_company");
    json_t *v = dw_dvlookup_resolve(dvl, lk, G_COMPANY);
    cr_assert(json_is_string(v));
    cr_assert_str_eq(json_string_value(v), "USMF");
    json_decref(v);
    cr_assert_eq(f.reads, 1);
    v = dw_dvlookup_resolve(dvl, lk, G_COMPANY);
    cr_assert_str_eq(json_string_value(v), "USMF");
    json_decref(v);
    cr_assert_eq(f.reads, 1, "the second resolve comes from the cache");
    cr_assert_eq(dw_dvlookup_cached(dvl), 1);
    dw_dvlookup_destroy(dvl);
}

Test(dvlookup, a_company_striped_lookup_resolves_the_company_through_its_map, .init = setup,
     .fini = teardown)
{
    fake_t f = {0};
    dw_dvlookup_t *dvl = dw_dvlookup_new(maps, 100, fake_get, &f);
    const dw_map_lookup_t *lk = lookup_of("customers_accounts", "msdyn_customergroupid");
    json_t *v = dw_dvlookup_resolve(dvl, lk, G_GROUP);
    cr_assert(json_is_object(v));
    cr_assert_str_eq(json_string_value(json_object_get(v, "msdyn_groupid")), "10");
    cr_assert_str_eq(json_string_value(json_object_get(v, "msdyn_company")), "USMF");
    json_decref(v);
    cr_assert_eq(f.reads, 2, "the group row, then its company");
    cr_assert_eq(dw_dvlookup_cached(dvl), 2, "both are cached");
    dw_dvlookup_destroy(dvl);
}

Test(dvlookup, unreadable_rows_and_bad_guids_resolve_to_nothing, .init = setup, .fini = teardown)
{
    fake_t f = {0};
    dw_dvlookup_t *dvl = dw_dvlookup_new(maps, 100, fake_get, &f);
    const dw_map_lookup_t *lk = lookup_of("customer_groups", "msdyn_company");
    cr_assert_null(dw_dvlookup_resolve(dvl, lk, G_MISSING));
    cr_assert_eq(f.reads, 1);
    cr_assert_null(dw_dvlookup_resolve(dvl, lk, G_GROUP), "a key that is not a string");
    cr_assert_null(dw_dvlookup_resolve(dvl, lk, "not-a-guid"));
    cr_assert_eq(f.reads, 2, "a bad GUID is never read");
    cr_assert_eq(dw_dvlookup_cached(dvl), 0, "failures are not cached");
    dw_dvlookup_destroy(dvl);
}

Test(dvlookup, the_cache_is_emptied_when_it_outgrows_its_bound, .init = setup, .fini = teardown)
{
    fake_t f = {0};
    dw_dvlookup_t *dvl = dw_dvlookup_new(maps, 0, fake_get, &f);
    json_decref(dw_dvlookup_resolve(dvl, lookup_of("customer_groups", "msdyn_company"), G_COMPANY));
    cr_assert_eq(dw_dvlookup_cached(dvl), 1);
    json_decref(dw_dvlookup_resolve(dvl, lookup_of("customers_accounts", "msdyn_customergroupid"),
                                    G_GROUP));
    /* the group's company came from the cache; storing the group emptied the cache first */
    cr_assert_eq(dw_dvlookup_cached(dvl), 1);
    dw_dvlookup_destroy(dvl);
}

Test(dvlookup, fill_row_adds_the_key_beside_the_guid_and_keeps_present_columns, .init = setup,
     .fini = teardown)
{
    fake_t f = {0};
    dw_dvlookup_t *dvl = dw_dvlookup_new(maps, 100, fake_get, &f);
    const dw_map_t *m = dw_mapset_find(maps, "customers_accounts");
    json_t *row = json_pack("{s:s, s:s, s:s, s:s}", "accountnumber", "C1", "_msdyn_company_value",
                            G_COMPANY, "_msdyn_customergroupid_value", G_GROUP,
                            "_transactioncurrencyid_value", G_MISSING);
    dw_dvlookup_fill_row(dvl, m, row);
    cr_assert_str_eq(json_string_value(json_object_get(row, "msdyn_company")), "USMF");
    json_t *g = json_object_get(row, "msdyn_customergroupid");
    cr_assert_str_eq(json_string_value(json_object_get(g, "msdyn_groupid")), "10");
    cr_assert_null(json_object_get(row, "transactioncurrencyid"), "unresolvable stays absent");
    json_decref(row);

    row = json_pack("{s:s, s:s}", "msdyn_company", "DAT", "_msdyn_company_value", G_COMPANY);
    int before = f.reads;
    dw_dvlookup_fill_row(dvl, m, row);
    cr_assert_str_eq(json_string_value(json_object_get(row, "msdyn_company")), "DAT");
    cr_assert_eq(f.reads, before);
    json_decref(row);
    dw_dvlookup_destroy(dvl);
}
