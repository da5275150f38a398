/*
 * Integration test of the Dataverse emulator's change tracking under concurrent writers
 * (DW_PG_DSN): UpsertMultiple requests run three at a time (curl multi, the way dw-writer sends
 * them), some of them racing on the same records, with single deletes in between, while a reader
 * follows delta links. The emulator's writers take no lock (docs/emulators.md, "Change tracking
 * with concurrent writers"); the sequence of deltas must still return every committed change
 * exactly once: no record version twice, the final version of every record, one tombstone per
 * deleted record and nothing the writers did not do.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_testemu.h"

#define INFLIGHT 3
#define BATCH    250
#define RECORDS  6000 /* pass 1 creates them; pass 2 updates the second half again */
#define DELETES  50   /* records 0..49, deleted one by one once the first batch is acknowledged */

typedef dw_testemu_resp_t resp_t;

static dw_testemu_t *emu;

static void start_emulator(void)
{
    const char *args[] = {"--limits", "off", NULL};
    char errstr[1024];
    emu = dw_testemu_start("dv", "emu_dvct", args, NULL, errstr, sizeof(errstr));
    cr_assert(emu, "%s", errstr);
}

static void stop_emulator(void)
{
    if (emu)
        cr_expect_eq(dw_testemu_stop(emu), 0, "dw-emulator did not exit cleanly");
    dw_testemu_destroy(emu);
    emu = NULL;
}

TestSuite(emulator_dv_changes, .init = start_emulator, .fini = stop_emulator, .timeout = 120);

/* What the deltas returned: per record id, the etags in the order seen; per id, tombstones. A
 * record created and deleted between two deltas may come back as a tombstone only (the net
 * change), as with Dataverse. */
typedef struct {
    json_t *etags;   /* id -> [etag, ...] */
    json_t *deleted; /* id -> count */
    int rounds;
} seen_t;

/* Follow link (a delta link or the first track-changes request) through its pages into s;
 * the new delta link is written to link. */
static void delta_round(seen_t *s, char *link, size_t size)
{
    const char *pref[] = {"Prefer: odata.track-changes,odata.maxpagesize=1000", NULL};
    char next[4096];
    snprintf(next, sizeof(next), "%s", link);
    for (int guard = 0; guard < 1000; guard++) {
        resp_t r;
        dw_testemu_request(emu, &r, "GET", next, NULL, pref);
        cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(r.json, "value"), i, v)
        {
            const char *id = json_string_value(json_object_get(v, "id"));
            if (id && json_is_string(json_object_get(v, "reason"))) {
                json_t *n = json_object_get(s->deleted, id);
                json_object_set_new(s->deleted, id, json_integer(json_integer_value(n) + 1));
                continue;
            }
            id = json_string_value(json_object_get(v, "accountid"));
            const char *etag = json_string_value(json_object_get(v, "@odata.etag"));
            cr_assert(id && etag, "a change without accountid or etag");
            json_t *list = json_object_get(s->etags, id);
            if (!list) {
                list = json_array();
                json_object_set_new(s->etags, id, list);
            }
            json_array_append_new(list, json_string(etag));
        }
        const char *nl = json_string_value(json_object_get(r.json, "@odata.nextLink"));
        const char *dl = json_string_value(json_object_get(r.json, "@odata.deltaLink"));
        cr_assert(nl || dl, "a change-tracking page without a link: %s", r.body);
        if (dl)
            snprintf(link, size, "%s", dl);
        else
            snprintf(next, sizeof(next), "%s", nl);
        dw_testemu_resp_free(&r);
        if (dl)
            break;
    }
    s->rounds++;
}

typedef struct {
    CURL *c;
    resp_t r;
    char *body;
    int batch;
} slot_t;

/* The body of batch b: pass 1 (b < RECORDS / BATCH) creates records, pass 2 renames the second
 * half from its end backwards, so the first pass-2 batches name the records of the last pass-1
 * batches, which are still in flight: two requests race to create the same keys (the loser runs
 * again and updates). */
static char *batch_body(int b, const char *company)
{
    int npass1 = RECORDS / BATCH, first, pass;
    if (b < npass1) {
        first = b * BATCH;
        pass = 1;
    } else {
        first = RECORDS - (b - npass1 + 1) * BATCH;
        pass = 2;
    }
    size_t cap = (size_t)BATCH * 300;
    char *body = malloc(cap);
    cr_assert(body);
    size_t o = (size_t)snprintf(body, cap, "{\"Targets\":[");
    for (int i = 0; i < BATCH; i++)
        o += (size_t)snprintf(
            body + o, cap - o,
            "%s{\"@odata.type\":\"Microsoft.Dynamics.CRM.account\",\"@odata.id\":\"accounts("
            "accountnumber='W%05d',msdyn_company=%s)\",\"name\":\"W%05d pass %d\"}",
            i ? "," : "", first + i, company, first + i, pass);
    snprintf(body + o, cap - o, "]}");
    return body;
}

/* Delete record i (by its alternate key) and remember its id in ids. */
static void delete_record(int i, const char *company, json_t *ids)
{
    resp_t r;
    char path[256];
    snprintf(path, sizeof(path), "accounts(accountnumber='W%05d',msdyn_company=%s)?$select=name", i,
             company);
    dw_testemu_request(emu, &r, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    json_object_set_new(ids, json_string_value(json_object_get(r.json, "accountid")), json_true());
    dw_testemu_resp_free(&r);
    snprintf(path, sizeof(path), "accounts(accountnumber='W%05d',msdyn_company=%s)", i, company);
    dw_testemu_request(emu, &r, "DELETE", path, NULL, NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    dw_testemu_resp_free(&r);
}

Test(emulator_dv_changes, concurrent_writers_and_deltas_see_every_change_once)
{
    resp_t r;
    char company[40], link[4096], url[1024], auth[256];
    const char *h[] = {"Prefer: return=representation", NULL};
    dw_testemu_request(emu, &r, "POST", "cdm_companies",
                       "{\"cdm_companycode\":\"CT\",\"cdm_name\":\"ct\"}", h);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    snprintf(company, sizeof(company), "%s",
             json_string_value(json_object_get(r.json, "cdm_companyid")));
    dw_testemu_resp_free(&r);

    seen_t s = {json_object(), json_object(), 0};
    snprintf(link, sizeof(link), "accounts?$select=accountnumber,name");
    delta_round(&s, link, sizeof(link));
    cr_assert_eq(json_object_size(s.etags), 0);

    snprintf(url, sizeof(url), "%saccounts/Microsoft.Dynamics.CRM.UpsertMultiple",
             dw_testemu_base(emu));
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", dw_testemu_token(emu));
    struct curl_slist *hl = NULL;
    hl = curl_slist_append(hl, auth);
    hl = curl_slist_append(hl, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Expect:");
    CURLM *m = curl_multi_init();
    slot_t slots[INFLIGHT];
    memset(slots, 0, sizeof(slots));
    int nbatches = RECORDS / BATCH + (RECORDS / 2) / BATCH, next = 0, acked = 0, deleted = 0;
    json_t *deleted_ids = json_object();
    bool first_acked = false;
    while (acked < nbatches) {
        for (int k = 0; k < INFLIGHT; k++) {
            if (slots[k].c || next >= nbatches)
                continue;
            slot_t *sl = &slots[k];
            sl->c = curl_easy_init();
            sl->batch = next++;
            sl->body = batch_body(sl->batch, company);
            curl_easy_setopt(sl->c, CURLOPT_URL, url);
            curl_easy_setopt(sl->c, CURLOPT_HTTPHEADER, hl);
            curl_easy_setopt(sl->c, CURLOPT_POSTFIELDS, sl->body);
            curl_easy_setopt(sl->c, CURLOPT_TIMEOUT, 60L);
            dw_testemu_resp_capture(sl->c, &sl->r);
            curl_multi_add_handle(m, sl->c);
        }
        int running = 0;
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 20, NULL);
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *done = msg->easy_handle; /* msg belongs to the handle: gone with it */
            CURLcode result = msg->data.result;
            for (int k = 0; k < INFLIGHT; k++) {
                slot_t *sl = &slots[k];
                if (sl->c != done)
                    continue;
                curl_easy_getinfo(sl->c, CURLINFO_RESPONSE_CODE, &sl->r.status);
                cr_assert_eq(result, CURLE_OK, "batch %d: %s", sl->batch,
                             curl_easy_strerror(result));
                cr_assert_eq(sl->r.status, 204, "batch %d: %ld %s", sl->batch, sl->r.status,
                             sl->r.body ? sl->r.body : "");
                first_acked = first_acked || sl->batch == 0;
                curl_multi_remove_handle(m, sl->c);
                curl_easy_cleanup(sl->c);
                free(sl->body);
                dw_testemu_resp_free(&sl->r);
                memset(sl, 0, sizeof(*sl));
                acked++;
                break;
            }
        }
        /* a delete between the bulk writes, while they are in flight */
        if (first_acked && deleted < DELETES) {
            delete_record(deleted, company, deleted_ids);
            deleted++;
        }
        delta_round(&s, link, sizeof(link));
    }
    curl_multi_cleanup(m);
    curl_slist_free_all(hl);
    for (; deleted < DELETES; deleted++)
        delete_record(deleted, company, deleted_ids);
    /* everything is acknowledged: one more delta has all of it */
    delta_round(&s, link, sizeof(link));
    cr_assert_gt(s.rounds, 3, "the deltas ran during the writes");

    /* the current state, page by page */
    json_t *current = json_object(); /* id -> etag */
    const char *pref[] = {"Prefer: odata.maxpagesize=5000", NULL};
    char next_link[4096];
    snprintf(next_link, sizeof(next_link), "accounts?$select=accountnumber");
    while (next_link[0]) {
        dw_testemu_request(emu, &r, "GET", next_link, NULL, pref);
        cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(r.json, "value"), i, v)
            json_object_set(current, json_string_value(json_object_get(v, "accountid")),
                            json_object_get(v, "@odata.etag"));
        const char *nl = json_string_value(json_object_get(r.json, "@odata.nextLink"));
        snprintf(next_link, sizeof(next_link), "%s", nl ? nl : "");
        dw_testemu_resp_free(&r);
    }
    cr_assert_eq(json_object_size(current), RECORDS - DELETES);

    /* every live record: its final version seen last, no version seen twice */
    const char *id;
    json_t *etag;
    json_object_foreach(current, id, etag)
    {
        json_t *list = json_object_get(s.etags, id);
        cr_assert(list, "record %s: never returned by a delta", id);
        size_t n = json_array_size(list);
        cr_assert_str_eq(json_string_value(json_array_get(list, n - 1)), json_string_value(etag),
                         "record %s: the last delta did not return its current version", id);
        for (size_t a = 0; a < n; a++)
            for (size_t b = a + 1; b < n; b++)
                cr_assert(!json_equal(json_array_get(list, a), json_array_get(list, b)),
                          "record %s: version %s returned twice", id,
                          json_string_value(json_array_get(list, a)));
        cr_assert_null(json_object_get(s.deleted, id), "record %s: live but returned as deleted",
                       id);
    }
    /* every deleted record: exactly one tombstone; no tombstone of anything else */
    cr_assert_eq(json_object_size(deleted_ids), DELETES);
    cr_assert_eq(json_object_size(s.deleted), DELETES, "%zu tombstones",
                 json_object_size(s.deleted));
    json_t *n;
    json_object_foreach(s.deleted, id, n)
    {
        cr_assert(json_object_get(deleted_ids, id), "a tombstone of a record not deleted: %s", id);
        cr_assert_eq(json_integer_value(n), 1, "record %s: %lld tombstones", id,
                     (long long)json_integer_value(n));
    }
    /* nothing else was returned */
    json_object_foreach(s.etags, id, n)
        cr_assert(json_object_get(current, id) || json_object_get(deleted_ids, id),
                  "a delta returned a record nobody wrote: %s", id);
    json_decref(deleted_ids);
    json_decref(current);
    json_decref(s.etags);
    json_decref(s.deleted);
}
