/*
 * The whole pipeline, both ways, on the real Kafka and PostgreSQL: the F&O emulator pushes its
 * data events to dw-capture --system fo, dw-capture --system dv pulls the Dataverse emulator's
 * change tracking, dw-transform maps both, and dw-writer --target dv / --target fo write them.
 * The map is a renamed copy of currencies (bidirectional). What it proves:
 *   - a currency created in F&O arrives in Dataverse, and one edited in Dataverse arrives in F&O;
 *   - no ping-pong: the change coming back from the side it was written to is recognised by the
 *     ledger as an echo and dropped, so each side is written exactly once per change (the rows'
 *     ETags do not move after the change landed) and both writers count the echo they dropped.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_testemu.h"
#include "dw_testutil.h"

extern char **environ;

#define SECRET "pipeline-event-secret"

enum { P_CAP_FO, P_CAP_DV, P_TRANSFORM, P_WRITER_DV, P_WRITER_FO, P__COUNT };
static const char *const pnames[P__COUNT] = {"capture-fo", "capture-dv", "transform", "writer-dv",
                                             "writer-fo"};

static char sfx[48], maps_dir[256], map[96], logs[P__COUNT][256];
static pid_t pids[P__COUNT];
static dw_testemu_t *fo, *dv;

static int free_port(void)
{
    int port = dw_testemu_free_port();
    cr_assert_gt(port, 0, "no free port");
    return port;
}

static void spawn(int which, const char *bin, const char *const *args)
{
    const char *argv[48];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; args[i] && n < 46; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char path[512];
    snprintf(path, sizeof(path), DW_BIN_DIR "/%s", bin);
    snprintf(logs[which], sizeof(logs[which]), "/tmp/dwpipe_%s_%s.log", sfx, pnames[which]);
    pids[which] = dw_test_spawn(path, argv, environ, logs[which]);
    cr_assert(pids[which] > 0, "spawn %s: %s", bin, strerror(errno));
}

static void stop_all(void)
{
    for (int i = 0; i < P__COUNT; i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGTERM);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
        }
    dw_testemu_destroy(fo);
    dw_testemu_destroy(dv);
    fo = dv = NULL;
    dw_test_maps_remove(maps_dir);
}

static void keep_running(void)
{
    for (int i = 0; i < P__COUNT; i++) {
        int st;
        cr_assert_eq(waitpid(pids[i], &st, WNOHANG), 0, "%s exited early, see %s", pnames[i],
                     logs[i]);
    }
}

/* GET path on emu: the JSON body (new) when 200, else NULL. */
static json_t *get(dw_testemu_t *emu, const char *path)
{
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "GET", path, NULL, NULL);
    json_t *j = r.status == 200 && r.json ? json_incref(r.json) : NULL;
    dw_testemu_resp_free(&r);
    return j;
}

static void req(dw_testemu_t *emu, const char *method, const char *path, const char *body)
{
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, method, path, body, NULL);
    cr_assert(r.status / 100 == 2, "%s %s: %ld %s", method, path, r.status, r.body ? r.body : "");
    dw_testemu_resp_free(&r);
}

/* Wait up to timeout_s until the row at path on emu has member == want; its ETag into etag. */
static void wait_value(dw_testemu_t *emu, const char *path, const char *member, const char *want,
                       double timeout_s, char *etag, size_t etag_size)
{
    for (int i = 0; i < (int)(timeout_s * 10); i++) {
        keep_running();
        json_t *row = get(emu, path);
        const char *v = json_string_value(json_object_get(row, member));
        if (v && strcmp(v, want) == 0) {
            const char *e = json_string_value(json_object_get(row, "@odata.etag"));
            cr_assert(e, "%s has no @odata.etag", path);
            snprintf(etag, etag_size, "%s", e);
            json_decref(row);
            return;
        }
        json_decref(row);
        usleep(100000);
    }
    cr_assert_fail("%s: %s did not become \"%s\" within %.0f s (logs /tmp/dwpipe_%s_*.log)", path,
                   member, want, timeout_s, sfx);
}

static void expect_etag(dw_testemu_t *emu, const char *path, const char *etag, const char *what)
{
    json_t *row = get(emu, path);
    const char *e = json_string_value(json_object_get(row, "@odata.etag"));
    cr_assert(e && strcmp(e, etag) == 0, "%s: %s was written again (ETag %s, was %s)", what, path,
              e ? e : "(none)", etag);
    json_decref(row);
}

/* The last "<name>=N" a writer logged (its counters line), -1 when none. */
static long counter(int which, const char *name)
{
    char pat[64];
    snprintf(pat, sizeof(pat), " %s=", name);
    FILE *f = fopen(logs[which], "r");
    long last = -1;
    char line[4096];
    while (f && fgets(line, sizeof(line), f)) {
        const char *p = strstr(line, pat);
        if (p)
            last = strtol(p + strlen(pat), NULL, 10);
    }
    if (f)
        fclose(f);
    return last;
}

static void start_pipeline(void)
{
    char errstr[512];
    snprintf(sfx, sizeof(sfx), "%s", dw_test_unique("p"));
    snprintf(maps_dir, sizeof(maps_dir), "/tmp/dwpipe_maps_%s", sfx);
    static const char *const bases[] = {"currencies", NULL};
    cr_assert_eq(dw_test_maps_copy(maps_dir, bases, sfx, errstr, sizeof(errstr)), 0, "%s", errstr);
    snprintf(map, sizeof(map), "currencies_%s", sfx);

    char a_maps[300], a_map_cap[160], a_map_tx[160], a_map_wr[160];
    snprintf(a_maps, sizeof(a_maps), "maps.dir=%s", maps_dir);
    snprintf(a_map_cap, sizeof(a_map_cap), "capture.maps=%s", map);
    snprintf(a_map_tx, sizeof(a_map_tx), "transform.maps=%s", map);
    snprintf(a_map_wr, sizeof(a_map_wr), "writer.maps=%s", map);

    /* dw-capture --system fo first: the F&O emulator pushes to it */
    int cap_port = free_port();
    char a_listen[64];
    snprintf(a_listen, sizeof(a_listen), "capture.listen=127.0.0.1:%d", cap_port);
    const char *cap_fo[] = {"--system", "fo",
                            "-X",       a_listen,
                            "-X",       a_maps,
                            "-X",       a_map_cap,
                            "-X",       "capture.fo_auth=bearer",
                            "-X",       "capture.fo_secret=" SECRET,
                            "-X",       "topics.partitions=1",
                            NULL};
    spawn(P_CAP_FO, "dw-capture", cap_fo);

    char a_events[160];
    snprintf(a_events, sizeof(a_events), "emulator.fo.event_endpoints=http://127.0.0.1:%d/events",
             cap_port);
    const char *fo_args[] = {"-X", "emulator.fo.company=usmf",
                             "-X", a_events,
                             "-X", "emulator.fo.event_auth_header=Authorization: Bearer " SECRET,
                             "-X", "emulator.fo.event_retry_initial_ms=100",
                             "-X", "emulator.fo.event_retry_max_ms=500",
                             NULL};
    fo = dw_testemu_start("fo", "emu_pipe", fo_args, NULL, errstr, sizeof(errstr));
    cr_assert(fo, "%s", errstr);
    dv = dw_testemu_start("dv", "emu_pipe", NULL, NULL, errstr, sizeof(errstr));
    cr_assert(dv, "%s", errstr);

    char a_dv_url[128], a_dv_tok[160], a_fo_url[128], a_fo_tok[160];
    snprintf(a_dv_url, sizeof(a_dv_url), "dv.url=http://127.0.0.1:%d", dw_testemu_port(dv));
    snprintf(a_dv_tok, sizeof(a_dv_tok), "dv.token_url=http://127.0.0.1:%d/t/oauth2/v2.0/token",
             dw_testemu_port(dv));
    snprintf(a_fo_url, sizeof(a_fo_url), "fo.url=http://127.0.0.1:%d", dw_testemu_port(fo));
    snprintf(a_fo_tok, sizeof(a_fo_tok), "fo.token_url=http://127.0.0.1:%d/t/oauth2/v2.0/token",
             dw_testemu_port(fo));

    const char *cap_dv[] = {"--system", "dv",
                            "-X",       a_maps,
                            "-X",       a_map_cap,
                            "-X",       a_dv_url,
                            "-X",       a_dv_tok,
                            "-X",       "dv.client_id=dwfleet",
                            "-X",       "dv.client_secret=dwfleet-local-secret",
                            "-X",       "capture.poll_interval_ms=200",
                            "-X",       "capture.poll_max_interval_ms=400",
                            "-X",       "topics.partitions=1",
                            NULL};
    spawn(P_CAP_DV, "dw-capture", cap_dv);

    char a_tx_group[160], a_tx_inst[160];
    snprintf(a_tx_group, sizeof(a_tx_group), "transform.group_id=tx_%s", sfx);
    snprintf(a_tx_inst, sizeof(a_tx_inst), "transform.instance_id=tx_%s", sfx);
    const char *tx[] = {"-X",       a_maps, "-X",      a_map_tx, "-X",
                        a_tx_group, "-X",   a_tx_inst, "-X",     "topics.partitions=1",
                        NULL};
    spawn(P_TRANSFORM, "dw-transform", tx);

    char a_wdv_group[160], a_wfo_group[160], a_wdv_inst[160], a_wfo_inst[160];
    snprintf(a_wdv_group, sizeof(a_wdv_group), "writer.group_id=wdv_%s", sfx);
    snprintf(a_wfo_group, sizeof(a_wfo_group), "writer.group_id=wfo_%s", sfx);
    snprintf(a_wdv_inst, sizeof(a_wdv_inst), "writer.instance_id=wdv_%s", sfx);
    snprintf(a_wfo_inst, sizeof(a_wfo_inst), "writer.instance_id=wfo_%s", sfx);
    const char *wdv[] = {"--target", "dv",
                         "-X",       a_maps,
                         "-X",       a_map_wr,
                         "-X",       a_wdv_group,
                         "-X",       a_wdv_inst,
                         "-X",       a_dv_url,
                         "-X",       a_dv_tok,
                         "-X",       "dv.client_id=dwfleet",
                         "-X",       "dv.client_secret=dwfleet-local-secret",
                         "-X",       "writer.batch_linger_ms=20",
                         "-X",       "writer.stats_interval_ms=300",
                         "-X",       "topics.partitions=1",
                         NULL};
    spawn(P_WRITER_DV, "dw-writer", wdv);
    const char *wfo[] = {"--target", "fo",
                         "-X",       a_maps,
                         "-X",       a_map_wr,
                         "-X",       a_wfo_group,
                         "-X",       a_wfo_inst,
                         "-X",       a_fo_url,
                         "-X",       a_fo_tok,
                         "-X",       "fo.client_id=dwfleet",
                         "-X",       "fo.client_secret=dwfleet-local-secret",
                         "-X",       "writer.batch_linger_ms=20",
                         "-X",       "writer.stats_interval_ms=300",
                         "-X",       "topics.partitions=1",
                         NULL};
    spawn(P_WRITER_FO, "dw-writer", wfo);
}

TestSuite(pipeline, .init = start_pipeline, .fini = stop_all, .timeout = 150);

Test(pipeline, changes_flow_both_ways_and_each_is_written_once)
{
    const char *fo_row = "Currencies(CurrencyCode='EUR')";
    const char *dv_row = "transactioncurrencies(isocurrencycode='EUR')";
    char fo_etag[128], dv_etag[128];

    /* 1. created in F&O -> Dataverse */
    req(fo, "POST", "Currencies", "{\"CurrencyCode\":\"EUR\",\"Name\":\"Euro\",\"Symbol\":\"E\"}");
    wait_value(fo, fo_row, "Name", "Euro", 5, fo_etag, sizeof(fo_etag));
    wait_value(dv, dv_row, "currencyname", "Euro", 60, dv_etag, sizeof(dv_etag));
    /* the Dataverse write comes back through change tracking: the F&O writer drops it */
    for (int i = 0; i < 600 && counter(P_WRITER_FO, "echo_dropped") < 1; i++) {
        keep_running();
        usleep(100000);
    }
    cr_assert_geq(counter(P_WRITER_FO, "echo_dropped"), 1, "the F&O writer saw no echo (see %s)",
                  logs[P_WRITER_FO]);
    sleep(2); /* anything still travelling would land now */
    expect_etag(fo, fo_row, fo_etag, "F&O (echo of the Dataverse write)");
    expect_etag(dv, dv_row, dv_etag, "Dataverse (written once)");

    /* 2. edited in Dataverse -> F&O */
    req(dv, "PATCH", dv_row, "{\"currencyname\":\"Euro (EU)\"}");
    wait_value(dv, dv_row, "currencyname", "Euro (EU)", 5, dv_etag, sizeof(dv_etag));
    wait_value(fo, fo_row, "Name", "Euro (EU)", 60, fo_etag, sizeof(fo_etag));
    /* the F&O write comes back as a data event: the Dataverse writer drops it */
    for (int i = 0; i < 600 && counter(P_WRITER_DV, "echo_dropped") < 1; i++) {
        keep_running();
        usleep(100000);
    }
    cr_assert_geq(counter(P_WRITER_DV, "echo_dropped"), 1,
                  "the Dataverse writer saw no echo (see %s)", logs[P_WRITER_DV]);
    sleep(2);
    expect_etag(dv, dv_row, dv_etag, "Dataverse (echo of the F&O write)");
    expect_etag(fo, fo_row, fo_etag, "F&O (written once)");
    keep_running();
    /* one write per side in all: the create to Dataverse, the edit to F&O */
    sleep(1); /* one more counters line */
    cr_assert_eq(counter(P_WRITER_DV, "written"), 1, "see %s", logs[P_WRITER_DV]);
    cr_assert_eq(counter(P_WRITER_FO, "written"), 1, "see %s", logs[P_WRITER_FO]);
}
