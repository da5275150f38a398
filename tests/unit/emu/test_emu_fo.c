/*
 * Unit tests of the F&O emulator's pure parts: the data-event document (RemoteExecutionContext:
 * MessageName, Target, PreImage, KeyAttributes, null dates omitted, enums as member names, a
 * stable PrimaryEntityId), the output form of a row and the Prefer header helpers.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "emu_fo.h"
#include "emu_fo_events.h"
#include "emu_fo_store.h"

static emu_col_t cols[5];
static emu_table_t tab;

static void setup(void)
{
    memset(cols, 0, sizeof(cols));
    memset(&tab, 0, sizeof(tab));
    static char n0[] = "dataAreaId", n1[] = "CustomerAccount", n2[] = "OnHoldStatus", n3[] = "ShipDate",
                n4[] = "CreditLimit";
    cols[0] = (emu_col_t){.name = n0, .type = EMU_T_STRING};
    cols[1] = (emu_col_t){.name = n1, .type = EMU_T_STRING};
    cols[2] = (emu_col_t){.name = n2, .type = EMU_T_ENUM};
    cols[3] = (emu_col_t){.name = n3, .type = EMU_T_DATE};
    cols[4] = (emu_col_t){.name = n4, .type = EMU_T_DECIMAL};
    static char name[] = "CustomerV3", set[] = "CustomersV3";
    tab.name = name;
    tab.entity_set = set;
    tab.cols = cols;
    tab.ncols = 5;
    tab.meta = json_loads(
        "{\"key\":[\"dataAreaId\",\"CustomerAccount\"],"
        "\"enums\":{\"NoYes\":[{\"name\":\"No\",\"value\":0},{\"name\":\"Yes\",\"value\":1}]},"
        "\"columns\":[{\"name\":\"dataAreaId\"},{\"name\":\"CustomerAccount\"},"
        "{\"name\":\"OnHoldStatus\",\"enum\":\"NoYes\"},{\"name\":\"ShipDate\"},{\"name\":\"CreditLimit\"}]}",
        0, NULL);
    cr_assert(tab.meta);
}

static void teardown(void)
{
    json_decref(tab.meta);
}

TestSuite(emu_fo, .init = setup, .fini = teardown);

static json_t *kv(json_t *list, const char *key)
{
    for (size_t i = 0; i < json_array_size(list); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(list, i), "key")), key) == 0)
            return json_object_get(json_array_get(list, i), "value");
    return NULL;
}

Test(emu_fo, row_output_uses_enum_member_names)
{
    json_t *db = json_loads("{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"OnHoldStatus\":1,\"ShipDate\":null,\"CreditLimit\":5,\"_rowversion\":9}", 0, NULL);
    json_t *o = emu_fo_row_out(&tab, db, false);
    cr_assert_str_eq(json_string_value(json_object_get(o, "OnHoldStatus")), "Yes");
    cr_assert(json_is_null(json_object_get(o, "ShipDate")));
    cr_assert_null(json_object_get(o, "_rowversion"), "internal columns stay inside");
    json_decref(o);
    o = emu_fo_row_out(&tab, db, true);
    cr_assert_null(json_object_get(o, "ShipDate"), "null dates omitted");
    json_decref(o);
    cr_assert_eq(emu_fo_row_version(db), 9);
    json_decref(db);
}

Test(emu_fo, create_update_delete_documents)
{
    json_t *before = json_loads("{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"OnHoldStatus\":0,\"ShipDate\":null,\"CreditLimit\":5,\"_rowversion\":3}", 0, NULL);
    json_t *after = json_loads("{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"A\",\"OnHoldStatus\":1,\"ShipDate\":\"2026-01-02\",\"CreditLimit\":7,\"_rowversion\":4}", 0, NULL);
    json_t *c = emu_fo_event_build(&tab, "Create", before, NULL, "11111111-2222-3333-4444-555555555555", 1700000000000LL);
    cr_assert_str_eq(json_string_value(json_object_get(c, "MessageName")), "Create");
    cr_assert_str_eq(json_string_value(json_object_get(c, "PrimaryEntityName")), "CustomerV3");
    cr_assert_str_eq(json_string_value(json_object_get(c, "CorrelationId")), "11111111-2222-3333-4444-555555555555");
    cr_assert_str_eq(json_string_value(json_object_get(c, "OperationCreatedOn")), "/Date(1700000000000)/");
    json_t *target = kv(json_object_get(c, "InputParameters"), "Target");
    cr_assert(target);
    cr_assert_null(kv(json_object_get(target, "Attributes"), "ShipDate"), "null date omitted");
    cr_assert_str_eq(json_string_value(kv(json_object_get(target, "Attributes"), "OnHoldStatus")), "No");
    cr_assert_str_eq(json_string_value(kv(json_object_get(target, "KeyAttributes"), "CustomerAccount")), "A");
    cr_assert_str_eq(json_string_value(json_object_get(target, "RowVersion")), "3");
    cr_assert_eq(json_array_size(json_object_get(c, "PreEntityImages")), 0);
    json_t *u = emu_fo_event_build(&tab, "Update", after, before, NULL, 0);
    cr_assert_str_eq(json_string_value(json_object_get(u, "PrimaryEntityId")),
                     json_string_value(json_object_get(c, "PrimaryEntityId")), "stable id per record");
    json_t *pre = kv(json_object_get(u, "PreEntityImages"), "PreImage");
    cr_assert(pre);
    cr_assert_eq(json_number_value(kv(json_object_get(pre, "Attributes"), "CreditLimit")), 5);
    target = kv(json_object_get(u, "InputParameters"), "Target");
    cr_assert_str_eq(json_string_value(kv(json_object_get(target, "Attributes"), "ShipDate")), "2026-01-02");
    json_t *d = emu_fo_event_build(&tab, "Delete", NULL, after, NULL, 0);
    target = kv(json_object_get(d, "InputParameters"), "Target");
    cr_assert(strncmp(json_string_value(json_object_get(target, "__type")), "EntityReference:", 16) == 0);
    cr_assert(kv(json_object_get(d, "PreEntityImages"), "PreImage"));
    json_decref(c);
    json_decref(u);
    json_decref(d);
    json_decref(before);
    json_decref(after);
}

Test(emu_fo, record_guids_differ_per_key)
{
    json_t *a = json_pack("{s:s,s:s}", "dataAreaId", "usmf", "CustomerAccount", "A");
    json_t *b = json_pack("{s:s,s:s}", "dataAreaId", "usrt", "CustomerAccount", "A");
    char ga[37], gb[37], ga2[37];
    emu_fo_record_guid(&tab, a, ga);
    emu_fo_record_guid(&tab, b, gb);
    emu_fo_record_guid(&tab, a, ga2);
    cr_assert_str_neq(ga, gb);
    cr_assert_str_eq(ga, ga2);
    cr_assert_eq(strlen(ga), 36);
    json_decref(a);
    json_decref(b);
}

Test(emu_fo, prefer_header_helpers)
{
    cr_assert_eq(emu_fo_prefer_maxpagesize("odata.maxpagesize=250"), 250);
    cr_assert_eq(emu_fo_prefer_maxpagesize("return=minimal, odata.maxpagesize=7"), 7);
    cr_assert_eq(emu_fo_prefer_maxpagesize("odata.maxpagesize=abc"), 0);
    cr_assert_eq(emu_fo_prefer_maxpagesize("odata.maxpagesize=-3"), 0);
    cr_assert_eq(emu_fo_prefer_maxpagesize("odata.maxpagesize=12x"), 0);
    cr_assert_eq(emu_fo_prefer_maxpagesize(NULL), 0);
    cr_assert_eq(emu_fo_prefer_return("return=minimal"), -1);
    cr_assert_eq(emu_fo_prefer_return("return=representation"), 1);
    cr_assert_eq(emu_fo_prefer_return("odata.maxpagesize=1"), 0);
}

Test(emu_fo, enum_members_both_ways)
{
    long long v = -1;
    cr_assert(emu_fo_enum_value(&tab, &cols[2], "Yes", &v));
    cr_assert_eq(v, 1);
    cr_assert_not(emu_fo_enum_value(&tab, &cols[2], "Maybe", &v));
    cr_assert_str_eq(emu_fo_enum_member(&tab, &cols[2], 0), "No");
    cr_assert_null(emu_fo_enum_member(&tab, &cols[2], 5));
    cr_assert_str_eq(emu_fo_col_enum(&tab, &cols[2]), "NoYes");
    cr_assert_null(emu_fo_col_enum(&tab, &cols[1]));
}
