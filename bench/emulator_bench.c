/*
 * emulator_bench: throughput of UpsertMultiple (batches of 1,000 accounts, optionally several
 * requests in flight like dw-writer) and latency of single-record PATCH upserts against a running
 * dw-emulator --system dv (it does not start one).
 *   emulator_bench [-c CLIENTS] [-l] [-t] [-R] http://127.0.0.1:8080 [RECORDS] [PATCHES]
 * Three phases: the bulk load, a paged read of the whole table, the PATCHes. Prints records/s for
 * the bulk load with the spread of the request times (a stall or a slow start shows as a long
 * maximum and in the progress lines on stderr). Then, unless --no-read, reads the whole accounts
 * entity set back as a client would (GET accounts?$select=accountid at the default page size,
 * 5,000 rows, following @odata.nextLink to the end) and prints rows, pages, rows/s, the fastest
 * non-empty page, the first page and the slowest page with its number, from 1 (a deep page much
 * slower than the first means the emulator pays for the rows it skips); fewer rows than the run
 * wrote is a failure.
 * Then p50/p99 milliseconds for PATCH. With --track a change-tracking reader follows delta links
 * during the load and checks that every record written is seen exactly once. Every run writes new
 * accounts (a run id in the account number), so a second run against the same emulator measures a
 * pre-filled table (and the paged read returns the earlier runs' rows too).
 * Client credentials: the emulator's defaults (dwfleet / dwfleet-local-secret) unless
 * DW_BENCH_CLIENT_SECRET is set.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dw_bench.h"

#define BATCH       1000
#define MAX_CLIENTS 32

typedef struct {
    char *buf;
    size_t len;
} sink_t;

/* What the load threads share (the run's constants, the next batch, the results). */
typedef struct {
    const char *root, *token, *run, *company;
    bool lookups;
    int records;
    atomic_int next;      /* first record of the next batch to send */
    atomic_int done;      /* records acknowledged */
    atomic_bool failed;
    atomic_bool load_over;
    double *req_s;        /* per batch: seconds the request took */
    double t0;
    /* --track */
    unsigned char *seen;  /* per record: times a delta returned it */
    long long deltas, pages, dup, foreign;
    char delta_link[4096];
    bool track_ok;
    char track_err[512];
} bench_t;

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

/* One request on c; the body lands in out (reset first). prefer: a Prefer header or NULL. */
static long call(CURL *c, const char *method, const char *url, const char *body, const char *token,
                 const char *ctype, const char *prefer, sink_t *out)
{
    struct curl_slist *h = NULL;
    char auth[256], ct[128], pf[128];
    long status = 0;
    free(out->buf);
    *out = (sink_t){0};
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token ? token : "");
    if (token)
        h = curl_slist_append(h, auth);
    snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
    h = curl_slist_append(h, ct);
    if (prefer) {
        snprintf(pf, sizeof(pf), "Prefer: %s", prefer);
        h = curl_slist_append(h, pf);
    }
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (body) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, NULL);
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 600L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    return status;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- the load: CLIENTS threads, one connection each, taking batches in turn ------------------ */

static void *load_thread(void *arg)
{
    bench_t *b = arg;
    CURL *c = curl_easy_init();
    size_t cap = (size_t)BATCH * 700;
    char *bulk = malloc(cap), url[1024], binds[600] = "";
    sink_t s = {0};
    if (!c || !bulk) {
        fprintf(stderr, "emulator_bench: out of memory\n");
        atomic_store(&b->failed, true);
        goto out;
    }
    snprintf(url, sizeof(url), "%s/api/data/v9.2/accounts/Microsoft.Dynamics.CRM.UpsertMultiple", b->root);
    if (b->lookups)
        snprintf(binds, sizeof(binds),
                 ",\"transactioncurrencyid@odata.bind\":\"transactioncurrencies(isocurrencycode='BNC')\""
                 ",\"msdyn_customergroupid@odata.bind\":\"msdyn_customergroups(msdyn_groupid='BNCH',msdyn_company=%s)\"",
                 b->company);
    for (;;) {
        int first = atomic_fetch_add(&b->next, BATCH);
        if (first >= b->records || atomic_load(&b->failed))
            break;
        int n = b->records - first < BATCH ? b->records - first : BATCH;
        size_t o = (size_t)snprintf(bulk, cap, "{\"Targets\":[");
        for (int i = 0; i < n; i++)
            o += (size_t)snprintf(bulk + o, cap - o,
                                  "%s{\"@odata.type\":\"Microsoft.Dynamics.CRM.account\",\"@odata.id\":\"accounts(accountnumber='R%s-%07d',msdyn_company=%s)\","
                                  "\"name\":\"Bench account %d\",\"creditlimit\":%d,\"address1_city\":\"Redmond\"%s}",
                                  i ? "," : "", b->run, first + i, b->company, first + i,
                                  (first + i) % 10000, binds);
        snprintf(bulk + o, cap - o, "]}");
        double a = dw_bench_now();
        long st = call(c, "POST", url, bulk, b->token, "application/json", NULL, &s);
        b->req_s[first / BATCH] = dw_bench_now() - a;
        if (st != 204) {
            fprintf(stderr, "emulator_bench: UpsertMultiple failed (%ld): %.300s\n", st, s.buf ? s.buf : "");
            atomic_store(&b->failed, true);
            break;
        }
        atomic_fetch_add(&b->done, n);
    }
out:
    free(s.buf);
    free(bulk);
    if (c)
        curl_easy_cleanup(c);
    return NULL;
}

/* ---- --track: follow delta links during the load --------------------------------------------- */

/* Count the run's records in one page of changes; the page's next or delta link goes to link. */
static bool track_page(bench_t *b, const char *body, char *next, size_t next_size, char *delta,
                       size_t delta_size)
{
    json_error_t je;
    json_t *doc = json_loads(body, 0, &je), *v;
    size_t i;
    char prefix[32];
    int plen = snprintf(prefix, sizeof(prefix), "R%s-", b->run);
    next[0] = delta[0] = '\0';
    if (!doc) {
        snprintf(b->track_err, sizeof(b->track_err), "delta page is not JSON: %s", je.text);
        return false;
    }
    json_array_foreach(json_object_get(doc, "value"), i, v)
    {
        const char *an = json_string_value(json_object_get(v, "accountnumber"));
        if (!an)
            continue; /* a $deletedEntity */
        if (strncmp(an, prefix, (size_t)plen) != 0) {
            b->foreign++;
            continue;
        }
        long idx = strtol(an + plen, NULL, 10);
        if (idx < 0 || idx >= b->records)
            continue;
        if (b->seen[idx]++)
            b->dup++;
    }
    const char *nl = json_string_value(json_object_get(doc, "@odata.nextLink"));
    const char *dl = json_string_value(json_object_get(doc, "@odata.deltaLink"));
    if (nl)
        snprintf(next, next_size, "%s", nl);
    if (dl)
        snprintf(delta, delta_size, "%s", dl);
    json_decref(doc);
    b->pages++;
    if (!nl && !dl) {
        snprintf(b->track_err, sizeof(b->track_err), "a change-tracking page without a link");
        return false;
    }
    return true;
}

/* Follow url (a delta or the initial track-changes request) through its pages. */
static bool track_round(bench_t *b, CURL *c, const char *url)
{
    char next[4096], delta[4096], cur[4096];
    sink_t s = {0};
    bool ok = true;
    snprintf(cur, sizeof(cur), "%s", url);
    for (;;) {
        long st = call(c, "GET", cur, NULL, b->token, "application/json",
                       "odata.track-changes,odata.maxpagesize=5000", &s);
        if (st != 200) {
            snprintf(b->track_err, sizeof(b->track_err), "delta request answered %ld: %.300s", st,
                     s.buf ? s.buf : "");
            ok = false;
            break;
        }
        if (!track_page(b, s.buf, next, sizeof(next), delta, sizeof(delta))) {
            ok = false;
            break;
        }
        if (delta[0]) {
            snprintf(b->delta_link, sizeof(b->delta_link), "%s", delta);
            break;
        }
        snprintf(cur, sizeof(cur), "%s", next);
    }
    free(s.buf);
    b->deltas++;
    return ok;
}

static void *track_thread(void *arg)
{
    bench_t *b = arg;
    CURL *c = curl_easy_init();
    bool ok = c != NULL;
    while (ok && !atomic_load(&b->load_over)) {
        ok = track_round(b, c, b->delta_link);
        usleep(50000);
    }
    if (ok) /* one more after the last write was acknowledged: everything must be there */
        ok = track_round(b, c, b->delta_link);
    b->track_ok = ok;
    if (c)
        curl_easy_cleanup(c);
    return NULL;
}

/* ---- the paged read: the whole entity set through server-driven paging ------------------------ */

/* GET accounts?$select=accountid at the default page size and follow @odata.nextLink to the end,
 * as a client reading the table would. Prints the rows, the pages, the rate and the spread of the
 * page times (a deep page much slower than the first one points at OFFSET paging). False (with
 * the reason on stderr) when a page fails, or when fewer rows come back than this run wrote. */
static bool paged_read(CURL *c, const char *root, const char *token, int records)
{
    char cur[8192], err[512] = "";
    sink_t s = {0};
    long long rows = 0;
    int pages = 0, slowest = 0, empty = 0;
    double tmin = -1, tmax = 0, tfirst = 0, t0 = dw_bench_now();
    snprintf(cur, sizeof(cur), "%s/api/data/v9.2/accounts?$select=accountid", root);
    while (cur[0]) {
        double a = dw_bench_now();
        long st = call(c, "GET", cur, NULL, token, "application/json", NULL, &s);
        double t = dw_bench_now() - a;
        pages++;
        if (st != 200) {
            snprintf(err, sizeof(err), "page %d answered %ld: %.300s", pages, st, s.buf ? s.buf : "");
            break;
        }
        json_error_t je;
        json_t *doc = json_loadb(s.buf ? s.buf : "", s.len, 0, &je);
        json_t *value = json_object_get(doc, "value");
        if (!json_is_array(value)) {
            snprintf(err, sizeof(err), "page %d has no \"value\" array%s%s", pages,
                     doc ? "" : ": ", doc ? "" : je.text);
            json_decref(doc);
            break;
        }
        size_t n = json_array_size(value);
        rows += (long long)n;
        if (pages == 1)
            tfirst = t;
        if (pages == 1 || t > tmax) {
            tmax = t;
            slowest = pages;
        }
        if (n == 0) /* e.g. after a last page that was exactly full: not the fastest page's time */
            empty++;
        else if (tmin < 0 || t < tmin)
            tmin = t;
        const char *nl = json_string_value(json_object_get(doc, "@odata.nextLink"));
        if (nl && strcmp(nl, cur) == 0)
            snprintf(err, sizeof(err), "page %d links to itself: %.300s", pages, nl);
        else if (nl && strlen(nl) >= sizeof(cur))
            snprintf(err, sizeof(err), "page %d: nextLink of %zu characters", pages, strlen(nl));
        else
            snprintf(cur, sizeof(cur), "%s", nl ? nl : "");
        json_decref(doc);
        if (err[0])
            break;
    }
    double dt = dw_bench_now() - t0;
    free(s.buf);
    if (err[0]) {
        fprintf(stderr, "emulator_bench: paged read: %s\n", err);
        return false;
    }
    printf("paged read: %lld rows in %d pages, %.2f s = %.0f rows/s; pages %.3f-%.3f s (first %.3f s, "
           "slowest: page %d)", rows, pages, dt, dt > 0 ? rows / dt : 0.0, tmin < 0 ? 0.0 : tmin, tmax,
           tfirst, slowest);
    if (empty)
        printf("; %d empty page%s", empty, empty > 1 ? "s" : "");
    printf("\n");
    if (rows < records) {
        fprintf(stderr, "emulator_bench: paged read: %lld rows, fewer than the %d records this run wrote\n",
                rows, records);
        return false;
    }
    return true;
}

/* ---- main ------------------------------------------------------------------------------------- */

static const char usage[] =
    "[OPTIONS] URL [RECORDS] [PATCHES]\n\n"
    "UpsertMultiple throughput (accounts in batches of 1,000, keyed by the alternate key\n"
    "accountnumber + msdyn_company), then a paged read of the whole accounts table, then\n"
    "single-record PATCH upsert latency (p50/p99) against a RUNNING dw-emulator --system dv; the\n"
    "benchmark does not start one. Start it first, e.g.\n\n"
    "  eval \"$(scripts/services.sh env)\"\n"
    "  build/bin/dw-emulator --system dv --listen 127.0.0.1:8080 --pg \"$DW_PG_DSN\" --schema bench\n"
    "  build/bin/emulator_bench -c 3 http://127.0.0.1:8080 100000 1000\n\n"
    "  URL      the emulator's root (http://HOST:PORT, without /api/data/v9.2)\n"
    "  RECORDS  accounts to upsert (default 20000, 1..10000000)\n"
    "  PATCHES  PATCH requests to time (default 1000, 0..1000000; 0: none)\n\n"
    "  -c, --clients N  UpsertMultiple requests in flight, one connection each (default 1,\n"
    "                   at most 32; dw-writer keeps up to 3 in flight)\n"
    "  -l, --lookups    bind two lookups per record by alternate key, as dw-writer's records do\n"
    "                   (transactioncurrencyid, msdyn_customergroupid)\n"
    "  -t, --track      follow change tracking (delta links) during the load and check that every\n"
    "                   record written is returned exactly once; exit 1 when not\n"
    "  -R, --no-read    skip the paged read. Otherwise, after the load, every account is read\n"
    "                   back with GET accounts?$select=accountid at the default page size (5,000\n"
    "                   rows) following @odata.nextLink, and rows, pages, rows/s, the fastest\n"
    "                   non-empty, the first and the slowest page (numbered from 1) are\n"
    "                   printed; fewer rows than RECORDS (the table may hold earlier runs'\n"
    "                   rows too) is a failure, exit 1\n\n"
    "The spread of the UpsertMultiple request times (p50, p99, max) is printed with the rate;\n"
    "progress goes to stderr every 5 s. Every run writes new accounts (a run id in the account\n"
    "number), so running it again against the same emulator measures a table that already holds\n"
    "the earlier rows. Client credentials: dwfleet / dwfleet-local-secret (the emulator's\n"
    "defaults) unless DW_BENCH_CLIENT_SECRET is set. Numbers go to stdout; exit 0 ok, 1 failure,\n"
    "2 usage error. Build RelWithDebInfo or Release.\n";

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

/* PATCH url with body, expecting want; prints the failure. */
static bool setup_upsert(CURL *c, const char *url, const char *body, const char *token, sink_t *s)
{
    long st = call(c, "PATCH", url, body, token, "application/json", NULL, s);
    if (st != 204) {
        fprintf(stderr, "emulator_bench: upsert of %s failed (%ld): %.300s\n", url, st, s->buf ? s->buf : "");
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    if (dw_bench_std_args(argc, argv, "emulator_bench", usage) == 0)
        return 0;
    static const struct option opts[] = {{"clients", required_argument, NULL, 'c'},
                                         {"lookups", no_argument, NULL, 'l'},
                                         {"track", no_argument, NULL, 't'},
                                         {"no-read", no_argument, NULL, 'R'},
                                         {NULL, 0, NULL, 0}};
    int clients = 1, opt;
    bool lookups = false, track = false, do_read = true;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+c:ltR", opts, NULL)) != -1) {
        if (opt == 'c' && !parse_count(optarg, 1, MAX_CLIENTS, &clients))
            return usage_error("--clients must be an integer from 1 to 32", optarg);
        else if (opt == 'l')
            lookups = true;
        else if (opt == 't')
            track = true;
        else if (opt == 'R')
            do_read = false;
        else if (opt == '?')
            return usage_error("unknown option", argv[optind - 1]);
    }
    int npos = argc - optind;
    if (npos < 1 || npos > 3)
        return usage_error(npos < 1 ? "missing URL" : "too many arguments", NULL);
    const char *root = argv[optind];
    if (strncmp(root, "http://", 7) != 0 && strncmp(root, "https://", 8) != 0)
        return usage_error("URL must start with http:// or https://", root);
    int records = 20000, patches = 1000;
    if (npos > 1 && !parse_count(argv[optind + 1], 1, 10000000, &records))
        return usage_error("RECORDS must be an integer from 1 to 10000000", argv[optind + 1]);
    if (npos > 2 && !parse_count(argv[optind + 2], 0, 1000000, &patches))
        return usage_error("PATCHES must be an integer from 0 to 1000000", argv[optind + 2]);
    int rc = 1;
    const char *secret = getenv("DW_BENCH_CLIENT_SECRET");
    const char *code = "BNCH";
    char url[1024], form[512], token[128] = "", run[16], company[40] = "", body[512];
    CURL *c = curl_easy_init();
    sink_t s = {0};
    double *lat = NULL;
    json_t *tj = NULL, *cj = NULL;
    pthread_t th[MAX_CLIENTS], tt;
    int started = 0;
    bool track_started = false;
    bench_t b;
    memset(&b, 0, sizeof(b));
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
    long st = call(c, "POST", url, form, NULL, "application/x-www-form-urlencoded", NULL, &s);
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
    if (!setup_upsert(c, url, "{\"cdm_name\":\"bench\"}", token, &s))
        goto out;
    snprintf(url, sizeof(url), "%s/api/data/v9.2/cdm_companies(cdm_companycode='%s')?$select=cdm_name", root, code);
    call(c, "GET", url, NULL, token, "application/json", NULL, &s);
    cj = json_loads(s.buf ? s.buf : "", 0, NULL);
    if (!json_string_value(json_object_get(cj, "cdm_companyid"))) {
        fprintf(stderr, "emulator_bench: could not read the company: %.300s\n", s.buf ? s.buf : "");
        goto out;
    }
    snprintf(company, sizeof(company), "%s", json_string_value(json_object_get(cj, "cdm_companyid")));
    if (lookups) {
        snprintf(url, sizeof(url), "%s/api/data/v9.2/transactioncurrencies(isocurrencycode='BNC')", root);
        if (!setup_upsert(c, url,
                          "{\"currencyname\":\"Bench\",\"currencysymbol\":\"B\",\"exchangerate\":1,"
                          "\"currencyprecision\":2,\"statecode\":0}",
                          token, &s))
            goto out;
        snprintf(url, sizeof(url), "%s/api/data/v9.2/msdyn_customergroups(msdyn_groupid='BNCH',msdyn_company=%s)",
                 root, company);
        snprintf(body, sizeof(body), "{\"msdyn_description\":\"bench\",\"statecode\":0}");
        if (!setup_upsert(c, url, body, token, &s))
            goto out;
    }

    b.root = root;
    b.token = token;
    b.run = run;
    b.company = company;
    b.lookups = lookups;
    b.records = records;
    b.req_s = calloc((size_t)(records + BATCH - 1) / BATCH, sizeof(double));
    b.seen = track ? calloc((size_t)records, 1) : NULL;
    lat = calloc(patches ? (size_t)patches : 1, sizeof(double));
    if (!b.req_s || !lat || (track && !b.seen)) {
        fprintf(stderr, "emulator_bench: out of memory\n");
        goto out;
    }
    if (track) { /* the initial full sync gives the first delta link, before any record is written */
        snprintf(url, sizeof(url), "%s/api/data/v9.2/accounts?$select=accountnumber", root);
        if (!track_round(&b, c, url)) {
            fprintf(stderr, "emulator_bench: change tracking: %s\n", b.track_err);
            goto out;
        }
        b.deltas = 0;
    }
    b.t0 = dw_bench_now();
    for (; started < clients; started++)
        if (pthread_create(&th[started], NULL, load_thread, &b) != 0)
            break;
    if (track)
        track_started = pthread_create(&tt, NULL, track_thread, &b) == 0;
    {
        double last = b.t0;
        int prev = 0;
        while (atomic_load(&b.done) < records && !atomic_load(&b.failed)) {
            usleep(100000);
            double t = dw_bench_now();
            if (t - last >= 5.0) {
                int d = atomic_load(&b.done);
                fprintf(stderr, "emulator_bench: %d/%d records, %.0f records/s over the last %.0f s (%.0f s)\n",
                        d, records, (d - prev) / (t - last), t - last, t - b.t0);
                prev = d;
                last = t;
            }
        }
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double dt = dw_bench_now() - b.t0;
    atomic_store(&b.load_over, true);
    if (track_started)
        pthread_join(tt, NULL);
    if (atomic_load(&b.failed) || started < clients)
        goto out;
    {
        int nreq = (records + BATCH - 1) / BATCH;
        qsort(b.req_s, (size_t)nreq, sizeof(double), cmp_d);
        int slow = 0;
        for (int i = 0; i < nreq; i++)
            slow += b.req_s[i] > 2.0;
        printf("UpsertMultiple: %d records in batches of %d, %d in flight%s: %.2f s, %.0f records/s\n",
               records, BATCH, clients, lookups ? ", 2 lookups bound" : "", dt, records / dt);
        printf("  request time: p50 %.3f s, p99 %.3f s, max %.3f s; %d of %d requests over 2 s\n",
               b.req_s[nreq / 2], b.req_s[(nreq * 99) / 100], b.req_s[nreq - 1], slow, nreq);
    }
    if (track) {
        long long missing = 0;
        for (int i = 0; i < records; i++)
            missing += b.seen[i] == 0;
        printf("change tracking: %lld deltas (%lld pages) during the load: %lld records missing, "
               "%lld returned more than once%s%s\n",
               b.deltas, b.pages, missing, b.dup, b.track_ok ? "" : "; failed: ",
               b.track_ok ? "" : b.track_err);
        if (!b.track_ok || missing || b.dup)
            goto out;
    }
    fflush(stdout); /* the load's numbers show even when the read takes long */
    if (do_read && !paged_read(c, root, token, records))
        goto out;

    for (int i = 0; i < patches; i++) {
        snprintf(url, sizeof(url), "%s/api/data/v9.2/accounts(accountnumber='R%s-%07d',msdyn_company=%s)", root, run,
                 i % records, company);
        snprintf(body, sizeof(body), "{\"name\":\"Patched %d\"}", i);
        double a = dw_bench_now();
        st = call(c, "PATCH", url, body, token, "application/json", NULL, &s);
        lat[i] = (dw_bench_now() - a) * 1000.0;
        if (st != 204) {
            fprintf(stderr, "emulator_bench: PATCH failed (%ld): %.300s\n", st, s.buf ? s.buf : "");
            goto out;
        }
    }
    if (patches) {
        qsort(lat, (size_t)patches, sizeof(double), cmp_d);
        printf("PATCH upsert: %d requests: p50 %.2f ms, p99 %.2f ms\n", patches, lat[patches / 2],
               lat[(patches * 99) / 100]);
    }
    rc = 0;
out:
    json_decref(tj);
    json_decref(cj);
    free(lat);
    free(b.req_s);
    free(b.seen);
    free(s.buf);
    if (c)
        curl_easy_cleanup(c);
    return rc;
}
