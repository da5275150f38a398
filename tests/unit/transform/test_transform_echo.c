/*
 * Unit tests of loop prevention for maps that run both ways: a command carries origin_hash (the
 * content hash its record has in the origin side's write form) and origin_key. The loop property:
 * a Customers V3 record F mapped fo-to-dv gives cmd1; the Dataverse row as dw-capture reads it
 * after the writer wrote cmd1.fields (lookups as _<col>_value guids, their key values filled by
 * dw_dvlookup_fill_row, Dataverse's own columns beside them) mapped dv-to-fo gives cmd2, and
 * cmd2.content_hash == cmd1.origin_hash, so the writer recognises the echo.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "dw_dvlookup.h"
#include "dw_mapper.h"
#include "transform.h"

#define MAPS     DW_SOURCE_DIR "/schemas/maps"
#define METADATA DW_SOURCE_DIR "/schemas/metadata"

static dw_mapset_t *set;

static void load(void)
{
    char errstr[1024];
    set = dw_mapset_load(MAPS, METADATA, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(set, "%s", errstr);
}

static void unload(void)
{
    dw_mapset_destroy(set);
}

TestSuite(transform_echo, .init = load, .fini = unload);

/* The Customers V3 record of bench/map_bench.c: every field an F&O data event carries. */
static const char fo_record[] =
    "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"US-001\",\"PartyType\":\"Organization\","
    "\"PartyNumber\":\"000001234\",\"OrganizationName\":\"Contoso Retail San Diego\","
    "\"PersonFirstName\":\"\",\"CustomerGroupId\":\"30\",\"SalesCurrencyCode\":\"USD\","
    "\"CreditLimit\":125000.5,\"CreditLimitIsMandatory\":\"Yes\",\"IsOneTimeCustomer\":\"No\","
    "\"OnHoldStatus\":\"Invoice\",\"PaymentTerms\":\"Net30\",\"InvoiceAccount\":\"US-001\","
    "\"LanguageId\":\"en-us\",\"PrimaryContactEmail\":\"orders@contoso.example\","
    "\"PrimaryContactPhone\":\"+1 619 555 0100\",\"SalesMemo\":\"\","
    "\"DeliveryAddressCity\":\"San Diego\",\"DeliveryAddressStreet\":\"123 Coffee Street, "
    "Suite 300\",\"DeliveryAddressZipCode\":\"92101\",\"DeliveryAddressCountryRegionISOCode\":"
    "\"US\",\"DeliveryAddressState\":\"CA\"}";

static char *envelope(const char *map, const char *source, json_t *key, json_t *data,
                      const char *record_id)
{
    json_t *ev = json_pack("{s:i, s:s, s:s, s:s, s:s, s:O, s:O, s:s, s:s, s:s, s:s}", "version", 1,
                           "event_id", "0b6f4b4e-7c1d-4c52-9d55-0c8f1f3e2a11", "map", map, "source",
                           source, "op", "upsert", "key", key, "data", data, "source_version", "7",
                           "source_ts", "2024-03-01T10:00:00Z", "capture_ts",
                           "2024-03-01T10:00:00.125Z", "correlation_id", "corr");
    cr_assert_not_null(ev);
    if (record_id)
        json_object_set_new(ev, "record_id", json_string(record_id));
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    return text;
}

static json_t *command(const char *topic, const char *text)
{
    tx_outcome_t out;
    cr_assert_eq(tx_process(set, topic, text, strlen(text), 1 << 20, &out), DW_OK);
    cr_assert_eq(out.kind, TX_OUT_COMMAND, "%s: %s %s", topic, out.reason, out.message);
    json_t *cmd = json_loadb(out.value, out.value_len, 0, NULL);
    cr_assert_not_null(cmd);
    tx_outcome_clear(&out);
    return cmd;
}

/* ---- a fake Dataverse: the referenced rows the writer's binds point at ------------------- */

#define G_COMPANY "c0000000-0000-0000-0000-000000000001"

typedef struct {
    json_t *rows; /* guid -> row */
    int next;
} fake_dv_t;

static json_t *fake_get(const char *path, void *opaque)
{
    fake_dv_t *dv = opaque;
    const char *open = strchr(path, '(');
    cr_assert_not_null(open, "%s", path);
    char guid[37];
    snprintf(guid, sizeof(guid), "%.36s", open + 1);
    json_t *row = json_object_get(dv->rows, guid);
    return row ? json_deep_copy(row) : NULL;
}

/* The guid of the row bind names (created on first sight), as Dataverse resolves an alternate
 * key: case-insensitively; a company part becomes the company row's guid. */
static const char *fake_row(fake_dv_t *dv, const dw_map_lookup_t *lk, const char *bind)
{
    char *value = NULL, *company = NULL;
    const dw_map_lookup_t *matched = NULL;
    dw_mapper_error_t err;
    cr_assert_eq(dw_mapper_bind_parse(lk, bind, &value, &company, &matched, &err), DW_OK, "%s",
                 err.message);
    if (strcmp(matched->entity_set, "cdm_companies") == 0) { /* the existing company row */
        free(value);
        free(company);
        return G_COMPANY;
    }
    char id[37];
    snprintf(id, sizeof(id), "a0000000-0000-0000-0000-%012d", ++dv->next);
    json_t *row = json_pack("{s:s}", matched->key, value);
    if (matched->company) {
        char col[128];
        snprintf(col, sizeof(col), "_%s_value", matched->company);
        json_object_set_new(row, col, json_string(G_COMPANY));
    }
    json_object_set_new(dv->rows, id, row);
    free(value);
    free(company);
    return json_object_iter_key(json_object_iter_at(dv->rows, id)); /* lives in rows */
}

/* The Dataverse row capture reads after the writer upserted fields (a command's fields): every
 * reference becomes _<col>_value, Dataverse's own columns and the map's unmapped ones are there,
 * "" is stored as null, and dw_dvlookup_fill_row puts the lookups' key values beside the guids. */
static json_t *dv_row_after_write(const dw_map_t *map, const json_t *fields, fake_dv_t *dv)
{
    json_t *row = json_pack(
        "{s:s, s:s, s:s, s:s, s:i, s:i, s:n, s:n, s:s}", "@odata.etag", "W/\"1234\"", "accountid",
        "b0000000-0000-0000-0000-000000000001", "versionnumber", "1234", "modifiedon",
        "2024-03-01T10:00:01Z", "statecode", 0, "statuscode", 1, "address2_city", json_null(),
        "_ownerid_value", json_null(), "createdon", "2024-03-01T10:00:01Z");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)fields, k, v) {
        const char *at = strstr(k, "@odata.bind");
        if (!at) {
            bool empty = json_is_string(v) && json_string_length(v) == 0;
            json_object_set_new(row, k, empty ? json_null() : json_incref(v));
            continue;
        }
        char col[256];
        snprintf(col, sizeof(col), "%.*s", (int)(at - k), k);
        const dw_map_lookup_t *lk = NULL;
        for (size_t i = 0; i < dw_map_field_count(map) && !lk; i++) {
            const dw_map_field_t *f = dw_map_field(map, i);
            if (f->dv && strcmp(f->dv, col) == 0)
                lk = f->lookup;
        }
        cr_assert_not_null(lk, "%s", col);
        char name[300];
        snprintf(name, sizeof(name), "_%s_value", col);
        const char *guid = json_is_null(v) ? NULL : fake_row(dv, lk, json_string_value(v));
        json_object_set_new(row, name, guid ? json_string(guid) : json_null());
    }
    dw_dvlookup_t *dvl = dw_dvlookup_new(set, 100, fake_get, dv);
    cr_assert_not_null(dvl);
    dw_dvlookup_fill_row(dvl, map, row);
    dw_dvlookup_destroy(dvl);
    json_object_del(row, "@odata.etag"); /* as capture does */
    return row;
}

Test(transform_echo, a_record_written_to_dataverse_comes_back_with_its_origin_hash)
{
    const dw_map_t *map = dw_mapset_find(set, "customers_accounts");
    fake_dv_t dv = {.rows = json_object()};
    /* Dataverse knows the company by its code in capitals; F&O writes dataAreaId in lower case */
    json_object_set_new(dv.rows, G_COMPANY, json_pack("{s:s}", "cdm_companycode", "USMF"));

    json_t *f = json_loads(fo_record, 0, NULL);
    cr_assert_not_null(f);
    json_t *fkey = json_pack("{s:s, s:s}", "dataAreaId", "usmf", "CustomerAccount", "US-001");
    char *t1 = envelope("customers_accounts", "fo", fkey, f, NULL);
    json_t *cmd1 = command("dw.customers_accounts.fo", t1);
    const char *origin_hash = json_string_value(json_object_get(cmd1, "origin_hash"));
    cr_assert_not_null(origin_hash, "a map that runs both ways: origin_hash");
    cr_assert(json_equal(json_object_get(cmd1, "origin_key"), fkey), "origin_key is the event key");

    json_t *row = dv_row_after_write(map, json_object_get(cmd1, "fields"), &dv);
    json_t *dkey = NULL;
    char *ck = NULL;
    dw_mapper_error_t err;
    cr_assert_eq(dw_mapper_source_key(map, DW_MAP_DV_TO_FO, row, &dkey, &ck, &err), DW_OK, "%s",
                 err.message);
    cr_assert_str_eq(ck, "[\"usmf\",\"us-001\"]", "the echo has the record's key");
    char *t2 = envelope("customers_accounts", "dv", dkey, row, "b0000000-0000-0000-0000-000000000001");
    json_t *cmd2 = command("dw.customers_accounts.dv", t2);
    const char *hash2 = json_string_value(json_object_get(cmd2, "content_hash"));
    char *f2 = json_dumps(json_object_get(cmd2, "fields"), JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert_str_eq(hash2, origin_hash, "the echo's content is the origin's: %s", f2);
    /* and the echo's own origin_hash is the content hash of what it came from */
    cr_assert_str_eq(json_string_value(json_object_get(cmd2, "origin_hash")),
                     json_string_value(json_object_get(cmd1, "content_hash")));

    free(f2);
    free(t1);
    free(t2);
    free(ck);
    json_decref(dkey);
    json_decref(row);
    json_decref(cmd1);
    json_decref(cmd2);
    json_decref(fkey);
    json_decref(f);
    json_decref(dv.rows);
}

Test(transform_echo, a_one_way_map_has_no_origin_members)
{
    json_t *data = json_pack("{s:s, s:s}", "LegalEntityId", "USMF", "Name", "Contoso");
    json_t *key = json_pack("{s:s}", "LegalEntityId", "USMF");
    char *t = envelope("legal_entities", "fo", key, data, NULL);
    json_t *cmd = command("dw.legal_entities.fo", t);
    cr_assert_null(json_object_get(cmd, "origin_hash"));
    cr_assert_null(json_object_get(cmd, "origin_key"));
    free(t);
    json_decref(cmd);
    json_decref(key);
    json_decref(data);
}

Test(transform_echo, dataareaid_is_written_to_fo_in_lower_case)
{
    const dw_map_t *map = dw_mapset_find(set, "customers_accounts");
    json_t *row = json_pack("{s:s, s:s, s:s}", "msdyn_company", "USMF", "accountnumber", "US-1",
                            "name", "N");
    dw_mapper_result_t res = {0};
    dw_mapper_error_t err;
    cr_assert_eq(dw_mapper_apply(map, DW_MAP_DV_TO_FO, row, &res, &err), DW_OK, "%s", err.message);
    cr_assert_str_eq(json_string_value(json_object_get(res.payload, "dataAreaId")), "usmf");
    cr_assert_str_eq(json_string_value(json_object_get(res.key, "dataAreaId")), "usmf");
    cr_assert_str_eq(res.company, "usmf");
    dw_mapper_result_clear(&res);
    json_decref(row);
}
