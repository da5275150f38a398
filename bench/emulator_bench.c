/*
 * emulator_bench: throughput of UpsertMultiple (batches of 1,000 accounts) and latency of
 * single-record PATCH upserts against a running dw-emulator --system dv.
 *   emulator_bench http://127.0.0.1:8080 [RECORDS] [PATCHES]
 * Prints records/s for the bulk load and p50/p99 milliseconds for PATCH. Client credentials:
 * the emulator's defaults (dwfleet / dwfleet-local-secret) unless DW_BENCH_CLIENT_SECRET is set.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: emulator_bench URL [RECORDS] [PATCHES]\n");
        return 2;
    }
    const char *root = argv[1];
    int records = argc > 2 ? atoi(argv[2]) : 20000, patches = argc > 3 ? atoi(argv[3]) : 1000;
    const char *secret = getenv("DW_BENCH_CLIENT_SECRET");
    char url[1024], form[512], token[128] = "";
    CURL *c = curl_easy_init();
    sink_t s = {0};
    snprintf(url, sizeof(url), "%s/bench/oauth2/v2.0/token", root);
    snprintf(form, sizeof(form),
             "client_id=dwfleet&client_secret=%s&grant_type=client_credentials&scope=https%%3A%%2F%%2Fbench%%2F.default",
             secret ? secret : "dwfleet-local-secret");
    if (call(c, "POST", url, form, NULL, "application/x-www-form-urlencoded", &s) != 200) {
        fprintf(stderr, "emulator_bench: token request failed: %s\n", s.buf ? s.buf : "");
        return 1;
    }
    json_t *tj = json_loads(s.buf, 0, NULL);
    snprintf(token, sizeof(token), "%s", json_string_value(json_object_get(tj, "access_token")));
    json_decref(tj);
    /* a company for the alternate key; a fresh code per run */
    char code[8], body[512];
    snprintf(code, sizeof(code), "B%03d", (int)(time(NULL) % 1000));
    snprintf(url, sizeof(url), "%s/api/data/v9.2/cdm_companies(cdm_companycode='%s')", root, code);
    snprintf(body, sizeof(body), "{\"cdm_name\":\"bench\"}");
    free(s.buf);
    s = (sink_t){0};
    if (call(c, "PATCH", url, body, token, "application/json", &s) != 204) {
        fprintf(stderr, "emulator_bench: company upsert failed: %s\n", s.buf ? s.buf : "");
        return 1;
    }
    snprintf(url, sizeof(url), "%s/api/data/v9.2/cdm_companies(cdm_companycode='%s')?$select=cdm_name", root, code);
    free(s.buf);
    s = (sink_t){0};
    call(c, "GET", url, NULL, token, "application/json", &s);
    json_t *cj = json_loads(s.buf, 0, NULL);
    char company[40];
    snprintf(company, sizeof(company), "%s", json_string_value(json_object_get(cj, "cdm_companyid")));
    json_decref(cj);

    size_t cap = 1000 * 400;
    char *bulk = malloc(cap);
    snprintf(url, sizeof(url), "%s/api/data/v9.2/accounts/Microsoft.Dynamics.CRM.UpsertMultiple", root);
    double t0 = now();
    int done = 0;
    while (done < records) {
        int n = records - done < 1000 ? records - done : 1000;
        size_t o = (size_t)snprintf(bulk, cap, "{\"Targets\":[");
        for (int i = 0; i < n; i++)
            o += (size_t)snprintf(bulk + o, cap - o,
                                  "%s{\"@odata.type\":\"Microsoft.Dynamics.CRM.account\",\"@odata.id\":\"accounts(accountnumber='%s-%06d',msdyn_company=%s)\","
                                  "\"name\":\"Bench account %d\",\"creditlimit\":%d,\"address1_city\":\"Redmond\"}",
                                  i ? "," : "", code, done + i, company, done + i, (done + i) % 10000);
        snprintf(bulk + o, cap - o, "]}");
        free(s.buf);
        s = (sink_t){0};
        long st = call(c, "POST", url, bulk, token, "application/json", &s);
        if (st != 204) {
            fprintf(stderr, "emulator_bench: UpsertMultiple failed (%ld): %.300s\n", st, s.buf ? s.buf : "");
            return 1;
        }
        done += n;
    }
    double dt = now() - t0;
    printf("UpsertMultiple: %d records in batches of 1000: %.2f s, %.0f records/s\n", records, dt, records / dt);

    double *lat = calloc((size_t)patches, sizeof(double));
    for (int i = 0; i < patches; i++) {
        snprintf(url, sizeof(url), "%s/api/data/v9.2/accounts(accountnumber='%s-%06d',msdyn_company=%s)", root, code,
                 i % (records ? records : 1), company);
        snprintf(body, sizeof(body), "{\"name\":\"Patched %d\"}", i);
        free(s.buf);
        s = (sink_t){0};
        double a = now();
        long st = call(c, "PATCH", url, body, token, "application/json", &s);
        lat[i] = (now() - a) * 1000.0;
        if (st != 204) {
            fprintf(stderr, "emulator_bench: PATCH failed (%ld): %.300s\n", st, s.buf ? s.buf : "");
            return 1;
        }
    }
    qsort(lat, (size_t)patches, sizeof(double), cmp_d);
    printf("PATCH upsert: %d requests: p50 %.2f ms, p99 %.2f ms\n", patches, lat[patches / 2],
           lat[(patches * 99) / 100]);
    free(lat);
    free(bulk);
    free(s.buf);
    curl_easy_cleanup(c);
    return 0;
}
