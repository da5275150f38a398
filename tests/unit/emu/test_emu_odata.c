/*
 * Unit tests of emu_odata: resource paths with GUID and alternate keys (doubled quotes, hostile
 * values), query options (unknown ones rejected), and literal quoting.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "emu_odata.h"

Test(emu_odata, parses_a_guid_key)
{
    emu_odata_path_t p;
    char err[256];
    cr_assert_eq(emu_odata_path_parse("accounts(00000000-0000-0000-0000-00000000000a)", &p, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_str_eq(p.segment, "accounts");
    cr_assert(p.has_key);
    cr_assert_eq(p.nkeys, 1);
    cr_assert_null(p.keys[0].name);
    cr_assert(!p.keys[0].quoted);
    cr_assert(emu_odata_is_guid(p.keys[0].value));
    cr_assert_null(p.rest);
    emu_odata_path_clear(&p);
}

Test(emu_odata, parses_alternate_keys_with_doubled_quotes)
{
    emu_odata_path_t p;
    char err[256];
    cr_assert_eq(emu_odata_path_parse("accounts(accountnumber='O''Neil,(1)',msdyn_company=00000000-0000-0000-0000-000000000001)", &p, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(p.nkeys, 2);
    cr_assert_str_eq(p.keys[0].name, "accountnumber");
    cr_assert_str_eq(p.keys[0].value, "O'Neil,(1)");
    cr_assert(p.keys[0].quoted);
    cr_assert_str_eq(emu_odata_key_get(&p, "msdyn_company"), "00000000-0000-0000-0000-000000000001");
    emu_odata_path_clear(&p);
}

Test(emu_odata, keeps_an_injection_attempt_as_plain_text)
{
    emu_odata_path_t p;
    char err[256];
    cr_assert_eq(emu_odata_path_parse("accounts(accountnumber=''') or 1 eq 1')", &p, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_str_eq(p.keys[0].value, "') or 1 eq 1");
    emu_odata_path_clear(&p);
    /* the unbalanced form from the issue is a syntax error */
    cr_assert_eq(emu_odata_path_parse("accounts(accountnumber='') or 1 eq 1)", &p, err, sizeof(err)), DW_ERR_PARSE);
}

Test(emu_odata, rejects_bad_key_syntax)
{
    const char *bad[] = {"accounts(accountnumber='abc)", "accounts(", "accounts()", "accounts(a='x'",
                         "accounts(a='x',)", "accounts(a='x')junk", "accounts(a='x',a='y')",
                         "accounts(a='x',00000000-0000-0000-0000-000000000001)", "(x)", "",
                         "accounts(a=)", "accounts(a='x')/", "accounts/(x)", "accounts(a b)"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        emu_odata_path_t p;
        char err[256];
        cr_expect_eq(emu_odata_path_parse(bad[i], &p, err, sizeof(err)), DW_ERR_PARSE, "accepted %s", bad[i]);
    }
}

Test(emu_odata, parses_the_rest_of_the_path)
{
    emu_odata_path_t p;
    char err[256];
    cr_assert_eq(emu_odata_path_parse("EntityDefinitions(LogicalName='account')/Attributes", &p, err, sizeof(err)), DW_OK);
    cr_assert_str_eq(p.rest, "Attributes");
    emu_odata_path_clear(&p);
    cr_assert_eq(emu_odata_path_parse("accounts/Microsoft.Dynamics.CRM.UpsertMultiple", &p, err, sizeof(err)), DW_OK);
    cr_assert(!p.has_key);
    cr_assert_str_eq(p.rest, "Microsoft.Dynamics.CRM.UpsertMultiple");
    emu_odata_path_clear(&p);
}

Test(emu_odata, recognises_guids_and_identifiers)
{
    cr_assert(emu_odata_is_guid("0123abcd-0000-4000-8000-ABCDEFabcdef"));
    cr_assert(!emu_odata_is_guid("0123abcd-0000-4000-8000-ABCDEFabcde"));
    cr_assert(!emu_odata_is_guid("0123abcd00000-4000-8000-ABCDEFabcdef"));
    cr_assert(!emu_odata_is_guid("0123abcg-0000-4000-8000-ABCDEFabcdef"));
    cr_assert(emu_odata_is_ident("msdyn_company"));
    cr_assert(!emu_odata_is_ident("a\"b"));
    cr_assert(!emu_odata_is_ident(""));
}

Test(emu_odata, parses_query_options)
{
    const char *n[] = {"$select", "$filter", "$top", "$orderby", "$count", "custom"};
    const char *v[] = {"name, accountnumber", "name eq 'x'", "10", "name desc,createdon", "true", "ignored"};
    emu_odata_query_t q;
    char err[256];
    cr_assert_eq(emu_odata_query_parse(n, v, 6, 0xffff, &q, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(q.nselect, 2);
    cr_assert_str_eq(q.select[1], "accountnumber");
    cr_assert_str_eq(q.filter, "name eq 'x'");
    cr_assert_eq(q.top, 10);
    cr_assert_eq(q.norderby, 2);
    cr_assert(q.orderby[0].desc);
    cr_assert(!q.orderby[1].desc);
    cr_assert(q.count);
    emu_odata_query_clear(&q);
}

Test(emu_odata, rejects_unknown_and_bad_query_options)
{
    emu_odata_query_t q;
    char err[256];
    struct {
        const char *n, *v;
        unsigned allowed;
    } bad[] = {{"$foo", "1", 0xffff},        {"$top", "-1", 0xffff},   {"$top", "x", 0xffff},
               {"$count", "yes", 0xffff},    {"$select", "a,,b", 0xffff}, {"$orderby", "a sideways", 0xffff},
               {"$filter", "x", EMU_Q_SELECT}, {"$select", "a;drop", 0xffff}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *n[1] = {bad[i].n}, *v[1] = {bad[i].v};
        cr_expect_eq(emu_odata_query_parse(n, v, 1, bad[i].allowed, &q, err, sizeof(err)), DW_ERR_PARSE,
                     "accepted %s=%s", bad[i].n, bad[i].v);
    }
    const char *n2[2] = {"$top", "$top"}, *v2[2] = {"1", "2"};
    cr_expect_eq(emu_odata_query_parse(n2, v2, 2, 0xffff, &q, err, sizeof(err)), DW_ERR_PARSE);
    const char *n3[1] = {"$foo"}, *v3[1] = {"1"};
    emu_odata_query_parse(n3, v3, 1, 0xffff, &q, err, sizeof(err));
    cr_expect(strstr(err, "$foo") != NULL, "%s", err);
}

Test(emu_odata, quotes_literals)
{
    char out[64];
    cr_assert_eq(emu_odata_quote("O'Neil", out, sizeof(out)), 9);
    cr_assert_str_eq(out, "'O''Neil'");
    char small[4];
    cr_assert_eq(emu_odata_quote("abcdef", small, sizeof(small)), 8);
    cr_assert_str_eq(small, "'ab");
}
