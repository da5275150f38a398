/*
 * Unit tests for dw_mapper: every standard map maps a record generated from its metadata in each
 * of its directions; every bidirectional map round-trips; lookups become OData binds that survive
 * quotes, parentheses, slashes and Unicode; conversions (integers beyond int64, exact decimals,
 * dates with offsets, invalid dates); every error class names its field; the canonical key; the
 * content hash is independent of member order; the exact-number reader and the writer.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dw_map.h"
#include "dw_mapper.h"
#include "dw_sha256.h"

#define MAPS     DW_SOURCE_DIR "/schemas/maps"
#define METADATA DW_SOURCE_DIR "/schemas/metadata"

static dw_mapset_t *set;

static void load_set(void)
{
    char errstr[1024];
    set = dw_mapset_load(MAPS, METADATA, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(set, "%s", errstr);
}

static void free_set(void)
{
    dw_mapset_destroy(set);
    set = NULL;
}

TestSuite(mapper, .init = load_set, .fini = free_set);

static const dw_map_t *map_named(const char *name)
{
    const dw_map_t *m = dw_mapset_find(set, name);
    cr_assert_not_null(m, "no map %s", name);
    return m;
}

static json_t *parse(const char *text)
{
    dw_mapper_error_t err;
    json_t *v = dw_mapper_loadb(text, strlen(text), &err);
    cr_assert_not_null(v, "%s: %s", text, err.message);
    return v;
}

static char *dump(const json_t *v)
{
    char *s = dw_mapper_dumps(v, DW_MAPPER_DUMP_SORT_KEYS, NULL);
    cr_assert_not_null(s);
    return s;
}

/* Map text in dir; expect success. */
static void map_ok(const char *map, dw_map_dir_t dir, const char *text, dw_mapper_result_t *res)
{
    json_t *rec = parse(text);
    dw_mapper_error_t err;
    dw_err_t rc = dw_mapper_apply(map_named(map), dir, rec, res, &err);
    cr_assert_eq(rc, DW_OK, "%s %s: %s", map, text, err.message);
    json_decref(rec);
}

/* Map text in dir; expect failure of reason on field. */
static void map_fails(const char *map, dw_map_dir_t dir, const char *text,
                      dw_mapper_reason_t reason, const char *field)
{
    json_t *rec = parse(text);
    dw_mapper_error_t err;
    dw_mapper_result_t res = {0};
    dw_err_t rc = dw_mapper_apply(map_named(map), dir, rec, &res, &err);
    cr_assert_eq(rc, DW_ERR_INVALID_ARG, "%s: mapped, expected %s", text,
                 dw_mapper_reason_name(reason));
    cr_assert_eq(err.reason, reason, "%s: %s (%s), expected %s", text, err.message,
                 dw_mapper_reason_name(err.reason), dw_mapper_reason_name(reason));
    cr_assert_str_eq(err.field, field, "%s: %s", text, err.message);
    cr_assert(strstr(err.message, field), "%s", err.message);
    cr_assert_null(res.payload);
    json_decref(rec);
}

static const char *pstr(const dw_mapper_result_t *res, const char *name)
{
    const json_t *v = json_object_get(res->payload, name);
    cr_assert(json_is_string(v), "payload %s is not a string", name);
    return json_string_value(v);
}

/* ---- records generated from the metadata and the map ------------------------------------------
 */

static json_t *gen_scalar(const dw_meta_column_t *col, dw_map_side_t side, unsigned seed,
                          const dw_meta_column_t *dst)
{
    char buf[128];
    switch (col->type) {
    case DW_COL_STRING: {
        static const char *const words[] = {"Contoso", "Fabrikam", "Müller & Söhne",
                                            "O'Brien", "東京",     "(A/B)"};
        snprintf(buf, sizeof(buf), "%s %u", words[seed % 6], seed);
        size_t max = col->max_length ? (size_t)col->max_length : 100;
        if (dst && dst->max_length && (size_t)dst->max_length < max)
            max = (size_t)dst->max_length;
        if (strlen(buf) > max) /* stay within the limit, ASCII only when short */
            snprintf(buf, sizeof(buf), "%.*u", (int)(max < 9 ? max : 9), seed % 1000000000u);
        if (strlen(buf) > max)
            buf[max] = '\0';
        return json_string(buf);
    }
    case DW_COL_INTEGER:
        return json_integer(seed % 1000 + 1);
    case DW_COL_DECIMAL:
        return seed % 2 ? json_real(1234567.89 + seed) : json_string("12345678901234567.25");
    case DW_COL_BOOLEAN:
        return json_boolean(seed % 2);
    case DW_COL_DATE:
        return json_string(side == DW_MAP_FO ? "2024-02-29T00:00:00Z" : "2024-02-29");
    case DW_COL_DATETIME:
        return json_string("2024-03-01T10:20:30Z");
    case DW_COL_GUID:
        return json_string("7a4814f9-b0b8-ea11-a812-000d3a122b89");
    case DW_COL_ENUM:
        if (side == DW_MAP_FO)
            return json_string(col->members[seed % col->nmembers].name);
        return json_integer(col->members[seed % col->nmembers].value);
    case DW_COL_LOOKUP:
        break;
    }
    return json_null();
}

/* A key value for a lookup: short enough for both the F&O field and the referenced column. */
static json_t *gen_key(const dw_map_field_t *f, unsigned seed)
{
    int max = 20;
    if (f->fo_column && f->fo_column->max_length && f->fo_column->max_length < max)
        max = f->fo_column->max_length;
    if (f->lookup->key_column && f->lookup->key_column->max_length &&
        f->lookup->key_column->max_length < max)
        max = f->lookup->key_column->max_length;
    char buf[32];
    snprintf(buf, sizeof(buf), "K'%u(x)", seed);
    buf[max] = '\0';
    return json_string(buf);
}

/* A realistic source record of map for dir: every source column of an active field. */
static json_t *gen_record(const dw_map_t *m, dw_map_dir_t dir, unsigned seed, bool binds)
{
    json_t *rec = json_object();
    bool to_dv = dir == DW_MAP_FO_TO_DV;
    if (to_dv && dw_map_fo_company_specific(m))
        json_object_set_new(rec, "dataAreaId", json_string("usmf"));
    for (size_t i = 0; i < dw_map_field_count(m); i++) {
        const dw_map_field_t *f = dw_map_field(m, i);
        if (!dw_map_field_active(f, dir) || f->transform == DW_MAP_XF_CONSTANT)
            continue;
        const char *src = to_dv ? f->fo : f->dv;
        const dw_meta_column_t *col = to_dv ? f->fo_column : f->dv_column;
        unsigned s = seed + (unsigned)i * 7;
        json_t *v;
        if (f->transform == DW_MAP_XF_VALUE_MAP) {
            const dw_map_pair_t *p = &f->pairs[s % f->npairs];
            v = json_deep_copy(to_dv ? p->fo : p->dv);
        } else if (f->transform == DW_MAP_XF_LOOKUP) {
            v = strcmp(f->fo, "dataAreaId") == 0 ? json_string("usmf") : gen_key(f, s);
            if (!to_dv && binds) {
                char *bind = NULL;
                cr_assert_eq(dw_mapper_bind(f->lookup, json_string_value(v), "usmf", &bind), DW_OK);
                char name[256];
                snprintf(name, sizeof(name), "%s@odata.bind", src);
                json_object_set_new(rec, name, json_string(bind));
                free(bind);
                json_decref(v);
                continue;
            }
            if (!to_dv && f->is_key && strcmp(f->fo, "dataAreaId") != 0 && f->lookup->company) {
                /* a line's parent: the company travels in the reference */
                char *bind = NULL;
                cr_assert_eq(dw_mapper_bind(f->lookup, json_string_value(v), "usmf", &bind), DW_OK);
                json_decref(v);
                v = json_string(bind);
                free(bind);
                char name[256];
                snprintf(name, sizeof(name), "%s@odata.bind", src);
                json_object_set_new(rec, name, v);
                continue;
            }
        } else {
            v = gen_scalar(col, to_dv ? DW_MAP_FO : DW_MAP_DV, s,
                           to_dv ? f->dv_column : f->fo_column);
        }
        json_object_set_new(rec, src, v);
    }
    return rec;
}

Test(mapper, every_standard_map_maps_a_generated_record_in_each_direction)
{
    size_t mapped = 0;
    for (size_t i = 0; i < dw_mapset_count(set); i++) {
        const dw_map_t *m = dw_mapset_get(set, i);
        for (int d = DW_MAP_FO_TO_DV; d <= DW_MAP_DV_TO_FO; d++) {
            dw_map_dir_t dir = (dw_map_dir_t)d;
            if (!dw_map_runs(m, dir))
                continue;
            for (unsigned seed = 0; seed < 12; seed++) {
                json_t *rec = gen_record(m, dir, seed, seed % 2);
                dw_mapper_result_t res = {0};
                dw_mapper_error_t err;
                char *text = dump(rec);
                cr_assert_eq(dw_mapper_apply(m, dir, rec, &res, &err), DW_OK, "%s %s %s: %s",
                             dw_map_name(m), dw_map_dir_name(dir), text, err.message);
                /* every active field has its destination */
                for (size_t k = 0; k < dw_map_field_count(m); k++) {
                    const dw_map_field_t *f = dw_map_field(m, k);
                    if (!dw_map_field_active(f, dir))
                        continue;
                    const char *dst = dir == DW_MAP_FO_TO_DV ? f->dv : f->fo;
                    char bind[256];
                    snprintf(bind, sizeof(bind), "%s@odata.bind", dst);
                    bool has =
                        json_object_get(res.payload, dst) || json_object_get(res.payload, bind);
                    cr_assert(has, "%s %s: no %s in payload", dw_map_name(m), dw_map_dir_name(dir),
                              dst);
                }
                /* key object, canonical key, hash */
                cr_assert_eq(json_object_size(res.key), dw_map_key_count(m));
                json_error_t jerr;
                json_t *ck = json_loads(res.canonical_key, 0, &jerr);
                cr_assert(json_is_array(ck), "%s", res.canonical_key);
                /* one value per key field, plus the company first when the key lacks it */
                size_t want =
                    dw_map_key_count(m) + (res.company && !dw_map_key_has_company(m) ? 1 : 0);
                cr_assert_eq(json_array_size(ck), want, "%s: %s", dw_map_name(m),
                             res.canonical_key);
                json_decref(ck);
                cr_assert_eq(strlen(res.content_hash), 64);
                if (dw_map_fo_company_specific(m))
                    cr_assert_str_eq(res.company, "usmf", "%s %s", dw_map_name(m),
                                     dw_map_dir_name(dir));
                free(text);
                json_decref(rec);
                dw_mapper_result_clear(&res);
                mapped++;
            }
        }
    }
    cr_assert_geq(mapped, 12 * 28);
}

Test(mapper, every_bidirectional_map_round_trips_both_ways)
{
    size_t trips = 0;
    for (size_t i = 0; i < dw_mapset_count(set); i++) {
        const dw_map_t *m = dw_mapset_get(set, i);
        if (dw_map_direction(m) != DW_MAP_BOTH)
            continue;
        for (int d = DW_MAP_FO_TO_DV; d <= DW_MAP_DV_TO_FO; d++) {
            for (unsigned seed = 0; seed < 12; seed++) {
                json_t *rec = gen_record(m, (dw_map_dir_t)d, seed, seed % 2);
                json_t *back = NULL;
                dw_mapper_error_t err;
                char *text = dump(rec);
                dw_err_t rc = dw_mapper_roundtrip(m, (dw_map_dir_t)d, rec, &back, &err);
                cr_assert_eq(rc, DW_OK, "%s %s: %s in %s", dw_map_name(m),
                             dw_map_dir_name((dw_map_dir_t)d), err.message, text);
                cr_assert(json_is_object(back));
                free(text);
                json_decref(back);
                json_decref(rec);
                trips++;
            }
        }
    }
    cr_assert_geq(trips, 12 * 2 * 10);
}

Test(mapper, round_trip_returns_the_fo_record_unchanged)
{
    const char *text =
        "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"US-001\",\"OrganizationName\":"
        "\"O'Brien (Contoso) / Müller "
        "東京\",\"CustomerGroupId\":\"10\",\"SalesCurrencyCode\":\"USD\","
        "\"CreditLimit\":\"12345678901234567.25\",\"CreditLimitIsMandatory\":\"Yes\","
        "\"IsOneTimeCustomer\":\"No\",\"OnHoldStatus\":\"Payment\",\"PaymentTerms\":\"Net 30'\","
        "\"PrimaryContactEmail\":\"a@b.c\",\"PrimaryContactPhone\":\"+1 (555) 010\","
        "\"SalesMemo\":\"\",\"DeliveryAddressStreet\":\"1 Main St\",\"DeliveryAddressCity\":"
        "\"Redmond\",\"DeliveryAddressZipCode\":\"98052\",\"DeliveryAddressCountryRegionISOCode\":"
        "\"US\",\"PartyType\":\"Organization\",\"LanguageId\":\"en-us\"}";
    const dw_map_t *m = map_named("customers_accounts");
    json_t *rec = parse(text), *back = NULL;
    dw_mapper_error_t err;
    cr_assert_eq(dw_mapper_roundtrip(m, DW_MAP_FO_TO_DV, rec, &back, &err), DW_OK, "%s",
                 err.message);
    /* every bidirectional field comes back byte for byte */
    for (size_t i = 0; i < dw_map_field_count(m); i++) {
        const dw_map_field_t *f = dw_map_field(m, i);
        if (f->direction != DW_MAP_BOTH)
            continue;
        cr_assert(json_equal(json_object_get(rec, f->fo), json_object_get(back, f->fo)), "%s",
                  f->fo);
    }
    /* the constants of dv-to-fo come back too */
    cr_assert_str_eq(json_string_value(json_object_get(back, "PartyType")), "Organization");
    json_decref(back);
    json_decref(rec);
}

/* ---- lookups ----------------------------------------------------------------------------------
 */

Test(mapper, lookups_become_odata_binds_with_the_company)
{
    dw_mapper_result_t res = {0};
    map_ok("customers_accounts", DW_MAP_FO_TO_DV,
           "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"US-001\",\"CustomerGroupId\":\"10\","
           "\"SalesCurrencyCode\":\"USD\"}",
           &res);
    cr_assert_str_eq(pstr(&res, "msdyn_company@odata.bind"),
                     "/cdm_companies(cdm_companycode='usmf')");
    cr_assert_str_eq(pstr(&res, "msdyn_customergroupid@odata.bind"),
                     "/msdyn_customergroups(msdyn_groupid='10',msdyn_company='usmf')");
    cr_assert_str_eq(pstr(&res, "transactioncurrencyid@odata.bind"),
                     "/transactioncurrencies(isocurrencycode='USD')");
    cr_assert_null(json_object_get(res.payload, "msdyn_company"));
    /* the target key holds the referenced key values */
    cr_assert_str_eq(json_string_value(json_object_get(res.key, "msdyn_company")), "usmf");
    cr_assert_str_eq(json_string_value(json_object_get(res.key, "accountnumber")), "US-001");
    cr_assert_str_eq(res.canonical_key, "[\"usmf\",\"us-001\"]");
    cr_assert_str_eq(res.company, "usmf");
    dw_mapper_result_clear(&res);
}

Test(mapper, hostile_lookup_values_are_escaped_and_come_back)
{
    const char *values[] = {
        "O'Brien",
        "a''b",
        "(x)",
        "a/b",
        "50%",
        "a b,c=d",
        "Müller",
        "東京",
        "😀",
        "?#&+;:@!$*",
        "'",
        "')",
        "x',msdyn_company='evil",
        "\\",
        "",
    };
    const char *expect[] = {
        "O''Brien",
        "a''''b",
        "%28x%29",
        "a%2Fb",
        "50%25",
        "a%20b%2Cc%3Dd",
        "M%C3%BCller",
        "%E6%9D%B1%E4%BA%AC",
        "%F0%9F%98%80",
        "%3F%23%26%2B%3B%3A%40%21%24%2A",
        "''",
        "''%29",
        "x''%2Cmsdyn_company%3D''evil",
        "%5C",
        "",
    };
    const dw_map_t *m = map_named("customers_accounts");
    const dw_map_field_t *f = dw_map_field_by_source(m, DW_MAP_FO_TO_DV, "CustomerGroupId");
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char *bind = NULL, *value = NULL, *company = NULL;
        cr_assert_eq(dw_mapper_bind(f->lookup, values[i], "us'mf", &bind), DW_OK);
        char want[512];
        snprintf(want, sizeof(want),
                 "/msdyn_customergroups(msdyn_groupid='%s',msdyn_company='us''mf')", expect[i]);
        cr_assert_str_eq(bind, want);
        /* nothing but the structure's own characters is left unescaped */
        const char *inner = strchr(bind, '(') + 1;
        for (const char *p = inner; *p && p < bind + strlen(bind) - 1; p++)
            cr_assert(*p != '/' && *p != ' ' && *p != '?' && *p != '#', "%s", bind);
        dw_mapper_error_t err;
        const dw_map_lookup_t *matched = NULL;
        cr_assert_eq(dw_mapper_bind_parse(f->lookup, bind, &value, &company, &matched, &err), DW_OK,
                     "%s: %s", bind, err.message);
        cr_assert_str_eq(value, values[i]);
        cr_assert_str_eq(company, "us'mf");
        cr_assert_eq(matched, f->lookup);
        free(bind);
        free(value);
        free(company);
    }
}

Test(mapper, hostile_values_map_to_dataverse_and_back)
{
    dw_mapper_result_t res = {0}, back = {0};
    map_ok("customers_accounts", DW_MAP_FO_TO_DV,
           "{\"dataAreaId\":\"u'm\",\"CustomerAccount\":\"O'Neil (1)/2\","
           "\"OrganizationName\":\"\\\"Quoted\\\" (paren) / slash \\\\ ✓ 😀\","
           "\"CustomerGroupId\":\"G'1)\",\"SalesCurrencyCode\":\"U/S\"}",
           &res);
    cr_assert_str_eq(pstr(&res, "name"), "\"Quoted\" (paren) / slash \\ ✓ 😀");
    cr_assert_str_eq(pstr(&res, "msdyn_customergroupid@odata.bind"),
                     "/msdyn_customergroups(msdyn_groupid='G''1%29',msdyn_company='u''m')");
    cr_assert_str_eq(pstr(&res, "transactioncurrencyid@odata.bind"),
                     "/transactioncurrencies(isocurrencycode='U%2FS')");
    cr_assert_str_eq(res.canonical_key, "[\"u'm\",\"o'neil (1)/2\"]");
    dw_mapper_error_t err;
    cr_assert_eq(
        dw_mapper_apply(map_named("customers_accounts"), DW_MAP_DV_TO_FO, res.payload, &back, &err),
        DW_OK, "%s", err.message);
    cr_assert_str_eq(json_string_value(json_object_get(back.payload, "CustomerGroupId")), "G'1)");
    cr_assert_str_eq(json_string_value(json_object_get(back.payload, "SalesCurrencyCode")), "U/S");
    cr_assert_str_eq(json_string_value(json_object_get(back.payload, "dataAreaId")), "u'm");
    cr_assert_str_eq(back.canonical_key, res.canonical_key);
    cr_assert_str_eq(back.company, "u'm");
    dw_mapper_result_clear(&res);
    dw_mapper_result_clear(&back);
}

Test(mapper, dataverse_lookups_are_read_in_every_form)
{
    dw_mapper_result_t res = {0};
    /* resolved key value, reference, expanded row */
    map_ok("customers_accounts", DW_MAP_DV_TO_FO,
           "{\"msdyn_company\":\"usmf\",\"accountnumber\":\"A1\","
           "\"transactioncurrencyid@odata.bind\":\"https://org.crm.dynamics.com/api/data/v9.2/"
           "transactioncurrencies(isocurrencycode='EUR')\","
           "\"msdyn_customergroupid\":{\"msdyn_groupid\":\"20\",\"msdyn_company\":\"usmf\"}}",
           &res);
    cr_assert_str_eq(pstr(&res, "dataAreaId"), "usmf");
    cr_assert_str_eq(pstr(&res, "SalesCurrencyCode"), "EUR");
    cr_assert_str_eq(pstr(&res, "CustomerGroupId"), "20");
    cr_assert_str_eq(res.canonical_key, "[\"usmf\",\"a1\"]");
    /* a cleared lookup: F&O text is never null */
    dw_mapper_result_clear(&res);
    map_ok("customers_accounts", DW_MAP_DV_TO_FO,
           "{\"msdyn_company\":\"usmf\",\"accountnumber\":\"A1\",\"_transactioncurrencyid_value\":"
           "null}",
           &res);
    cr_assert_str_eq(pstr(&res, "SalesCurrencyCode"), "");
    dw_mapper_result_clear(&res);
    /* a polymorphic lookup: the fallback's entity set is accepted */
    const dw_map_t *so = map_named("sales_order_headers");
    const dw_map_field_t *cust = NULL;
    for (size_t i = 0; i < dw_map_field_count(so); i++) {
        const dw_map_field_t *f = dw_map_field(so, i);
        if (f->lookup && f->lookup->fallback)
            cust = f;
    }
    cr_assert_not_null(cust);
    char *value = NULL, *company = NULL;
    const dw_map_lookup_t *matched = NULL;
    dw_mapper_error_t err;
    cr_assert_eq(dw_mapper_bind_parse(cust->lookup,
                                      "contacts(msdyn_contactpersonid='C-1',msdyn_company='usmf')",
                                      &value, &company, &matched, &err),
                 DW_OK, "%s", err.message);
    cr_assert_eq(matched, cust->lookup->fallback);
    cr_assert_str_eq(value, "C-1");
    free(value);
    free(company);
}

Test(mapper, a_bare_row_id_is_an_unresolved_lookup)
{
    map_fails("customers_accounts", DW_MAP_DV_TO_FO,
              "{\"msdyn_company\":\"usmf\",\"accountnumber\":\"A1\","
              "\"_transactioncurrencyid_value\":\"7a4814f9-b0b8-ea11-a812-000d3a122b89\"}",
              DW_MAPPER_UNRESOLVED_LOOKUP, "transactioncurrencyid");
    map_fails("customers_accounts", DW_MAP_DV_TO_FO,
              "{\"msdyn_company\":\"usmf\",\"accountnumber\":\"A1\","
              "\"transactioncurrencyid@odata.bind\":\"/"
              "transactioncurrencies(7a4814f9-b0b8-ea11-a812-000d3a122b89)\"}",
              DW_MAPPER_UNRESOLVED_LOOKUP, "transactioncurrencyid@odata.bind");
    map_fails("customers_accounts", DW_MAP_DV_TO_FO,
              "{\"msdyn_company\":\"usmf\",\"accountnumber\":\"A1\","
              "\"transactioncurrencyid@odata.bind\":\"/accounts(isocurrencycode='X')\"}",
              DW_MAPPER_WRONG_TYPE, "transactioncurrencyid@odata.bind");
}

Test(mapper, a_line_inherits_the_company_of_its_order)
{
    dw_mapper_result_t res = {0}, back = {0};
    map_ok(
        "sales_order_lines", DW_MAP_FO_TO_DV,
        "{\"dataAreaId\":\"usmf\",\"SalesOrderNumber\":\"SO-1\",\"LineCreationSequenceNumber\":3,"
        "\"ProductNumber\":\"P1\",\"OrderedSalesQuantity\":2,\"SalesPrice\":\"10.50\","
        "\"RequestedShippingDate\":\"2024-03-01T00:00:00Z\"}",
        &res);
    cr_assert_str_eq(pstr(&res, "salesorderid@odata.bind"),
                     "/salesorders(msdyn_salesordernumber='SO-1',msdyn_company='usmf')");
    cr_assert_str_eq(pstr(&res, "requestdeliveryby"), "2024-03-01");
    cr_assert_str_eq(pstr(&res, "priceperunit"), "10.50");
    cr_assert_eq(json_integer_value(json_object_get(res.payload, "quantity")), 2);
    cr_assert(json_is_true(json_object_get(res.payload, "ispriceoverridden")));
    /* the line's key holds no company: the inherited one leads the canonical key */
    cr_assert_str_eq(res.canonical_key, "[\"usmf\",\"so-1\",3]");
    dw_mapper_error_t err;
    cr_assert_eq(
        dw_mapper_apply(map_named("sales_order_lines"), DW_MAP_DV_TO_FO, res.payload, &back, &err),
        DW_OK, "%s", err.message);
    cr_assert_str_eq(back.company, "usmf");
    cr_assert_str_eq(json_string_value(json_object_get(back.payload, "SalesOrderNumber")), "SO-1");
    cr_assert_str_eq(json_string_value(json_object_get(back.payload, "RequestedShippingDate")),
                     "2024-03-01T00:00:00Z");
    cr_assert_str_eq(back.canonical_key, res.canonical_key);
    dw_mapper_result_clear(&res);
    dw_mapper_result_clear(&back);
}

Test(mapper, lines_of_two_companies_never_share_a_canonical_key)
{
    dw_mapper_result_t a = {0}, b = {0};
#define LINE(company)                                                                              \
    "{\"dataAreaId\":\"" company "\",\"SalesOrderNumber\":\"SO-1\","                               \
    "\"LineCreationSequenceNumber\":1,\"ProductNumber\":\"P1\","                                  \
    "\"OrderedSalesQuantity\":1,\"SalesPrice\":\"1.00\"}"
    const char *ra = LINE("usmf"), *rb = LINE("usrt");
#undef LINE
    map_ok("sales_order_lines", DW_MAP_FO_TO_DV, ra, &a);
    map_ok("sales_order_lines", DW_MAP_FO_TO_DV, rb, &b);
    cr_assert_str_neq(a.canonical_key, b.canonical_key);
    dw_mapper_result_clear(&a);
    dw_mapper_result_clear(&b);
}

Test(mapper, a_lookup_with_company_needs_the_company)
{
    map_fails("customers_accounts", DW_MAP_FO_TO_DV,
              "{\"CustomerAccount\":\"A\",\"CustomerGroupId\":\"10\"}", DW_MAPPER_MISSING_KEY,
              "dataAreaId");
}

/* ---- error classes ------------------------------------------------------------------------------
 */

Test(mapper, missing_or_null_key_names_the_field)
{
    map_fails("customers_accounts", DW_MAP_FO_TO_DV, "{\"dataAreaId\":\"usmf\"}",
              DW_MAPPER_MISSING_KEY, "CustomerAccount");
    map_fails("customers_accounts", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":null}", DW_MAPPER_MISSING_KEY,
              "CustomerAccount");
    map_fails("customers_accounts", DW_MAP_DV_TO_FO, "{\"accountnumber\":\"A\"}",
              DW_MAPPER_MISSING_KEY, "msdyn_company");
}

Test(mapper, a_value_outside_the_value_map_is_unmapped)
{
    map_fails("customers_accounts", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"OnHoldStatus\":\"Sometimes\"}",
              DW_MAPPER_UNMAPPED_VALUE, "OnHoldStatus");
    map_fails("customers_accounts", DW_MAP_DV_TO_FO,
              "{\"msdyn_company\":\"usmf\",\"accountnumber\":\"A\",\"msdyn_onholdstatus\":42}",
              DW_MAPPER_UNMAPPED_VALUE, "msdyn_onholdstatus");
    map_fails("customers_accounts", DW_MAP_DV_TO_FO,
              "{\"msdyn_company\":\"usmf\",\"accountnumber\":\"A\",\"msdyn_onholdstatus\":null}",
              DW_MAPPER_UNMAPPED_VALUE, "msdyn_onholdstatus");
    /* an F&O enum given by its value is read by its name */
    dw_mapper_result_t res = {0};
    map_ok("customers_accounts", DW_MAP_FO_TO_DV,
           "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"OnHoldStatus\":2}", &res);
    cr_assert_eq(json_integer_value(json_object_get(res.payload, "msdyn_onholdstatus")), 806380002);
    dw_mapper_result_clear(&res);
}

Test(mapper, wrong_types_are_errors_not_defaults)
{
    map_fails("customers_accounts", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"OrganizationName\":42}",
              DW_MAPPER_WRONG_TYPE, "OrganizationName");
    map_fails("customers_accounts", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"CreditLimit\":\"12x\"}",
              DW_MAPPER_WRONG_TYPE, "CreditLimit");
    map_fails("customers_accounts", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"CreditLimit\":true}",
              DW_MAPPER_WRONG_TYPE, "CreditLimit");
    map_fails("customers_accounts", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":[1]}", DW_MAPPER_WRONG_TYPE,
              "CustomerAccount");
    map_fails("customers_accounts", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"SalesCurrencyCode\":7}",
              DW_MAPPER_WRONG_TYPE, "SalesCurrencyCode");
    map_fails("payment_terms", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"Name\":\"N\",\"NumberOfDays\":1.5}", DW_MAPPER_WRONG_TYPE,
              "NumberOfDays");
    map_fails("payment_terms", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"Name\":\"N\",\"NumberOfDays\":\"ten\"}",
              DW_MAPPER_WRONG_TYPE, "NumberOfDays");
}

Test(mapper, a_string_longer_than_its_column_is_too_long)
{
    size_t n = 1024 * 1024;
    char *big = malloc(n + 128);
    int o =
        sprintf(big, "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"OrganizationName\":\"");
    memset(big + o, 'x', n);
    strcpy(big + o + n, "\"}");
    map_fails("customers_accounts", DW_MAP_FO_TO_DV, big, DW_MAPPER_TOO_LONG, "OrganizationName");
    /* a lookup key too long for the referenced column */
    o = sprintf(big, "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"SalesCurrencyCode\":\"");
    memset(big + o, 'u', n);
    strcpy(big + o + n, "\"}");
    map_fails("customers_accounts", DW_MAP_FO_TO_DV, big, DW_MAPPER_TOO_LONG, "SalesCurrencyCode");
    free(big);
    /* the limit counts characters (UTF-16 units), not bytes: 160 'é' fit name (160) */
    char text[2048];
    o = sprintf(text, "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"OrganizationName\":\"");
    for (int i = 0; i < 160; i++)
        o += sprintf(text + o, "é");
    strcpy(text + o, "\"}");
    dw_mapper_result_t res = {0};
    map_ok("customers_accounts", DW_MAP_FO_TO_DV, text, &res);
    dw_mapper_result_clear(&res);
    /* an astral character counts 2: 80 of them fill the 160 */
    o = sprintf(text, "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"OrganizationName\":\"");
    for (int i = 0; i < 80; i++)
        o += sprintf(text + o, "😀");
    strcpy(text + o, "\"}");
    map_ok("customers_accounts", DW_MAP_FO_TO_DV, text, &res);
    dw_mapper_result_clear(&res);
    strcpy(text + o, "x\"}");
    map_fails("customers_accounts", DW_MAP_FO_TO_DV, text, DW_MAPPER_TOO_LONG, "OrganizationName");
}

Test(mapper, integers_beyond_int64_are_out_of_range_not_wrapped)
{
    map_fails("payment_terms", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"Name\":\"N\",\"NumberOfDays\":99999999999999999999}",
              DW_MAPPER_OUT_OF_RANGE, "NumberOfDays");
    map_fails("payment_terms", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"Name\":\"N\",\"NumberOfDays\":-9223372036854775809}",
              DW_MAPPER_OUT_OF_RANGE, "NumberOfDays");
    map_fails("payment_terms", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"Name\":\"N\",\"NumberOfDays\":\"9223372036854775808\"}",
              DW_MAPPER_OUT_OF_RANGE, "NumberOfDays");
    map_fails("payment_terms", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"Name\":\"N\",\"NumberOfDays\":1e19}",
              DW_MAPPER_OUT_OF_RANGE, "NumberOfDays");
    dw_mapper_result_t res = {0};
    map_ok("payment_terms", DW_MAP_FO_TO_DV,
           "{\"dataAreaId\":\"usmf\",\"Name\":\"N\",\"NumberOfDays\":9223372036854775807,"
           "\"NumberOfMonths\":\"-9223372036854775808\",\"CutoffDayOfMonth\":3.0}",
           &res);
    cr_assert_eq(json_integer_value(json_object_get(res.payload, "msdyn_days")), INT64_MAX);
    cr_assert_eq(json_integer_value(json_object_get(res.payload, "msdyn_numberofmonth")),
                 INT64_MIN);
    cr_assert_eq(json_integer_value(json_object_get(res.payload, "msdyn_cutoffdayofmonth")), 3);
    dw_mapper_result_clear(&res);
}

Test(mapper, invalid_utf8_is_rejected_naming_the_field)
{
    const char text[] = "{\"CustomerAccount\":\"A\",\"OrganizationName\":\"bad \xff\xfe here\"}";
    dw_mapper_error_t err;
    json_t *v = dw_mapper_loadb(text, sizeof(text) - 1, &err);
    cr_assert_null(v);
    cr_assert_eq(err.reason, DW_MAPPER_INVALID_UTF8, "%s", err.message);
    cr_assert_str_eq(err.field, "OrganizationName");
    cr_assert(strstr(err.message, "UTF-8"), "%s", err.message);
    /* an overlong encoding and a lone surrogate too */
    const char overlong[] = "{\"a\":\"\xc0\xaf\"}";
    cr_assert_null(dw_mapper_loadb(overlong, sizeof(overlong) - 1, &err));
    cr_assert_eq(err.reason, DW_MAPPER_INVALID_UTF8);
    cr_assert_str_eq(err.field, "a");
    const char surrogate[] = "{\"b\":\"\xed\xa0\x80\"}";
    cr_assert_null(dw_mapper_loadb(surrogate, sizeof(surrogate) - 1, &err));
    cr_assert_eq(err.reason, DW_MAPPER_INVALID_UTF8);
    /* in a key */
    const char key[] = "{\"k\xff\":1}";
    cr_assert_null(dw_mapper_loadb(key, sizeof(key) - 1, &err));
    cr_assert_eq(err.reason, DW_MAPPER_INVALID_UTF8);
    cr_assert_str_eq(err.field, "k?");
    /* a string made without checks is caught by the conversion */
    json_t *rec = json_pack("{s:s, s:s}", "dataAreaId", "usmf", "CustomerAccount", "A");
    json_object_set_new(rec, "OrganizationName", json_stringn_nocheck("\xff", 1));
    dw_mapper_result_t res = {0};
    cr_assert_eq(dw_mapper_apply(map_named("customers_accounts"), DW_MAP_FO_TO_DV, rec, &res, &err),
                 DW_ERR_INVALID_ARG);
    cr_assert_eq(err.reason, DW_MAPPER_INVALID_UTF8);
    cr_assert_str_eq(err.field, "OrganizationName");
    json_decref(rec);
}

Test(mapper, malformed_input_is_a_typed_error)
{
    dw_mapper_error_t err;
    cr_assert_null(dw_mapper_loadb("{\"a\": 1,}", 9, &err));
    cr_assert_eq(err.reason, DW_MAPPER_MALFORMED);
    cr_assert(strstr(err.message, "line 1"), "%s", err.message);
    cr_assert_null(dw_mapper_loadb("{\"a\":1,\"a\":2}", 13, &err));
    cr_assert_eq(err.reason, DW_MAPPER_MALFORMED);
    cr_assert(strstr(err.message, "duplicate"), "%s", err.message);
    cr_assert_null(dw_mapper_loadb("", 0, &err));
    cr_assert_eq(err.reason, DW_MAPPER_MALFORMED);
    json_t *arr = parse("[1,2]");
    dw_mapper_result_t res = {0};
    cr_assert_eq(dw_mapper_apply(map_named("currencies"), DW_MAP_FO_TO_DV, arr, &res, &err),
                 DW_ERR_INVALID_ARG);
    cr_assert_eq(err.reason, DW_MAPPER_MALFORMED);
    json_decref(arr);
    /* a direction the map does not run */
    json_t *obj = parse("{}");
    cr_assert_eq(dw_mapper_apply(map_named("legal_entities"), DW_MAP_DV_TO_FO, obj, &res, &err),
                 DW_ERR_INVALID_ARG);
    cr_assert_eq(err.reason, DW_MAPPER_DIRECTION);
    json_decref(obj);
}

/* ---- conversions -------------------------------------------------------------------------------
 */

Test(mapper, decimal_strings_pass_through_verbatim)
{
    const char *decimals[] = {
        "0.1", "1234567.89", "12345678901234567.25", "-0.000000000001", "922337203685477.5807",
        "100", "0.10"};
    for (size_t i = 0; i < sizeof(decimals) / sizeof(decimals[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"CreditLimit\":\"%s\"}",
                 decimals[i]);
        dw_mapper_result_t res = {0};
        map_ok("customers_accounts", DW_MAP_FO_TO_DV, text, &res);
        cr_assert_str_eq(pstr(&res, "creditlimit"), decimals[i]);
        char *out = dw_mapper_dumps(res.payload, 0, NULL);
        char want[128];
        snprintf(want, sizeof(want), "\"creditlimit\":\"%s\"", decimals[i]);
        cr_assert(strstr(out, want), "%s", out);
        free(out);
        dw_mapper_result_clear(&res);
    }
    map_fails("customers_accounts", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"CreditLimit\":"
              "\"12345678901234567890123456789.5\"}",
              DW_MAPPER_OUT_OF_RANGE, "CreditLimit");
    map_fails("customers_accounts", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"CreditLimit\":\"NaN\"}",
              DW_MAPPER_WRONG_TYPE, "CreditLimit");
}

Test(mapper, decimal_reals_keep_their_value)
{
    /* short reals print in their shortest form; long literals are kept as their text */
    const char *in[] = {"0.1", "1234567.89", "12345678901234567.25", "0.30000000000000004",
                        "1e2", "-0.0",       "123456789012345.6"};
    const char *out[] = {
        "0.1",   "1234567.89", "\"12345678901234567.25\"", "\"0.30000000000000004\"",
        "100.0", "-0.0",       "\"123456789012345.6\""};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        char text[256], want[256];
        snprintf(text, sizeof(text),
                 "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"CreditLimit\":%s}", in[i]);
        dw_mapper_result_t res = {0};
        map_ok("customers_accounts", DW_MAP_FO_TO_DV, text, &res);
        char *s = dw_mapper_dumps(res.payload, 0, NULL);
        snprintf(want, sizeof(want), "\"creditlimit\":%s", out[i]);
        cr_assert(strstr(s, want), "%s: %s", in[i], s);
        free(s);
        dw_mapper_result_clear(&res);
    }
}

Test(mapper, the_writer_prints_the_shortest_real_that_reads_back)
{
    double values[] = {0.1, 0.2, 1.0 / 3, 1e300, 5e-324, 1234567.89, 100, -2.5, 1e22, 123e-20};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        json_t *r = json_real(values[i]);
        char *s = dw_mapper_dumps(r, 0, NULL);
        cr_assert_eq(strtod(s, NULL), values[i], "%s", s);
        cr_assert(strchr(s, '.') || strchr(s, 'e'), "%s reads as an integer", s);
        cr_assert_eq(strchr(s, '+'), NULL, "%s", s);
        json_decref(r);
        free(s);
    }
    json_t *r = json_real(0.1);
    char *s = dw_mapper_dumps(r, 0, NULL);
    cr_assert_str_eq(s, "0.1");
    free(s);
    json_decref(r);
}

Test(mapper, the_writer_matches_jansson_except_for_reals)
{
    const char *docs[] = {
        "{\"b\":1,\"a\":[true,false,null,\"x\"],\"c\":{\"z\":\"\\u0001\\u001f\\n\\t\\\"\\\\/é😀\"}}",
        "[]",
        "{}",
        "\"\\u007f\\b\\f\\r\"",
        "-9223372036854775808",
        "{\"\":{\"\":[]}}",
        "{\"key with \\\"quote\\\"\":\"v\",\"Z\":1,\"a\":2,\"ä\":3}",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        json_error_t jerr;
        json_t *v = json_loads(docs[i], JSON_DECODE_ANY, &jerr);
        cr_assert_not_null(v, "%s: %s", docs[i], jerr.text);
        for (int sort = 0; sort < 2; sort++) {
            char *a = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | (sort ? JSON_SORT_KEYS : 0));
            char *b = dw_mapper_dumps(v, sort ? DW_MAPPER_DUMP_SORT_KEYS : 0, NULL);
            cr_assert_str_eq(b, a);
            free(a);
            free(b);
        }
        json_decref(v);
    }
}

Test(mapper, dates_and_times_become_utc)
{
    static const dw_meta_column_t dt = {.name = "modifiedon", .type = DW_COL_DATETIME};
    static const dw_meta_column_t d = {.name = "requestdeliveryby", .type = DW_COL_DATE};
    const char *in[] = {"2024-03-01T10:00:00+02:00", "2024-03-01T01:30:00.1250000+02:30",
                        "2024-01-01T00:30:00+01:00", "2024-02-29T23:00:00-01:00",
                        "2024-03-01T10:00Z",         "2024-03-01",
                        "/Date(1709287200000)/",     "2024-03-01 10:00:00z",
                        "2024-03-01T10:00:00.5-0000"};
    const char *out[] = {
        "2024-03-01T08:00:00Z", "2024-02-29T23:00:00.125Z", "2023-12-31T23:30:00Z",
        "2024-03-01T00:00:00Z", "2024-03-01T10:00:00Z",     "2024-03-01T00:00:00Z",
        "2024-03-01T10:00:00Z", "2024-03-01T10:00:00Z",     "2024-03-01T10:00:00.5Z"};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        json_t *v = json_string(in[i]), *o = NULL;
        dw_mapper_error_t err;
        cr_assert_eq(dw_mapper_convert(&dt, DW_MAP_DV, v, &o, &err), DW_OK, "%s: %s", in[i],
                     err.message);
        cr_assert_str_eq(json_string_value(o), out[i], "%s", in[i]);
        json_decref(v);
        json_decref(o);
    }
    /* a date is the calendar day as written: Dataverse plain, F&O at midnight UTC */
    json_t *v = json_string("2024-03-01T23:30:00+05:00"), *o = NULL;
    cr_assert_eq(dw_mapper_convert(&d, DW_MAP_DV, v, &o, NULL), DW_OK);
    cr_assert_str_eq(json_string_value(o), "2024-03-01");
    json_decref(o);
    cr_assert_eq(dw_mapper_convert(&d, DW_MAP_FO, v, &o, NULL), DW_OK);
    cr_assert_str_eq(json_string_value(o), "2024-03-01T00:00:00Z");
    json_decref(o);
    json_decref(v);
    const char *bad[] = {"2024-02-30",
                         "2023-02-29",
                         "2024-13-01",
                         "2024-00-10",
                         "2024-03-01T24:00Z",
                         "2024-03-01T10:60Z",
                         "2024-03-01T10:00:61Z",
                         "01/03/2024",
                         "2024-3-1",
                         "",
                         "2024-03-01T10:00+25:00",
                         "2024-03-01T10:00:00.1234567890Z",
                         "0000-01-01",
                         "0001-01-01T00:00:00+01:00",
                         "tomorrow",
                         "/Date(abc)/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *b = json_string(bad[i]);
        dw_mapper_error_t err;
        cr_assert_eq(dw_mapper_convert(&dt, DW_MAP_DV, b, &o, &err), DW_ERR_INVALID_ARG, "%s",
                     bad[i]);
        cr_assert_eq(err.reason, DW_MAPPER_INVALID_DATE, "%s: %s", bad[i], err.message);
        cr_assert_str_eq(err.field, "modifiedon");
        json_decref(b);
    }
    map_fails("sales_order_headers", DW_MAP_FO_TO_DV,
              "{\"dataAreaId\":\"usmf\",\"SalesOrderNumber\":\"S\",\"RequestedShippingDate\":"
              "\"2024-02-30\"}",
              DW_MAPPER_INVALID_DATE, "RequestedShippingDate");
}

Test(mapper, guids_and_booleans_are_checked)
{
    static const dw_meta_column_t g = {.name = "accountid", .type = DW_COL_GUID};
    static const dw_meta_column_t b = {.name = "flag", .type = DW_COL_BOOLEAN};
    json_t *v = json_string("7A4814F9-B0B8-EA11-A812-000D3A122B89"), *o = NULL;
    cr_assert_eq(dw_mapper_convert(&g, DW_MAP_DV, v, &o, NULL), DW_OK);
    cr_assert_str_eq(json_string_value(o), "7a4814f9-b0b8-ea11-a812-000d3a122b89");
    json_decref(o);
    json_decref(v);
    v = json_string("7a4814f9b0b8ea11a812000d3a122b89");
    dw_mapper_error_t err;
    cr_assert_eq(dw_mapper_convert(&g, DW_MAP_DV, v, &o, &err), DW_ERR_INVALID_ARG);
    cr_assert_eq(err.reason, DW_MAPPER_WRONG_TYPE);
    json_decref(v);
    v = json_string("true");
    cr_assert_eq(dw_mapper_convert(&b, DW_MAP_DV, v, &o, &err), DW_ERR_INVALID_ARG);
    cr_assert_eq(err.reason, DW_MAPPER_WRONG_TYPE);
    json_decref(v);
}

/* ---- defaults, constants, directions -----------------------------------------------------------
 */

Test(mapper, constants_and_defaults_are_written)
{
    dw_mapper_result_t res = {0};
    map_ok("customers_accounts", DW_MAP_FO_TO_DV,
           "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\"}", &res);
    cr_assert_eq(json_integer_value(json_object_get(res.payload, "customertypecode")), 3);
    /* a field absent from the record is not written */
    cr_assert_null(json_object_get(res.payload, "name"));
    cr_assert_null(json_object_get(res.payload, "PartyType"));
    dw_mapper_result_clear(&res);
    map_ok(
        "customers_accounts", DW_MAP_DV_TO_FO,
        "{\"msdyn_company\":\"usmf\",\"accountnumber\":\"A\",\"name\":null,\"description\":null}",
        &res);
    cr_assert_str_eq(pstr(&res, "PartyType"), "Organization");
    cr_assert_str_eq(pstr(&res, "LanguageId"), "en-us");
    /* null clears; F&O text is never null */
    cr_assert_str_eq(pstr(&res, "OrganizationName"), "");
    cr_assert_null(json_object_get(res.payload, "customertypecode"));
    dw_mapper_result_clear(&res);
    /* a default for a missing or null source */
    const dw_map_t *products = map_named("products");
    const dw_map_field_t *def = NULL;
    for (size_t i = 0; i < dw_map_field_count(products); i++) {
        if (dw_map_field(products, i)->transform == DW_MAP_XF_DEFAULT)
            def = dw_map_field(products, i);
    }
    cr_assert_not_null(def);
    map_ok("products", DW_MAP_FO_TO_DV,
           "{\"ProductNumber\":\"P1\",\"SalesUnitDecimalPrecision\":null}", &res);
    cr_assert(json_equal(json_object_get(res.payload, def->dv), def->default_dv));
    dw_mapper_result_clear(&res);
    map_ok("products", DW_MAP_FO_TO_DV,
           "{\"ProductNumber\":\"P1\",\"SalesUnitDecimalPrecision\":4}", &res);
    cr_assert_eq(json_integer_value(json_object_get(res.payload, def->dv)), 4);
    dw_mapper_result_clear(&res);
}

Test(mapper, fields_that_do_not_run_in_the_direction_are_skipped)
{
    dw_mapper_result_t res = {0};
    /* LineAmount and TotalTaxAmount run fo-to-dv only: dv-to-fo ignores their columns */
    map_ok("sales_order_lines", DW_MAP_DV_TO_FO,
           "{\"salesorderid@odata.bind\":\"/"
           "salesorders(msdyn_salesordernumber='S',msdyn_company='usmf')\","
           "\"sequencenumber\":1,\"extendedamount\":99.5,\"tax\":1,\"ispriceoverridden\":false}",
           &res);
    cr_assert_null(json_object_get(res.payload, "LineAmount"));
    cr_assert_null(json_object_get(res.payload, "TotalTaxAmount"));
    cr_assert_eq(json_object_size(res.payload), 2, "%s", dump(res.payload));
    dw_mapper_result_clear(&res);
}

Test(mapper, scope_filters_are_evaluated_on_the_source_side)
{
    const dw_map_t *m = map_named("customers_accounts");
    json_t *rec = parse("{\"PartyType\":\"Organization\"}");
    bool in = false;
    dw_mapper_error_t err;
    cr_assert_eq(dw_mapper_in_scope(m, DW_MAP_FO_TO_DV, rec, &in, &err), DW_OK);
    cr_assert(in);
    json_object_set_new(rec, "PartyType", json_string("Person"));
    cr_assert_eq(dw_mapper_in_scope(m, DW_MAP_FO_TO_DV, rec, &in, &err), DW_OK);
    cr_assert_not(in);
    json_decref(rec);
    rec = parse("{\"customertypecode\":\"three\"}");
    cr_assert_eq(dw_mapper_in_scope(m, DW_MAP_DV_TO_FO, rec, &in, &err), DW_ERR_INVALID_ARG);
    cr_assert_eq(err.reason, DW_MAPPER_WRONG_TYPE);
    json_decref(rec);
    rec = parse("{}");
    cr_assert_eq(dw_mapper_in_scope(map_named("payment_terms"), DW_MAP_FO_TO_DV, rec, &in, &err),
                 DW_OK);
    cr_assert(in);
    json_decref(rec);
}

/* ---- keys and hashes
 * ------------------------------------------------------------------------------ */

Test(mapper, canonical_key_is_the_lower_cased_fo_values)
{
    dw_mapper_result_t res = {0};
    map_ok("customers_accounts", DW_MAP_FO_TO_DV,
           "{\"dataAreaId\":\"USMF\",\"CustomerAccount\":\"ÀÉÎ-Straße-ΑΒΓ-ДЖ\"}", &res);
    cr_assert_str_eq(res.canonical_key, "[\"usmf\",\"àéî-straße-αβγ-дж\"]");
    cr_assert_str_eq(json_string_value(json_object_get(res.key, "accountnumber")),
                     "ÀÉÎ-Straße-ΑΒΓ-ДЖ");
    dw_mapper_result_clear(&res);
    /* the same record from Dataverse gives the same key */
    map_ok("customers_accounts", DW_MAP_DV_TO_FO,
           "{\"msdyn_company@odata.bind\":\"/cdm_companies(cdm_companycode='USMF')\","
           "\"accountnumber\":\"ÀÉÎ-Straße-ΑΒΓ-ДЖ\"}",
           &res);
    cr_assert_str_eq(res.canonical_key, "[\"usmf\",\"àéî-straße-αβγ-дж\"]");
    /* F&O writes a company id in lower case */
    cr_assert_str_eq(json_string_value(json_object_get(res.key, "dataAreaId")), "usmf");
    dw_mapper_result_clear(&res);
}

Test(mapper, content_hash_is_independent_of_field_order)
{
    dw_mapper_result_t a = {0}, b = {0};
    map_ok("customers_accounts", DW_MAP_FO_TO_DV,
           "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"OrganizationName\":\"N\","
           "\"CreditLimit\":0.1,\"OnHoldStatus\":\"No\"}",
           &a);
    map_ok("customers_accounts", DW_MAP_FO_TO_DV,
           "{\"OnHoldStatus\":\"No\",\"CreditLimit\":0.1,\"OrganizationName\":\"N\","
           "\"CustomerAccount\":\"A\",\"dataAreaId\":\"usmf\"}",
           &b);
    cr_assert_str_eq(a.content_hash, b.content_hash);
    /* and it is SHA-256 of the sorted compact JSON */
    char *text = dw_mapper_dumps(a.payload, DW_MAPPER_DUMP_SORT_KEYS, NULL);
    char hex[DW_SHA256_HEX_SIZE];
    dw_sha256_hex(text, strlen(text), hex);
    cr_assert_str_eq(hex, a.content_hash);
    free(text);
    /* a payload in another member order hashes the same */
    json_t *shuffled = json_object();
    const char *keys[64];
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(a.payload, k, v) keys[n++] = k;
    for (size_t i = n; i-- > 0;)
        json_object_set(shuffled, keys[i], json_object_get(a.payload, keys[i]));
    char h2[DW_SHA256_HEX_SIZE];
    cr_assert_eq(dw_mapper_content_hash(shuffled, h2), DW_OK);
    cr_assert_str_eq(h2, a.content_hash);
    /* without reals it is exactly jansson's JSON_COMPACT | JSON_SORT_KEYS */
    json_object_del(shuffled, "creditlimit");
    char *j = json_dumps(shuffled, JSON_COMPACT | JSON_SORT_KEYS);
    dw_sha256_hex(j, strlen(j), hex);
    cr_assert_eq(dw_mapper_content_hash(shuffled, h2), DW_OK);
    cr_assert_str_eq(h2, hex);
    free(j);
    json_decref(shuffled);
    /* a different value, a different hash */
    dw_mapper_result_clear(&b);
    map_ok("customers_accounts", DW_MAP_FO_TO_DV,
           "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"OrganizationName\":\"M\","
           "\"CreditLimit\":0.1,\"OnHoldStatus\":\"No\"}",
           &b);
    cr_assert_str_neq(a.content_hash, b.content_hash);
    dw_mapper_result_clear(&a);
    dw_mapper_result_clear(&b);
}

Test(mapper, the_exact_reader_keeps_long_literals_only)
{
    json_t *v = parse("{\"a\":0.5,\"b\":12345678901234567.25,\"c\":1,\"d\":99999999999999999999,"
                      "\"e\":\"x 1.23456789012345678\",\"f\":[1e400,-0.000000000000000000001]}");
    cr_assert(json_is_real(json_object_get(v, "a")));
    cr_assert_str_eq(json_string_value(json_object_get(v, "b")), "12345678901234567.25");
    cr_assert(json_is_integer(json_object_get(v, "c")));
    cr_assert_str_eq(json_string_value(json_object_get(v, "d")), "99999999999999999999");
    cr_assert_str_eq(json_string_value(json_object_get(v, "e")), "x 1.23456789012345678");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(v, "f"), 0)), "1e400");
    cr_assert(json_is_real(json_array_get(json_object_get(v, "f"), 1)));
    json_decref(v);
}
