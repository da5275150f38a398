/*
 * dw_map: loading and validating table maps and table metadata.
 *
 * The pipeline, for `dwctl maps validate` and for a worker's strict load alike:
 *   1. metadata: every metadata/{fo,dv}/\*.json, checked against metadata.schema.json
 *      (dw_mapschema) and for consistency, then indexed (dw_meta_t);
 *   2. entries: the map files, each parsed (JSON_REJECT_DUPLICATES, line and column on error)
 *      and checked against map.schema.json; a file whose structure fails reports its `schema`
 *      problems only;
 *   3. models: a dw_map_t per structurally valid file (jansson's strict json_unpack_ex extracts
 *      the members), its columns bound to the metadata, its scope filters compiled;
 *   4. lookups: `map` names resolved to the referenced map's table and entity set;
 *   5. rules: every Dual-write rule of schemas/README.md, each problem with its JSON pointer;
 *   6. dependencies: lookups between maps form a graph; a cycle is a problem naming its maps, and
 *      a set without cycles has a topological order.
 * Every problem of every file is collected; nothing stops at the first.
 */
#include "dw_map.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dw_mapper.h"
#include "dw_mapschema.h"

#define DW_MAP_FILE_MAX (16u * 1024 * 1024) /* a map or metadata file larger than this is refused  \
                                             */

/* ---- names ----------------------------------------------------------------------------------- */

dw_err_t dw_map_dir_parse(const char *text, dw_map_dir_t *dir)
{
    if (!text)
        return DW_ERR_INVALID_ARG;
    if (strcmp(text, "fo-to-dv") == 0)
        *dir = DW_MAP_FO_TO_DV;
    else if (strcmp(text, "dv-to-fo") == 0)
        *dir = DW_MAP_DV_TO_FO;
    else if (strcmp(text, "both") == 0)
        *dir = DW_MAP_BOTH;
    else
        return DW_ERR_INVALID_ARG;
    return DW_OK;
}

const char *dw_map_dir_name(dw_map_dir_t dir)
{
    switch (dir) {
    case DW_MAP_FO_TO_DV:
        return "fo-to-dv";
    case DW_MAP_DV_TO_FO:
        return "dv-to-fo";
    case DW_MAP_BOTH:
        return "both";
    }
    return "?";
}

dw_map_side_t dw_map_dir_source(dw_map_dir_t dir)
{
    return dir == DW_MAP_DV_TO_FO ? DW_MAP_DV : DW_MAP_FO;
}

dw_map_side_t dw_map_dir_target(dw_map_dir_t dir)
{
    return dir == DW_MAP_DV_TO_FO ? DW_MAP_FO : DW_MAP_DV;
}

const char *dw_map_side_name(dw_map_side_t side)
{
    return side == DW_MAP_FO ? "fo" : "dv";
}

static const char *const col_type_names[] = {"string",   "integer", "decimal", "boolean", "date",
                                             "datetime", "enum",    "guid",    "lookup"};

const char *dw_col_type_name(dw_col_type_t type)
{
    return (unsigned)type < sizeof(col_type_names) / sizeof(col_type_names[0])
               ? col_type_names[type]
               : "?";
}

static int col_type_parse(const char *s)
{
    for (size_t i = 0; i < sizeof(col_type_names) / sizeof(col_type_names[0]); i++) {
        if (strcmp(s, col_type_names[i]) == 0)
            return (int)i;
    }
    return -1;
}

const char *dw_map_xf_name(dw_map_xf_t xf)
{
    switch (xf) {
    case DW_MAP_XF_COPY:
        return "copy";
    case DW_MAP_XF_VALUE_MAP:
        return "value_map";
    case DW_MAP_XF_DEFAULT:
        return "default";
    case DW_MAP_XF_CONSTANT:
        return "constant";
    case DW_MAP_XF_LOOKUP:
        return "lookup";
    }
    return "?";
}

/* ---- the problem report ---------------------------------------------------------------------- */

struct dw_map_report_s {
    dw_map_problem_t *items;
    char **blocks; /* one allocation per problem holding its four strings */
    size_t n, cap;
};

dw_map_report_t *dw_map_report_new(void)
{
    return calloc(1, sizeof(dw_map_report_t));
}

void dw_map_report_destroy(dw_map_report_t *report)
{
    if (!report)
        return;
    for (size_t i = 0; i < report->n; i++)
        free(report->blocks[i]);
    free(report->items);
    free(report->blocks);
    free(report);
}

size_t dw_map_report_count(const dw_map_report_t *report)
{
    return report ? report->n : 0;
}

const dw_map_problem_t *dw_map_report_get(const dw_map_report_t *report, size_t i)
{
    return report && i < report->n ? &report->items[i] : NULL;
}

void dw_map_report_print(const dw_map_report_t *report, FILE *out)
{
    for (size_t i = 0; report && i < report->n; i++) {
        const dw_map_problem_t *p = &report->items[i];
        fprintf(out, "%s: %s: %s: %s\n", p->file, p->pointer, p->keyword, p->message);
    }
}

static bool report_add(dw_map_report_t *r, const char *file, const char *pointer,
                       const char *keyword, const char *message)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        dw_map_problem_t *items = realloc(r->items, cap * sizeof(*items));
        if (!items)
            return false;
        r->items = items;
        char **blocks = realloc(r->blocks, cap * sizeof(*blocks));
        if (!blocks)
            return false;
        r->blocks = blocks;
        r->cap = cap;
    }
    size_t lf = strlen(file) + 1, lp = strlen(pointer) + 1, lk = strlen(keyword) + 1,
           lm = strlen(message) + 1;
    char *b = malloc(lf + lp + lk + lm);
    if (!b)
        return false;
    memcpy(b, file, lf);
    memcpy(b + lf, pointer, lp);
    memcpy(b + lf + lp, keyword, lk);
    memcpy(b + lf + lp + lk, message, lm);
    r->blocks[r->n] = b;
    r->items[r->n] = (dw_map_problem_t){b, b + lf, b + lf + lp, b + lf + lp + lk};
    r->n++;
    return true;
}

/* Where problems go while checking: the caller's report (may be NULL), a count, the first one
 * for errstr. */
typedef struct check_s {
    dw_map_report_t *report;
    size_t count;
    char first[1024];
    bool nomem;
} check_t;

static void problem(check_t *ck, const char *file, const char *pointer, const char *keyword,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void problem(check_t *ck, const char *file, const char *pointer, const char *keyword,
                    const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ck->count == 0)
        snprintf(ck->first, sizeof(ck->first), "%s: %s: %s: %s", file, pointer, keyword, msg);
    ck->count++;
    if (ck->report && !report_add(ck->report, file, pointer, keyword, msg))
        ck->nomem = true;
}

/* ---- files and folders ------------------------------------------------------------------- */

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static char *str_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static char *path_join(const char *dir, const char *name)
{
    size_t ld = strlen(dir), ln = strlen(name);
    char *p = malloc(ld + ln + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, ld);
    size_t o = ld;
    if (ld && dir[ld - 1] != '/')
        p[o++] = '/';
    memcpy(p + o, name, ln + 1);
    return p;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* Every "<dir>/<name>.json" (regular files or links to them), sorted. */
static dw_err_t list_json(const char *dir, char ***out, size_t *count, char *errstr,
                          size_t errstr_size)
{
    char **v = NULL;
    size_t n = 0, cap = 0;
    dw_err_t err = DW_OK;
    DIR *d = opendir(dir);
    if (!d)
        return dw_errf(DW_ERR_IO, errstr, errstr_size, "could not open folder \"%s\": %s", dir,
                       strerror(errno));
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l <= 5 || strcmp(de->d_name + l - 5, ".json") != 0 || de->d_name[0] == '.')
            continue;
        char *p = path_join(dir, de->d_name);
        struct stat st;
        if (p && (stat(p, &st) != 0 || !S_ISREG(st.st_mode))) {
            free(p);
            continue;
        }
        if (!p || (n == cap && !(cap = cap ? cap * 2 : 32, v = realloc(v, cap * sizeof(*v))))) {
            free(p);
            err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
            n = 0;
            goto out;
        }
        v[n++] = p;
    }
    if (n)
        qsort(v, n, sizeof(*v), cmp_str);
out:
    closedir(d);
    if (err) {
        free_strv(v, n);
        v = NULL;
    }
    *out = v;
    *count = n;
    return err;
}

/* Parse one JSON document held in memory; problem "parse" with line and column. */
static json_t *load_json_text(check_t *ck, const char *path, const char *text, size_t len)
{
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        problem(ck, path, "", "parse", "line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
    return doc;
}

/* Read and parse one JSON file. Problems: io, parse (with line and column). New value or NULL. */
static json_t *load_json(check_t *ck, const char *path)
{
    json_t *doc = NULL;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        problem(ck, path, "", "io", "could not open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        problem(ck, path, "", "io", "not a regular file");
        goto out;
    }
    if ((uintmax_t)st.st_size > DW_MAP_FILE_MAX) {
        problem(ck, path, "", "io", "larger than %u bytes", DW_MAP_FILE_MAX);
        goto out;
    }
    size_t size = (size_t)st.st_size;
    buf = malloc(size + 1);
    if (!buf) {
        ck->nomem = true;
        goto out;
    }
    size_t got = fread(buf, 1, size, f);
    if (got != size || ferror(f)) {
        problem(ck, path, "", "io", "could not read: %s", strerror(errno));
        goto out;
    }
    doc = load_json_text(ck, path, buf, size);
out:
    free(buf);
    fclose(f);
    return doc;
}

typedef struct schema_cb_s {
    check_t *ck;
    const char *path;
} schema_cb_t;

static void schema_problem(void *opaque, const char *pointer, const char *message)
{
    schema_cb_t *s = opaque;
    problem(s->ck, s->path, pointer, "schema", "%s", message);
}

/* ---- metadata ------------------------------------------------------------------------------ */

typedef struct meta_enum_s {
    const char *name;
    dw_meta_member_t *members;
    size_t n;
} meta_enum_t;

struct dw_meta_table_s {
    char *path;
    json_t *doc;
    dw_map_side_t side;
    const char *name, *entity_set, *id_column, *primary_name, *ownership;
    bool company_specific;
    const char **key;
    size_t nkey;
    dw_meta_column_t *cols;
    size_t ncols;
    dw_meta_akey_t *akeys;
    size_t nakeys;
    meta_enum_t *enums;
    size_t nenums;
};

struct dw_meta_s {
    dw_meta_table_t **t[2];
    size_t n[2];
};

static void meta_table_destroy(dw_meta_table_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->ncols; i++)
        free((void *)t->cols[i].targets);
    for (size_t i = 0; i < t->nakeys; i++)
        free((void *)t->akeys[i].columns);
    for (size_t i = 0; i < t->nenums; i++)
        free(t->enums[i].members);
    free(t->cols);
    free(t->akeys);
    free(t->enums);
    free(t->key);
    json_decref(t->doc);
    free(t->path);
    free(t);
}

void dw_meta_destroy(dw_meta_t *meta)
{
    if (!meta)
        return;
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < meta->n[s]; i++)
            meta_table_destroy(meta->t[s][i]);
        free(meta->t[s]);
    }
    free(meta);
}

static const char *str_member(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* A NULL-free array of the strings of arr (schema-checked identifiers). */
static const char **strv_of(const json_t *arr, size_t *n)
{
    size_t len = json_array_size(arr);
    const char **v = calloc(len ? len : 1, sizeof(*v));
    if (!v)
        return NULL;
    for (size_t i = 0; i < len; i++)
        v[i] = json_string_value(json_array_get(arr, i));
    *n = len;
    return v;
}

static const meta_enum_t *meta_enum_find(const dw_meta_table_t *t, const char *name)
{
    for (size_t i = 0; name && i < t->nenums; i++) {
        if (strcmp(t->enums[i].name, name) == 0)
            return &t->enums[i];
    }
    return NULL;
}

/* The model of a structurally valid metadata document. NULL when out of memory. */
static dw_meta_table_t *meta_table_build(const char *path, json_t *doc, dw_map_side_t side)
{
    dw_meta_table_t *t = calloc(1, sizeof(*t));
    if (!t || !(t->path = str_dup(path)))
        goto fail;
    t->doc = json_incref(doc);
    t->side = side;
    t->name = str_member(doc, "name");
    t->entity_set = str_member(doc, "entity_set");
    t->id_column = str_member(doc, "id_column");
    t->primary_name = str_member(doc, "primary_name");
    t->ownership = str_member(doc, "ownership");
    t->company_specific = json_is_true(json_object_get(doc, "company_specific"));
    const json_t *key = json_object_get(doc, "key");
    if (key && !(t->key = strv_of(key, &t->nkey)))
        goto fail;

    const json_t *enums = json_object_get(doc, "enums");
    t->enums = calloc(json_object_size(enums) + 1, sizeof(*t->enums));
    if (!t->enums)
        goto fail;
    const char *ename;
    json_t *members;
    json_object_foreach((json_t *)enums, ename, members)
    {
        meta_enum_t *e = &t->enums[t->nenums++];
        e->name = ename;
        e->n = json_array_size(members);
        if (!(e->members = calloc(e->n + 1, sizeof(*e->members))))
            goto fail;
        for (size_t i = 0; i < e->n; i++) {
            const json_t *m = json_array_get(members, i);
            const json_t *state = json_object_get(m, "state");
            e->members[i] = (dw_meta_member_t){
                .name = str_member(m, "name"),
                .value = (long long)json_number_value(json_object_get(m, "value")),
                .has_state = state != NULL,
                .state = state ? (long long)json_number_value(state) : 0,
            };
            if (json_is_integer(json_object_get(m, "value")))
                e->members[i].value = json_integer_value(json_object_get(m, "value"));
            if (json_is_integer(state))
                e->members[i].state = json_integer_value(state);
        }
    }

    const json_t *cols = json_object_get(doc, "columns");
    t->ncols = json_array_size(cols);
    if (!(t->cols = calloc(t->ncols + 1, sizeof(*t->cols))))
        goto fail;
    for (size_t i = 0; i < t->ncols; i++) {
        const json_t *c = json_array_get(cols, i);
        dw_meta_column_t *col = &t->cols[i];
        col->name = str_member(c, "name");
        col->type = (dw_col_type_t)col_type_parse(str_member(c, "type"));
        col->required = json_is_true(json_object_get(c, "required"));
        col->read_only = json_is_true(json_object_get(c, "read_only"));
        double ml = json_number_value(json_object_get(c, "max_length"));
        col->max_length = ml > INT_MAX ? INT_MAX : (int)ml;
        col->enum_name = str_member(c, "enum");
        const meta_enum_t *e = meta_enum_find(t, col->enum_name);
        if (e) {
            col->members = e->members;
            col->nmembers = e->n;
        }
        const json_t *targets = json_object_get(c, "targets");
        if (targets && !(col->targets = (const char *const *)strv_of(targets, &col->ntargets)))
            goto fail;
        col->defval = json_object_get(c, "default");
        col->generated = str_member(c, "generated");
    }

    const json_t *akeys = json_object_get(doc, "alternate_keys");
    t->nakeys = json_array_size(akeys);
    if (!(t->akeys = calloc(t->nakeys + 1, sizeof(*t->akeys))))
        goto fail;
    for (size_t i = 0; i < t->nakeys; i++) {
        const json_t *a = json_array_get(akeys, i);
        t->akeys[i].name = str_member(a, "name");
        t->akeys[i].columns =
            (const char *const *)strv_of(json_object_get(a, "columns"), &t->akeys[i].ncolumns);
        if (!t->akeys[i].columns)
            goto fail;
    }
    return t;
fail:
    meta_table_destroy(t);
    return NULL;
}

const dw_meta_column_t *dw_meta_table_column(const dw_meta_table_t *t, const char *name)
{
    for (size_t i = 0; t && name && i < t->ncols; i++) {
        if (strcmp(t->cols[i].name, name) == 0)
            return &t->cols[i];
    }
    return NULL;
}

static bool strv_has(const char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0)
            return true;
    }
    return false;
}

/* The consistency rules of a metadata file (beyond its schema). */
static void meta_table_check(check_t *ck, const dw_meta_table_t *t, dw_map_side_t side)
{
    const char *p = t->path;
    char ptr[64];
    size_t nl = strlen(t->name);
    const char *b = base_name(p);
    if (strncmp(b, t->name, nl) != 0 || strcmp(b + nl, ".json") != 0)
        problem(ck, p, "/name", "name-file", "name \"%s\" differs from the file name", t->name);
    const char *system = str_member(t->doc, "system");
    if (strcmp(system, dw_map_side_name(side)) != 0)
        problem(ck, p, "/system", "system", "system \"%s\" in the %s folder", system,
                dw_map_side_name(side));
    for (size_t i = 0; i < t->ncols; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(t->cols[i].name, t->cols[j].name) == 0) {
                problem(ck, p, "/columns", "duplicate-column", "column \"%s\" twice",
                        t->cols[i].name);
                break;
            }
        }
        const dw_meta_column_t *c = &t->cols[i];
        if (c->type == DW_COL_ENUM && !meta_enum_find(t, c->enum_name)) {
            snprintf(ptr, sizeof(ptr), "/columns/%zu/enum", i);
            problem(ck, p, ptr, "unknown-enum", "no enumeration \"%s\" in enums", c->enum_name);
        }
        if (c->read_only && c->required) {
            snprintf(ptr, sizeof(ptr), "/columns/%zu", i);
            problem(ck, p, ptr, "required-read-only", "column \"%s\" is required and read-only",
                    c->name);
        }
    }
    for (size_t i = 0; i < t->nkey; i++) {
        if (!dw_meta_table_column(t, t->key[i]))
            problem(ck, p, "/key", "unknown-column", "key field \"%s\" is not a column", t->key[i]);
    }
    if (side == DW_MAP_FO) {
        if (t->company_specific != strv_has(t->key, t->nkey, "dataAreaId"))
            problem(ck, p, "/company_specific", "company-specific",
                    "company_specific must be true exactly when dataAreaId is in the key");
        return;
    }
    const dw_meta_column_t *id = dw_meta_table_column(t, t->id_column);
    if (!id || id->type != DW_COL_GUID)
        problem(ck, p, "/id_column", "id-column", "\"%s\" is not a guid column", t->id_column);
    for (size_t i = 0; i < t->nakeys; i++) {
        for (size_t j = 0; j < t->akeys[i].ncolumns; j++) {
            if (!dw_meta_table_column(t, t->akeys[i].columns[j])) {
                snprintf(ptr, sizeof(ptr), "/alternate_keys/%zu", i);
                problem(ck, p, ptr, "unknown-column", "key column \"%s\" is not a column",
                        t->akeys[i].columns[j]);
            }
        }
    }
    bool user = t->ownership && strcmp(t->ownership, "user") == 0;
    if (user != (dw_meta_table_column(t, "ownerid") != NULL))
        problem(ck, p, "/ownership", "ownership",
                "a user-owned table has an ownerid column, an organization-owned one has none");
    const char *system_cols[] = {t->id_column, "versionnumber", "createdon", "modifiedon"};
    for (size_t i = 0; i < 4; i++) {
        if (!dw_meta_table_column(t, system_cols[i]))
            problem(ck, p, "/columns", "system-column", "system column \"%s\" is missing",
                    system_cols[i]);
    }
    const meta_enum_t *state = meta_enum_find(t, "statecode");
    const meta_enum_t *status = meta_enum_find(t, "statuscode");
    for (size_t i = 0; status && i < status->n; i++) {
        bool found = false;
        for (size_t j = 0; state && j < state->n && !found; j++)
            found =
                status->members[i].has_state && status->members[i].state == state->members[j].value;
        if (!found)
            problem(ck, p, "/enums/statuscode", "status-state",
                    "status \"%s\" has no statecode of this table", status->members[i].name);
    }
}

static bool meta_add(dw_meta_t *meta, dw_map_side_t side, dw_meta_table_t *t)
{
    dw_meta_table_t **v = realloc(meta->t[side], (meta->n[side] + 1) * sizeof(*v));
    if (!v)
        return false;
    meta->t[side] = v;
    v[meta->n[side]++] = t;
    return true;
}

/* Load every metadata file; problems into ck. The set holds every structurally valid file (even
 * with consistency problems). NULL only when out of memory or dir cannot be read (errstr). */
static dw_meta_t *meta_load(check_t *ck, const char *dir, char *errstr, size_t errstr_size)
{
    dw_meta_t *meta = calloc(1, sizeof(*meta));
    if (!meta) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        dw_errf(DW_ERR_IO, errstr, errstr_size, "metadata folder \"%s\": %s", dir,
                errno ? strerror(errno) : "not a folder");
        dw_meta_destroy(meta);
        return NULL;
    }
    for (int side = 0; side < 2; side++) {
        char *sub = path_join(dir, dw_map_side_name((dw_map_side_t)side));
        char **paths = NULL;
        size_t n = 0;
        if (!sub) {
            ck->nomem = true;
            break;
        }
        if (list_json(sub, &paths, &n, errstr, errstr_size) != DW_OK) {
            problem(ck, sub, "", "io", "%s", errstr);
            free(sub);
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *doc = load_json(ck, paths[i]);
            if (!doc)
                continue;
            schema_cb_t scb = {ck, paths[i]};
            if (dw_mapschema_check_metadata(doc, schema_problem, &scb) == 0) {
                dw_meta_table_t *t = meta_table_build(paths[i], doc, (dw_map_side_t)side);
                if (!t || !meta_add(meta, (dw_map_side_t)side, t)) {
                    meta_table_destroy(t);
                    ck->nomem = true;
                } else {
                    meta_table_check(ck, t, (dw_map_side_t)side);
                    for (size_t j = 0; j + 1 < meta->n[side]; j++) {
                        if (strcmp(meta->t[side][j]->name, t->name) == 0) {
                            problem(ck, t->path, "/name", "duplicate-table",
                                    "\"%s\" is also described by %s", t->name,
                                    meta->t[side][j]->path);
                            meta_table_destroy(t);
                            meta->n[side]--;
                            break;
                        }
                    }
                }
            }
            json_decref(doc);
        }
        free_strv(paths, n);
        free(sub);
    }
    if (ck->nomem) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        dw_meta_destroy(meta);
        return NULL;
    }
    return meta;
}

dw_meta_t *dw_meta_load(const char *dir, dw_map_report_t *report, char *errstr, size_t errstr_size)
{
    check_t ck = {.report = report};
    dw_meta_t *meta = meta_load(&ck, dir, errstr, errstr_size);
    if (meta && ck.count) {
        dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "%s (%zu problem%s)", ck.first, ck.count,
                ck.count == 1 ? "" : "s");
        dw_meta_destroy(meta);
        return NULL;
    }
    return meta;
}

const dw_meta_table_t *dw_meta_table(const dw_meta_t *meta, dw_map_side_t side, const char *name)
{
    for (size_t i = 0; meta && name && i < meta->n[side]; i++) {
        if (strcmp(meta->t[side][i]->name, name) == 0)
            return meta->t[side][i];
    }
    return NULL;
}

size_t dw_meta_table_count(const dw_meta_t *meta, dw_map_side_t side)
{
    return meta->n[side];
}

const dw_meta_table_t *dw_meta_table_at(const dw_meta_t *meta, dw_map_side_t side, size_t i)
{
    return i < meta->n[side] ? meta->t[side][i] : NULL;
}

dw_map_side_t dw_meta_table_side(const dw_meta_table_t *t)
{
    return t->side;
}

const char *dw_meta_table_name(const dw_meta_table_t *t)
{
    return t->name;
}

const char *dw_meta_table_entity_set(const dw_meta_table_t *t)
{
    return t->entity_set;
}

bool dw_meta_table_company_specific(const dw_meta_table_t *t)
{
    return t->company_specific;
}

size_t dw_meta_table_key_count(const dw_meta_table_t *t)
{
    return t->nkey;
}

const char *dw_meta_table_key(const dw_meta_table_t *t, size_t i)
{
    return i < t->nkey ? t->key[i] : NULL;
}

const char *dw_meta_table_id_column(const dw_meta_table_t *t)
{
    return t->id_column;
}

const char *dw_meta_table_primary_name(const dw_meta_table_t *t)
{
    return t->primary_name;
}

size_t dw_meta_table_akey_count(const dw_meta_table_t *t)
{
    return t->nakeys;
}

const dw_meta_akey_t *dw_meta_table_akey(const dw_meta_table_t *t, size_t i)
{
    return i < t->nakeys ? &t->akeys[i] : NULL;
}

const dw_meta_akey_t *dw_meta_table_akey_find(const dw_meta_table_t *t, const char *name)
{
    for (size_t i = 0; t && name && i < t->nakeys; i++) {
        if (strcmp(t->akeys[i].name, name) == 0)
            return &t->akeys[i];
    }
    return NULL;
}

size_t dw_meta_table_column_count(const dw_meta_table_t *t)
{
    return t->ncols;
}

const dw_meta_column_t *dw_meta_table_column_at(const dw_meta_table_t *t, size_t i)
{
    return i < t->ncols ? &t->cols[i] : NULL;
}

/* ---- the map model -------------------------------------------------------------------------- */

typedef struct map_dep_s {
    const char *name; /* borrowed from the doc */
    char *pointer;    /* of the first lookup member naming it */
} map_dep_t;

struct dw_map_s {
    char *path;
    json_t *doc;
    const char *name, *description;
    int version;
    dw_map_dir_t direction;
    dw_map_unavailable_t unavailable;
    const char *fo_entity, *fo_entity_set;
    bool fo_company_specific;
    const char *dv_table, *dv_entity_set, *dv_id_column, *dv_alternate_key;
    const char *filter_text[2];
    dw_filter_t *filter[2];
    char filter_error[2][256]; /* compile error when filter_text is set and filter is NULL */
    const dw_meta_table_t *meta[2];
    dw_map_field_t *fields;
    size_t nfields;
    dw_map_pair_t *pairs;
    size_t npairs;
    dw_map_key_t *keys;
    size_t nkeys;
    dw_map_lookup_t **lookups; /* every lookup and fallback, owned */
    char **lookup_ptrs;        /* each one's JSON pointer */
    size_t nlookups;
    map_dep_t *deps;
    size_t ndeps;
};

static void map_destroy(dw_map_t *m)
{
    if (!m)
        return;
    for (int s = 0; s < 2; s++)
        dw_filter_destroy(m->filter[s]);
    for (size_t i = 0; i < m->nlookups; i++) {
        free(m->lookups[i]);
        free(m->lookup_ptrs[i]);
    }
    for (size_t i = 0; i < m->ndeps; i++)
        free(m->deps[i].pointer);
    free(m->lookups);
    free(m->lookup_ptrs);
    free(m->deps);
    free(m->fields);
    free(m->pairs);
    free(m->keys);
    json_decref(m->doc);
    free(m->path);
    free(m);
}

bool dw_map_field_active(const dw_map_field_t *field, dw_map_dir_t dir)
{
    return (field->direction & dir) == dir;
}

/* Add a lookup (and its fallbacks) to the map; NULL when out of memory. */
static dw_map_lookup_t *map_add_lookup(dw_map_t *m, const json_t *lk, const char *pointer)
{
    dw_map_lookup_t *l = calloc(1, sizeof(*l));
    char *ptr = str_dup(pointer);
    dw_map_lookup_t **v = realloc(m->lookups, (m->nlookups + 1) * sizeof(*v));
    if (v)
        m->lookups = v;
    char **pv = realloc(m->lookup_ptrs, (m->nlookups + 1) * sizeof(*pv));
    if (pv)
        m->lookup_ptrs = pv;
    if (!l || !ptr || !v || !pv) {
        free(l);
        free(ptr);
        return NULL;
    }
    m->lookups[m->nlookups] = l;
    m->lookup_ptrs[m->nlookups] = ptr;
    m->nlookups++;
    l->map = str_member(lk, "map");
    l->table = str_member(lk, "table");
    l->entity_set = str_member(lk, "entity_set");
    l->key = str_member(lk, "key");
    l->company = str_member(lk, "company");
    if (l->map && strcmp(l->map, m->name) != 0) {
        bool seen = false;
        for (size_t i = 0; i < m->ndeps && !seen; i++)
            seen = strcmp(m->deps[i].name, l->map) == 0;
        if (!seen) {
            map_dep_t *d = realloc(m->deps, (m->ndeps + 1) * sizeof(*d));
            if (!d)
                return NULL;
            m->deps = d;
            size_t pl = strlen(pointer);
            char *dp = malloc(pl + 5);
            if (!dp)
                return NULL;
            memcpy(dp, pointer, pl);
            memcpy(dp + pl, "/map", 5);
            d[m->ndeps++] = (map_dep_t){l->map, dp};
        }
    }
    const json_t *fb = json_object_get(lk, "fallback");
    if (fb) {
        char fptr[512];
        snprintf(fptr, sizeof(fptr), "%s/fallback", pointer);
        if (!(l->fallback = map_add_lookup(m, fb, fptr)))
            return NULL;
    }
    return l;
}

static dw_map_dir_t dir_of(const char *s)
{
    dw_map_dir_t d = DW_MAP_BOTH;
    dw_map_dir_parse(s, &d);
    return d;
}

/* The model of a structurally valid map document (jansson's strict unpack extracts it: a member
 * the schema does not know cannot slip through). Columns are bound to meta (NULL where unknown),
 * filters compiled (their error kept for the rules). *why: a message when the document does not
 * unpack (it would be a bug of dw_mapschema). NULL when out of memory or on that error. */
static dw_map_t *map_build(const char *path, json_t *doc, const dw_meta_t *meta, char *why,
                           size_t why_size)
{
    json_error_t jerr;
    dw_map_t *m = calloc(1, sizeof(*m));
    const char *schema = NULL, *direction = NULL, *unavailable = NULL;
    json_t *version = NULL, *fo = NULL, *dv = NULL, *keys = NULL, *fields = NULL;
    why[0] = '\0';
    if (!m || !(m->path = str_dup(path)))
        goto fail;
    m->doc = json_incref(doc);
    if (json_unpack_ex(doc, &jerr, JSON_STRICT,
                       "{s?s, s:s, s:o, s:s, s:o, s:o, s:s, s?s, s:o, s:o}", "$schema", &schema,
                       "name", &m->name, "version", &version, "description", &m->description, "fo",
                       &fo, "dv", &dv, "direction", &direction, "on_unavailable", &unavailable,
                       "keys", &keys, "fields", &fields) ||
        json_unpack_ex(fo, &jerr, JSON_STRICT, "{s:s, s:s, s:b, s?s}", "entity", &m->fo_entity,
                       "entity_set", &m->fo_entity_set, "company_specific", &m->fo_company_specific,
                       "filter", &m->filter_text[DW_MAP_FO]) ||
        json_unpack_ex(dv, &jerr, JSON_STRICT, "{s:s, s:s, s:s, s:s, s?s}", "table", &m->dv_table,
                       "entity_set", &m->dv_entity_set, "id_column", &m->dv_id_column,
                       "alternate_key", &m->dv_alternate_key, "filter",
                       &m->filter_text[DW_MAP_DV])) {
        snprintf(why, why_size, "%s", jerr.text);
        goto fail;
    }
    (void)schema;
    double v = json_number_value(version);
    m->version =
        json_is_integer(version)
            ? (json_integer_value(version) > INT_MAX ? INT_MAX : (int)json_integer_value(version))
            : (v > INT_MAX ? INT_MAX : (int)v);
    m->direction = dir_of(direction);
    m->unavailable = !unavailable                       ? DW_MAP_UNAVAILABLE_DEFAULT
                     : strcmp(unavailable, "fail") == 0 ? DW_MAP_UNAVAILABLE_FAIL
                                                        : DW_MAP_UNAVAILABLE_QUEUE;
    m->meta[DW_MAP_FO] = dw_meta_table(meta, DW_MAP_FO, m->fo_entity);
    m->meta[DW_MAP_DV] = dw_meta_table(meta, DW_MAP_DV, m->dv_table);
    for (int s = 0; s < 2; s++) {
        if (m->filter_text[s])
            m->filter[s] = dw_filter_compile(m->filter_text[s], m->filter_error[s],
                                             sizeof(m->filter_error[s]));
    }

    m->nfields = json_array_size(fields);
    size_t npairs = 0;
    for (size_t i = 0; i < m->nfields; i++)
        npairs += json_array_size(
            json_object_get(json_object_get(json_array_get(fields, i), "transform"), "value_map"));
    m->fields = calloc(m->nfields + 1, sizeof(*m->fields));
    m->pairs = calloc(npairs + 1, sizeof(*m->pairs));
    if (!m->fields || !m->pairs)
        goto fail;
    for (size_t i = 0; i < m->nfields; i++) {
        dw_map_field_t *f = &m->fields[i];
        json_t *jfo = NULL, *jdv = NULL, *transform = NULL;
        const char *fdir = NULL;
        if (json_unpack_ex(json_array_get(fields, i), &jerr, JSON_STRICT,
                           "{s:o, s:o, s:s, s?o, s?s}", "fo", &jfo, "dv", &jdv, "direction", &fdir,
                           "transform", &transform, "note", &f->note)) {
            snprintf(why, why_size, "/fields/%zu: %s", i, jerr.text);
            goto fail;
        }
        f->index = i;
        f->fo = json_string_value(jfo);
        f->dv = json_string_value(jdv);
        f->direction = dir_of(fdir);
        f->fo_column = dw_meta_table_column(m->meta[DW_MAP_FO], f->fo);
        f->dv_column = dw_meta_table_column(m->meta[DW_MAP_DV], f->dv);
        const json_t *t;
        if ((t = json_object_get(transform, "value_map"))) {
            f->transform = DW_MAP_XF_VALUE_MAP;
            f->pairs = m->pairs + m->npairs;
            f->npairs = json_array_size(t);
            for (size_t k = 0; k < f->npairs; k++) {
                const json_t *pair = json_array_get(t, k);
                m->pairs[m->npairs++] =
                    (dw_map_pair_t){json_object_get(pair, "fo"), json_object_get(pair, "dv")};
            }
        } else if ((t = json_object_get(transform, "default"))) {
            f->transform = DW_MAP_XF_DEFAULT;
            f->default_fo = json_object_get(t, "fo");
            f->default_dv = json_object_get(t, "dv");
        } else if ((t = json_object_get(transform, "constant"))) {
            f->transform = DW_MAP_XF_CONSTANT;
            f->constant = t;
        } else if ((t = json_object_get(transform, "lookup"))) {
            char ptr[128];
            f->transform = DW_MAP_XF_LOOKUP;
            snprintf(ptr, sizeof(ptr), "/fields/%zu/transform/lookup", i);
            if (!(f->lookup = map_add_lookup(m, t, ptr)))
                goto fail;
        }
    }

    m->nkeys = json_array_size(keys);
    if (!(m->keys = calloc(m->nkeys + 1, sizeof(*m->keys))))
        goto fail;
    for (size_t i = 0; i < m->nkeys; i++) {
        const json_t *k = json_array_get(keys, i);
        m->keys[i].fo = str_member(k, "fo");
        m->keys[i].dv = str_member(k, "dv");
        for (size_t j = 0; j < m->nfields; j++) {
            dw_map_field_t *f = &m->fields[j];
            if (f->fo && f->dv && strcmp(f->fo, m->keys[i].fo) == 0 &&
                strcmp(f->dv, m->keys[i].dv) == 0) {
                m->keys[i].field = f;
                f->is_key = true;
                break;
            }
        }
    }
    return m;
fail:
    map_destroy(m);
    return NULL;
}

/* ---- accessors ----------------------------------------------------------------------------- */

const char *dw_map_name(const dw_map_t *map)
{
    return map->name;
}

const char *dw_map_path(const dw_map_t *map)
{
    return map->path;
}

int dw_map_version(const dw_map_t *map)
{
    return map->version;
}

const char *dw_map_description(const dw_map_t *map)
{
    return map->description;
}

dw_map_dir_t dw_map_direction(const dw_map_t *map)
{
    return map->direction;
}

bool dw_map_runs(const dw_map_t *map, dw_map_dir_t dir)
{
    return (map->direction & dir) == dir;
}

dw_map_unavailable_t dw_map_on_unavailable(const dw_map_t *map)
{
    return map->unavailable;
}

const char *dw_map_fo_entity(const dw_map_t *map)
{
    return map->fo_entity;
}

const char *dw_map_fo_entity_set(const dw_map_t *map)
{
    return map->fo_entity_set;
}

bool dw_map_fo_company_specific(const dw_map_t *map)
{
    return map->fo_company_specific;
}

const char *dw_map_dv_table(const dw_map_t *map)
{
    return map->dv_table;
}

const char *dw_map_dv_entity_set(const dw_map_t *map)
{
    return map->dv_entity_set;
}

const char *dw_map_dv_id_column(const dw_map_t *map)
{
    return map->dv_id_column;
}

const char *dw_map_dv_alternate_key(const dw_map_t *map)
{
    return map->dv_alternate_key;
}

const dw_meta_table_t *dw_map_meta(const dw_map_t *map, dw_map_side_t side)
{
    return map->meta[side];
}

const dw_filter_t *dw_map_filter(const dw_map_t *map, dw_map_side_t side)
{
    return map->filter[side];
}

const char *dw_map_filter_text(const dw_map_t *map, dw_map_side_t side)
{
    return map->filter_text[side];
}

size_t dw_map_key_count(const dw_map_t *map)
{
    return map->nkeys;
}

const dw_map_key_t *dw_map_key(const dw_map_t *map, size_t i)
{
    return i < map->nkeys ? &map->keys[i] : NULL;
}

bool dw_map_key_has_company(const dw_map_t *map)
{
    for (size_t k = 0; k < dw_map_key_count(map); k++) {
        const char *fo = dw_map_key(map, k)->fo;
        if (fo && strcmp(fo, "dataAreaId") == 0)
            return true;
    }
    return false;
}

size_t dw_map_field_count(const dw_map_t *map)
{
    return map->nfields;
}

const dw_map_field_t *dw_map_field(const dw_map_t *map, size_t i)
{
    return i < map->nfields ? &map->fields[i] : NULL;
}

const dw_map_field_t *dw_map_field_by_source(const dw_map_t *map, dw_map_dir_t dir,
                                             const char *name)
{
    for (size_t i = 0; i < map->nfields; i++) {
        const dw_map_field_t *f = &map->fields[i];
        const char *src = dir == DW_MAP_FO_TO_DV ? f->fo : f->dv;
        if (src && dw_map_field_active(f, dir) && strcmp(src, name) == 0)
            return f;
    }
    return NULL;
}

size_t dw_map_dep_count(const dw_map_t *map)
{
    return map->ndeps;
}

const char *dw_map_dep(const dw_map_t *map, size_t i)
{
    return i < map->ndeps ? map->deps[i].name : NULL;
}

const json_t *dw_map_json(const dw_map_t *map)
{
    return map->doc;
}

/* ---- a checking session: the files, their models, name resolution -------------------------- */

typedef struct entry_s {
    char *path;
    json_t *doc;
    bool target; /* its problems are reported */
    bool active; /* takes part in name resolution and the dependency graph */
    bool schema_ok;
    /* read from the doc before validation, when they are strings: enough for name resolution */
    const char *name;
    const char *dv_table;
    const char *dv_entity_set;
    dw_map_t *map;
    bool borrowed; /* map (and a reference to doc) belong to a loaded set: read-only here */
} entry_t;

typedef struct session_s {
    check_t *ck;
    const dw_meta_t *meta;
    entry_t *e;
    size_t n, cap;
} session_t;

static void session_free(session_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->e[i].path);
        json_decref(s->e[i].doc);
        if (!s->e[i].borrowed)
            map_destroy(s->e[i].map);
    }
    free(s->e);
}

static entry_t *session_add(session_t *s, const char *path, bool target)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        entry_t *e = realloc(s->e, cap * sizeof(*e));
        if (!e)
            return NULL;
        s->e = e;
        s->cap = cap;
    }
    entry_t *e = &s->e[s->n];
    *e = (entry_t){.target = target, .active = true};
    if (!(e->path = str_dup(path)))
        return NULL;
    s->n++;
    return e;
}

static entry_t *session_find(session_t *s, const char *name)
{
    for (size_t i = 0; name && i < s->n; i++) {
        if (s->e[i].active && s->e[i].name && strcmp(s->e[i].name, name) == 0)
            return &s->e[i];
    }
    return NULL;
}

/* Parse, read the names, check the structure and build the model of every entry. Problems of entries that
 * are not targets are dropped. */
static void session_load(session_t *s)
{
    check_t quiet = {0};
    for (size_t i = 0; i < s->n; i++) {
        entry_t *e = &s->e[i];
        check_t *ck = e->target ? s->ck : &quiet;
        if (!e->doc)
            e->doc = load_json(ck, e->path);
        if (!e->doc)
            continue;
        const char *name = str_member(e->doc, "name");
        e->name = name && dw_mapschema_is_map_name(name) ? name : NULL;
        const json_t *dv = json_object_get(e->doc, "dv");
        e->dv_table = str_member(dv, "table");
        e->dv_entity_set = str_member(dv, "entity_set");
        if (e->map) { /* borrowed from a loaded set: checked already */
            e->schema_ok = true;
            continue;
        }
        schema_cb_t scb = {ck, e->path};
        e->schema_ok = dw_mapschema_check_map(e->doc, schema_problem, &scb) == 0;
        if (!e->schema_ok)
            continue;
        char why[256];
        e->map = map_build(e->path, e->doc, s->meta, why, sizeof(why));
        if (!e->map) {
            if (why[0])
                problem(ck, e->path, "", "schema", "%s", why);
            else
                s->ck->nomem = true;
        }
    }
    if (quiet.nomem)
        s->ck->nomem = true;
}

/* Resolve lookups that name maps: table and entity set of the referenced map; key columns. */
static void session_resolve(session_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        dw_map_t *m = s->e[i].borrowed ? NULL : s->e[i].map;
        for (size_t j = 0; m && j < m->nlookups; j++) {
            dw_map_lookup_t *l = m->lookups[j];
            if (l->map) {
                const entry_t *ref = strcmp(l->map, m->name) == 0 && s->e[i].active
                                         ? &s->e[i]
                                         : session_find(s, l->map);
                l->table = ref ? ref->dv_table : NULL;
                l->entity_set = ref ? ref->dv_entity_set : NULL;
            }
            l->key_column =
                dw_meta_table_column(dw_meta_table(s->meta, DW_MAP_DV, l->table), l->key);
        }
    }
}

/* ---- the Dual-write rules ------------------------------------------------------------------ */

static bool value_ok(dw_map_side_t side, const dw_meta_column_t *col, const json_t *v)
{
    switch (col->type) {
    case DW_COL_ENUM:
        for (size_t i = 0; i < col->nmembers; i++) {
            if (side == DW_MAP_FO && json_is_string(v) &&
                strcmp(json_string_value(v), col->members[i].name) == 0)
                return true;
            if (side == DW_MAP_DV && json_is_integer(v) &&
                json_integer_value(v) == col->members[i].value)
                return true;
        }
        return false;
    case DW_COL_BOOLEAN:
        return json_is_boolean(v);
    case DW_COL_INTEGER:
        return json_is_integer(v);
    case DW_COL_DECIMAL:
        return json_is_number(v);
    case DW_COL_STRING:
    case DW_COL_DATE:
    case DW_COL_DATETIME:
    case DW_COL_GUID:
        return json_is_string(v);
    case DW_COL_LOOKUP:
        return false;
    }
    return false;
}

/* A literal of the map (constant, default) fits its column: the right JSON type, and for text
 * columns what the mapper would accept (max_length, a real date, a guid). */
static bool literal_ok(dw_map_side_t side, const dw_meta_column_t *col, const json_t *v, char *why,
                       size_t why_size)
{
    snprintf(why, why_size, "%s does not fit the %s column %s",
             json_is_string(v)    ? "a string"
             : json_is_boolean(v) ? "a boolean"
                                  : "a number",
             dw_col_type_name(col->type), col->name);
    if (!value_ok(side, col, v)) {
        if (col->type == DW_COL_ENUM && side == DW_MAP_DV && json_is_integer(v))
            snprintf(why, why_size, "%" JSON_INTEGER_FORMAT " is not an option of %s (%s)",
                     json_integer_value(v), col->name, col->enum_name);
        else if (col->type == DW_COL_ENUM && side == DW_MAP_FO && json_is_string(v))
            snprintf(why, why_size, "\"%.64s\" is not a member of %s (%s)", json_string_value(v),
                     col->enum_name, col->name);
        return false;
    }
    if (col->type == DW_COL_STRING || col->type == DW_COL_DATE || col->type == DW_COL_DATETIME ||
        col->type == DW_COL_GUID) {
        json_t *out = NULL;
        dw_mapper_error_t err;
        if (dw_mapper_convert(col, side, v, &out, &err) != DW_OK) {
            size_t n = strnlen(err.message, sizeof(err.message));
            n = n < why_size ? n : why_size - 1;
            memcpy(why, err.message, n);
            why[n] = '\0';
            return false;
        }
        json_decref(out);
    }
    return true;
}

static bool plain_compatible(dw_col_type_t src, dw_col_type_t dst)
{
    if (src == dst && src != DW_COL_ENUM && src != DW_COL_LOOKUP)
        return true;
    return (src == DW_COL_INTEGER && dst == DW_COL_DECIMAL) ||
           (src == DW_COL_DATE && dst == DW_COL_DATETIME) ||
           (src == DW_COL_DATETIME && dst == DW_COL_DATE) ||
           (src == DW_COL_GUID && dst == DW_COL_STRING);
}

static const dw_map_dir_t both_dirs[] = {DW_MAP_FO_TO_DV, DW_MAP_DV_TO_FO};

static bool scalar_eq(const json_t *a, const json_t *b)
{
    return json_equal((json_t *)a, (json_t *)b);
}

typedef struct rules_s {
    session_t *s;
    const entry_t *e;
    const dw_map_t *m;
    const char *path;
} rules_t;

#define P(r, ptr, kw, ...) problem((r)->s->ck, (r)->path, ptr, kw, __VA_ARGS__)

static void check_lookup(rules_t *r, const dw_map_lookup_t *lk, const char *base,
                         const dw_meta_column_t *dc)
{
    char ptr[640];
    const char *table = lk->table;
    if (lk->map) {
        const entry_t *ref = session_find(r->s, lk->map);
        if (strcmp(lk->map, r->m->name) == 0)
            ref = r->e;
        if (!ref || !ref->dv_table) {
            snprintf(ptr, sizeof(ptr), "%s/map", base);
            P(r, ptr, "unknown-map", ref ? "map \"%s\" has no dv.table" : "no map named \"%s\"",
              lk->map);
            return;
        }
        table = ref->dv_table;
    } else {
        const dw_meta_table_t *t = dw_meta_table(r->s->meta, DW_MAP_DV, table);
        if (!t) {
            snprintf(ptr, sizeof(ptr), "%s/table", base);
            P(r, ptr, "unknown-table", "no metadata for table \"%s\"", table);
            return;
        }
        if (strcmp(t->entity_set, lk->entity_set) != 0) {
            snprintf(ptr, sizeof(ptr), "%s/entity_set", base);
            P(r, ptr, "entity-set", "the entity set of %s is \"%s\"", table, t->entity_set);
        }
    }
    if (!strv_has(dc->targets, dc->ntargets, table)) {
        char targets[256] = "";
        size_t o = 0;
        for (size_t i = 0; i < dc->ntargets && o < sizeof(targets); i++)
            o += (size_t)snprintf(targets + o, sizeof(targets) - o, "%s%s", i ? ", " : "",
                                  dc->targets[i]);
        P(r, base, "lookup-target", "%s is not among the targets of %s (%s)", table, dc->name,
          targets);
    }
    const dw_meta_table_t *rm = dw_meta_table(r->s->meta, DW_MAP_DV, table);
    if (rm) {
        bool ok = true;
        if (!dw_meta_table_column(rm, lk->key)) {
            snprintf(ptr, sizeof(ptr), "%s/key", base);
            P(r, ptr, "unknown-column", "%s has no column \"%s\"", table, lk->key);
            ok = false;
        }
        if (lk->company && !dw_meta_table_column(rm, lk->company)) {
            snprintf(ptr, sizeof(ptr), "%s/company", base);
            P(r, ptr, "unknown-column", "%s has no column \"%s\"", table, lk->company);
            ok = false;
        }
        if (ok) {
            bool found = false;
            size_t want = 1 + (lk->company && strcmp(lk->company, lk->key) != 0);
            for (size_t i = 0; i < rm->nakeys && !found; i++) {
                const dw_meta_akey_t *a = &rm->akeys[i];
                found = a->ncolumns == want && strv_has(a->columns, a->ncolumns, lk->key) &&
                        (!lk->company || strv_has(a->columns, a->ncolumns, lk->company));
            }
            if (!found)
                P(r, base, "lookup-key", "no alternate key of %s is exactly %s%s%s", table, lk->key,
                  lk->company ? " + " : "", lk->company ? lk->company : "");
        }
    }
    if (lk->fallback) {
        snprintf(ptr, sizeof(ptr), "%s/fallback", base);
        check_lookup(r, lk->fallback, ptr, dc);
    }
}

static void check_value_map(rules_t *r, const dw_map_field_t *f)
{
    const dw_map_t *m = r->m;
    const dw_meta_column_t *fc = f->fo_column, *dc = f->dv_column;
    char ptr[128], why[256];
    bool bad = false;
    for (size_t k = 0; k < f->npairs; k++) {
        if (!value_ok(DW_MAP_FO, fc, f->pairs[k].fo)) {
            snprintf(ptr, sizeof(ptr), "/fields/%zu/transform/value_map/%zu/fo", f->index, k);
            literal_ok(DW_MAP_FO, fc, f->pairs[k].fo, why, sizeof(why));
            P(r, ptr, "value-map-value", "not a value of %s %s: %s", dw_col_type_name(fc->type),
              fc->name, why);
            bad = true;
        }
        if (!value_ok(DW_MAP_DV, dc, f->pairs[k].dv)) {
            snprintf(ptr, sizeof(ptr), "/fields/%zu/transform/value_map/%zu/dv", f->index, k);
            literal_ok(DW_MAP_DV, dc, f->pairs[k].dv, why, sizeof(why));
            P(r, ptr, "value-map-value", "not a value of %s %s: %s", dw_col_type_name(dc->type),
              dc->name, why);
            bad = true;
        }
    }
    if (bad)
        return;
    snprintf(ptr, sizeof(ptr), "/fields/%zu/transform/value_map", f->index);
    bool total = true;
    char missing[256] = "";
    for (int d = 0; d < 2; d++) {
        if (!dw_map_field_active(f, both_dirs[d]))
            continue;
        dw_map_side_t side = dw_map_dir_source(both_dirs[d]);
        const dw_meta_column_t *col = side == DW_MAP_FO ? fc : dc;
        if (col->type == DW_COL_ENUM) {
            for (size_t i = 0; i < col->nmembers; i++) {
                bool have = false;
                for (size_t k = 0; k < f->npairs && !have; k++) {
                    const json_t *v = side == DW_MAP_FO ? f->pairs[k].fo : f->pairs[k].dv;
                    have = side == DW_MAP_FO
                               ? strcmp(json_string_value(v), col->members[i].name) == 0
                               : json_integer_value(v) == col->members[i].value;
                }
                if (!have && total) {
                    total = false;
                    if (side == DW_MAP_FO)
                        snprintf(missing, sizeof(missing), "%s member %s has no pair", col->name,
                                 col->members[i].name);
                    else
                        snprintf(missing, sizeof(missing), "%s option %lld (%s) has no pair",
                                 col->name, col->members[i].value, col->members[i].name);
                }
            }
        } else if (col->type == DW_COL_BOOLEAN) {
            for (int b = 0; b < 2; b++) {
                bool have = false;
                for (size_t k = 0; k < f->npairs && !have; k++) {
                    const json_t *v = side == DW_MAP_FO ? f->pairs[k].fo : f->pairs[k].dv;
                    have = json_is_boolean(v) && json_is_true(v) == (b == 1);
                }
                if (!have && total) {
                    total = false;
                    snprintf(missing, sizeof(missing), "%s value %s has no pair", col->name,
                             b ? "true" : "false");
                }
            }
        }
    }
    if (!total)
        P(r, ptr, "value-map-total", "the value map does not cover every source value: %s",
          missing);
    bool uniq_fo = true, uniq_dv = true;
    for (size_t k = 0; k < f->npairs; k++) {
        for (size_t j = 0; j < k; j++) {
            if (scalar_eq(f->pairs[k].fo, f->pairs[j].fo))
                uniq_fo = false;
            if (scalar_eq(f->pairs[k].dv, f->pairs[j].dv))
                uniq_dv = false;
        }
    }
    if (f->direction == DW_MAP_BOTH) {
        if (!uniq_fo || !uniq_dv)
            P(r, ptr, "value-map-invertible",
              "a bidirectional value map must be one-to-one: a%s %s value appears twice",
              uniq_fo ? "" : "n", uniq_fo ? "dv" : "fo");
    } else if ((f->direction == DW_MAP_FO_TO_DV && !uniq_fo) ||
               (f->direction == DW_MAP_DV_TO_FO && !uniq_dv)) {
        P(r, ptr, "value-map-ambiguous", "a source value appears twice (maps to two values)");
    }
    (void)m;
}

static void check_field(rules_t *r, const dw_map_field_t *f)
{
    const dw_map_t *m = r->m;
    const dw_meta_table_t *fo = m->meta[DW_MAP_FO], *dv = m->meta[DW_MAP_DV];
    const dw_meta_column_t *fc = f->fo_column, *dc = f->dv_column;
    char ptr[160], why[256];
    size_t n = f->index;
    if (f->fo && fo && !fc) {
        snprintf(ptr, sizeof(ptr), "/fields/%zu/fo", n);
        P(r, ptr, "unknown-column", "%s has no field \"%s\"", fo->name, f->fo);
    }
    if (f->dv && dv && !dc) {
        snprintf(ptr, sizeof(ptr), "/fields/%zu/dv", n);
        P(r, ptr, "unknown-column", "%s has no column \"%s\"", dv->name, f->dv);
    }
    if (m->direction != DW_MAP_BOTH && f->direction != m->direction) {
        snprintf(ptr, sizeof(ptr), "/fields/%zu/direction", n);
        P(r, ptr, "direction", "%s field in a %s map", dw_map_dir_name(f->direction),
          dw_map_dir_name(m->direction));
    }
    if (dw_map_field_active(f, DW_MAP_FO_TO_DV) && dc && dc->read_only) {
        snprintf(ptr, sizeof(ptr), "/fields/%zu/dv", n);
        P(r, ptr, "read-only", "%s.%s is read-only and cannot be written", dv->name, dc->name);
    }
    if (dw_map_field_active(f, DW_MAP_DV_TO_FO) && fc && fc->read_only) {
        snprintf(ptr, sizeof(ptr), "/fields/%zu/fo", n);
        P(r, ptr, "read-only", "%s.%s is read-only and cannot be written", fo->name, fc->name);
    }
    if (f->transform == DW_MAP_XF_CONSTANT) {
        const dw_meta_column_t *col = f->fo ? fc : dc;
        dw_map_side_t side = f->fo ? DW_MAP_FO : DW_MAP_DV;
        if (col && !literal_ok(side, col, f->constant, why, sizeof(why))) {
            snprintf(ptr, sizeof(ptr), "/fields/%zu/transform/constant", n);
            P(r, ptr, "type-mismatch", "the constant does not fit: %s", why);
        }
        return;
    }
    if (!fc || !dc)
        return;
    snprintf(ptr, sizeof(ptr), "/fields/%zu", n);
    if (f->transform == DW_MAP_XF_LOOKUP) {
        if (dc->type != DW_COL_LOOKUP || (fc->type != DW_COL_STRING && fc->type != DW_COL_GUID)) {
            P(r, ptr, "type-mismatch",
              "a lookup needs an F&O string and a Dataverse lookup (%s %s, %s %s)",
              dw_col_type_name(fc->type), fc->name, dw_col_type_name(dc->type), dc->name);
        } else {
            snprintf(ptr, sizeof(ptr), "/fields/%zu/transform/lookup", n);
            check_lookup(r, f->lookup, ptr, dc);
        }
        return;
    }
    if (dc->type == DW_COL_LOOKUP) {
        P(r, ptr, "type-mismatch", "the Dataverse lookup %s needs a lookup transform", dc->name);
        return;
    }
    if (f->transform == DW_MAP_XF_VALUE_MAP) {
        check_value_map(r, f);
        return;
    }
    bool ok = true;
    for (int d = 0; d < 2; d++) {
        if (!dw_map_field_active(f, both_dirs[d]))
            continue;
        const dw_meta_column_t *src = both_dirs[d] == DW_MAP_FO_TO_DV ? fc : dc;
        const dw_meta_column_t *dst = both_dirs[d] == DW_MAP_FO_TO_DV ? dc : fc;
        if (!plain_compatible(src->type, dst->type))
            ok = false;
    }
    if (!ok) {
        bool needs_vm = fc->type == DW_COL_ENUM || dc->type == DW_COL_ENUM ||
                        fc->type == DW_COL_BOOLEAN || dc->type == DW_COL_BOOLEAN;
        P(r, ptr, "type-mismatch", "%s %s and %s %s are not compatible%s",
          dw_col_type_name(fc->type), fc->name, dw_col_type_name(dc->type), dc->name,
          needs_vm ? " without a value_map" : "");
    }
    if (f->transform == DW_MAP_XF_DEFAULT) {
        for (int s = 0; s < 2; s++) {
            const json_t *v = s == DW_MAP_FO ? f->default_fo : f->default_dv;
            if (!v)
                continue;
            dw_map_dir_t need = s == DW_MAP_DV ? DW_MAP_FO_TO_DV : DW_MAP_DV_TO_FO;
            const dw_meta_column_t *col = s == DW_MAP_DV ? dc : fc;
            snprintf(ptr, sizeof(ptr), "/fields/%zu/transform/default/%s", n,
                     dw_map_side_name((dw_map_side_t)s));
            if (!dw_map_field_active(f, need))
                P(r, ptr, "direction", "a default for %s, which this field never writes",
                  dw_map_side_name((dw_map_side_t)s));
            else if (!literal_ok((dw_map_side_t)s, col, v, why, sizeof(why)))
                P(r, ptr, "type-mismatch", "the default does not fit: %s", why);
        }
    }
}

static void check_duplicates(rules_t *r)
{
    const dw_map_t *m = r->m;
    char ptr[96];
    bool *reported = calloc(m->nfields * 2 + 1, sizeof(bool));
    if (!reported) {
        r->s->ck->nomem = true;
        return;
    }
    for (size_t n = 0; n < m->nfields; n++) {
        const dw_map_field_t *f = &m->fields[n];
        if (f->direction != DW_MAP_BOTH)
            continue;
        for (int s = 0; s < 2; s++) {
            const char *c = s == DW_MAP_FO ? f->fo : f->dv;
            if (!c)
                continue;
            for (size_t j = 0; j < n; j++) {
                const dw_map_field_t *g = &m->fields[j];
                const char *gc = s == DW_MAP_FO ? g->fo : g->dv;
                if (g->direction == DW_MAP_BOTH && gc && strcmp(gc, c) == 0) {
                    snprintf(ptr, sizeof(ptr), "/fields/%zu/%s", n,
                             dw_map_side_name((dw_map_side_t)s));
                    P(r, ptr, "duplicate-source",
                      "%s is used by two bidirectional fields (also fields/%zu)", c, j);
                    reported[n * 2 + (size_t)s] = true;
                    break;
                }
            }
        }
    }
    for (int d = 0; d < 2; d++) {
        dw_map_side_t ds = dw_map_dir_target(both_dirs[d]);
        for (size_t n = 0; n < m->nfields; n++) {
            const dw_map_field_t *f = &m->fields[n];
            const char *c = ds == DW_MAP_FO ? f->fo : f->dv;
            if (!dw_map_field_active(f, both_dirs[d]) || !c)
                continue;
            for (size_t j = 0; j < n; j++) {
                const dw_map_field_t *g = &m->fields[j];
                const char *gc = ds == DW_MAP_FO ? g->fo : g->dv;
                if (dw_map_field_active(g, both_dirs[d]) && gc && strcmp(gc, c) == 0) {
                    if (!reported[n * 2 + ds]) {
                        snprintf(ptr, sizeof(ptr), "/fields/%zu/%s", n, dw_map_side_name(ds));
                        P(r, ptr, "duplicate-destination",
                          "%s is written twice %s (also by fields/%zu)", c,
                          dw_map_dir_name(both_dirs[d]), j);
                        reported[n * 2 + ds] = true;
                    }
                    break;
                }
            }
        }
    }
    free(reported);
}

static void check_keys(rules_t *r)
{
    const dw_map_t *m = r->m;
    const dw_meta_table_t *fo = m->meta[DW_MAP_FO], *dv = m->meta[DW_MAP_DV];
    char ptr[96];
    bool company_ok = false;
    for (size_t i = 0; i < m->nkeys; i++) {
        const dw_map_key_t *k = &m->keys[i];
        if (fo && !dw_meta_table_column(fo, k->fo)) {
            snprintf(ptr, sizeof(ptr), "/keys/%zu/fo", i);
            P(r, ptr, "unknown-column", "%s has no field \"%s\"", fo->name, k->fo);
        }
        if (dv && !dw_meta_table_column(dv, k->dv)) {
            snprintf(ptr, sizeof(ptr), "/keys/%zu/dv", i);
            P(r, ptr, "unknown-column", "%s has no column \"%s\"", dv->name, k->dv);
        }
        if (strcmp(k->fo, "dataAreaId") == 0)
            company_ok = true;
        snprintf(ptr, sizeof(ptr), "/keys/%zu", i);
        if (!k->field) {
            P(r, ptr, "key-unmapped", "no field maps %s to %s", k->fo, k->dv);
            continue;
        }
        if (k->field->lookup && k->field->lookup->company)
            company_ok = true;
        if ((k->field->direction & m->direction) != m->direction)
            P(r, ptr, "key-direction",
              "the key field runs %s but must run in every direction the map runs (%s)",
              dw_map_dir_name(k->field->direction), dw_map_dir_name(m->direction));
    }
    if (m->fo_company_specific && m->direction != DW_MAP_FO_TO_DV && !company_ok)
        P(r, "/keys", "company-key",
          "a company-specific map that writes F&O needs dataAreaId in its key or a key lookup "
          "with company");
}

static void check_required(rules_t *r)
{
    const dw_map_t *m = r->m;
    for (int d = 0; d < 2; d++) {
        if (!dw_map_runs(m, both_dirs[d]))
            continue;
        dw_map_side_t ds = dw_map_dir_target(both_dirs[d]);
        const dw_meta_table_t *md = m->meta[ds];
        if (!md)
            continue;
        for (size_t c = 0; c < md->ncols; c++) {
            const dw_meta_column_t *col = &md->cols[c];
            if (!col->required || col->defval || col->generated)
                continue;
            bool mapped = false;
            for (size_t n = 0; n < m->nfields && !mapped; n++) {
                const dw_map_field_t *f = &m->fields[n];
                const char *dst = ds == DW_MAP_FO ? f->fo : f->dv;
                mapped = dst && dw_map_field_active(f, both_dirs[d]) && strcmp(dst, col->name) == 0;
            }
            if (!mapped)
                P(r, "/fields", "required", "%s column %s.%s is required and not mapped %s",
                  dw_map_side_name(ds), md->name, col->name, dw_map_dir_name(both_dirs[d]));
        }
    }
}

static void check_map_rules(session_t *s, const entry_t *e)
{
    const dw_map_t *m = e->map;
    rules_t rr = {s, e, m, e->path}, *r = &rr;
    const dw_meta_table_t *fo = m->meta[DW_MAP_FO], *dv = m->meta[DW_MAP_DV];
    size_t nl = strlen(m->name);
    const char *b = base_name(e->path);
    if (strncmp(b, m->name, nl) != 0 || strcmp(b + nl, ".json") != 0)
        P(r, "/name", "name-file", "name \"%s\" differs from the file name %s", m->name, b);
    if (!fo) {
        P(r, "/fo/entity", "unknown-entity", "no metadata for F&O entity \"%s\"", m->fo_entity);
    } else {
        if (strcmp(fo->entity_set, m->fo_entity_set) != 0)
            P(r, "/fo/entity_set", "entity-set", "the entity set of %s is \"%s\"", fo->name,
              fo->entity_set);
        if (fo->company_specific != m->fo_company_specific)
            P(r, "/fo/company_specific", "company-specific", "%s is %scompany-specific", fo->name,
              fo->company_specific ? "" : "not ");
    }
    if (!dv) {
        P(r, "/dv/table", "unknown-table", "no metadata for Dataverse table \"%s\"", m->dv_table);
    } else {
        if (strcmp(dv->entity_set, m->dv_entity_set) != 0)
            P(r, "/dv/entity_set", "entity-set", "the entity set of %s is \"%s\"", dv->name,
              dv->entity_set);
        if (strcmp(dv->id_column, m->dv_id_column) != 0)
            P(r, "/dv/id_column", "id-column", "the primary id of %s is \"%s\"", dv->name,
              dv->id_column);
        const dw_meta_akey_t *ak = dw_meta_table_akey_find(dv, m->dv_alternate_key);
        bool same = ak != NULL;
        for (size_t i = 0; same && i < ak->ncolumns; i++) {
            bool in = false;
            for (size_t k = 0; k < m->nkeys && !in; k++)
                in = strcmp(m->keys[k].dv, ak->columns[i]) == 0;
            same = in;
        }
        for (size_t k = 0; same && k < m->nkeys; k++)
            same = strv_has(ak->columns, ak->ncolumns, m->keys[k].dv);
        if (!same)
            P(r, "/dv/alternate_key", "alternate-key",
              ak ? "the columns of %s are not exactly keys[].dv"
                 : "%s is not an alternate key of the table",
              m->dv_alternate_key);
    }
    for (int side = 0; side < 2; side++) {
        if (!m->filter_text[side])
            continue;
        char ptr[32];
        snprintf(ptr, sizeof(ptr), "/%s/filter", dw_map_side_name((dw_map_side_t)side));
        if (!m->filter[side]) {
            P(r, ptr, "filter-syntax", "%s", m->filter_error[side]);
            continue;
        }
        const dw_meta_table_t *md = m->meta[side];
        if (!md)
            continue;
        size_t nc = dw_filter_columns(m->filter[side], NULL, 0);
        const char **cols = calloc(nc + 1, sizeof(*cols));
        if (!cols) {
            s->ck->nomem = true;
            continue;
        }
        dw_filter_columns(m->filter[side], cols, nc);
        for (size_t i = 0; i < nc; i++) {
            if (!dw_meta_table_column(md, cols[i]))
                P(r, ptr, "unknown-column", "%s has no column \"%s\"", md->name, cols[i]);
        }
        free(cols);
    }
    for (size_t n = 0; n < m->nfields; n++)
        check_field(r, &m->fields[n]);
    check_duplicates(r);
    check_keys(r);
    check_required(r);
}

/* ---- dependencies: cycles and order -----------------------------------------------------------
 */

typedef struct graph_s {
    session_t *s;
    size_t *nodes; /* entry index of each node */
    size_t n;
    size_t **adj; /* node -> nodes it depends on */
    size_t *nadj;
    size_t **adj_dep; /* and the index of that dependency in the map's deps */
    /* Tarjan */
    long *index, *low;
    bool *on_stack;
    size_t *stack, sp;
    long counter;
    long *comp; /* component id of each node */
    long ncomp;
} graph_t;

static void graph_free(graph_t *g)
{
    for (size_t i = 0; i < g->n; i++) {
        if (g->adj)
            free(g->adj[i]);
        if (g->adj_dep)
            free(g->adj_dep[i]);
    }
    free(g->nodes);
    free(g->adj);
    free(g->adj_dep);
    free(g->nadj);
    free(g->index);
    free(g->low);
    free(g->on_stack);
    free(g->stack);
    free(g->comp);
}

static bool graph_build(graph_t *g, session_t *s)
{
    *g = (graph_t){.s = s};
    g->nodes = calloc(s->n + 1, sizeof(size_t));
    if (!g->nodes)
        return false;
    for (size_t i = 0; i < s->n; i++) {
        if (s->e[i].active && s->e[i].map)
            g->nodes[g->n++] = i;
    }
    size_t n = g->n + 1;
    g->adj = calloc(n, sizeof(*g->adj));
    g->adj_dep = calloc(n, sizeof(*g->adj_dep));
    g->nadj = calloc(n, sizeof(size_t));
    g->index = calloc(n, sizeof(long));
    g->low = calloc(n, sizeof(long));
    g->on_stack = calloc(n, sizeof(bool));
    g->stack = calloc(n, sizeof(size_t));
    g->comp = calloc(n, sizeof(long));
    if (!g->adj || !g->adj_dep || !g->nadj || !g->index || !g->low || !g->on_stack || !g->stack ||
        !g->comp)
        return false;
    for (size_t a = 0; a < g->n; a++) {
        const dw_map_t *m = s->e[g->nodes[a]].map;
        g->adj[a] = calloc(m->ndeps + 1, sizeof(size_t));
        g->adj_dep[a] = calloc(m->ndeps + 1, sizeof(size_t));
        if (!g->adj[a] || !g->adj_dep[a])
            return false;
        for (size_t d = 0; d < m->ndeps; d++) {
            for (size_t b = 0; b < g->n; b++) {
                const entry_t *eb = &s->e[g->nodes[b]];
                if (b != a && eb->name && strcmp(eb->name, m->deps[d].name) == 0 &&
                    session_find(s, eb->name) == eb) {
                    g->adj_dep[a][g->nadj[a]] = d;
                    g->adj[a][g->nadj[a]++] = b;
                    break;
                }
            }
        }
    }
    for (size_t i = 0; i < g->n; i++)
        g->index[i] = -1;
    return true;
}

static void tarjan(graph_t *g, size_t v)
{
    g->index[v] = g->low[v] = g->counter++;
    g->stack[g->sp++] = v;
    g->on_stack[v] = true;
    for (size_t i = 0; i < g->nadj[v]; i++) {
        size_t w = g->adj[v][i];
        if (g->index[w] < 0) {
            tarjan(g, w);
            if (g->low[w] < g->low[v])
                g->low[v] = g->low[w];
        } else if (g->on_stack[w] && g->index[w] < g->low[v]) {
            g->low[v] = g->index[w];
        }
    }
    if (g->low[v] == g->index[v]) {
        size_t w;
        do {
            w = g->stack[--g->sp];
            g->on_stack[w] = false;
            g->comp[w] = g->ncomp;
        } while (w != v);
        g->ncomp++;
    }
}

/* Report every map of a cycle (targets only), with the path of the cycle through it. */
static void check_cycles(session_t *s)
{
    graph_t g;
    size_t *prev = NULL, *queue = NULL;
    size_t *comp_size = NULL;
    if (!graph_build(&g, s))
        goto nomem;
    for (size_t v = 0; v < g.n; v++) {
        if (g.index[v] < 0)
            tarjan(&g, v);
    }
    comp_size = calloc((size_t)g.ncomp + 1, sizeof(size_t));
    prev = calloc(g.n + 1, sizeof(size_t));
    queue = calloc(g.n + 1, sizeof(size_t));
    if (!comp_size || !prev || !queue)
        goto nomem;
    for (size_t v = 0; v < g.n; v++)
        comp_size[g.comp[v]]++;
    for (size_t v = 0; v < g.n; v++) {
        const entry_t *e = &s->e[g.nodes[v]];
        if (comp_size[g.comp[v]] < 2 || !e->target)
            continue;
        /* breadth-first from v inside its component back to v */
        for (size_t i = 0; i < g.n; i++)
            prev[i] = SIZE_MAX;
        size_t head = 0, tail = 0;
        queue[tail++] = v;
        bool found = false;
        size_t last = v;
        while (head < tail && !found) {
            size_t u = queue[head++];
            for (size_t i = 0; i < g.nadj[u] && !found; i++) {
                size_t w = g.adj[u][i];
                if (g.comp[w] != g.comp[v])
                    continue;
                if (w == v) {
                    found = true;
                    last = u;
                } else if (prev[w] == SIZE_MAX) {
                    prev[w] = u;
                    queue[tail++] = w;
                }
            }
        }
        /* path v -> ... -> last -> v, rebuilt backwards */
        size_t path[64], np = 0;
        for (size_t u = last; np < 64; u = prev[u]) {
            path[np++] = u;
            if (u == v)
                break;
        }
        char text[768];
        size_t o = 0;
        for (size_t i = np; i-- > 0 && o < sizeof(text);)
            o +=
                (size_t)snprintf(text + o, sizeof(text) - o, "%s -> ", s->e[g.nodes[path[i]]].name);
        if (o < sizeof(text))
            snprintf(text + o, sizeof(text) - o, "%s", e->name);
        /* the pointer of v's lookup naming the next map of the path */
        size_t next = np >= 2 ? path[np - 2] : v;
        const char *ptr = "/fields";
        for (size_t i = 0; i < g.nadj[v]; i++) {
            if (g.adj[v][i] == next)
                ptr = e->map->deps[g.adj_dep[v][i]].pointer;
        }
        problem(s->ck, e->path, ptr, "cycle", "the lookups of these maps form a cycle: %s", text);
    }
    goto out;
nomem:
    s->ck->nomem = true;
out:
    free(comp_size);
    free(prev);
    free(queue);
    graph_free(&g);
}

/* ---- validation and the strict load -----------------------------------------------------------
 */

/* realpath or the path itself */
static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static void session_activate(session_t *s)
{
    /* a target stands in for a map of the maps folder with the same name; among targets the
     * first of a name wins and the others are reported */
    for (size_t i = 0; i < s->n; i++) {
        entry_t *e = &s->e[i];
        if (!e->name)
            continue;
        for (size_t j = 0; j < i; j++) {
            entry_t *o = &s->e[j];
            if (!o->active || !o->name || strcmp(o->name, e->name) != 0)
                continue;
            if (!o->target) {
                o->active = false;
            } else if (e->target) {
                problem(s->ck, e->path, "/name", "duplicate-map",
                        "map \"%s\" is also defined by %s", e->name, o->path);
                e->active = false;
            }
        }
    }
}

static void session_check(session_t *s)
{
    session_load(s);
    session_activate(s);
    session_resolve(s);
    for (size_t i = 0; i < s->n; i++) {
        if (s->e[i].target && s->e[i].map)
            check_map_rules(s, &s->e[i]);
    }
    check_cycles(s);
}

/* Add the files of maps_dir as entries (targets or lookup-only). */
static dw_err_t session_add_dir(session_t *s, const char *dir, bool target, char *errstr,
                                size_t errstr_size)
{
    char **paths = NULL;
    size_t n = 0;
    dw_err_t err = list_json(dir, &paths, &n, errstr, errstr_size);
    for (size_t i = 0; !err && i < n; i++) {
        if (!session_add(s, paths[i], target))
            err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    }
    free_strv(paths, n);
    return err;
}

dw_err_t dw_map_validate(const char *const *paths, size_t npaths, const char *maps_dir,
                         const char *metadata_dir, dw_map_report_t *report, char *errstr,
                         size_t errstr_size)
{
    check_t ck = {.report = report};
    session_t s = {.ck = &ck};
    dw_err_t err = DW_OK;
    char msg[512];
    dw_meta_t *meta = meta_load(&ck, metadata_dir, errstr, errstr_size);
    if (!meta)
        return ck.nomem ? DW_ERR_NOMEM : DW_ERR_IO;
    s.meta = meta;
    size_t nstd = 0;
    if (maps_dir) {
        if (session_add_dir(&s, maps_dir, false, msg, sizeof(msg)) != DW_OK)
            problem(&ck, maps_dir, "", "io", "%s (the maps that lookups name)", msg);
        nstd = s.n;
    }
    for (size_t i = 0; i < npaths; i++) {
        struct stat st;
        if (stat(paths[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            size_t before = s.n;
            if (session_add_dir(&s, paths[i], true, msg, sizeof(msg)) != DW_OK)
                problem(&ck, paths[i], "", "io", "%s", msg);
            else if (s.n == before)
                problem(&ck, paths[i], "", "io", "no *.json file in this folder");
        } else if (!session_add(&s, paths[i], true)) {
            ck.nomem = true;
        }
    }
    /* a target that is a file of the maps folder replaces it; a file named twice counts once */
    for (size_t i = nstd; i < s.n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (!s.e[j].active || !same_file(s.e[i].path, s.e[j].path))
                continue;
            if (s.e[j].target) {
                s.e[i].active = false;
                s.e[i].target = false;
            } else {
                s.e[j].active = false;
            }
        }
    }
    /* entries made inactive above are dropped before loading */
    size_t w = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (s.e[i].active)
            s.e[w++] = s.e[i];
        else
            free(s.e[i].path);
    }
    s.n = w;
    session_check(&s);
    if (ck.nomem)
        err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    else if (ck.count)
        err = dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "%zu problem%s; the first: %s",
                      ck.count, ck.count == 1 ? "" : "s", ck.first);
    session_free(&s);
    dw_meta_destroy(meta);
    return err;
}

struct dw_mapset_s {
    dw_meta_t *meta;
    dw_map_t **maps;
    size_t n;
};

void dw_mapset_destroy(dw_mapset_t *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n; i++)
        map_destroy(set->maps[i]);
    free(set->maps);
    dw_meta_destroy(set->meta);
    free(set);
}

dw_mapset_t *dw_mapset_load(const char *maps_dir, const char *metadata_dir, dw_map_report_t *report,
                            char *errstr, size_t errstr_size)
{
    check_t ck = {.report = report};
    session_t s = {.ck = &ck};
    dw_mapset_t *set = calloc(1, sizeof(*set));
    if (!set) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (!(set->meta = meta_load(&ck, metadata_dir, errstr, errstr_size)))
        goto fail;
    s.meta = set->meta;
    if (session_add_dir(&s, maps_dir, true, errstr, errstr_size) != DW_OK)
        goto fail;
    session_check(&s);
    if (ck.nomem) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (ck.count) {
        dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "%s (%zu problem%s)", ck.first, ck.count,
                ck.count == 1 ? "" : "s");
        goto fail;
    }
    if (!(set->maps = calloc(s.n + 1, sizeof(*set->maps)))) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < s.n; i++) {
        set->maps[set->n++] = s.e[i].map;
        s.e[i].map = NULL;
    }
    session_free(&s);
    return set;
fail:
    session_free(&s);
    dw_mapset_destroy(set);
    return NULL;
}

size_t dw_mapset_count(const dw_mapset_t *set)
{
    return set->n;
}

const dw_map_t *dw_mapset_get(const dw_mapset_t *set, size_t i)
{
    return i < set->n ? set->maps[i] : NULL;
}

const dw_map_t *dw_mapset_find(const dw_mapset_t *set, const char *name)
{
    for (size_t i = 0; name && i < set->n; i++) {
        if (strcmp(set->maps[i]->name, name) == 0)
            return set->maps[i];
    }
    return NULL;
}

const dw_meta_t *dw_mapset_meta(const dw_mapset_t *set)
{
    return set->meta;
}

dw_err_t dw_mapset_order(const dw_mapset_t *set, const dw_map_t **out)
{
    bool *done = calloc(set->n + 1, sizeof(bool));
    if (!done)
        return DW_ERR_NOMEM;
    size_t k = 0;
    while (k < set->n) {
        const dw_map_t *pick = NULL;
        size_t pick_i = 0;
        for (size_t i = 0; i < set->n; i++) {
            const dw_map_t *m = set->maps[i];
            if (done[i])
                continue;
            bool ready = true;
            for (size_t d = 0; d < m->ndeps && ready; d++) {
                for (size_t j = 0; j < set->n; j++) {
                    if (!done[j] && strcmp(set->maps[j]->name, m->deps[d].name) == 0)
                        ready = false;
                }
            }
            if (ready && (!pick || strcmp(m->name, pick->name) < 0)) {
                pick = m;
                pick_i = i;
            }
        }
        if (!pick) {
            /* only reachable with a cycle, which a loaded set cannot have */
            free(done);
            return DW_ERR_INTERNAL;
        }
        done[pick_i] = true;
        out[k++] = pick;
    }
    free(done);
    return DW_OK;
}

dw_err_t dw_mapset_validate_text(const dw_mapset_t *set, const char *path, const char *text,
                                 size_t len, dw_map_report_t *report)
{
    check_t ck = {.report = report};
    session_t s = {.ck = &ck, .meta = set->meta};
    dw_err_t err = DW_OK;
    for (size_t i = 0; i < set->n; i++) {
        entry_t *e = session_add(&s, set->maps[i]->path, false);
        if (!e) {
            err = DW_ERR_NOMEM;
            goto out;
        }
        e->doc = json_incref(set->maps[i]->doc);
        e->map = set->maps[i];
        e->borrowed = true;
    }
    entry_t *t = session_add(&s, path, true);
    if (!t) {
        err = DW_ERR_NOMEM;
        goto out;
    }
    t->doc = load_json_text(&ck, path, text, len);
    if (t->doc)
        session_check(&s);
    err = ck.nomem ? DW_ERR_NOMEM : ck.count ? DW_ERR_INVALID_ARG : DW_OK;
out:
    session_free(&s);
    return err;
}
