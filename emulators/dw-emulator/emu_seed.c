/*
 * emu_seed: deterministic seeding of an emulated system's tables with COPY (PQputCopyData).
 * Tables are filled in dependency order (a table after the tables its lookups / references
 * name); each row's values come from a splitmix64 stream seeded by (seed, table, row), so a row
 * does not depend on the counts of other tables or on the order of work. Versions, createdon and
 * modifiedon are stamped by the store's triggers as for any insert. The seeded tables are
 * truncated first, inside the same transaction as the COPYs (all or nothing).
 */
#include "emu_seed.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dw_log.h"
#include "dw_pg.h"
#include "emu_store.h"

#define SEED_DEFAULT_REF_ROWS 5
#define SEED_DEFAULT_COMPANIES 3
#define SEED_BUF (1 << 20)

typedef struct {
    emu_store_t *st;
    size_t nt;
    long long *count;     /* rows per table index */
    unsigned long long seed;
    long long ncompanies; /* rows of the company table (cdm_company / LegalEntity) */
    int company_table;    /* index or -1 */
    bool quiet;
} seed_t;

static unsigned long long mix(unsigned long long *s)
{
    unsigned long long z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned long long hash_str(const char *s)
{
    unsigned long long h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static unsigned long long row_state(const seed_t *sd, const emu_table_t *t, long long i)
{
    unsigned long long s = sd->seed ^ hash_str(t->name) ^ ((unsigned long long)i * 0x2545f4914f6cdd1dULL);
    mix(&s);
    return s;
}

/* The GUID of row i of table t (deterministic). */
static void row_uuid(const seed_t *sd, const emu_table_t *t, long long i, char out[37])
{
    unsigned long long s = sd->seed ^ hash_str(t->name) ^ 0x5eedULL ^ ((unsigned long long)i << 20);
    unsigned long long a = mix(&s), b = mix(&s);
    snprintf(out, 37, "%08llx-%04llx-4%03llx-%04llx-%012llx", a >> 32, (a >> 16) & 0xffff, a & 0xfff,
             0x8000 | ((b >> 48) & 0x3fff), b & 0xffffffffffffULL);
}

static const char *const companies[] = {"USMF", "USRT", "DEMF", "GBSI", "FRRT", "JPMF", "CNMF", "BRMF", "INMF", "MXMF"};
static const char *const currencies[] = {"USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "CNY", "SEK", "NOK",
                                         "DKK", "PLN", "BRL", "INR", "MXN", "ZAR", "NZD", "SGD"};
static const char *const first_names[] = {"Ana", "Ben", "Chen", "Dana", "Elif", "Farid", "Grace", "Hiro", "Ines",
                                          "Jonas", "Kara", "Liam", "Maya", "Nils", "Olga", "Pavel", "Quinn",
                                          "Rosa", "Sven", "Tara", "Umar", "Vera", "Wen", "Yara", "Zoe"};
static const char *const last_names[] = {"Adams", "Berg", "Costa", "Diaz", "Ekström", "Fischer", "Garcia", "Hansen",
                                         "Ito", "Jensen", "Kowalski", "Larsen", "Müller", "Nakamura", "Okafor",
                                         "Petrov", "Rossi", "Schmidt", "Tanaka", "Novak", "Weber", "Young"};
static const char *const words[] = {"Contoso", "Fabrikam", "Northwind", "Adventure", "Tailspin", "Wingtip", "Litware",
                                    "Proseware", "Alpine", "Coho", "Woodgrove", "Fourth", "Margie's", "Lucerne",
                                    "Humongous", "Blue Yonder", "Trey", "Wide World", "Relecloud", "Consolidated"};
static const char *const suffixes[] = {"Ltd", "Inc", "GmbH", "Trading", "Supplies", "Group", "Logistics", "Foods", "Retail", "Motors"};
static const char *const cities[] = {"Redmond", "Seattle", "Berlin", "London", "Paris", "Tokyo", "Oslo", "Madrid",
                                     "Toronto", "Sydney", "Munich", "Chicago", "Lisbon", "Vienna", "Dublin", "Austin"};
static const char *const streets[] = {"Main St", "High Street", "Market Rd", "Park Ave", "Lake Dr", "Station Rd", "Elm St", "Harbour Way"};
static const char *const countries[] = {"USA", "DEU", "GBR", "FRA", "JPN", "NOR", "ESP", "CAN", "AUS", "AUT", "IRL"};
static const char *const products[] = {"Speaker", "Monitor", "Cable", "Desk", "Chair", "Lamp", "Router", "Headset",
                                       "Keyboard", "Mouse", "Printer", "Projector", "Tablet", "Phone", "Camera"};

#define PICK(arr, r) (arr[(r) % (sizeof(arr) / sizeof(arr[0]))])

static bool has(const char *s, const char *needle)
{
    return strstr(s, needle) != NULL;
}

static void lower(const char *s, char *out, size_t size)
{
    size_t i = 0;
    for (; s[i] && i + 1 < size; i++)
        out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    out[i] = '\0';
}

/* A unique code for row i of key column c: a known code list first for company/currency codes,
 * else PREFIX-000123, else base 36 when max_length is short. */
static void key_code(const emu_table_t *t, const emu_col_t *c, long long i, char *out, size_t size)
{
    char lc[160];
    lower(c->name, lc, sizeof(lc));
    long long ml = c->max_length > 0 ? c->max_length : 40;
    if ((has(lc, "companycode") || has(lc, "legalentityid")) && i < 10) {
        snprintf(out, size, "%s", companies[i]);
        return;
    }
    if (has(lc, "currencycode") && i < (long long)(sizeof(currencies) / sizeof(currencies[0]))) {
        snprintf(out, size, "%s", currencies[i]);
        return;
    }
    char pre[4] = "";
    size_t k = 0;
    for (const char *p = t->name; *p && k < 3; p++)
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
            pre[k++] = (char)(*p >= 'a' ? *p - 32 : *p);
    pre[k] = '\0';
    if (strncmp(t->name, "msdyn_", 6) == 0 || strncmp(t->name, "cdm_", 4) == 0) {
        const char *p = strchr(t->name, '_') + 1;
        for (k = 0; p[k] && k < 3; k++)
            pre[k] = (char)(p[k] >= 'a' && p[k] <= 'z' ? p[k] - 32 : p[k]);
        pre[k] = '\0';
    }
    char buf[64];
    snprintf(buf, sizeof(buf), "%s-%06lld", pre, i + 1);
    if ((long long)strlen(buf) <= ml) {
        snprintf(out, size, "%s", buf);
        return;
    }
    /* base 36, left-padded with 'Z' to keep codes of a table the same length */
    char b36[32];
    int n = 0;
    long long v = i;
    do {
        b36[n++] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[v % 36];
        v /= 36;
    } while (v && n < 31);
    long long w = ml < 31 ? ml : 31;
    size_t o = 0;
    for (long long p = n; p < w && o + 1 < size; p++)
        out[o++] = 'Z';
    while (n && o + 1 < size)
        out[o++] = b36[--n];
    out[o] = '\0';
}

static bool is_key_col(const emu_table_t *t, const char *col)
{
    for (size_t k = 0; k < t->nkeys; k++)
        for (size_t j = 0; j < t->keys[k].ncols; j++)
            if (strcmp(t->keys[k].cols[j], col) == 0)
                return true;
    json_t *key = json_object_get(t->meta, "key");
    for (size_t k = 0; k < json_array_size(key); k++)
        if (strcmp(json_string_value(json_array_get(key, k)) ? json_string_value(json_array_get(key, k)) : "", col) == 0)
            return true;
    return false;
}

static bool is_company_col(const emu_col_t *c)
{
    return c->generated && strcmp(c->generated, "company") == 0;
}

static bool table_has_company(const emu_table_t *t)
{
    for (size_t i = 0; i < t->ncols; i++)
        if (is_company_col(&t->cols[i]) ||
            (t->cols[i].type == EMU_T_LOOKUP && t->cols[i].ntargets == 1 && strcmp(t->cols[i].targets[0], "cdm_company") == 0))
            return true;
    return false;
}

/* F&O: the table and key column a string column refers to (a column named like another entity's
 * last key column, e.g. CustomerGroupId, or ending with it, e.g. SalesCurrencyCode). */
static int fo_ref(const seed_t *sd, const emu_table_t *t, const emu_col_t *c, const emu_col_t **kc)
{
    if (c->type != EMU_T_STRING || is_key_col(t, c->name))
        return -1;
    /* the relation the metadata declares, which the emulator checks on writes: the seeded value
     * must name a seeded record of that entity */
    json_t *rel = emu_table_relation(t, c->name);
    const emu_table_t *rt = rel ? emu_store_relation_target(sd->st, rel, kc) : NULL;
    for (size_t u = 0; rt && u < sd->nt; u++)
        if (emu_store_table_at(sd->st, u) == rt)
            return (int)u;
    for (size_t u = 0; u < sd->nt; u++) {
        emu_table_t *ut = emu_store_table_at(sd->st, u);
        json_t *key = json_object_get(ut->meta, "key");
        const char *last = json_string_value(json_array_get(key, json_array_size(key) - 1));
        if (!last || ut == t || strcmp(last, "dataAreaId") == 0 || strlen(last) < 6)
            continue;
        size_t cl = strlen(c->name), ll = strlen(last);
        if (strcmp(c->name, last) == 0 || (cl > ll && ll >= 10 && strcmp(c->name + cl - ll, last) == 0)) {
            *kc = emu_table_col(ut, last);
            return *kc ? (int)u : -1;
        }
    }
    return -1;
}

/* Row j of table u in the same company as row i (rows are assigned to companies round robin). */
static long long same_company_row(const seed_t *sd, long long i, long long nu, unsigned long long r, bool striped)
{
    long long nc = sd->ncompanies > 0 ? sd->ncompanies : 1;
    if (!striped || nu < nc)
        return (long long)(r % (unsigned long long)nu);
    long long per = (nu + nc - 1) / nc;
    long long j = (long long)(r % (unsigned long long)per) * nc + i % nc;
    while (j >= nu)
        j -= nc;
    return j;
}

static void copy_escape(char *buf, size_t *len, const char *s)
{
    for (; *s && *len + 3 < SEED_BUF; s++) {
        char c = *s;
        if (c == '\\' || c == '\t' || c == '\n' || c == '\r') {
            buf[(*len)++] = '\\';
            c = c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : '\\';
        }
        buf[(*len)++] = c;
    }
}

/* Truncate s to max_length characters (UTF-8 aware). */
static void clip(char *s, long long max)
{
    if (max <= 0)
        return;
    long long n = 0;
    for (char *p = s; *p; p++) {
        if (((unsigned char)*p & 0xc0) != 0x80) {
            if (n == max) {
                *p = '\0';
                return;
            }
            n++;
        }
    }
}

/* The text of column c of row i ("" → NULL is signalled by returning false). */
static bool value(const seed_t *sd, size_t ti, const emu_table_t *t, const emu_col_t *c, long long i,
                  unsigned long long *rs, char *out, size_t size)
{
    unsigned long long r = mix(rs);
    char lc[160];
    lower(c->name, lc, sizeof(lc));
    (void)ti;
    if (t->id_column && strcmp(c->name, t->id_column) == 0) {
        row_uuid(sd, t, i, out);
        return true;
    }
    if (c->generated) {
        if (strcmp(c->generated, "caller") == 0) {
            snprintf(out, size, "%s", "5eed0000-0000-4000-8000-000000000001");
            return true;
        }
        if (strcmp(c->generated, "company") == 0) {
            emu_table_t *ct = sd->company_table >= 0 ? emu_store_table_at(sd->st, (size_t)sd->company_table) : NULL;
            json_t *key = ct ? json_object_get(ct->meta, "key") : NULL;
            const emu_col_t *kc = ct ? emu_table_col(ct, json_string_value(json_array_get(key, 0)) ? json_string_value(json_array_get(key, 0)) : "") : NULL;
            if (kc)
                key_code(ct, kc, i % (sd->ncompanies > 0 ? sd->ncompanies : 1), out, size);
            else
                snprintf(out, size, "%s", companies[0]);
            /* F&O keeps a dataAreaId in lower case (the legal entity "USMF" is company "usmf"),
             * as its OData answers and the emulator's writes store it */
            for (char *p = out; *p; p++)
                *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
            return true;
        }
        if (strcmp(c->generated, "autonumber") == 0) {
            key_code(t, c, i, out, size);
            return true;
        }
        return false; /* version, now: stamped by the triggers */
    }
    if (c->type == EMU_T_LOOKUP) {
        for (size_t k = 0; k < c->ntargets; k++) {
            emu_table_t *ut = emu_store_table_by_name(sd->st, c->targets[k]);
            size_t u;
            for (u = 0; ut && u < sd->nt && emu_store_table_at(sd->st, u) != ut; u++)
                ;
            if (!ut || ut == t || sd->count[u] <= 0)
                continue;
            bool striped = strcmp(ut->name, "cdm_company") == 0 ? false : table_has_company(ut);
            long long j = strcmp(ut->name, "cdm_company") == 0 ? i % sd->count[u]
                                                               : same_company_row(sd, i, sd->count[u], r, striped);
            row_uuid(sd, ut, j, out);
            return true;
        }
        return false;
    }
    if (c->read_only)
        return false;
    if (is_key_col(t, c->name) && c->type == EMU_T_STRING) {
        key_code(t, c, i, out, size);
        return true;
    }
    const emu_col_t *kc = NULL;
    int u = fo_ref(sd, t, c, &kc);
    if (u >= 0 && sd->count[u] > 0) {
        emu_table_t *ut = emu_store_table_at(sd->st, (size_t)u);
        key_code(ut, kc, same_company_row(sd, i, sd->count[u], r, table_has_company(ut)), out, size);
        return true;
    }
    switch (c->type) {
    case EMU_T_ENUM:
        if (!c->nenum)
            return false;
        snprintf(out, size, "%lld", c->enum_values[r % c->nenum]);
        return true;
    case EMU_T_BOOLEAN:
        snprintf(out, size, "%s", (r % 5) ? "false" : "true");
        return true;
    case EMU_T_INTEGER:
        snprintf(out, size, "%llu", r % (has(lc, "quantity") || has(lc, "qty") ? 100 : 10000));
        return true;
    case EMU_T_DECIMAL:
        if (has(lc, "exchangerate"))
            snprintf(out, size, "%llu.%04llu", r % 3, (r >> 8) % 10000);
        else
            snprintf(out, size, "%llu.%02llu", r % (has(lc, "price") ? 2000 : 100000), (r >> 20) % 100);
        return true;
    case EMU_T_DATE:
    case EMU_T_DATETIME: {
        long long day = 19000 + (long long)(r % 1500); /* 2022 .. 2026 */
        time_t ts = (time_t)(day * 86400 + (long long)((r >> 16) % 86400));
        struct tm tm;
        gmtime_r(&ts, &tm);
        if (c->type == EMU_T_DATE)
            strftime(out, size, "%Y-%m-%d", &tm);
        else
            strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return true;
    }
    case EMU_T_GUID:
        row_uuid(sd, t, (long long)(r % 1000000) + 1000000000LL, out);
        return true;
    case EMU_T_LOOKUP:
        return false;
    case EMU_T_STRING:
        break;
    }
    unsigned long long r2 = mix(rs);
    if (has(lc, "email"))
        snprintf(out, size, "%s.%s%lld@example.com", PICK(first_names, r), PICK(last_names, r2), i + 1);
    else if (has(lc, "phone") || has(lc, "telephone") || has(lc, "fax"))
        snprintf(out, size, "+1-555-%04llu", r % 10000);
    else if (has(lc, "firstname") || has(lc, "spouse"))
        snprintf(out, size, "%s", PICK(first_names, r));
    else if (has(lc, "lastname"))
        snprintf(out, size, "%s", PICK(last_names, r2));
    else if (has(lc, "middlename"))
        snprintf(out, size, "%c.", "ABCDEFGHJKLMNPRSTW"[r % 18]);
    else if (has(lc, "city"))
        snprintf(out, size, "%s", PICK(cities, r));
    else if (has(lc, "street") || has(lc, "line1"))
        snprintf(out, size, "%llu %s", r % 900 + 1, PICK(streets, r2));
    else if (has(lc, "postal") || has(lc, "zip"))
        snprintf(out, size, "%05llu", r % 100000);
    else if (has(lc, "country"))
        snprintf(out, size, "%s", PICK(countries, r));
    else if (has(lc, "state"))
        snprintf(out, size, "%c%c", 'A' + (int)(r % 26), 'A' + (int)(r2 % 26));
    else if (has(lc, "symbol") || has(lc, "unit"))
        snprintf(out, size, "%s", PICK(((const char *const[]){"ea", "pcs", "kg", "box", "m", "l"}), r));
    else if (has(lc, "partytype"))
        snprintf(out, size, "%s", (r % 4) ? "Organization" : "Person");
    else if (has(lc, "language"))
        snprintf(out, size, "%s", PICK(((const char *const[]){"en-us", "de", "fr", "ja", "nb-no"}), r));
    else if (strcmp(lc, "description") == 0 || has(lc, "notes"))
        snprintf(out, size, "Seeded %s row %lld", t->name, i + 1);
    else if (has(lc, "product") || (strcmp(lc, "name") == 0 && has(t->name, "product")))
        snprintf(out, size, "%s %s %llu", PICK(words, r), PICK(products, r2), r % 1000);
    else if (has(lc, "name") || has(lc, "description"))
        snprintf(out, size, "%s %s", PICK(words, r), PICK(suffixes, r2));
    else if (has(lc, "title") || has(lc, "profession") || has(lc, "job"))
        snprintf(out, size, "%s", PICK(((const char *const[]){"Buyer", "Controller", "Engineer", "Manager", "Director"}), r));
    else
        key_code(t, c, (long long)(r % 100000), out, size);
    clip(out, c->max_length);
    return true;
}

static dw_err_t seed_table(seed_t *sd, dw_pg_t *pg, size_t ti, char *buf, char *errstr, size_t n)
{
    emu_table_t *t = emu_store_table_at(sd->st, ti);
    char sql[16384] = "";
    snprintf(sql, sizeof(sql), "COPY %s (", t->qname);
    bool first = true;
    for (size_t c = 0; c < t->ncols; c++) {
        if (t->cols[c].dropped)
            continue;
        size_t l = strlen(sql);
        snprintf(sql + l, sizeof(sql) - l, "%s\"%s\"", first ? "" : ", ", t->cols[c].name);
        first = false;
    }
    strncat(sql, ") FROM STDIN", sizeof(sql) - strlen(sql) - 1);
    PGconn *conn = dw_pg_conn(pg);
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        dw_err_t e = dw_errf(DW_ERR_PG, errstr, n, "COPY %s: %s", t->name, PQerrorMessage(conn));
        PQclear(res);
        return e;
    }
    PQclear(res);
    size_t len = 0;
    char v[1024];
    bool ok = true;
    for (long long i = 0; i < sd->count[ti] && ok; i++) {
        unsigned long long rs = row_state(sd, t, i);
        bool f = true;
        for (size_t c = 0; c < t->ncols; c++) {
            if (t->cols[c].dropped)
                continue;
            if (!f)
                buf[len++] = '\t';
            f = false;
            v[0] = '\0';
            if (value(sd, ti, t, &t->cols[c], i, &rs, v, sizeof(v)))
                copy_escape(buf, &len, v);
            else {
                memcpy(buf + len, "\\N", 2);
                len += 2;
            }
        }
        buf[len++] = '\n';
        if (len > SEED_BUF - 64 * 1024) {
            ok = PQputCopyData(conn, buf, (int)len) == 1;
            len = 0;
        }
        if (!sd->quiet && (i + 1) % 50000 == 0)
            fprintf(stderr, "dw-emulator seed: %s: %lld/%lld rows\n", t->name, i + 1, sd->count[ti]);
    }
    if (ok && len)
        ok = PQputCopyData(conn, buf, (int)len) == 1;
    dw_err_t err = DW_OK;
    if (PQputCopyEnd(conn, ok ? NULL : "client error") != 1)
        ok = false;
    while ((res = PQgetResult(conn))) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && !err)
            err = dw_errf(DW_ERR_PG, errstr, n, "COPY %s: %s", t->name, PQresultErrorMessage(res));
        PQclear(res);
    }
    if (!ok && !err)
        err = dw_errf(DW_ERR_PG, errstr, n, "COPY %s: %s", t->name, PQerrorMessage(conn));
    return err;
}

/* Tables in dependency order: a table after every table its lookups / references name. */
static void order_tables(seed_t *sd, size_t *order)
{
    bool *placed = calloc(sd->nt, sizeof(bool));
    size_t k = 0;
    if (!placed) {
        for (size_t i = 0; i < sd->nt; i++)
            order[i] = i;
        return;
    }
    if (sd->company_table >= 0) {
        order[k++] = (size_t)sd->company_table;
        placed[sd->company_table] = true;
    }
    while (k < sd->nt) {
        bool progress = false;
        for (size_t i = 0; i < sd->nt; i++) {
            if (placed[i])
                continue;
            emu_table_t *t = emu_store_table_at(sd->st, i);
            bool ready = true;
            for (size_t c = 0; c < t->ncols && ready; c++) {
                const emu_col_t *col = &t->cols[c];
                for (size_t g = 0; g < col->ntargets && ready; g++) {
                    emu_table_t *u = emu_store_table_by_name(sd->st, col->targets[g]);
                    for (size_t j = 0; u && u != t && j < sd->nt; j++)
                        if (emu_store_table_at(sd->st, j) == u && !placed[j])
                            ready = false;
                }
                const emu_col_t *kc;
                int u = fo_ref(sd, t, col, &kc);
                if (u >= 0 && !placed[u])
                    ready = false;
            }
            if (ready) {
                order[k++] = i;
                placed[i] = true;
                progress = true;
            }
        }
        if (!progress) /* a cycle: take the rest as they come */
            for (size_t i = 0; i < sd->nt; i++)
                if (!placed[i]) {
                    order[k++] = i;
                    placed[i] = true;
                }
    }
    free(placed);
}

/* Tables referred to by a seeded table get a few rows when not asked for. */
static void add_referenced(seed_t *sd)
{
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t i = 0; i < sd->nt; i++) {
            if (sd->count[i] <= 0)
                continue;
            emu_table_t *t = emu_store_table_at(sd->st, i);
            for (size_t c = 0; c < t->ncols; c++) {
                const emu_col_t *col = &t->cols[c];
                if (col->generated && strcmp(col->generated, "company") == 0 && sd->company_table >= 0 &&
                    sd->count[sd->company_table] < 0) {
                    sd->count[sd->company_table] = SEED_DEFAULT_COMPANIES;
                    changed = true;
                }
                for (size_t g = 0; col->type == EMU_T_LOOKUP && g < col->ntargets; g++) {
                    for (size_t j = 0; j < sd->nt; j++) {
                        emu_table_t *u = emu_store_table_at(sd->st, j);
                        if (strcmp(u->name, col->targets[g]) == 0 && sd->count[j] < 0) {
                            sd->count[j] = strcmp(u->name, "cdm_company") == 0 ? SEED_DEFAULT_COMPANIES : SEED_DEFAULT_REF_ROWS;
                            changed = true;
                        }
                    }
                }
                const emu_col_t *kc;
                int u = fo_ref(sd, t, col, &kc);
                if (u >= 0 && sd->count[u] < 0) {
                    sd->count[u] = SEED_DEFAULT_REF_ROWS;
                    changed = true;
                }
            }
        }
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: dw-emulator seed --system dv|fo --records SET=N[,SET=N...] [--pg DSN] [--schema NAME]\n"
               "                        [--metadata DIR] [--seed N] [--quiet]\n"
               "Fills the emulated tables with deterministic rows through COPY (the named tables are\n"
               "truncated first). SET is an entity set or table name (accounts, contacts, CustomersV3 ...);\n"
               "tables the named ones refer to get a few rows unless named too. --pg defaults to DW_PG_DSN.\n");
}

int emu_seed_main(int argc, char **argv)
{
    const char *system = NULL, *dsn = getenv("DW_PG_DSN"), *schema = NULL, *records = NULL;
    const char *metadata = DW_DEFAULT_SCHEMAS_DIR "/metadata";
    unsigned long long seedv = 42;
    bool quiet = false;
    static const struct option lo[] = {{"system", required_argument, NULL, 's'},
                                       {"pg", required_argument, NULL, 'p'},
                                       {"schema", required_argument, NULL, 'S'},
                                       {"metadata", required_argument, NULL, 'm'},
                                       {"records", required_argument, NULL, 'r'},
                                       {"seed", required_argument, NULL, 'x'},
                                       {"quiet", no_argument, NULL, 'q'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (o) {
        case 's': system = optarg; break;
        case 'p': dsn = optarg; break;
        case 'S': schema = optarg; break;
        case 'm': metadata = optarg; break;
        case 'r': records = optarg; break;
        case 'x': seedv = strtoull(optarg, NULL, 10); break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || !system || (strcmp(system, "dv") && strcmp(system, "fo")) || !records || !dsn) {
        fprintf(stderr, "dw-emulator seed: %s\n", optind < argc ? "unexpected argument" : !system || (strcmp(system, "dv") && strcmp(system, "fo")) ? "--system dv|fo is required" : !records ? "--records is required" : "--pg (or DW_PG_DSN) is required");
        usage(stderr);
        return 2;
    }
    char errstr[1024];
    int rc = 1;
    seed_t sd;
    memset(&sd, 0, sizeof(sd));
    sd.seed = seedv;
    sd.quiet = quiet;
    sd.company_table = -1;
    dw_pg_t *pg = NULL;
    size_t *order = NULL;
    char *buf = NULL;
    sd.st = emu_store_open(dsn, schema ? schema : system, metadata, system, 2, errstr, sizeof(errstr));
    if (!sd.st) {
        fprintf(stderr, "dw-emulator seed: %s\n", errstr);
        return 1;
    }
    sd.nt = emu_store_ntables(sd.st);
    sd.count = malloc(sd.nt * sizeof(long long));
    order = malloc(sd.nt * sizeof(size_t));
    buf = malloc(SEED_BUF);
    if (!sd.count || !order || !buf) {
        fprintf(stderr, "dw-emulator seed: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < sd.nt; i++) {
        sd.count[i] = -1;
        emu_table_t *t = emu_store_table_at(sd.st, i);
        if (strcmp(t->name, "cdm_company") == 0 || strcmp(t->name, "LegalEntity") == 0)
            sd.company_table = (int)i;
    }
    char *spec = strdup(records), *save = NULL;
    for (char *tok = strtok_r(spec, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        char *end = NULL;
        long long nrows = eq ? strtoll(eq + 1, &end, 10) : -1;
        if (eq)
            *eq = '\0';
        emu_table_t *t = emu_store_table_by_set(sd.st, tok);
        if (!t)
            t = emu_store_table_by_name(sd.st, tok);
        if (!eq || !end || *end || nrows < 0 || nrows > 100000000 || !t) {
            fprintf(stderr, "dw-emulator seed: --records: '%s' is not SET=N with a known %s entity set\n", tok, system);
            free(spec);
            rc = 2;
            goto out;
        }
        for (size_t i = 0; i < sd.nt; i++)
            if (emu_store_table_at(sd.st, i) == t)
                sd.count[i] = nrows;
    }
    free(spec);
    add_referenced(&sd);
    sd.ncompanies = sd.company_table >= 0 && sd.count[sd.company_table] > 0 ? sd.count[sd.company_table] : 1;
    order_tables(&sd, order);
    pg = emu_store_acquire(sd.st, errstr, sizeof(errstr));
    if (!pg || emu_store_begin_write(sd.st, pg, errstr, sizeof(errstr))) {
        fprintf(stderr, "dw-emulator seed: %s\n", errstr);
        goto out;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long long total = 0;
    for (size_t k = 0; k < sd.nt; k++) {
        size_t ti = order[k];
        if (sd.count[ti] < 0)
            continue;
        emu_table_t *t = emu_store_table_at(sd.st, ti);
        char sql[600];
        snprintf(sql, sizeof(sql), "TRUNCATE %s", t->qname);
        if (dw_pg_exec(pg, sql, 0, NULL, NULL, errstr, sizeof(errstr)) ||
            seed_table(&sd, pg, ti, buf, errstr, sizeof(errstr))) {
            fprintf(stderr, "dw-emulator seed: %s\n", errstr);
            goto out;
        }
        total += sd.count[ti];
        if (!quiet)
            fprintf(stderr, "dw-emulator seed: %s: %lld rows\n", t->name, sd.count[ti]);
    }
    if (dw_pg_commit(pg, errstr, sizeof(errstr))) {
        fprintf(stderr, "dw-emulator seed: commit: %s\n", errstr);
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (!quiet)
        fprintf(stderr, "dw-emulator seed: %lld rows in %.2f s (%.0f rows/s) into schema %s\n", total, dt,
                dt > 0 ? (double)total / dt : 0.0, emu_store_schema(sd.st));
    rc = 0;
out:
    if (pg)
        emu_store_release(sd.st, pg);
    emu_store_close(sd.st);
    free(sd.count);
    free(order);
    free(buf);
    return rc;
}
