/*
 * Integration tests of `dw-emulator seed` against the real PostgreSQL (DW_PG_DSN): the same
 * arguments give the same rows, lookups point at seeded rows, referenced tables get rows, and a bad
 * --records is a usage error (exit 2). Each test seeds its own schemas and drops them.
 */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "dw_testutil.h"

extern char **environ;

static int run_seed(const char *system, const char *schema, const char *records)
{
    const char *argv[] = {"dw-emulator", "seed", "--system", system, "--schema", schema, "--records", records,
                          "--quiet", NULL};
    pid_t pid;
    int e = posix_spawn(&pid, DW_BIN_DIR "/dw-emulator", NULL, NULL, (char *const *)argv, environ);
    cr_assert_eq(e, 0, "spawn: %s", strerror(e));
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *one(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(c));
    char *v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static void drop(PGconn *c, const char *schema)
{
    char *id = PQescapeIdentifier(c, schema, strlen(schema));
    char sql[300];
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", id);
    PQclear(PQexec(c, "SET client_min_messages TO warning"));
    PQclear(PQexec(c, sql));
    PQfreemem(id);
}

Test(emulator_seed, dv_is_deterministic_with_referential_integrity, .timeout = 60)
{
    const char *dsn = getenv("DW_PG_DSN");
    cr_assert(dsn, "DW_PG_DSN is not set");
    char a[128], b[128];
    snprintf(a, sizeof(a), "%s", dw_test_unique("emu_seed_a"));
    snprintf(b, sizeof(b), "%s", dw_test_unique("emu_seed_b"));
    cr_assert_eq(run_seed("dv", a, "accounts=300,contacts=50,salesorders=40,salesorderdetails=120"), 0);
    cr_assert_eq(run_seed("dv", b, "accounts=300,contacts=50,salesorders=40,salesorderdetails=120"), 0);
    PGconn *c = PQconnectdb(dsn);
    cr_assert_eq(PQstatus(c), CONNECTION_OK);
    char sql[1024];
    const char *cols = "accountid, accountnumber, name, msdyn_company, transactioncurrencyid, creditlimit, emailaddress1, address1_city";
    snprintf(sql, sizeof(sql), "SELECT md5(string_agg(concat_ws('|', %s), ',' ORDER BY accountid)) FROM \"%s\".account", cols, a);
    char *ha = one(c, sql);
    snprintf(sql, sizeof(sql), "SELECT md5(string_agg(concat_ws('|', %s), ',' ORDER BY accountid)) FROM \"%s\".account", cols, b);
    char *hb = one(c, sql);
    cr_assert_str_eq(ha, hb, "the same arguments give the same rows");
    snprintf(sql, sizeof(sql), "SELECT count(*)::text FROM \"%s\".account", a);
    char *n = one(c, sql);
    cr_assert_str_eq(n, "300");
    snprintf(sql, sizeof(sql),
             "SELECT count(*)::text FROM \"%s\".salesorderdetail d LEFT JOIN \"%s\".salesorder o ON o.salesorderid = d.salesorderid"
             " WHERE o.salesorderid IS NULL", a, a);
    char *orphans = one(c, sql);
    cr_assert_str_eq(orphans, "0", "order lines point at seeded orders");
    snprintf(sql, sizeof(sql),
             "SELECT count(*)::text FROM \"%s\".account x LEFT JOIN \"%s\".cdm_company k ON k.cdm_companyid = x.msdyn_company"
             " WHERE k.cdm_companyid IS NULL OR x.versionnumber IS NULL", a, a);
    char *orphans2 = one(c, sql);
    cr_assert_str_eq(orphans2, "0", "accounts point at seeded companies and carry a version");
    free(ha);
    free(hb);
    free(n);
    free(orphans);
    free(orphans2);
    drop(c, a);
    drop(c, b);
    PQfinish(c);
}

Test(emulator_seed, fo_references_share_the_company, .timeout = 60)
{
    const char *dsn = getenv("DW_PG_DSN");
    cr_assert(dsn, "DW_PG_DSN is not set");
    char a[128];
    snprintf(a, sizeof(a), "%s", dw_test_unique("emu_seed_fo"));
    cr_assert_eq(run_seed("fo", a, "CustomersV3=200,VendorsV2=20"), 0);
    PGconn *c = PQconnectdb(dsn);
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "SELECT count(*)::text FROM \"%s\".\"CustomerV3\" x LEFT JOIN \"%s\".\"CustomerGroup\" g"
             " ON g.\"dataAreaId\" = x.\"dataAreaId\" AND g.\"CustomerGroupId\" = x.\"CustomerGroupId\""
             " WHERE g.\"CustomerGroupId\" IS NULL", a, a);
    char *orphans = one(c, sql);
    cr_assert_str_eq(orphans, "0", "customer groups exist in the customer's company");
    free(orphans);
    /* every relation the metadata declares names a seeded record of the same company: the
     * emulator checks them on writes, and the Dataverse side binds them */
    const struct {
        const char *table, *col, *rtable, *rcol;
    } rels[] = {{"CustomerV3", "PaymentTerms", "PaymentTerm", "Name"},
                {"CustomerV3", "SalesCurrencyCode", "Currency", "CurrencyCode"},
                {"CustomerGroup", "PaymentTermId", "PaymentTerm", "Name"},
                {"CustomerGroup", "ClearingPeriodPaymentTermName", "PaymentTerm", "Name"},
                {"VendorV2", "VendorGroupId", "VendorGroup", "VendorGroupId"},
                {"VendorGroup", "DefaultPaymentTermName", "PaymentTerm", "Name"}};
    for (size_t i = 0; i < sizeof(rels) / sizeof(rels[0]); i++) {
        bool per_company = strcmp(rels[i].rtable, "Currency") != 0;
        snprintf(sql, sizeof(sql),
                 "SELECT count(*)::text || '/' || count(x.\"%s\")::text FROM \"%s\".\"%s\" x"
                 " WHERE x.\"%s\" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM \"%s\".\"%s\" r"
                 " WHERE r.\"%s\" = x.\"%s\"%s)",
                 rels[i].col, a, rels[i].table, rels[i].col, a, rels[i].rtable, rels[i].rcol, rels[i].col,
                 per_company ? " AND r.\"dataAreaId\" = x.\"dataAreaId\"" : "");
        char *bad = one(c, sql);
        cr_assert_str_eq(bad, "0/0", "%s.%s names no seeded %s (of its company)", rels[i].table,
                         rels[i].col, rels[i].rtable);
        free(bad);
    }
    /* company ids as F&O stores them: lower case */
    snprintf(sql, sizeof(sql),
             "SELECT count(*)::text FROM \"%s\".\"CustomerV3\" WHERE \"dataAreaId\" <> lower(\"dataAreaId\")", a);
    char *upper = one(c, sql);
    cr_assert_str_eq(upper, "0", "dataAreaId in lower case");
    free(upper);
    drop(c, a);
    PQfinish(c);
}

Test(emulator_seed, bad_records_are_a_usage_error)
{
    cr_assert_eq(run_seed("dv", "emu_seed_never", "nosuchset=5"), 2);
    cr_assert_eq(run_seed("dv", "emu_seed_never", "accounts=many"), 2);
    PGconn *c = PQconnectdb(getenv("DW_PG_DSN") ? getenv("DW_PG_DSN") : "");
    drop(c, "emu_seed_never");
    PQfinish(c);
}
