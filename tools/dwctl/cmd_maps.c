/*
 * dwctl maps validate | list | show | apply: check table maps against their schema, the table
 * metadata and Dual-write's rules; list them in dependency order; show one; and try one on a
 * record. The operator's guide is docs/maps.md; the formats are schemas/README.md.
 *
 * Output: validate prints one "FILE: POINTER: KEYWORD: MESSAGE" line per problem on stdout (they
 * are its result, to grep or count) and a one-line summary on stderr; list, show and apply print
 * their result on stdout and every diagnostic on stderr. Exit 0 ok, 2 invalid maps or input
 * (or bad usage), 1 a runtime failure.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dw_map.h"
#include "dw_mapper.h"
#include "dwctl.h"

#define MAPS_STDIN_MAX (64u * 1024 * 1024) /* the largest record apply reads */

enum {
    OPT_MAPS = 0x101,
    OPT_METADATA,
    OPT_FULL,
    OPT_MAP = 'm',
    OPT_DIRECTION = 'd',
};

typedef struct maps_opts_s {
    dwctl_opts_t common;
    const char *maps_dir;     /* --maps, else maps.dir */
    const char *metadata_dir; /* --metadata, else <schemas>/metadata */
    const char *map;          /* apply --map */
    const char *direction;    /* apply --direction */
    bool full;                /* apply --full */
} maps_opts_t;

static maps_opts_t validate_opts, list_opts, show_opts, apply_opts;

static dw_err_t maps_opt(int opt, const char *arg, void *opaque, char *errstr, size_t errstr_size)
{
    maps_opts_t *o = opaque;
    switch (opt) {
    case DWCTL_OPT_JSON:
        o->common.json = true;
        return DW_OK;
    case OPT_MAPS:
        o->maps_dir = arg;
        return DW_OK;
    case OPT_METADATA:
        o->metadata_dir = arg;
        return DW_OK;
    case OPT_MAP:
        o->map = arg;
        return DW_OK;
    case OPT_DIRECTION: {
        dw_map_dir_t d;
        if (dw_map_dir_parse(arg, &d) != DW_OK || d == DW_MAP_BOTH)
            return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                           "--direction: '%s' is neither fo-to-dv nor dv-to-fo", arg);
        o->direction = arg;
        return DW_OK;
    }
    case OPT_FULL:
        o->full = true;
        return DW_OK;
    }
    return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "unexpected option");
}

#define LONGOPT_MAPS                                                                               \
    {                                                                                              \
        "maps", required_argument, NULL, OPT_MAPS                                                  \
    }
#define LONGOPT_METADATA                                                                           \
    {                                                                                              \
        "metadata", required_argument, NULL, OPT_METADATA                                          \
    }
#define HELP_DIRS                                                                                  \
    "      --maps DIR           the map folder (default: maps.dir)\n"                              \
    "      --metadata DIR       the table metadata folder (default: " DW_DEFAULT_SCHEMAS_DIR       \
    "/metadata)\n"

static const struct option validate_longopts[] = {
    LONGOPT_MAPS, LONGOPT_METADATA, DWCTL_LONGOPT_JSON, {0}};
static dw_cli_spec_t validate_spec = {
    .name = "maps validate",
    .synopsis = "[OPTIONS] PATH...",
    .description =
        "Check map files (or every *.json of a folder) against schemas/map.schema.json, the "
        "table metadata and Dual-write's rules (schemas/README.md). Lookups resolve against the "
        "maps of --maps plus the files named (a file named stands in for the map of the same "
        "name). Every problem of every file is printed on stdout as FILE: POINTER: KEYWORD: "
        "MESSAGE; exit 0 when there is none, 2 otherwise.",
    .options_help = HELP_DIRS "      --json               one JSON object per problem\n",
    .longopts = validate_longopts,
    .on_option = maps_opt,
    .opaque = &validate_opts,
    .min_args = 1,
    .max_args = -1,
};

static const struct option list_longopts[] = {
    LONGOPT_MAPS, LONGOPT_METADATA, DWCTL_LONGOPT_JSON, {0}};
static dw_cli_spec_t list_spec = {
    .name = "maps list",
    .synopsis = "[OPTIONS]",
    .description = "List the maps of the map folder in dependency order (every map after the "
                   "maps its lookups name): name, direction, F&O entity, Dataverse table. "
                   "Invalid maps or a cycle of lookups: the problems on stderr, exit 2.",
    .options_help = HELP_DIRS "      --json               a JSON array\n",
    .longopts = list_longopts,
    .on_option = maps_opt,
    .opaque = &list_opts,
};

static dw_cli_spec_t show_spec = {
    .name = "maps show",
    .synopsis = "[OPTIONS] NAME",
    .description = "Show one map: sides, keys, fields with their directions and transforms, "
                   "filters and the maps it depends on.",
    .options_help =
        HELP_DIRS "      --json               the map as JSON, with what was resolved\n",
    .longopts = list_longopts,
    .on_option = maps_opt,
    .opaque = &show_opts,
    .min_args = 1,
    .max_args = 1,
};

static const struct option apply_longopts[] = {
    {"map", required_argument, NULL, OPT_MAP},
    {"direction", required_argument, NULL, OPT_DIRECTION},
    {"full", no_argument, NULL, OPT_FULL},
    LONGOPT_MAPS,
    LONGOPT_METADATA,
    DWCTL_LONGOPT_JSON,
    {0},
};
static dw_cli_spec_t apply_spec = {
    .name = "maps apply",
    .synopsis = "--map NAME --direction fo-to-dv|dv-to-fo [OPTIONS] < RECORD.json",
    .description =
        "Map one source record (a JSON object on stdin: F&O fields for fo-to-dv, Dataverse "
        "columns for dv-to-fo) and print the target payload on stdout, as dw-transform would "
        "put it in a command. A record that cannot be mapped: the reason and the field on "
        "stderr, exit 2.",
    .options_help = "  -m, --map NAME           the map\n"
                    "  -d, --direction DIR      fo-to-dv or dv-to-fo\n"
                    "      --full               print {key, canonical_key, payload, content_hash, "
                    "company, in_scope}\n" HELP_DIRS,
    .shortopts = "m:d:",
    .longopts = apply_longopts,
    .on_option = maps_opt,
    .opaque = &apply_opts,
};

static const char *maps_dir(const dwctl_ctx_t *ctx, const maps_opts_t *o)
{
    const char *d = o->maps_dir ? o->maps_dir : dw_conf_get_str(ctx->conf, "maps.dir");
    return d ? d : DW_DEFAULT_SCHEMAS_DIR "/maps";
}

static const char *metadata_dir(const maps_opts_t *o)
{
    return o->metadata_dir ? o->metadata_dir : DW_DEFAULT_SCHEMAS_DIR "/metadata";
}

static json_t *problem_json(const dw_map_problem_t *p)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "file", p->file, "pointer", p->pointer, "keyword",
                     p->keyword, "message", p->message);
}

/* Print a report's problems: lines (or JSON objects) on out. */
static void print_problems(const dw_map_report_t *report, bool json, FILE *out)
{
    for (size_t i = 0; i < dw_map_report_count(report); i++) {
        const dw_map_problem_t *p = dw_map_report_get(report, i);
        if (json) {
            json_t *j = problem_json(p);
            char *text = j ? dw_mapper_dumps(j, 0, NULL) : NULL;
            json_decref(j);
            if (text)
                fprintf(out, "%s\n", text);
            free(text);
        } else {
            fprintf(out, "%s: %s: %s: %s\n", p->file, p->pointer, p->keyword, p->message);
        }
    }
}

static size_t files_with_problems(const dw_map_report_t *report)
{
    size_t files = 0;
    for (size_t i = 0; i < dw_map_report_count(report); i++) {
        const char *f = dw_map_report_get(report, i)->file;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(dw_map_report_get(report, j)->file, f) == 0;
        files += !seen;
    }
    return files;
}

static int validate_run(dwctl_ctx_t *ctx, void *opaque)
{
    maps_opts_t *o = opaque;
    char errstr[2048];
    dw_map_report_t *report = dw_map_report_new();
    if (!report) {
        fprintf(stderr, "dwctl maps validate: out of memory\n");
        return DW_EXIT_FAILURE;
    }
    dw_err_t err =
        dw_map_validate((const char *const *)ctx->argv, (size_t)ctx->argc, maps_dir(ctx, o),
                        metadata_dir(o), report, errstr, sizeof(errstr));
    print_problems(report, ctx->json, stdout);
    fflush(stdout);
    int rc = DW_EXIT_OK;
    if (err == DW_ERR_INVALID_ARG) {
        size_t n = dw_map_report_count(report);
        fprintf(stderr, "dwctl maps validate: %zu problem%s in %zu file%s\n", n, n == 1 ? "" : "s",
                files_with_problems(report), files_with_problems(report) == 1 ? "" : "s");
        rc = DW_EXIT_USAGE;
    } else if (err) {
        fprintf(stderr, "dwctl maps validate: %s\n", errstr);
        rc = err == DW_ERR_IO ? DW_EXIT_USAGE : DW_EXIT_FAILURE;
    }
    dw_map_report_destroy(report);
    return rc;
}

/* The strict load every other command starts with; problems on stderr. NULL: *rc set. */
static dw_mapset_t *load_set(dwctl_ctx_t *ctx, const maps_opts_t *o, const char *cmd, int *rc)
{
    char errstr[2048];
    dw_map_report_t *report = dw_map_report_new();
    dw_mapset_t *set =
        report ? dw_mapset_load(maps_dir(ctx, o), metadata_dir(o), report, errstr, sizeof(errstr))
               : NULL;
    if (!set) {
        if (dw_map_report_count(report)) {
            print_problems(report, false, stderr);
            fprintf(stderr, "dwctl %s: the maps of %s are not valid (%zu problem%s)\n", cmd,
                    maps_dir(ctx, o), dw_map_report_count(report),
                    dw_map_report_count(report) == 1 ? "" : "s");
            *rc = DW_EXIT_USAGE;
        } else {
            fprintf(stderr, "dwctl %s: %s\n", cmd, report ? errstr : "out of memory");
            *rc = report && strstr(errstr, "out of memory") ? DW_EXIT_FAILURE : DW_EXIT_USAGE;
        }
    }
    dw_map_report_destroy(report);
    return set;
}

static json_t *deps_json(const dw_map_t *m)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < dw_map_dep_count(m); i++)
        json_array_append_new(a, json_string(dw_map_dep(m, i)));
    return a;
}

static int list_run(dwctl_ctx_t *ctx, void *opaque)
{
    maps_opts_t *o = opaque;
    int rc = DW_EXIT_FAILURE;
    const dw_map_t **order = NULL;
    json_t *list = NULL;
    dw_mapset_t *set = load_set(ctx, o, "maps list", &rc);
    if (!set)
        return rc;
    size_t n = dw_mapset_count(set);
    order = calloc(n + 1, sizeof(*order));
    if (!order || dw_mapset_order(set, order) != DW_OK) {
        fprintf(stderr, "dwctl maps list: could not order the maps\n");
        goto out;
    }
    if (ctx->json && !(list = json_array()))
        goto out;
    for (size_t i = 0; i < n; i++) {
        const dw_map_t *m = order[i];
        if (ctx->json) {
            json_array_append_new(
                list,
                json_pack("{s:i, s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:o}", "order", (int)i + 1,
                          "name", dw_map_name(m), "version", dw_map_version(m), "direction",
                          dw_map_dir_name(dw_map_direction(m)), "fo_entity", dw_map_fo_entity(m),
                          "fo_entity_set", dw_map_fo_entity_set(m), "dv_table", dw_map_dv_table(m),
                          "dv_entity_set", dw_map_dv_entity_set(m), "depends_on", deps_json(m)));
            continue;
        }
        if (i == 0)
            printf("%-3s %-22s %-9s %-30s %-28s %s\n", "#", "MAP", "DIRECTION", "F&O ENTITY",
                   "DATAVERSE TABLE", "DEPENDS ON");
        char deps[512] = "-";
        size_t off = 0;
        for (size_t d = 0; d < dw_map_dep_count(m) && off < sizeof(deps); d++)
            off += (size_t)snprintf(deps + off, sizeof(deps) - off, "%s%s", d ? "," : "",
                                    dw_map_dep(m, d));
        printf("%-3zu %-22s %-9s %-30s %-28s %s\n", i + 1, dw_map_name(m),
               dw_map_dir_name(dw_map_direction(m)), dw_map_fo_entity(m), dw_map_dv_table(m), deps);
    }
    if (ctx->json) {
        char *text = dw_mapper_dumps(list, 0, NULL);
        if (!text)
            goto out;
        printf("%s\n", text);
        free(text);
    }
    rc = DW_EXIT_OK;
out:
    json_decref(list);
    free(order);
    dw_mapset_destroy(set);
    return rc;
}

static const char *arrow(dw_map_dir_t d)
{
    return d == DW_MAP_BOTH ? "<->" : d == DW_MAP_FO_TO_DV ? "-->" : "<--";
}

/* A transform in one line. */
static void transform_text(const dw_map_field_t *f, char *out, size_t size)
{
    size_t o = 0;
    out[0] = '\0';
    switch (f->transform) {
    case DW_MAP_XF_COPY:
        break;
    case DW_MAP_XF_VALUE_MAP:
        o += (size_t)snprintf(out, size, "value_map ");
        for (size_t i = 0; i < f->npairs && o < size; i++) {
            char *a = dw_mapper_dumps(f->pairs[i].fo, 0, NULL);
            char *b = dw_mapper_dumps(f->pairs[i].dv, 0, NULL);
            o += (size_t)snprintf(out + o, size - o, "%s%s=%s", i ? "," : "", a ? a : "?",
                                  b ? b : "?");
            free(a);
            free(b);
        }
        break;
    case DW_MAP_XF_DEFAULT: {
        char *a = f->default_fo ? dw_mapper_dumps(f->default_fo, 0, NULL) : NULL;
        char *b = f->default_dv ? dw_mapper_dumps(f->default_dv, 0, NULL) : NULL;
        snprintf(out, size, "default%s%s%s%s", a ? " fo=" : "", a ? a : "", b ? " dv=" : "",
                 b ? b : "");
        free(a);
        free(b);
        break;
    }
    case DW_MAP_XF_CONSTANT: {
        char *a = dw_mapper_dumps(f->constant, 0, NULL);
        snprintf(out, size, "constant %s", a ? a : "?");
        free(a);
        break;
    }
    case DW_MAP_XF_LOOKUP:
        for (const dw_map_lookup_t *l = f->lookup; l && o < size; l = l->fallback)
            o += (size_t)snprintf(out + o, size - o, "%s%s(%s%s%s)%s%s%s",
                                  l == f->lookup ? "lookup " : " else ",
                                  l->entity_set ? l->entity_set : "?", l->key,
                                  l->company ? "," : "", l->company ? l->company : "",
                                  l->map ? " [map " : "", l->map ? l->map : "", l->map ? "]" : "");
        break;
    }
}

static json_t *show_json(const dw_map_t *m)
{
    json_t *lookups = json_array();
    for (size_t i = 0; lookups && i < dw_map_field_count(m); i++) {
        const dw_map_field_t *f = dw_map_field(m, i);
        for (const dw_map_lookup_t *l = f->lookup; l; l = l->fallback)
            json_array_append_new(lookups, json_pack("{s:i, s:s, s:s, s:s, s:s?}", "field", (int)i,
                                                     "table", l->table, "entity_set", l->entity_set,
                                                     "key", l->key, "company", l->company));
    }
    return json_pack("{s:s, s:O, s:o, s:o}", "file", dw_map_path(m), "map", dw_map_json(m),
                     "depends_on", deps_json(m), "lookups", lookups);
}

static int show_run(dwctl_ctx_t *ctx, void *opaque)
{
    maps_opts_t *o = opaque;
    int rc = DW_EXIT_FAILURE;
    const char *name = ctx->argv[0];
    dw_mapset_t *set = load_set(ctx, o, "maps show", &rc);
    if (!set)
        return rc;
    const dw_map_t *m = dw_mapset_find(set, name);
    if (!m) {
        fprintf(stderr, "dwctl maps show: no map named \"%s\" in %s\n", name, maps_dir(ctx, o));
        rc = DW_EXIT_USAGE;
        goto out;
    }
    if (ctx->json) {
        json_t *j = show_json(m);
        char *text = j ? dw_mapper_dumps(j, 0, NULL) : NULL;
        json_decref(j);
        if (!text)
            goto out;
        printf("%s\n", text);
        free(text);
        rc = DW_EXIT_OK;
        goto out;
    }
    static const char *const unavailable[] = {"fleet default (queue)", "queue", "fail"};
    printf("map           %s (version %d)\n", dw_map_name(m), dw_map_version(m));
    printf("file          %s\n", dw_map_path(m));
    printf("description   %s\n", dw_map_description(m));
    printf("direction     %s\n", dw_map_dir_name(dw_map_direction(m)));
    printf("unavailable   %s\n", unavailable[dw_map_on_unavailable(m)]);
    printf("F&O           %s (%s)%s\n", dw_map_fo_entity(m), dw_map_fo_entity_set(m),
           dw_map_fo_company_specific(m) ? ", company-specific" : "");
    printf("Dataverse     %s (%s), id %s, alternate key %s\n", dw_map_dv_table(m),
           dw_map_dv_entity_set(m), dw_map_dv_id_column(m), dw_map_dv_alternate_key(m));
    for (int s = 0; s < 2; s++) {
        const char *f = dw_map_filter_text(m, (dw_map_side_t)s);
        printf("%s filter     %s\n", dw_map_side_name((dw_map_side_t)s), f ? f : "(none)");
    }
    printf("key          ");
    for (size_t i = 0; i < dw_map_key_count(m); i++)
        printf("%s %s = %s", i ? "," : "", dw_map_key(m, i)->fo, dw_map_key(m, i)->dv);
    printf("\ndepends on   ");
    for (size_t i = 0; i < dw_map_dep_count(m); i++)
        printf(" %s", dw_map_dep(m, i));
    printf("%s\n\nfields:\n", dw_map_dep_count(m) ? "" : " (nothing)");
    for (size_t i = 0; i < dw_map_field_count(m); i++) {
        const dw_map_field_t *f = dw_map_field(m, i);
        char t[1024];
        char fo[160], dv[160];
        snprintf(fo, sizeof(fo), "%s%s%s%s", f->fo ? f->fo : "(none)", f->fo_column ? " [" : "",
                 f->fo_column ? dw_col_type_name(f->fo_column->type) : "", f->fo_column ? "]" : "");
        snprintf(dv, sizeof(dv), "%s%s%s%s", f->dv ? f->dv : "(none)", f->dv_column ? " [" : "",
                 f->dv_column ? dw_col_type_name(f->dv_column->type) : "", f->dv_column ? "]" : "");
        transform_text(f, t, sizeof(t));
        printf("  %2zu %-48s %s %-44s %s%s%s\n", i, fo, arrow(f->direction), dv,
               f->is_key ? "key " : "", t, "");
    }
    rc = DW_EXIT_OK;
out:
    dw_mapset_destroy(set);
    return rc;
}

/* All of stdin, NUL-terminated. New, or NULL with errno (EFBIG: too large). */
static char *read_stdin(size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) {
            if (ferror(stdin)) {
                free(buf);
                return NULL;
            }
            break;
        }
        if (n == cap) {
            if (cap >= MAPS_STDIN_MAX) {
                free(buf);
                errno = EFBIG;
                return NULL;
            }
            cap *= 2;
            char *b = realloc(buf, cap + 1);
            if (!b)
                free(buf);
            buf = b;
        }
    }
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static int apply_run(dwctl_ctx_t *ctx, void *opaque)
{
    maps_opts_t *o = opaque;
    int rc = DW_EXIT_FAILURE;
    char *text = NULL, *out = NULL;
    json_t *record = NULL, *full = NULL;
    dw_mapper_result_t res = {0};
    dw_mapper_error_t err;
    dw_map_dir_t dir;
    size_t len = 0;

    if (!o->map)
        return dw_cli_usage_error(ctx->cli, &apply_spec, "--map is required");
    if (!o->direction)
        return dw_cli_usage_error(ctx->cli, &apply_spec, "--direction is required");
    dw_map_dir_parse(o->direction, &dir);
    dw_mapset_t *set = load_set(ctx, o, "maps apply", &rc);
    if (!set)
        return rc;
    const dw_map_t *m = dw_mapset_find(set, o->map);
    if (!m) {
        fprintf(stderr, "dwctl maps apply: no map named \"%s\" in %s\n", o->map, maps_dir(ctx, o));
        rc = DW_EXIT_USAGE;
        goto out;
    }
    if (!dw_map_runs(m, dir)) {
        fprintf(stderr, "dwctl maps apply: map %s runs %s only, not %s\n", o->map,
                dw_map_dir_name(dw_map_direction(m)), o->direction);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    if (!(text = read_stdin(&len))) {
        fprintf(stderr, "dwctl maps apply: could not read the record from stdin: %s\n",
                errno == EFBIG ? "larger than 64 MiB" : strerror(errno));
        rc = errno == EFBIG ? DW_EXIT_USAGE : DW_EXIT_FAILURE;
        goto out;
    }
    if (!(record = dw_mapper_loadb(text, len, &err))) {
        fprintf(stderr, "dwctl maps apply: %s: %s\n", dw_mapper_reason_name(err.reason),
                err.message);
        rc = err.reason == DW_MAPPER_NOMEM ? DW_EXIT_FAILURE : DW_EXIT_USAGE;
        goto out;
    }
    bool in_scope = true;
    if (dw_mapper_in_scope(m, dir, record, &in_scope, &err) != DW_OK) {
        fprintf(stderr, "dwctl maps apply: %s: %s\n", dw_mapper_reason_name(err.reason),
                err.message);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    if (!in_scope)
        fprintf(stderr,
                "dwctl maps apply: note: the record is outside the %s scope filter of %s "
                "(%s); dw-transform would skip it\n",
                dw_map_side_name(dw_map_dir_source(dir)), o->map,
                dw_map_filter_text(m, dw_map_dir_source(dir)));
    dw_err_t e = dw_mapper_apply(m, dir, record, &res, &err);
    if (e) {
        fprintf(stderr, "dwctl maps apply: %s: %s\n", dw_mapper_reason_name(err.reason),
                err.message);
        rc = e == DW_ERR_NOMEM ? DW_EXIT_FAILURE : DW_EXIT_USAGE;
        goto out;
    }
    if (o->full) {
        full = json_pack("{s:O, s:s, s:O, s:s, s:s?, s:b}", "key", res.key, "canonical_key",
                         res.canonical_key, "payload", res.payload, "content_hash",
                         res.content_hash, "company", res.company, "in_scope", in_scope);
        out = full ? dw_mapper_dumps(full, 0, NULL) : NULL;
    } else {
        out = dw_mapper_dumps(res.payload, 0, NULL);
    }
    if (!out) {
        fprintf(stderr, "dwctl maps apply: out of memory\n");
        goto out;
    }
    printf("%s\n", out);
    rc = DW_EXIT_OK;
out:
    free(out);
    json_decref(full);
    json_decref(record);
    free(text);
    dw_mapper_result_clear(&res);
    dw_mapset_destroy(set);
    return rc;
}

static const dwctl_cmd_t validate_cmd = {
    .words = "maps validate",
    .summary = "check map files against the schema, metadata and rules",
    .spec = &validate_spec,
    .run = validate_run,
};
static const dwctl_cmd_t list_cmd = {
    .words = "maps list",
    .summary = "list the maps in dependency order",
    .spec = &list_spec,
    .run = list_run,
};
static const dwctl_cmd_t show_cmd = {
    .words = "maps show",
    .summary = "show one map",
    .spec = &show_spec,
    .run = show_run,
};
static const dwctl_cmd_t apply_cmd = {
    .words = "maps apply",
    .summary = "map a record from stdin with a map",
    .spec = &apply_spec,
    .run = apply_run,
};

const dwctl_cmd_t *const dwctl_maps_cmds[] = {&validate_cmd, &list_cmd, &show_cmd, &apply_cmd,
                                              NULL};
