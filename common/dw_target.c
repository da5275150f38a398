/*
 * dw_target: the write connectors of Dataverse and F&O (see dw_target.h). One call turns its
 * records into jobs (an UpsertMultiple chunk, a $batch), runs them through one libcurl multi with
 * at most `concurrency` in flight, and turns every answer into per-record outcomes, queueing the
 * follow-ups a response asks for (the $batch fallback of a failed UpsertMultiple, F&O's POST <->
 * PATCH retries, the parts an F&O batch left unanswered, a retry after a 401).
 */
#include "dw_target.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dw_buf.h"
#include "dw_json.h"
#include "dw_log.h"
#include "dw_mapper.h"
#include "dw_signal.h"
#include "dw_target_int.h"
#include "dw_time.h"

#define TGT_FAC            "target"
#define TGT_BATCH_MAX      1000 /* parts of one $batch */
#define TGT_MAX_STALLS     3    /* $batch answers in a row that answered none of a job's records */
#define TGT_MAX_FLIPS      2    /* F&O POST <-> PATCH switches of one record */
#define TGT_BIND_CACHE_MAX 10000
#define TGT_TOKEN_MAX      8192

enum { M_POST, M_PATCH, M_DELETE };
enum { J_DV_UM, J_DV_BATCH, J_FO_BATCH };

typedef struct {
    int method;
    int flips;  /* POST <-> PATCH switches after the record's own answer */
    int hflips; /* switches because another record of its batch was answered so */
    int stalls;
    bool done;
    bool um_failed; /* already tried by UpsertMultiple */
    char *path;     /* "<set>(<key>)", URL form */
    char *oid;      /* "<set>(<key>)", @odata.id form (Dataverse) */
    json_t *guids;  /* resolved lookup key parts (Dataverse), column -> guid */
    json_t *binds;  /* Dataverse: "<col>@odata.bind" -> the reference with its company part
                       as the company row's guid (see dv_company_binds) */
} trec_t;

struct wctx_s;

typedef struct tjob_s {
    struct wctx_s *w; /* the call the job belongs to */
    int kind;
    size_t *idx;
    size_t n;
    bool auth_retried;
    char corr[37];
} tjob_t;

typedef struct {
    tjob_t **v;
    size_t n, cap, head;
} jobq_t;

struct dw_target_s {
    dw_system_t *sys;
    dw_target_opts_t opts;
    bool fo;
    int concurrency;
    int inflight;            /* requests in flight, all calls together */
    struct wctx_s **calls;   /* the calls started and not yet ended, oldest first */
    size_t ncalls, capcalls;
    dw_http_multi_t *multi;
    dw_http_req_t **pool; /* idle requests (connections kept) */
    size_t npool, cappool;
    json_t *bind_cache; /* Dataverse: bind reference -> row guid */
    json_t *no_um;      /* Dataverse: entity sets that do not take UpsertMultiple */
    char token[TGT_TOKEN_MAX];
    dw_target_stats_t stats;
    int64_t not_before_ms; /* monotonic: no request before it (the last Retry-After answered) */
    long held_status;      /* the status that answered it (429, 503) */
};

/* A Retry-After the target answered (429, 503): no request of this target goes out before it has
 * elapsed, whichever call it belongs to. */
static void note_retry_after(dw_target_t *t, long status, long retry_after_ms)
{
    if ((status == 429 || status == 503) && retry_after_ms >= 0) {
        /* +1: the clock reads whole milliseconds, rounded down (see the writer's hold) */
        int64_t nb = dw_time_mono_ms() + retry_after_ms + 1;
        if (nb > t->not_before_ms) {
            t->not_before_ms = nb;
            t->held_status = status;
        }
    }
}

/* Milliseconds left of the last Retry-After, 0 when none. */
static long held_for_ms(const dw_target_t *t)
{
    int64_t left = t->not_before_ms - dw_time_mono_ms();
    return left > 0 ? (long)left : 0;
}

#define TGT_HELD_MSG "not sent: the target's Retry-After has not elapsed"

/* What one call (dw_target_write, or dw_target_call_start .. dw_target_call_end) works on. */
typedef struct wctx_s {
    dw_target_t *t;
    dw_wrec_t *recs;
    trec_t *st;
    size_t n;
    jobq_t q;
    int inflight;
    dw_http_req_t **run; /* the requests in flight */
    size_t nrun, caprun;
    dw_err_t fatal;
    dw_err_t rc; /* DW_ERR_INTERRUPTED once stop was asked */
    char *errstr;
    size_t errstr_size;
    char errbuf[512]; /* errstr of a call started with dw_target_call_start */
} wctx_t;

static const char *const dw_wclass_names[DW_WCLASS__COUNT] = {
    "ok", "transient", "validation", "lookup_missing", "schema_drift", "unknown",
};

const char *dw_wclass_name(dw_wclass_t cls)
{
    if ((int)cls < 0 || cls >= DW_WCLASS__COUNT)
        return "unknown";
    return dw_wclass_names[cls];
}

void dw_target_opts_init(dw_target_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->chunk_max = 1000;
    opts->concurrency = 4;
    opts->upsert_multiple = true;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static dw_target_t *target_new(dw_system_t *sys, const dw_target_opts_t *opts, bool fo,
                               char *errstr, size_t errstr_size)
{
    dw_target_t *t = calloc(1, sizeof(*t));
    if (!t) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    t->sys = sys;
    if (opts)
        t->opts = *opts;
    else
        dw_target_opts_init(&t->opts);
    if (t->opts.chunk_max == 0)
        t->opts.chunk_max = 1000;
    t->concurrency = t->opts.concurrency > 0 ? t->opts.concurrency : 4;
    t->fo = fo;
    t->bind_cache = json_object();
    t->no_um = json_object();
    if (!t->bind_cache || !t->no_um) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        dw_target_destroy(t);
        return NULL;
    }
    if (!(t->multi = dw_http_multi_new(0, errstr, errstr_size))) {
        dw_target_destroy(t);
        return NULL;
    }
    return t;
}

dw_target_t *dw_target_dv_new(dw_system_t *sys, const dw_target_opts_t *opts, char *errstr,
                              size_t errstr_size)
{
    return target_new(sys, opts, false, errstr, errstr_size);
}

dw_target_t *dw_target_fo_new(dw_system_t *sys, const dw_target_opts_t *opts, char *errstr,
                              size_t errstr_size)
{
    return target_new(sys, opts, true, errstr, errstr_size);
}

void dw_target_destroy(dw_target_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->npool; i++)
        dw_http_req_destroy(t->pool[i]);
    free(t->pool);
    free(t->calls);
    dw_http_multi_destroy(t->multi);
    json_decref(t->bind_cache);
    json_decref(t->no_um);
    memset(t->token, 0, sizeof(t->token));
    free(t);
}

void dw_target_set_concurrency(dw_target_t *t, int concurrency)
{
    t->concurrency = concurrency < 1 ? 1 : concurrency;
}

void dw_target_stats(const dw_target_t *t, dw_target_stats_t *out)
{
    *out = t->stats;
}

/* ---- helpers --------------------------------------------------------------------------------- */

static dw_http_req_t *req_get(dw_target_t *t)
{
    if (t->npool)
        return t->pool[--t->npool];
    char errstr[256];
    dw_http_req_t *req = dw_http_req_new(dw_system_http_opts(t->sys), errstr, sizeof(errstr));
    if (!req)
        DW_ERROR(TGT_FAC, "could not create an HTTP request: %s", errstr);
    return req;
}

static void req_put(dw_target_t *t, dw_http_req_t *req)
{
    if (t->npool == t->cappool) {
        size_t nc = t->cappool ? t->cappool * 2 : 8;
        dw_http_req_t **np = realloc(t->pool, nc * sizeof(*np));
        if (!np) {
            dw_http_req_destroy(req);
            return;
        }
        t->pool = np;
        t->cappool = nc;
    }
    t->pool[t->npool++] = req;
}

static void set_outcome(wctx_t *w, size_t i, dw_wclass_t cls, long status, const char *code,
                        const char *message, long retry_after_ms)
{
    dw_wrec_t *r = &w->recs[i];
    if (w->st[i].done)
        return;
    w->st[i].done = true;
    r->cls = cls;
    r->status = status;
    snprintf(r->code, sizeof(r->code), "%s", code ? code : "");
    snprintf(r->message, sizeof(r->message), "%s", cls == DW_WCLASS_OK || !message ? "" : message);
    r->retry_after_ms = cls == DW_WCLASS_TRANSIENT ? retry_after_ms : -1;
    if (cls == DW_WCLASS_OK)
        w->t->stats.records_ok++;
    else
        w->t->stats.records_failed++;
}

static void job_free(tjob_t *j)
{
    if (j) {
        free(j->idx);
        free(j);
    }
}

static tjob_t *job_new(int kind, size_t cap)
{
    tjob_t *j = calloc(1, sizeof(*j));
    if (j && !(j->idx = malloc((cap ? cap : 1) * sizeof(size_t)))) {
        free(j);
        j = NULL;
    }
    if (j) {
        j->kind = kind;
        dw_http_uuid4(j->corr);
    }
    return j;
}

static bool job_push(wctx_t *w, tjob_t *j)
{
    jobq_t *q = &w->q;
    j->w = w;
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 16;
        tjob_t **nv = realloc(q->v, nc * sizeof(*nv));
        if (!nv) {
            job_free(j);
            w->fatal = DW_ERR_NOMEM;
            return false;
        }
        q->v = nv;
        q->cap = nc;
    }
    q->v[q->n++] = j;
    return true;
}

/* Queue the records idx[0..n) as $batch jobs of kind (at most chunk_max / 1000 per job). */
static void queue_batches(wctx_t *w, int kind, const size_t *idx, size_t n)
{
    size_t chunk = w->t->opts.chunk_max < TGT_BATCH_MAX ? w->t->opts.chunk_max : TGT_BATCH_MAX;
    for (size_t off = 0; off < n; off += chunk) {
        size_t m = n - off < chunk ? n - off : chunk;
        tjob_t *j = job_new(kind, m);
        if (!j) {
            w->fatal = DW_ERR_NOMEM;
            return;
        }
        memcpy(j->idx, idx + off, m * sizeof(size_t));
        j->n = m;
        if (!job_push(w, j))
            return;
    }
}

/* ---- the fields of a record ------------------------------------------------------------------
 * A record's payload is a jansson object (fields) or the text of one (fields_text); fit_t reads
 * the members of either. */

typedef struct {
    const dw_wrec_t *r;
    void *jit;       /* fields: jansson iterator */
    dw_tobj_t raw;   /* fields_text */
    const char *key; /* the member's name (fields_text: "" when longer than kbuf, never matched) */
    char kbuf[512];
    const json_t *v;         /* fields: the value */
    const char *kraw, *vraw; /* fields_text: the name and value as written */
    size_t klen, vlen;
} fit_t;

static void fit_init(fit_t *f, const dw_wrec_t *r)
{
    f->r = r;
    f->jit = r->fields ? json_object_iter((json_t *)r->fields) : NULL;
    if (!r->fields && r->fields_text)
        dw_tobj_init(&f->raw, r->fields_text, r->fields_len);
    else
        f->raw.p = f->raw.end = NULL;
}

static bool fit_next(fit_t *f)
{
    if (f->r->fields) {
        if (!f->jit)
            return false;
        f->key = json_object_iter_key(f->jit);
        f->v = json_object_iter_value(f->jit);
        f->jit = json_object_iter_next((json_t *)f->r->fields, f->jit);
        return true;
    }
    bool kesc;
    if (!f->raw.p || !dw_tobj_next(&f->raw, &f->kraw, &f->klen, &kesc, &f->vraw, &f->vlen))
        return false;
    f->key = f->kbuf;
    if (kesc) {
        if (!dw_json_unescape(f->kraw, f->klen, f->kbuf, sizeof(f->kbuf), NULL))
            f->kbuf[0] = '\0';
    } else if (f->klen < sizeof(f->kbuf)) {
        memcpy(f->kbuf, f->kraw, f->klen);
        f->kbuf[f->klen] = '\0';
    } else {
        f->kbuf[0] = '\0';
    }
    return true;
}

/* The member's value when it is a string (buf holds it for fields_text), else NULL. */
static const char *fit_str(const fit_t *f, char *buf, size_t size)
{
    if (f->r->fields)
        return json_string_value(f->v);
    if (f->vlen < 2 || f->vraw[0] != '"' || !dw_json_unescape(f->vraw + 1, f->vlen - 2, buf, size, NULL))
        return NULL;
    return buf;
}

/* The string value of the record's field name (buf holds it for fields_text), else NULL. */
static const char *field_str(const dw_wrec_t *r, const char *name, char *buf, size_t size)
{
    if (r->fields)
        return json_string_value(json_object_get(r->fields, name));
    fit_t f;
    fit_init(&f, r);
    while (fit_next(&f))
        if (strcmp(f.key, name) == 0)
            return fit_str(&f, buf, size);
    return NULL;
}

static bool has_field(const dw_wrec_t *r, const char *name)
{
    if (r->fields)
        return json_object_get(r->fields, name) != NULL;
    fit_t f;
    fit_init(&f, r);
    while (fit_next(&f))
        if (strcmp(f.key, name) == 0)
            return true;
    return false;
}

/* The "<col>@odata.bind" members of a record, read in one pass over its fields (the key lookups
 * and the company rewrite both want them). */
#define TGT_BINDS_MAX 16
typedef struct {
    struct {
        char key[256];
        const json_t *v;  /* fields */
        const char *vraw; /* fields_text */
        size_t vlen;
    } b[TGT_BINDS_MAX];
    size_t n;
    bool overflow; /* more than TGT_BINDS_MAX: look them up in the fields instead */
} tbinds_t;

static void binds_collect(const dw_wrec_t *r, tbinds_t *bs)
{
    fit_t f;
    bs->n = 0;
    bs->overflow = false;
    fit_init(&f, r);
    while (fit_next(&f)) {
        size_t kl = strlen(f.key);
        if (kl < 12 || strcmp(f.key + kl - 11, "@odata.bind") != 0)
            continue;
        if (bs->n == TGT_BINDS_MAX || kl >= sizeof(bs->b[0].key)) {
            bs->overflow = true;
            continue;
        }
        memcpy(bs->b[bs->n].key, f.key, kl + 1);
        bs->b[bs->n].v = r->fields ? f.v : NULL;
        bs->b[bs->n].vraw = f.vraw;
        bs->b[bs->n].vlen = f.vlen;
        bs->n++;
    }
}

/* Bind k of bs as a string (buf holds it for fields_text), else NULL. */
static const char *bind_str(const dw_wrec_t *r, const tbinds_t *bs, size_t k, char *buf,
                            size_t size)
{
    if (r->fields)
        return json_string_value(bs->b[k].v);
    if (bs->b[k].vlen < 2 || bs->b[k].vraw[0] != '"' ||
        !dw_json_unescape(bs->b[k].vraw + 1, bs->b[k].vlen - 2, buf, size, NULL))
        return NULL;
    return buf;
}

/* The string value of the bind member name, else NULL. */
static const char *bind_find(const dw_wrec_t *r, const tbinds_t *bs, const char *name, char *buf,
                             size_t size)
{
    for (size_t k = 0; k < bs->n; k++)
        if (strcmp(bs->b[k].key, name) == 0)
            return bind_str(r, bs, k, buf, size);
    return bs->overflow ? field_str(r, name, buf, size) : NULL;
}

/* A jansson value as JSON text (as dw_mapper_dumps writes it: reals in their shortest form). */
static void put_jvalue(dw_buf_t *b, const json_t *v)
{
    if (json_is_string(v)) {
        dw_buf_json_str(b, json_string_value(v), json_string_length(v));
    } else if (json_is_integer(v)) {
        dw_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_true(v)) {
        DW_BUF_LIT(b, "true");
    } else if (json_is_false(v)) {
        DW_BUF_LIT(b, "false");
    } else if (json_is_null(v)) {
        DW_BUF_LIT(b, "null");
    } else {
        char *s = dw_mapper_dumps(v, 0, NULL); /* a real as written, not in 17 digits */
        if (!s) {
            b->fail = true;
            return;
        }
        dw_buf_put(b, s, strlen(s));
        free(s);
    }
}

/* The JSON body of an upsert into b: the fields, plus the key columns a create needs (add_keys;
 * lookup key parts are not plain columns and stay out), minus the key columns (drop_keys: an F&O
 * PATCH, where the key is in the URL and cannot change); @odata.type and @odata.id first when
 * given, a company bind rewritten (st->binds). The values are written as the fields hold them:
 * the text of fields_text as it is, no tree built. */
static void put_upsert(dw_buf_t *b, const dw_wrec_t *r, const trec_t *st, bool add_keys,
                       bool drop_keys, const char *odata_type, const char *oid)
{
    bool first = true;
    DW_BUF_LIT(b, "{");
    if (odata_type) {
        DW_BUF_LIT(b, "\"@odata.type\":");
        dw_buf_json_str(b, odata_type, strlen(odata_type));
        first = false;
        if (oid) {
            DW_BUF_LIT(b, ",\"@odata.id\":");
            dw_buf_json_str(b, oid, strlen(oid));
        }
    }
    /* the key columns the fields hold, noted on the way (a create adds the others) */
    const char *kn[16];
    size_t nkn = 0;
    unsigned seen = 0;
    bool want_keys = add_keys && !drop_keys && json_object_size(r->key) <= 16;
    if (want_keys) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)r->key, k, v)
        {
            kn[nkn++] = k;
        }
    }
    fit_t f;
    fit_init(&f, r);
    while (fit_next(&f)) {
        if (drop_keys && f.key[0] && json_object_get(r->key, f.key))
            continue;
        for (size_t q = 0; q < nkn; q++)
            if (strcmp(kn[q], f.key) == 0)
                seen |= 1u << q;
        const json_t *bind = st->binds && f.key[0] ? json_object_get(st->binds, f.key) : NULL;
        if (!first)
            DW_BUF_LIT(b, ",");
        first = false;
        if (r->fields) {
            dw_buf_json_str(b, f.key, strlen(f.key));
        } else {
            DW_BUF_LIT(b, "\"");
            dw_buf_put(b, f.kraw, f.klen);
            DW_BUF_LIT(b, "\"");
        }
        DW_BUF_LIT(b, ":");
        if (bind)
            put_jvalue(b, bind);
        else if (r->fields)
            put_jvalue(b, f.v);
        else
            dw_buf_put(b, f.vraw, f.vlen);
    }
    if (add_keys && !drop_keys) {
        const char *k;
        json_t *v;
        size_t q = 0;
        json_object_foreach((json_t *)r->key, k, v)
        {
            bool held = want_keys ? (seen >> q) & 1u : has_field(r, k);
            q++;
            if (held || json_object_get(st->guids, k))
                continue;
            if (!first)
                DW_BUF_LIT(b, ",");
            first = false;
            dw_buf_json_str(b, k, strlen(k));
            DW_BUF_LIT(b, ":");
            put_jvalue(b, v);
        }
    }
    DW_BUF_LIT(b, "}");
}

/* put_upsert as a new string. */
static char *upsert_json(const dw_wrec_t *r, const trec_t *st, bool add_keys, bool drop_keys,
                         const char *odata_type, const char *oid)
{
    dw_buf_t b = {0};
    if (r->fields && !json_is_object(r->fields))
        return NULL;
    put_upsert(&b, r, st, add_keys, drop_keys, odata_type, oid);
    if (b.fail) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- Dataverse lookups in keys -----------------------------------------------------------------
 */

/* GET ref (a bind reference) and return the referenced row's guid into out; status as answered. */
static dw_err_t resolve_bind(dw_target_t *t, const char *ref, char out[37], long *status,
                             char *code, size_t code_size, char *msg, size_t msg_size,
                             long *retry_after)
{
    json_t *c = json_object_get(t->bind_cache, ref);
    *status = 0;
    *retry_after = -1;
    if (c) {
        snprintf(out, 37, "%s", json_string_value(c));
        *status = 200;
        return DW_OK;
    }
    long held = held_for_ms(t);
    if (held > 0) {
        *status = t->held_status;
        *retry_after = held;
        t->stats.held++;
        snprintf(code, code_size, "%s", "");
        snprintf(msg, msg_size, "%s", TGT_HELD_MSG);
        return DW_OK;
    }
    char url[2048], set[256], errstr[256];
    const char *base = dw_system_base(t->sys);
    const char *rel = ref;
    if (strncmp(ref, "http://", 7) == 0 || strncmp(ref, "https://", 8) == 0) {
        snprintf(url, sizeof(url), "%s", ref);
        rel = strrchr(ref, '/') ? strrchr(ref, '/') + 1 : ref;
    } else {
        while (*rel == '/')
            rel++;
        snprintf(url, sizeof(url), "%s%s", base, rel);
    }
    size_t sl = strcspn(rel, "(");
    snprintf(set, sizeof(set), "%.*s", (int)(sl < sizeof(set) ? sl : sizeof(set) - 1), rel);
    dw_http_req_t *req = req_get(t);
    if (!req)
        return DW_ERR_NOMEM;
    dw_err_t err = dw_http_req_setup(req, "GET", url, NULL, 0);
    for (int attempt = 0; attempt < 2 && !err; attempt++) {
        err = dw_auth_token(dw_system_auth(t->sys), t->token, sizeof(t->token), errstr,
                            sizeof(errstr));
        if (err)
            break;
        err = dw_http_req_setup(req, "GET", url, NULL, 0);
        if (!err)
            err = dw_http_req_odata_headers(req);
        if (!err)
            err = dw_http_req_bearer(req, t->token);
        if (err)
            break;
        t->stats.requests++;
        dw_err_t perr = dw_http_req_perform(req, errstr, sizeof(errstr));
        *status = perr ? 0 : dw_http_req_status(req);
        DW_DEBUG(TGT_FAC, "GET %s (lookup key) status=%ld", set, *status);
        if (*status == 401 && attempt == 0) {
            dw_auth_invalidate(dw_system_auth(t->sys));
            continue;
        }
        break;
    }
    if (err) {
        snprintf(msg, msg_size, "%s", errstr);
        req_put(t, req);
        return err;
    }
    size_t len = 0;
    const char *body = dw_http_req_body(req, &len);
    if (*status == 429)
        t->stats.throttled++;
    *retry_after = dw_http_req_retry_after_ms(req);
    note_retry_after(t, *status, *retry_after);
    if (*status == 200) {
        json_t *row = json_loadb(body, len, 0, NULL);
        const char *g = dw_target_row_guid(row, set);
        if (g) {
            snprintf(out, 37, "%s", g);
            if (json_object_size(t->bind_cache) >= TGT_BIND_CACHE_MAX)
                json_object_clear(t->bind_cache);
            json_object_set_new(t->bind_cache, ref, json_string(g));
        } else {
            *status = 0;
            snprintf(msg, msg_size, "could not find the row id of %s", ref);
        }
        json_decref(row);
    } else if (*status) {
        dw_target_classify(false, *status, body, len, code, code_size, msg, msg_size);
    } else {
        snprintf(msg, msg_size, "%s", dw_http_req_errbuf(req));
    }
    req_put(t, req);
    return DW_OK;
}

/* The company column of company-striped Dataverse tables and the table it refers to (the
 * convention of dwfleet's maps, docs/maps.md "Lookups"). */
#define TGT_COMPANY_PART "msdyn_company='"
#define TGT_COMPANY_REF  "/cdm_companies(cdm_companycode='%.*s')"

/* The end of the quoted OData literal starting after its opening quote at s (quotes inside are
 * doubled): the closing quote, or NULL. */
static const char *literal_end(const char *s)
{
    for (; *s; s++)
        if (*s == '\'') {
            if (s[1] != '\'')
                return s;
            s++;
        }
    return NULL;
}

/* A reference in a "<col>@odata.bind" of record i whose key names the company by its code
 * (".../msdyn_customergroups(msdyn_groupid='10',msdyn_company='usmf')", as dw_mapper_bind
 * writes it) is rewritten with the company row's guid (msdyn_company=<guid>), which is how the
 * Web API addresses an alternate key that includes a lookup column. The guid comes from a
 * cached read of cdm_companies by cdm_companycode. false when the record got its outcome. */
static bool dv_company_binds(wctx_t *w, size_t i, const tbinds_t *bs)
{
    dw_wrec_t *r = &w->recs[i];
    trec_t *st = &w->st[i];
    fit_t f;
    char vbuf[2048];
    size_t nb = bs->overflow ? SIZE_MAX : bs->n;
    if (bs->overflow)
        fit_init(&f, r);
    for (size_t bi = 0; bi < nb; bi++) {
        const char *k, *ref;
        if (bs->overflow) {
            if (!fit_next(&f))
                break;
            k = f.key;
            size_t kl = strlen(k);
            if (kl < 12 || strcmp(k + kl - 11, "@odata.bind") != 0)
                continue;
            ref = fit_str(&f, vbuf, sizeof(vbuf));
        } else {
            k = bs->b[bi].key;
            ref = bind_str(r, bs, bi, vbuf, sizeof(vbuf));
        }
        const char *p = ref ? strstr(ref, TGT_COMPANY_PART) : NULL;
        if (!p || p == ref || (p[-1] != '(' && p[-1] != ','))
            continue;
        const char *code = p + strlen(TGT_COMPANY_PART);
        const char *end = literal_end(code);
        if (!end)
            continue;
        char cref[512], g[37], code_s[32] = "", msg[512] = "";
        snprintf(cref, sizeof(cref), TGT_COMPANY_REF, (int)(end - code), code);
        long status, ra;
        dw_err_t err =
            resolve_bind(w->t, cref, g, &status, code_s, sizeof(code_s), msg, sizeof(msg), &ra);
        if (err == DW_ERR_NOMEM) {
            w->fatal = err;
            return false;
        }
        if (err || status != 200) {
            char m2[640];
            snprintf(m2, sizeof(m2), "%.100s: company of %.200s: %.300s", k, cref, msg);
            dw_wclass_t cls = err || !status ? DW_WCLASS_TRANSIENT
                              : status == 404
                                  ? DW_WCLASS_LOOKUP_MISSING
                                  : dw_target_classify(false, status, NULL, 0, NULL, 0, NULL, 0);
            set_outcome(w, i, cls, status, code_s, m2, ra);
            return false;
        }
        /* prefix + "msdyn_company=" + guid + the rest after the closing quote */
        size_t pre = (size_t)(p - ref);
        size_t len = pre + strlen("msdyn_company=") + strlen(g) + strlen(end + 1) + 1;
        char *out = malloc(len);
        if (!out) {
            w->fatal = DW_ERR_NOMEM;
            return false;
        }
        snprintf(out, len, "%.*smsdyn_company=%s%s", (int)pre, ref, g, end + 1);
        if (!st->binds)
            st->binds = json_object();
        json_object_set_new(st->binds, k, json_string(out));
        free(out);
    }
    return true;
}

/* The guids of the lookup key parts of record i: a key part with a "<col>@odata.bind" in the
 * fields and a value that is not a guid already. false when the record got its outcome. */
static bool dv_resolve_keys(wctx_t *w, size_t i, const tbinds_t *bs)
{
    dw_wrec_t *r = &w->recs[i];
    trec_t *st = &w->st[i];
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)r->key, k, v)
    {
        char bk[300], rbuf[2048];
        snprintf(bk, sizeof(bk), "%s@odata.bind", k);
        const char *ref = bind_find(r, bs, bk, rbuf, sizeof(rbuf));
        char g[37];
        if (!ref)
            continue;
        /* the key value is the guid itself, or the bind names the row by its guid */
        char tmp[64];
        snprintf(tmp, sizeof(tmp), "(%s)", json_is_string(v) ? json_string_value(v) : "");
        if (dw_target_entity_guid(tmp, g) || dw_target_entity_guid(ref, g)) {
            if (!st->guids)
                st->guids = json_object();
            json_object_set_new(st->guids, k, json_string(g));
            continue;
        }
        long status, ra;
        char code[32] = "", msg[512] = "";
        dw_err_t err =
            resolve_bind(w->t, ref, g, &status, code, sizeof(code), msg, sizeof(msg), &ra);
        if (err == DW_ERR_NOMEM) {
            w->fatal = err;
            return false;
        }
        if (err) {
            set_outcome(w, i, DW_WCLASS_TRANSIENT, 0, "", msg, -1);
            return false;
        }
        if (status == 200) {
            if (!st->guids)
                st->guids = json_object();
            json_object_set_new(st->guids, k, json_string(g));
            continue;
        }
        if (status == 404) {
            char m2[512];
            snprintf(m2, sizeof(m2), "%.150s: %.350s", ref, msg);
            set_outcome(w, i, DW_WCLASS_LOOKUP_MISSING, status, code, m2, -1);
        } else {
            dw_wclass_t cls = status ? dw_target_classify(false, status, NULL, 0, NULL, 0, NULL, 0)
                                     : DW_WCLASS_TRANSIENT;
            set_outcome(w, i,
                        status == 0 && msg[0] && strstr(msg, "row id") ? DW_WCLASS_UNKNOWN : cls,
                        status, code, msg, ra);
        }
        return false;
    }
    return true;
}

/* ---- sending -----------------------------------------------------------------------------------
 */

static const char *method_name(int m)
{
    return m == M_POST ? "POST" : m == M_PATCH ? "PATCH" : "DELETE";
}

/* Build and start job j on a request. false when the job finished without a request (its
 * records got an outcome). */
static bool job_start(wctx_t *w, tjob_t *j)
{
    dw_target_t *t = w->t;
    char errstr[512], url[2048];
    char *body = NULL;
    size_t body_len = 0;
    char ctype[160];
    const char *base = dw_system_base(t->sys);
    dw_err_t err =
        dw_auth_token(dw_system_auth(t->sys), t->token, sizeof(t->token), errstr, sizeof(errstr));
    if (err) {
        if (err == DW_ERR_CONFIG && w->fatal == DW_OK) {
            w->fatal = DW_ERR_CONFIG;
            dw_errf(DW_ERR_CONFIG, w->errstr, w->errstr_size, "could not get a token: %s", errstr);
        }
        for (size_t k = 0; k < j->n; k++)
            set_outcome(w, j->idx[k], DW_WCLASS_TRANSIENT, 0, "", errstr, -1);
        return false;
    }
    if (j->kind == J_DV_UM) {
        const dw_wrec_t *r0 = &w->recs[j->idx[0]];
        snprintf(url, sizeof(url), "%s%s/Microsoft.Dynamics.CRM.UpsertMultiple", base,
                 r0->entity_set);
        char type[300];
        snprintf(type, sizeof(type), "Microsoft.Dynamics.CRM.%s", r0->table);
        /* one buffer for the whole request, written in place (no per-record string), sized
         * once: the fields' text plus what each record adds around it */
        dw_buf_t b = {0};
        size_t est = 64;
        for (size_t k = 0; k < j->n; k++)
            est += w->recs[j->idx[k]].fields_len + 512;
        if ((b.p = malloc(est)) != NULL) {
            b.p[0] = '\0';
            b.cap = est;
        }
        DW_BUF_LIT(&b, "{\"Targets\":[");
        for (size_t k = 0; k < j->n && !b.fail; k++) {
            size_t i = j->idx[k];
            if (k)
                DW_BUF_LIT(&b, ",");
            if (w->recs[i].fields && !json_is_object(w->recs[i].fields))
                b.fail = true;
            else
                put_upsert(&b, &w->recs[i], &w->st[i], true, false, type, w->st[i].oid);
        }
        DW_BUF_LIT(&b, "]}");
        if (b.fail) {
            free(b.p);
            b.p = NULL;
        }
        body = b.p;
        body_len = b.p ? b.n : 0;
        snprintf(ctype, sizeof(ctype), "application/json; charset=utf-8; IEEE754Compatible=true");
    } else {
        bool fo = j->kind == J_FO_BATCH;
        dw_treq_t *reqs = calloc(j->n, sizeof(*reqs));
        char **bodies = calloc(j->n, sizeof(*bodies));
        char **urls = calloc(j->n, sizeof(*urls));
        bool ok = reqs && bodies && urls;
        for (size_t k = 0; k < j->n && ok; k++) {
            size_t i = j->idx[k];
            const dw_wrec_t *r = &w->recs[i];
            const trec_t *st = &w->st[i];
            int m = st->method;
            const char *path = m == M_POST ? r->entity_set : st->path;
            /* F&O answers a by-key request for a record outside the caller's default company
             * only with cross-company=true (404 otherwise); the key names the company */
            const char *q = fo && m != M_POST ? "?cross-company=true" : "";
            size_t ul = strlen(base) + strlen(path) + strlen(q) + 1;
            if (!(urls[k] = malloc(ul))) {
                ok = false;
                break;
            }
            snprintf(urls[k], ul, "%s%s%s", base, path, q);
            if (m != M_DELETE) {
                bodies[k] =
                    upsert_json(r, st, fo ? m == M_POST : false, fo && m == M_PATCH, NULL, NULL);
                ok = bodies[k] != NULL;
            }
            reqs[k].method = method_name(m);
            reqs[k].url = urls[k];
            reqs[k].body = bodies[k];
            reqs[k].correlation_id = r->correlation_id;
        }
        char bnd[64];
        snprintf(bnd, sizeof(bnd), "batch_%s", j->corr);
        if (ok)
            body = dw_target_batch_body(bnd, reqs, j->n, fo, &body_len);
        for (size_t k = 0; urls && bodies && k < j->n; k++) {
            free(urls[k]);
            free(bodies[k]);
        }
        free(urls);
        free(bodies);
        free(reqs);
        snprintf(url, sizeof(url), "%s$batch", base);
        snprintf(ctype, sizeof(ctype), "multipart/mixed; boundary=%s", bnd);
    }
    dw_http_req_t *req = body ? req_get(t) : NULL;
    if (!req) {
        free(body);
        for (size_t k = 0; k < j->n; k++)
            set_outcome(w, j->idx[k], DW_WCLASS_UNKNOWN, 0, "", "could not build the request", -1);
        return false;
    }
    err = dw_http_req_setup(req, "POST", url, body, body_len);
    free(body);
    if (!err)
        err = dw_http_req_header(req, "Accept", "application/json");
    if (!err)
        err = dw_http_req_header(req, "OData-MaxVersion", "4.0");
    if (!err)
        err = dw_http_req_header(req, "OData-Version", "4.0");
    if (!err)
        err = dw_http_req_header(req, "Content-Type", ctype);
    if (!err)
        err = dw_http_req_header(req, "Expect", NULL);
    if (!err && j->kind == J_DV_BATCH)
        err = dw_http_req_header(req, "Prefer", "odata.continue-on-error");
    if (!err)
        err = dw_http_req_bearer(req, t->token);
    if (!err)
        err = dw_http_req_correlation_id(req, j->corr);
    if (!err && w->nrun == w->caprun) {
        size_t nc = w->caprun ? w->caprun * 2 : 8;
        dw_http_req_t **nr = realloc(w->run, nc * sizeof(*nr));
        if (nr) {
            w->run = nr;
            w->caprun = nc;
        } else {
            err = DW_ERR_NOMEM;
        }
    }
    if (!err)
        err = dw_http_multi_add(t->multi, req);
    if (err) {
        req_put(t, req);
        for (size_t k = 0; k < j->n; k++)
            set_outcome(w, j->idx[k], DW_WCLASS_UNKNOWN, 0, "", dw_err2str(err), -1);
        return false;
    }
    dw_http_req_set_opaque(req, j);
    w->run[w->nrun++] = req;
    t->stats.requests++;
    w->inflight++;
    t->inflight++;
    return true;
}

/* ---- answers -----------------------------------------------------------------------------------
 */

/* Every record of j still open gets cls (from status/body when cls < 0). */
static void job_all(wctx_t *w, tjob_t *j, long status, const char *body, size_t len,
                    long retry_after, const char *fallback_msg)
{
    char code[32], msg[512];
    dw_wclass_t cls =
        dw_target_classify(w->t->fo, status, body, len, code, sizeof(code), msg, sizeof(msg));
    if (!msg[0] && fallback_msg)
        snprintf(msg, sizeof(msg), "%s", fallback_msg);
    for (size_t k = 0; k < j->n; k++)
        set_outcome(w, j->idx[k], cls, status, code, msg, retry_after);
}

/* Does an UpsertMultiple failure say the table does not take the message at all? */
static bool um_unsupported(long status, const char *code, const char *msg)
{
    return status == 404 || status == 405 || status == 501 || strcasecmp(code, "0x8006088a") == 0 ||
           strstr(msg, "not supported") || strstr(msg, "is not enabled") ||
           strstr(msg, "not implemented");
}

static void on_um(wctx_t *w, tjob_t *j, long status, const char *body, size_t len)
{
    char code[32], msg[512];
    dw_target_classify(false, status, body, len, code, sizeof(code), msg, sizeof(msg));
    if (um_unsupported(status, code, msg)) {
        const char *set = w->recs[j->idx[0]].entity_set;
        DW_INFO(TGT_FAC, "%s does not take UpsertMultiple (%ld %s): using $batch", set, status,
                code);
        json_object_set_new(w->t->no_um, set, json_true());
    }
    w->t->stats.fallbacks++;
    for (size_t k = 0; k < j->n; k++)
        w->st[j->idx[k]].um_failed = true;
    queue_batches(w, J_DV_BATCH, j->idx, j->n);
}

/* The outcome of record i from its own sub-response. *flip_to: the method a POST/PATCH was
 * switched to (-1: none). */
static void on_part(wctx_t *w, size_t i, const dw_tpart_t *p, size_t *requeue, size_t *nrq,
                    int *flip_to)
{
    trec_t *st = &w->st[i];
    dw_wrec_t *r = &w->recs[i];
    bool fo = w->t->fo;
    char code[32], msg[512];
    if (p->status >= 200 && p->status < 300) {
        char g[37];
        if (!fo && dw_target_entity_guid(p->entity_id, g))
            snprintf(r->record_id_out, sizeof(r->record_id_out), "%s", g);
        set_outcome(w, i, DW_WCLASS_OK, p->status, "", "", -1);
        return;
    }
    if (st->method == M_DELETE && (p->status == 404 || p->status == 410)) {
        set_outcome(w, i, DW_WCLASS_OK, p->status, "", "", -1);
        return;
    }
    dw_wclass_t cls = dw_target_classify(fo, p->status, p->body, p->body_len, code, sizeof(code),
                                         msg, sizeof(msg));
    if (fo && st->flips < TGT_MAX_FLIPS &&
        ((st->method == M_POST && dw_target_fo_already_exists(p->status, msg)) ||
         (st->method == M_PATCH && p->status == 404))) {
        DW_DEBUG(TGT_FAC, "%s %s answered %ld: sending it as %s", method_name(st->method),
                 r->entity_set, p->status, st->method == M_POST ? "PATCH" : "POST");
        st->method = st->method == M_POST ? M_PATCH : M_POST;
        st->flips++;
        *flip_to = st->method;
        requeue[(*nrq)++] = i;
        return;
    }
    if (p->status == 429)
        w->t->stats.throttled++;
    note_retry_after(w->t, p->status, p->retry_after_ms);
    set_outcome(w, i, cls, p->status, code, msg, p->retry_after_ms);
}

static void on_batch(wctx_t *w, tjob_t *j, dw_http_req_t *req, long status, const char *body,
                     size_t len)
{
    const char *ct = dw_http_req_resp_header(req, "Content-Type");
    dw_tpart_t *parts = NULL;
    size_t np = 0;
    if (!ct || strncasecmp(ct, "multipart/mixed", 15) != 0) {
        job_all(w, j, status, body, len, dw_http_req_retry_after_ms(req), NULL);
        return;
    }
    dw_err_t perr = dw_target_multipart_parse(ct, body, len, &parts, &np);
    if (perr == DW_ERR_NOMEM) {
        w->fatal = DW_ERR_NOMEM;
        dw_target_parts_free(parts, np);
        return;
    }
    if (perr)
        DW_WARN(TGT_FAC, "$batch %s: malformed response (%zu parts read)", j->corr, np);
    size_t *requeue = malloc((j->n ? j->n : 1) * sizeof(size_t)), nrq = 0, nanswered = 0;
    int flip_to = -1;
    bool *answered = calloc(j->n ? j->n : 1, sizeof(bool));
    if (!requeue || !answered) {
        free(requeue);
        free(answered);
        dw_target_parts_free(parts, np);
        w->fatal = DW_ERR_NOMEM;
        return;
    }
    for (size_t p = 0; p < np; p++) {
        size_t k = SIZE_MAX;
        if (parts[p].content_id[0]) {
            char *end = NULL;
            unsigned long cid = strtoul(parts[p].content_id, &end, 10);
            if (end && !*end && cid >= 1 && cid <= j->n)
                k = cid - 1;
        } else if (j->kind == J_DV_BATCH && np == j->n) {
            k = p; /* continue-on-error: one answer per request, in order */
        }
        if (k == SIZE_MAX || answered[k])
            continue;
        answered[k] = true;
        nanswered++;
        on_part(w, j->idx[k], &parts[p], requeue, &nrq, &flip_to);
    }
    dw_target_parts_free(parts, np);
    /* F&O stops at the first failure: the records after it are sent again. Every such round
     * answers at least one record, so the loop ends; rounds that answer none are bounded. When a
     * record's hint was wrong (POST "already exists", PATCH 404), the others of the batch that
     * were sent the same way probably share the ledger's mistake: they switch too, once. */
    for (size_t k = 0; k < j->n; k++) {
        size_t i = j->idx[k];
        trec_t *st = &w->st[i];
        if (answered[k] || st->done)
            continue;
        if (nanswered == 0 && ++st->stalls >= TGT_MAX_STALLS) {
            set_outcome(w, i, DW_WCLASS_UNKNOWN, status, "",
                        "the $batch response had no answer for the record", -1);
            continue;
        }
        if (flip_to >= 0 && st->method != M_DELETE && st->method != flip_to && st->hflips == 0) {
            st->method = flip_to;
            st->hflips++;
        }
        requeue[nrq++] = i;
    }
    if (nrq)
        queue_batches(w, j->kind, requeue, nrq);
    free(requeue);
    free(answered);
}

static void on_done(dw_http_req_t *req, dw_err_t err, void *opaque)
{
    (void)opaque;
    tjob_t *j = dw_http_req_opaque(req);
    wctx_t *w = j->w;
    dw_target_t *t = w->t;
    w->inflight--;
    t->inflight--;
    for (size_t k = 0; k < w->nrun; k++)
        if (w->run[k] == req) {
            w->run[k] = w->run[--w->nrun];
            break;
        }
    long status = err ? 0 : dw_http_req_status(req);
    size_t len = 0;
    const char *body = dw_http_req_body(req, &len);
    const char *what = j->kind == J_DV_UM ? "UpsertMultiple" : "$batch";
    DW_DEBUG(TGT_FAC, "%s %s records=%zu corr=%s status=%ld%s%s", what,
             w->recs[j->idx[0]].entity_set, j->n, j->corr, status, err ? " error=" : "",
             err ? dw_http_req_errbuf(req) : "");
    bool requeued = false;
    if (err) {
        char m[300];
        snprintf(m, sizeof(m), "%s: %s", dw_err2str(err), dw_http_req_errbuf(req));
        for (size_t k = 0; k < j->n; k++)
            set_outcome(w, j->idx[k], DW_WCLASS_TRANSIENT, 0, "", m, -1);
    } else if (status == 401 && !j->auth_retried) {
        dw_auth_invalidate(dw_system_auth(t->sys));
        j->auth_retried = true;
        dw_http_uuid4(j->corr);
        requeued = job_push(w, j);
    } else if (status == 429 || status == 408 || status == 401 || status >= 500) {
        if (status == 429)
            t->stats.throttled++;
        note_retry_after(t, status, dw_http_req_retry_after_ms(req));
        job_all(w, j, status, body, len, dw_http_req_retry_after_ms(req), NULL);
    } else if (j->kind == J_DV_UM) {
        if (status >= 200 && status < 300) {
            for (size_t k = 0; k < j->n; k++) {
                size_t i = j->idx[k];
                if (w->recs[i].record_id)
                    snprintf(w->recs[i].record_id_out, sizeof(w->recs[i].record_id_out), "%s",
                             w->recs[i].record_id);
                set_outcome(w, i, DW_WCLASS_OK, status, "", "", -1);
            }
        } else {
            on_um(w, j, status, body, len);
        }
    } else {
        on_batch(w, j, req, status, body, len);
    }
    req_put(t, req);
    if (!requeued)
        job_free(j);
}

/* ---- the call ----------------------------------------------------------------------------------
 */

/* Group the upserts of the Dataverse records into UpsertMultiple chunks per entity set, the rest
 * (deletes, tables without UpsertMultiple) into $batch jobs. */
static void plan_dv(wctx_t *w)
{
    dw_target_t *t = w->t;
    size_t *um = malloc((w->n ? w->n : 1) * sizeof(size_t)), num = 0;
    size_t *bt = malloc((w->n ? w->n : 1) * sizeof(size_t)), nbt = 0;
    if (!um || !bt) {
        w->fatal = DW_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < w->n; i++) {
        const dw_wrec_t *r = &w->recs[i];
        if (w->st[i].done)
            continue;
        if (r->op == DW_WOP_UPSERT && t->opts.upsert_multiple && r->table && *r->table &&
            !json_object_get(t->no_um, r->entity_set))
            um[num++] = i;
        else
            bt[nbt++] = i;
    }
    /* stable grouping by entity set: records of one set keep their order */
    for (size_t a = 0; a < num;) {
        const char *set = w->recs[um[a]].entity_set;
        size_t b = a;
        tjob_t *j = NULL;
        for (size_t c = a; c < num; c++) {
            if (strcmp(w->recs[um[c]].entity_set, set) != 0 ||
                strcmp(w->recs[um[c]].table, w->recs[um[a]].table) != 0)
                continue;
            if (!j || j->n == t->opts.chunk_max) {
                if (j && !job_push(w, j))
                    goto out;
                j = job_new(J_DV_UM, t->opts.chunk_max);
                if (!j) {
                    w->fatal = DW_ERR_NOMEM;
                    goto out;
                }
            }
            j->idx[j->n++] = um[c];
            /* move the taken record to the front part */
            size_t tmp = um[b];
            um[b] = um[c];
            um[c] = tmp;
            b++;
        }
        if (j && !job_push(w, j))
            goto out;
        a = b;
    }
    if (nbt)
        queue_batches(w, J_DV_BATCH, bt, nbt);
out:
    free(um);
    free(bt);
}

/* Check and prepare every record of w (paths, lookup keys, company binds), then queue its jobs. */
static void call_prepare(wctx_t *w)
{
    dw_target_t *t = w->t;
    size_t n = w->n;
    dw_wrec_t *recs = w->recs;
    for (size_t i = 0; i < n; i++) {
        dw_wrec_t *r = &recs[i];
        r->cls = DW_WCLASS_UNKNOWN;
        r->status = 0;
        r->code[0] = r->message[0] = r->record_id_out[0] = '\0';
        r->retry_after_ms = -1;
    }
    for (size_t i = 0; i < n && w->rc == DW_OK; i++) {
        dw_wrec_t *r = &recs[i];
        trec_t *st = &w->st[i];
        if (dw_signal_stop_requested()) {
            w->rc = DW_ERR_INTERRUPTED;
            break;
        }
        if (!r->entity_set || !*r->entity_set ||
            (r->op == DW_WOP_UPSERT && !json_is_object(r->fields) &&
             !(!r->fields && r->fields_text))) {
            set_outcome(w, i, DW_WCLASS_VALIDATION, 0, "", "record without entity set or fields",
                        -1);
            continue;
        }
        if (r->key && !json_is_object(r->key)) {
            set_outcome(w, i, DW_WCLASS_VALIDATION, 0, "", "the key is not an object", -1);
            continue;
        }
        st->method = r->op == DW_WOP_DELETE       ? M_DELETE
                     : (t->fo && !r->exists_hint) ? M_POST
                                                  : M_PATCH;
        if (!t->fo && r->op == DW_WOP_UPSERT) {
            tbinds_t bs;
            binds_collect(r, &bs);
            if (!dv_resolve_keys(w, i, &bs) || !dv_company_binds(w, i, &bs))
                continue;
        }
        if (w->fatal)
            break;
        bool by_id = !t->fo && r->op == DW_WOP_DELETE && r->record_id && *r->record_id;
        const json_t *key = by_id ? NULL : r->key;
        st->path = dw_target_key_path(r->entity_set, key, st->guids, r->record_id, true);
        if (!t->fo)
            st->oid = dw_target_key_path(r->entity_set, key, st->guids, r->record_id, false);
        if (!st->path || (!t->fo && !st->oid)) {
            set_outcome(w, i, DW_WCLASS_VALIDATION, 0, "",
                        "the key cannot be written as an OData key", -1);
            continue;
        }
        if (by_id)
            snprintf(r->record_id_out, sizeof(r->record_id_out), "%s", r->record_id);
    }
    if (!w->fatal && w->rc == DW_OK) {
        if (t->fo) {
            size_t *all = malloc(n * sizeof(size_t)), m = 0;
            if (!all) {
                w->fatal = DW_ERR_NOMEM;
            } else {
                for (size_t i = 0; i < n; i++)
                    if (!w->st[i].done)
                        all[m++] = i;
                queue_batches(w, J_FO_BATCH, all, m);
                free(all);
            }
        } else {
            plan_dv(w);
        }
    }
}

/* The call has nothing more to do (or must stop). */
static bool call_finished(const wctx_t *w)
{
    return w->rc != DW_OK || (w->fatal && w->fatal != DW_ERR_CONFIG) ||
           (w->inflight == 0 && w->q.head >= w->q.n);
}

/* Start queued jobs, the oldest call's first, up to the concurrency. While a Retry-After the
 * target answered has not elapsed, queued jobs are not sent: their records end transient (with
 * the status that answered it and the time left as their Retry-After), for the caller to
 * schedule. */
static void start_jobs(dw_target_t *t)
{
    long held = held_for_ms(t);
    for (size_t c = 0; c < t->ncalls && (held > 0 || t->inflight < t->concurrency); c++) {
        wctx_t *w = t->calls[c];
        while (!call_finished(w) && (held > 0 || t->inflight < t->concurrency) &&
               w->q.head < w->q.n) {
            tjob_t *j = w->q.v[w->q.head++];
            if (held > 0) {
                t->stats.held++;
                for (size_t k = 0; k < j->n; k++)
                    set_outcome(w, j->idx[k], DW_WCLASS_TRANSIENT, t->held_status, "",
                                TGT_HELD_MSG, held);
                job_free(j);
            } else if (!job_start(w, j)) {
                job_free(j);
            }
        }
    }
}

dw_target_call_t *dw_target_call_start(dw_target_t *t, dw_wrec_t *recs, size_t n, char *errstr,
                                       size_t errstr_size)
{
    wctx_t *w = calloc(1, sizeof(*w));
    if (!w || (n > 0 && !(w->st = calloc(n, sizeof(*w->st))))) {
        free(w);
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (t->ncalls == t->capcalls) {
        size_t nc = t->capcalls ? t->capcalls * 2 : 4;
        wctx_t **nv = realloc(t->calls, nc * sizeof(*nv));
        if (!nv) {
            free(w->st);
            free(w);
            dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
            return NULL;
        }
        t->calls = nv;
        t->capcalls = nc;
    }
    t->calls[t->ncalls++] = w;
    w->t = t;
    w->recs = recs;
    w->n = n;
    w->errstr = w->errbuf;
    w->errstr_size = sizeof(w->errbuf);
    if (n > 0)
        call_prepare(w);
    start_jobs(t);
    return (dw_target_call_t *)w;
}

void dw_target_poll(dw_target_t *t, int timeout_ms)
{
    if (dw_signal_stop_requested()) {
        for (size_t c = 0; c < t->ncalls; c++)
            if (!call_finished(t->calls[c]))
                t->calls[c]->rc = DW_ERR_INTERRUPTED;
        return;
    }
    start_jobs(t);
    if (t->inflight > 0)
        dw_http_multi_run(t->multi, timeout_ms, on_done, t);
    start_jobs(t);
}

bool dw_target_call_done(const dw_target_call_t *call)
{
    return call_finished((const wctx_t *)call);
}

dw_err_t dw_target_call_end(dw_target_call_t *call, char *errstr, size_t errstr_size)
{
    wctx_t *w = (wctx_t *)call;
    dw_target_t *t = w->t;
    dw_err_t rc = w->rc;
    if (errstr && errstr_size)
        errstr[0] = '\0';
    if (rc == DW_OK && !call_finished(w))
        rc = DW_ERR_INTERRUPTED; /* ended early */
    if (w->fatal && w->fatal != DW_ERR_CONFIG)
        rc = w->fatal;
    /* interrupted (or out of memory): cancel what still runs; its records, and every record not
     * sent, are transient */
    for (size_t k = 0; k < w->nrun; k++) {
        dw_http_multi_remove(t->multi, w->run[k]);
        job_free(dw_http_req_opaque(w->run[k]));
        req_put(t, w->run[k]);
        t->inflight--;
    }
    free(w->run);
    for (size_t q = w->q.head; q < w->q.n; q++)
        job_free(w->q.v[q]);
    free(w->q.v);
    for (size_t i = 0; i < w->n; i++) {
        if (!w->st[i].done)
            set_outcome(w, i, DW_WCLASS_TRANSIENT, 0, "",
                        rc == DW_ERR_INTERRUPTED ? "interrupted before it was sent" : "not sent",
                        -1);
        free(w->st[i].path);
        free(w->st[i].oid);
        json_decref(w->st[i].guids);
        json_decref(w->st[i].binds);
    }
    free(w->st);
    for (size_t c = 0; c < t->ncalls; c++)
        if (t->calls[c] == w) {
            memmove(&t->calls[c], &t->calls[c + 1], (t->ncalls - c - 1) * sizeof(*t->calls));
            t->ncalls--;
            break;
        }
    if (w->fatal == DW_ERR_CONFIG) {
        rc = DW_ERR_CONFIG;
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size, "%s", w->errbuf);
    } else if (rc == DW_ERR_NOMEM) {
        dw_errf(rc, errstr, errstr_size, "out of memory");
    }
    free(w);
    return rc;
}

dw_err_t dw_target_write(dw_target_t *t, dw_wrec_t *recs, size_t n, char *errstr,
                         size_t errstr_size)
{
    if (errstr && errstr_size)
        errstr[0] = '\0';
    if (n == 0)
        return DW_OK;
    dw_target_call_t *c = dw_target_call_start(t, recs, n, errstr, errstr_size);
    if (!c)
        return DW_ERR_NOMEM;
    while (!dw_target_call_done(c))
        dw_target_poll(t, 100);
    return dw_target_call_end(c, errstr, errstr_size);
}
