/*
 * writer_ledger: the sync ledger (schemas/sql/004_ledger.sql). The decision for one command
 * against its row (echo or no-op, stale version, unresolvable delete, or write, with the key,
 * row id and existence hint to write with) and the row's new values after a write are pure
 * functions; the batch's rows are read with one parameterised SELECT (arrays, unnest) and
 * written with one upsert in one transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_buf.h"
#include "dw_recordids.h"
#include "writer.h"

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A key object (members: strings, numbers, booleans) as compact JSON text with its members
 * sorted, as json_dumps(JSON_COMPACT | JSON_SORT_KEYS) writes it, without its allocations per
 * member (a call per written record). New string, NULL when out of memory. */
static char *key_text(const json_t *key)
{
    const char *stack[16], **names = stack;
    size_t n = json_object_size(key), i = 0;
    if (n > 16 && !(names = malloc(n * sizeof(*names))))
        return NULL;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)key, k, v)
    {
        names[i++] = k;
    }
    qsort(names, n, sizeof(*names), name_cmp);
    dw_buf_t b = {0};
    DW_BUF_LIT(&b, "{");
    for (i = 0; i < n; i++) {
        v = json_object_get(key, names[i]);
        if (i)
            DW_BUF_LIT(&b, ",");
        dw_buf_json_str(&b, names[i], strlen(names[i]));
        DW_BUF_LIT(&b, ":");
        if (json_is_string(v)) {
            dw_buf_json_str(&b, json_string_value(v), json_string_length(v));
        } else if (json_is_integer(v)) {
            dw_buf_printf(&b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        } else {
            char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!t)
                b.fail = true;
            else
                dw_buf_put(&b, t, strlen(t));
            free(t);
        }
    }
    DW_BUF_LIT(&b, "}");
    if (names != stack)
        free(names);
    if (b.fail) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

void wr_ledger_row_clear(wr_ledger_row_t *row)
{
    free(row->canonical_key);
    for (int s = 0; s < 2; s++) {
        free(row->hash[s]);
        free(row->version[s]);
        json_decref(row->key[s]);
    }
    free(row->dv_record_id);
    memset(row, 0, sizeof(*row));
}

static bool is_deleted(const char *hash)
{
    return hash && strcmp(hash, WR_LEDGER_DELETED) == 0;
}

void wr_decide(const wr_cmd_t *cmd, dw_map_side_t target, const wr_ledger_row_t *row,
               wr_decision_t *d)
{
    dw_map_side_t origin = target == DW_MAP_DV ? DW_MAP_FO : DW_MAP_DV;
    memset(d, 0, sizeof(*d));
    d->kind = WR_DEC_WRITE;
    d->key = cmd->target_key;
    if (cmd->record_id) {
        /* a delete known by the Dataverse row id only */
        if (row->found && row->key[target] && json_object_size(row->key[target]) > 0)
            d->key = row->key[target];
        else if (target == DW_MAP_DV)
            d->record_id = cmd->record_id;
        else {
            d->kind = WR_DEC_UNRESOLVED;
            return;
        }
    }
    if (!row->found)
        return;
    if (row->version[origin] && wr_version_cmp(cmd->source_version, row->version[origin]) <= 0) {
        d->kind = WR_DEC_STALE;
        return;
    }
    const char *th = row->hash[target];
    if (cmd->op == DW_WOP_UPSERT && th && strcmp(th, cmd->content_hash) == 0) {
        d->kind = WR_DEC_ECHO;
        return;
    }
    if (cmd->op == DW_WOP_DELETE && is_deleted(th)) {
        d->kind = WR_DEC_ECHO;
        return;
    }
    if (target == DW_MAP_DV && cmd->op == DW_WOP_DELETE && row->dv_record_id)
        d->record_id = row->dv_record_id;
    if (target == DW_MAP_FO)
        d->exists_hint =
            !is_deleted(row->hash[DW_MAP_FO]) && (row->hash[DW_MAP_FO] || row->key[DW_MAP_FO]);
}

void wr_ledger_put_clear(wr_ledger_put_t *put)
{
    free(put->key_text[0]);
    free(put->key_text[1]);
    memset(put, 0, sizeof(*put));
}

dw_err_t wr_ledger_entry(const wr_cmd_t *cmd, dw_map_side_t target, const char *canonical_key,
                         const json_t *key, const char *record_id_out, wr_ledger_put_t *put)
{
    dw_map_side_t origin = target == DW_MAP_DV ? DW_MAP_FO : DW_MAP_DV;
    memset(put, 0, sizeof(*put));
    put->map = cmd->map;
    put->canonical_key = canonical_key;
    put->version[origin] = cmd->source_version;
    if (cmd->op == DW_WOP_DELETE) {
        put->hash[target] = WR_LEDGER_DELETED;
        put->hash[origin] = WR_LEDGER_DELETED;
    } else {
        put->hash[target] = cmd->content_hash;
        put->hash[origin] = cmd->origin_hash;
    }
    if (key && json_object_size(key) > 0 && !(put->key_text[target] = key_text(key)))
        goto nomem;
    if (cmd->origin_key && json_object_size(cmd->origin_key) > 0 &&
        !(put->key_text[origin] = key_text(cmd->origin_key)))
        goto nomem;
    if (target == DW_MAP_DV && record_id_out && *record_id_out)
        put->dv_record_id = record_id_out;
    return DW_OK;
nomem:
    wr_ledger_put_clear(put);
    return DW_ERR_NOMEM;
}

dw_err_t wr_ledger_entry_seen(const wr_cmd_t *cmd, dw_map_side_t target, const char *canonical_key,
                              wr_ledger_put_t *put)
{
    dw_map_side_t origin = target == DW_MAP_DV ? DW_MAP_FO : DW_MAP_DV;
    memset(put, 0, sizeof(*put));
    put->map = cmd->map;
    put->canonical_key = canonical_key;
    put->version[origin] = cmd->source_version;
    put->hash[origin] = cmd->op == DW_WOP_DELETE ? WR_LEDGER_DELETED : cmd->origin_hash;
    if (cmd->origin_key && json_object_size(cmd->origin_key) > 0 &&
        !(put->key_text[origin] = key_text(cmd->origin_key)))
        return DW_ERR_NOMEM;
    return DW_OK;
}

char *wr_pg_array(const char *const *vals, size_t n)
{
    dw_buf_t b = {0};
    for (size_t i = 0; i < n; i++)
        dw_pg_array_add(&b, vals[i]);
    if (!dw_pg_array_end(&b)) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static char *dup_value(const PGresult *res, int r, int c)
{
    if (PQgetisnull(res, r, c))
        return NULL;
    return strdup(PQgetvalue(res, r, c));
}

dw_err_t wr_ledger_session(dw_pg_t *pg, char *errstr, size_t errstr_size)
{
    /* the ledger's statements are small index probes and upserts: compiling them (JIT, which a
     * bloated table's cost estimates can trigger: 250 ms per statement) never pays */
    return dw_pg_exec(pg, "SET jit = off", 0, NULL, NULL, errstr, errstr_size);
}

dw_err_t wr_ledger_fetch(dw_pg_t *pg, size_t n, const char *const *maps, const char *const *cks,
                         const char *const *rids, wr_ledger_row_t *rows, char *errstr,
                         size_t errstr_size)
{
    /* One probe of the primary key per command, whatever the statistics say: as LATERAL
     * subqueries with LIMIT 1 (never pulled up into a join), a sequential scan would be paid
     * once per command, so the planner always takes the index. As a plain join it chose, when
     * the statistics still said "a few rows" (a drain's start, after a delete), a sequential
     * scan materialised and joined against every command of the batch: 3 to 9 s per batch over
     * a table left large by deleted rows, until autoanalyze came by. The record id probe runs
     * only for commands that carry one (deletes by row id): "u.rid IS NOT NULL" is a one-time
     * filter of the subquery; without it a small dw_record_ids was read whole once per command
     * (a sequential scan is the cheaper plan for a table of a few hundred rows, times 1000). */
    static const char sql[] =
        "SELECT u.n, l.canonical_key, l.fo_hash, l.dv_hash, l.fo_version::text,"
        " l.dv_version::text, l.fo_key::text, l.dv_key::text, l.dv_record_id::text"
        " FROM unnest($1::text[], $2::text[], $3::uuid[]) WITH ORDINALITY AS u(map, ck, rid, n)"
        " LEFT JOIN LATERAL (SELECT r.canonical_key FROM dw_record_ids r"
        "  WHERE u.rid IS NOT NULL AND r.map = u.map AND r.record_id = u.rid LIMIT 1) r ON true"
        " CROSS JOIN LATERAL (SELECT * FROM dw_ledger l"
        "  WHERE l.map = u.map AND l.canonical_key = COALESCE(r.canonical_key, u.ck) LIMIT 1) l";
    dw_err_t err = DW_OK;
    PGresult *res = NULL;
    char *p[3] = {wr_pg_array(maps, n), wr_pg_array(cks, n), wr_pg_array(rids, n)};
    for (size_t i = 0; i < n; i++)
        memset(&rows[i], 0, sizeof(rows[i]));
    if (!p[0] || !p[1] || !p[2]) {
        err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto out;
    }
    if ((err = dw_pg_exec(pg, sql, 3, (const char *const *)p, &res, errstr, errstr_size)) != DW_OK)
        goto out;
    for (int r = 0; r < PQntuples(res) && !err; r++) {
        long long idx = strtoll(PQgetvalue(res, r, 0), NULL, 10) - 1;
        if (idx < 0 || (size_t)idx >= n)
            continue;
        wr_ledger_row_t *row = &rows[idx];
        wr_ledger_row_clear(row);
        row->found = true;
        row->canonical_key = dup_value(res, r, 1);
        row->hash[DW_MAP_FO] = dup_value(res, r, 2);
        row->hash[DW_MAP_DV] = dup_value(res, r, 3);
        row->version[DW_MAP_FO] = dup_value(res, r, 4);
        row->version[DW_MAP_DV] = dup_value(res, r, 5);
        for (int s = 0; s < 2; s++)
            if (!PQgetisnull(res, r, 6 + s))
                row->key[s] = json_loads(PQgetvalue(res, r, 6 + s), 0, NULL);
        row->dv_record_id = dup_value(res, r, 8);
        if (!row->canonical_key)
            err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    }
out:
    PQclear(res);
    for (int i = 0; i < 3; i++)
        free(p[i]);
    if (err)
        for (size_t i = 0; i < n; i++)
            wr_ledger_row_clear(&rows[i]);
    return err;
}

dw_err_t wr_ledger_store(dw_pg_t *pg, const wr_ledger_put_t *puts, size_t n, const json_t *ids,
                         char *errstr, size_t errstr_size)
{
    static const char sql[] =
        "INSERT INTO dw_ledger AS l (map, canonical_key, fo_hash, dv_hash, fo_version,"
        " dv_version, fo_key, dv_key, dv_record_id, updated_at)"
        " SELECT DISTINCT ON (u.map, u.ck) u.map, u.ck, u.fh, u.dh, u.fv::numeric, u.dv::numeric,"
        " u.fk::jsonb, u.dk::jsonb, u.rid::uuid, now()"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::text[], $8::text[], $9::text[]) WITH ORDINALITY"
        " AS u(map, ck, fh, dh, fv, dv, fk, dk, rid, n)"
        " ORDER BY u.map, u.ck, u.n DESC"
        " ON CONFLICT (map, canonical_key) DO UPDATE SET"
        " fo_hash = COALESCE(EXCLUDED.fo_hash, l.fo_hash),"
        " dv_hash = COALESCE(EXCLUDED.dv_hash, l.dv_hash),"
        " fo_version = GREATEST(l.fo_version, EXCLUDED.fo_version),"
        " dv_version = GREATEST(l.dv_version, EXCLUDED.dv_version),"
        " fo_key = COALESCE(EXCLUDED.fo_key, l.fo_key),"
        " dv_key = COALESCE(EXCLUDED.dv_key, l.dv_key),"
        " dv_record_id = COALESCE(EXCLUDED.dv_record_id, l.dv_record_id),"
        " updated_at = now()";
    dw_err_t err = DW_OK;
    char *p[9] = {0};
    const char **cols = NULL;
    bool in_txn = false;
    if (n == 0 && (!ids || json_object_size(ids) == 0))
        return DW_OK;
    if (n > 0) {
        if (!(cols = calloc(n, sizeof(*cols)))) {
            err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
            goto out;
        }
        for (int c = 0; c < 9; c++) {
            for (size_t i = 0; i < n; i++) {
                const wr_ledger_put_t *u = &puts[i];
                const char *v[9] = {u->map,         u->canonical_key, u->hash[0],
                                    u->hash[1],     u->version[0],    u->version[1],
                                    u->key_text[0], u->key_text[1],   u->dv_record_id};
                cols[i] = v[c];
            }
            if (!(p[c] = wr_pg_array(cols, n))) {
                err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
                goto out;
            }
        }
    }
    if ((err = dw_pg_begin(pg, errstr, errstr_size)) != DW_OK)
        goto out;
    in_txn = true;
    if (n > 0 &&
        (err = dw_pg_exec(pg, sql, 9, (const char *const *)p, NULL, errstr, errstr_size)) != DW_OK)
        goto out;
    if (ids) {
        const char *map;
        json_t *list;
        json_object_foreach((json_t *)ids, map, list)
        {
            if ((err = dw_recordids_upsert(pg, map, list, errstr, errstr_size)) != DW_OK)
                goto out;
        }
    }
    err = dw_pg_commit(pg, errstr, errstr_size);
    in_txn = false;
out:
    if (in_txn && err != DW_ERR_PG_CONN) {
        char e2[256];
        dw_pg_rollback(pg, e2, sizeof(e2));
    }
    for (int c = 0; c < 9; c++)
        free(p[c]);
    free(cols);
    return err;
}
