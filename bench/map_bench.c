/*
 * map_bench: what the mapping engine costs per record, against the cost of JSON itself.
 *
 * The engine path is dw-transform's work for one captured change of a Customers V3 record (31
 * fields) on the customers_accounts map: parse the event envelope (dw_mapper_loadb: exact
 * numbers, duplicate keys rejected), unpack it strictly, evaluate the F&O scope filter, map the
 * record (conversions, value maps, lookups as binds, canonical key, content hash), build the write
 * command and serialise it. The ceiling is jansson alone on the same envelope: json_loadb and
 * json_dumps, nothing else. Both run in the same process, one thread, interleaved in rounds; the
 * best round of each counts. Prints records/s per core, ns per record and the ratio. The goal is
 * an engine path at most 1.25 times the bare JSON cost. Not a test: numbers only.
 *
 *   build/bin/map_bench [seconds per round (default 0.5)] [rounds (default 5)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dw_map.h"
#include "dw_bench.h"
#include "dw_mapper.h"

#ifndef DW_SOURCE_DIR
#define DW_SOURCE_DIR "."
#endif

/* The Customers V3 event (dw_bench_customer_event), filled in main. */
static char envelope[4096];
static size_t envelope_len;

static volatile size_t sink; /* keeps the work observable */

/* jansson alone: parse and serialise the envelope. */
static int bare_one(void)
{
    json_error_t jerr;
    json_t *v = json_loadb(envelope, envelope_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v)
        return -1;
    char *out = json_dumps(v, JSON_COMPACT);
    if (!out) {
        json_decref(v);
        return -1;
    }
    sink += strlen(out);
    free(out);
    json_decref(v);
    return 0;
}

/* dw-transform's path: envelope -> filter -> map -> command text. */
static int engine_one(const dw_map_t *m)
{
    dw_mapper_error_t err;
    dw_mapper_result_t res = {0};
    json_t *cmd = NULL;
    char *out = NULL;
    int rc = -1;
    json_t *ev = dw_mapper_loadb(envelope, envelope_len, &err);
    if (!ev)
        return -1;
    json_error_t jerr;
    int version;
    const char *event_id, *map, *source, *op, *source_version, *source_ts, *capture_ts, *corr;
    json_t *key, *data;
    if (json_unpack_ex(ev, &jerr, JSON_STRICT,
                       "{s:i, s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:s, s:s, s:s}", "version",
                       &version, "event_id", &event_id, "map", &map, "source", &source, "op", &op,
                       "key", &key, "data", &data, "source_version", &source_version, "source_ts",
                       &source_ts, "capture_ts", &capture_ts, "correlation_id", &corr))
        goto out;
    bool in = false;
    if (dw_mapper_in_scope(m, DW_MAP_FO_TO_DV, data, &in, &err) || !in)
        goto out;
    if (dw_mapper_apply(m, DW_MAP_FO_TO_DV, data, &res, &err))
        goto out;
    cmd =
        json_pack("{s:i, s:s, s:i, s:s, s:s, s:O, s:O, s:s, s:s, s:s, s:s}", "version", 1, "map",
                  map, "map_version", dw_map_version(m), "target", "dv", "op", "upsert",
                  "target_key", res.key, "fields", res.payload, "source_version", source_version,
                  "content_hash", res.content_hash, "correlation_id", corr, "source_ts", source_ts);
    size_t len = 0;
    if (!cmd || !(out = dw_mapper_dumps(cmd, 0, &len)))
        goto out;
    sink += len + strlen(res.canonical_key);
    rc = 0;
out:
    free(out);
    json_decref(cmd);
    dw_mapper_result_clear(&res);
    json_decref(ev);
    return rc;
}

typedef int (*one_fn)(const dw_map_t *m);

static int bare_adapter(const dw_map_t *m)
{
    (void)m;
    return bare_one();
}

/* ns per record of fn over about `seconds`. */
static double measure(one_fn fn, const dw_map_t *m, double seconds, size_t *count)
{
    size_t n = 0;
    double start = dw_bench_now(), elapsed = 0;
    do {
        for (int i = 0; i < 1000; i++) {
            if (fn(m)) {
                fprintf(stderr, "map_bench: a record failed\n");
                exit(1);
            }
        }
        n += 1000;
        elapsed = dw_bench_now() - start;
    } while (elapsed < seconds);
    *count += n;
    return elapsed * 1e9 / (double)n;
}

int main(int argc, char **argv)
{
    if (dw_bench_std_args(argc, argv, "map_bench",
                          "[SECONDS_PER_ROUND] [ROUNDS]\n\n"
                          "Envelope parse + filter + map + serialise of a Customers V3 event "
                          "against the bare jansson\nparse + serialise of the same record "
                          "(the ceiling); prints records/s per core, ns per\nrecord and the "
                          "ratio (goal: at most 1.25). Defaults: 0.5 s, 5 rounds.\n") == 0)
        return 0;
    double seconds = argc > 1 ? atof(argv[1]) : 0.5;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    char errstr[1024];
    envelope_len =
        (size_t)dw_bench_customer_event(envelope, sizeof(envelope), "customers_accounts", 1);
    if (seconds <= 0 || rounds < 1) {
        fprintf(stderr, "usage: map_bench [seconds per round] [rounds]\n");
        return 2;
    }
    dw_mapset_t *set =
        dw_mapset_load(DW_SOURCE_DIR "/schemas/maps", DW_SOURCE_DIR "/schemas/metadata", NULL,
                       errstr, sizeof(errstr));
    if (!set) {
        fprintf(stderr, "map_bench: %s\n", errstr);
        return 1;
    }
    const dw_map_t *m = dw_mapset_find(set, "customers_accounts");
    json_t *probe = json_loads(envelope, 0, NULL);
    size_t nfields = json_object_size(json_object_get(probe, "data"));
    json_decref(probe);

    /* warm up, and check the path works */
    for (int i = 0; i < 2000; i++) {
        if (engine_one(m) || bare_one()) {
            fprintf(stderr, "map_bench: the record does not map\n");
            return 1;
        }
    }
    double best_bare = 1e30, best_engine = 1e30;
    size_t nb = 0, ne = 0;
    for (int r = 0; r < rounds; r++) {
        double b = measure(bare_adapter, m, seconds, &nb);
        double e = measure(engine_one, m, seconds, &ne);
        if (b < best_bare)
            best_bare = b;
        if (e < best_engine)
            best_engine = e;
    }
    double ratio = best_engine / best_bare;
    printf("map_bench: customers_accounts fo-to-dv, one Customers V3 event (%zu fields, %zu bytes),"
           " best of %d rounds of %.2f s, one thread\n",
           nfields, envelope_len, rounds, seconds);
    printf("  %-52s %12.0f records/s per core %9.0f ns/record\n",
           "bare jansson (json_loadb + json_dumps):", 1e9 / best_bare, best_bare);
    printf("  %-52s %12.0f records/s per core %9.0f ns/record\n",
           "engine (envelope+filter+map+hash+command):", 1e9 / best_engine, best_engine);
    printf("  ratio engine / bare: %.2f  (overhead %+.0f%%; goal: at most +25%%) %s\n", ratio,
           (ratio - 1) * 100, ratio <= 1.25 ? "MET" : "NOT MET");
    printf("  (%zu bare and %zu engine records in total)\n", nb, ne);
    dw_mapset_destroy(set);
    return 0;
}
