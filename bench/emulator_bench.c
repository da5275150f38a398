/*
 * emulator_bench: throughput of UpsertMultiple (batches of 1,000 accounts) and latency of
 * single-record PATCH upserts against a running dw-emulator --system dv (it does not start one).
 *   emulator_bench http://127.0.0.1:8080 [RECORDS] [PATCHES]
 * Prints records/s for the bulk load and p50/p99 milliseconds for PATCH. Every run writes new
 * accounts (a run id in the account number), so a second run against the same emulator measures
 * a pre-filled table. Client credentials: the emulator's defaults (dwfleet /
 * dwfleet-local-secret) unless DW_BENCH_CLIENT_SECRET is set.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dw_bench.h"

typedef struct {
    char *buf;
    size_t len;
} sink_t;

static size_t on_data(char *p, size_t s, size_t n, void *ud)
{
    sink_t *k = ud;
    char *nb = realloc(k->buf, k->len + s * n + 1);
    if (!nb)
        return 0;
    k->buf = nb;
    memcpy(k->buf + k->len, p, s * n);
    k->len += s * n;
    k->buf[k->len] = '\0';
    return s * n;
}

static long call(CURL *c, const char *method, const char *url, const char *body, const char *token,
                 const char *ctype, sink_t *out)
{
    struct curl_slist *h = NULL;
    char auth[256];
    long status = 0;
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token ? token : "");
    if (token)
        h = curl_slist_append(h, auth);
    char ct[128];
    snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
    h = curl_slist_append(h, ct);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    return status;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char usage[] =
    "URL [RECORDS] [PATCHES]\n\n"
    "UpsertMultiple throughput (accounts in batches of 1,000, keyed by the alternate key\n"
    "accountnumber + msdyn_company) and single-record PATCH upsert latency (p50/p99) against a\n"
    "RUNNING dw-emulator --system dv; the benchmark does not start one. Start it first, e.g.\n\n"
    "  eval \"$(scripts/services.sh env)\"\n"
    "  build/bin/dw-emulator --system dv --listen 127.0.0.1:8080 --pg \"$DW_PG_DSN\" --schema bench\n"
    "  build/bin/emulator_bench http://127.0.0.1:8080 20000 1000\n\n"
    "  URL      the emulator's root (http://HOST:PORT, without /api/data/v9.2)\n"
    "  RECORDS  accounts to upsert (default 20000, 1..10000000)\n"
    "  PATCHES  PATCH requests to time (default 1000, 1..1000000)\n\n"
    "Every run writes new accounts (a run id in the account number), so running it again against\n"
    "the same emulator measures a table that already holds the earlier rows. Client credentials:\n"
    "dwfleet / dwfleet-local-secret (the emulator's defaults) unless DW_BENCH_CLIENT_SECRET is set.\n"
    "Numbers go to stdout; exit 0 ok, 1 failure, 2 usage error. Build RelWithDebInfo or Release.\n";

/* A decimal argument in [lo, hi]; false when it is not one. */
static bool parse_count(const char *s, long lo, long hi, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

/* A usage error: what is wrong (why, naming arg), then the usage, on stderr; exit status 2. */
static int usage_error(const char *why, const char *arg)
{
    fprintf(stderr, "emulator_bench: %s", why);
    if (arg)
        fprintf(stderr, " (got '%s')", arg);
    fprintf(stderr, "\nUsage: emulator_bench %s", usage);
    return 2;
}

int main(int argc, char **argv)
{
    if (dw_bench_std_args(argc, argv, "emulator_bench", usage) == 0)
        return 0;
    if (argc < 2 || argc > 4)
        return usage_error(argc < 2 ? "missing URL" : "too many arguments", NULL);
    const char *root = argv[1];
    if (root[0] == '-')
        return usage_error("unknown option", root);
    if (strncmp(root, "http://", 7) != 0 && strncmp(root, "https://", 8) != 0)
        return usage_error("URL must start with http:// or https://", root);
    int records = 20000, patches = 1000;
    if (argc > 2 && !parse_count(argv[2], 1, 10000000, &records))
        return usage_error("RECORDS must be an integer from 1 to 10000000", argv[2]);
    if (argc > 3 && !parse_count(argv[3], 1, 1000000, &patches))
        return usage_error("PATCHES must be an integer from 1 to 1000000", argv[3]);
    int rc = 1;
    const char *secret = getenv("DW_BENCH_CLIENT_SECRET");
    const char *code = "BNCH";
    char url[1024], form[512], token[128] = "", run[16], company[40] = "", body[512];
    CURL *c = curl_easy_init();
    sink_t s = {0};
    char *bulk = NULL;
    double *lat = NULL;
    json_t *tj = NULL, *cj = NULL;
    size_t rl = strlen(root);
    char rootbuf[512];
    snprintf(rootbuf, sizeof(rootbuf), "%.*s", (int)(rl && root[rl - 1] == '/' ? rl - 1 : rl), root);
    root = rootbuf;
    snprintf(run, sizeof(run), "%08lx", ((unsigned long)time(NULL) ^ ((unsigned long)getpid() << 16)) & 0xffffffffUL);
    if (!c) {
        fprintf(stderr, "emulator_bench: could not create a curl handle\n");
        goto out;
    }
    snprintf(url, sizeof(url), "%s/bench/oauth2/v2.0/token", root);
    snprintf(form, sizeof(form),
             "client_id=dwfleet&client_secret=%s&grant_type=client_credentials&scope=https%%3A%%2F%%2Fbench%%2F.default",
             secret ? secret : "dwfleet-local-secret");
    long st = call(c, "POST", url, form, NULL, "application/x-www-form-urlencoded", &s);
    if (st != 200) {
        fprintf(stderr, "emulator_bench: token request to %s failed (%ld): %s\n"
                        "(is dw-emulator --system dv running there? see emulator_bench --help)\n",
                url, st, s.buf ? s.buf : "");
        goto out;
    }
    tj = json_loads(s.buf, 0, NULL);
    snprintf(token, sizeof(token), "%s", json_string_value(json_object_get(tj, "access_token")) ?
             json_string_value(json_object_get(tj, "access_token")) : "");
    /* the company of the alternate key (upserted: the same one for every run) */
    snprintf(url, sizeof(url), "%s/api/data/v9.2/cdm_companies(cdm_companycode='%s')", root, code);
    snprintf(body, sizeof(body), "{\"cdm_name\":\"bench\"}");
    free(s.buf);
    s = (sink_t){0};
    if ((st = call(c, "PATCH", url, body, token, "application/json", &s)) != 204) {
        fprintf(stderr, "emulator_bench: company upsert failed (%ld): %s\n", st, s.buf ? s.buf : "");
        goto out;
    }
    snprintf(url, sizeof(url), "%s/api/data/v9.2/cdm_companies(cdm_companycode='%s')?$select=cdm_name", root, code);
    free(s.buf);
    s = (sink_t){0};
    call(c, "GET", url, NULL, token, "application/json", &s);
    cj = json_loads(s.buf ? s.buf : "", 0, NULL);
    if (!json_string_value(json_object_get(cj, "cdm_companyid"))) {
        fprintf(stderr, "emulator_bench: could not read the company: %.300s\n", s.buf ? s.buf : "");
        goto out;
    }
    snprintf(company, sizeof(company), "%s", json_string_value(json_object_get(cj, "cdm_companyid")));

    size_t cap = 1000 * 400;
    bulk = malloc(cap);
    lat = calloc((size_t)patches, sizeof(double));
    if (!bulk || !lat) {
        fprintf(stderr, "emulator_bench: out of memory\n");
        goto out;
    }
    snprintf(url, sizeof(url), "%s/api/data/v9.2/accounts/Microsoft.Dynamics.CRM.UpsertMultiple", root);
    double t0 = now();
    int done = 0;
    while (done < records) {
        int n = records - done < 1000 ? records - done : 1000;
        size_t o = (size_t)snprintf(bulk, cap, "{\"Targets\":[");
        for (int i = 0; i < n; i++)
            o += (size_t)snprintf(bulk + o, cap - o,
                                  "%s{\"@odata.type\":\"Microsoft.Dynamics.CRM.account\",\"@odata.id\":\"accounts(accountnumber='R%s-%07d',msdyn_company=%s)\","
                                  "\"name\":\"Bench account %d\",\"creditlimit\":%d,\"address1_city\":\"Redmond\"}",
                                  i ? "," : "", run, done + i, company, done + i, (done + i) % 10000);
        snprintf(bulk + o, cap - o, "]}");
        free(s.buf);
        s = (sink_t){0};
        if ((st = call(c, "POST", url, bulk, token, "application/json", &s)) != 204) {
            fprintf(stderr, "emulator_bench: UpsertMultiple failed (%ld): %.300s\n", st, s.buf ? s.buf : "");
            goto out;
        }
        done += n;
    }
    double dt = now() - t0;
    printf("UpsertMultiple: %d records in batches of 1000: %.2f s, %.0f records/s\n", records, dt, records / dt);

    for (int i = 0; i < patches; i++) {
        snprintf(url, sizeof(url), "%s/api/data/v9.2/accounts(accountnumber='R%s-%07d',msdyn_company=%s)", root, run,
                 i % records, company);
        snprintf(body, sizeof(body), "{\"name\":\"Patched %d\"}", i);
        free(s.buf);
        s = (sink_t){0};
        double a = now();
        st = call(c, "PATCH", url, body, token, "application/json", &s);
        lat[i] = (now() - a) * 1000.0;
        if (st != 204) {
            fprintf(stderr, "emulator_bench: PATCH failed (%ld): %.300s\n", st, s.buf ? s.buf : "");
            goto out;
        }
    }
    qsort(lat, (size_t)patches, sizeof(double), cmp_d);
    printf("PATCH upsert: %d requests: p50 %.2f ms, p99 %.2f ms\n", patches, lat[patches / 2],
           lat[(patches * 99) / 100]);
    rc = 0;
out:
    json_decref(tj);
    json_decref(cj);
    free(lat);
    free(bulk);
    free(s.buf);
    if (c)
        curl_easy_cleanup(c);
    return rc;
}
