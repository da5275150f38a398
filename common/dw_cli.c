/*
 * dw_cli: getopt_long over the common options plus a binary's own, usage and version text, and
 * the configuration built from defaults, file, environment and flags in that order.
 */
#include "dw_cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "dw_log.h"

#ifndef DW_VERSION
#define DW_VERSION "0.0.0"
#endif
#ifndef DW_GIT_REV
#define DW_GIT_REV "unknown"
#endif

extern char **environ;

#define DW_CLI_ERR_MAX 8192

enum {
    DW_CLI_OPT_DUMP = DW_CLI_OPT_RESERVED,
    DW_CLI_OPT_HELP_CONFIG,
    DW_CLI_OPT_LOG_LEVEL,
    DW_CLI_OPT_LOG_FORMAT,
};

static const char dw_cli_common_short[] = "c:X:hV";

static const struct option dw_cli_common_long[] = {
    {"config", required_argument, NULL, 'c'},
    {"set", required_argument, NULL, 'X'},
    {"dump-config", optional_argument, NULL, DW_CLI_OPT_DUMP},
    {"help-config", no_argument, NULL, DW_CLI_OPT_HELP_CONFIG},
    {"log-level", required_argument, NULL, DW_CLI_OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, DW_CLI_OPT_LOG_FORMAT},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* One configuration flag, applied after the file and the environment. */
typedef struct dw_cli_flag_s {
    char *key;          /* owned */
    char *value;        /* owned */
    const char *origin; /* static: "--set", "--log-level", "--log-format" */
} dw_cli_flag_t;

struct dw_cli_s {
    const char *program;                /* borrowed */
    const dw_conf_def_t *const *tables; /* borrowed */
    const char *const *foreign;         /* borrowed */
    FILE *out, *err;                    /* borrowed; NULL = stdout, stderr */
    char *config_path;                  /* owned */
    dw_cli_flag_t *flags;               /* owned */
    size_t nflags;
    bool dump, dump_json;
};

dw_cli_t *dw_cli_new(const char *program, const dw_conf_def_t *const *tables,
                     const char *const *foreign)
{
    dw_cli_t *cli = calloc(1, sizeof(*cli));
    if (!cli)
        return NULL;
    cli->program = program ? program : "dwfleet";
    cli->tables = tables;
    cli->foreign = foreign;
    dw_log_init(cli->program);
    return cli;
}

void dw_cli_destroy(dw_cli_t *cli)
{
    if (!cli)
        return;
    for (size_t k = 0; k < cli->nflags; k++) {
        free(cli->flags[k].key);
        free(cli->flags[k].value);
    }
    free(cli->flags);
    free(cli->config_path);
    free(cli);
}

void dw_cli_set_streams(dw_cli_t *cli, FILE *out, FILE *err)
{
    cli->out = out;
    cli->err = err;
}

static FILE *dw_cli_out(const dw_cli_t *cli)
{
    return cli->out ? cli->out : stdout;
}

static FILE *dw_cli_errf(const dw_cli_t *cli)
{
    return cli->err ? cli->err : stderr;
}

const char *dw_cli_program(const dw_cli_t *cli)
{
    return cli->program;
}

const char *dw_cli_config_path(const dw_cli_t *cli)
{
    return cli->config_path;
}

bool dw_cli_dump_requested(const dw_cli_t *cli)
{
    return cli->dump;
}

int dw_cli_exit_code(dw_err_t err)
{
    switch (err) {
    case DW_OK:
        return DW_EXIT_OK;
    case DW_ERR_INVALID_ARG:
    case DW_ERR_CONFIG:
    case DW_ERR_PARSE:
        return DW_EXIT_USAGE;
    default:
        return DW_EXIT_FAILURE;
    }
}

void dw_cli_usage(const dw_cli_t *cli, const dw_cli_spec_t *spec, FILE *out)
{
    const char *name = spec && spec->name ? spec->name : NULL;
    fprintf(out, "Usage: %s%s%s %s\n", cli->program, name ? " " : "", name ? name : "",
            spec && spec->synopsis ? spec->synopsis : "[OPTIONS]");
    if (spec && spec->description)
        fprintf(out, "\n%s\n", spec->description);
    if (spec && spec->options_help)
        fprintf(out, "\nOptions:\n%s", spec->options_help);
    if (name) {
        fprintf(out,
                "\nThe common options (-c, -X, --log-level, ...) are accepted too: see '%s "
                "--help'.\n",
                cli->program);
        return;
    }
    fprintf(out,
            "\nCommon options:\n"
            "  -c, --config FILE         JSON configuration file\n"
            "  -X, --set KEY=VALUE       set a configuration key (repeatable); kafka.<property>\n"
            "                            passes any librdkafka property through\n"
            "      --log-level LEVEL     debug, info, warn or error (log.level)\n"
            "      --log-format FORMAT   text or json (log.format)\n"
            "      --dump-config[=json]  print the effective configuration, secrets masked\n"
            "      --help-config         list the configuration keys\n"
            "  -h, --help                show this help\n"
            "  -V, --version             show the version\n"
            "\nConfiguration: defaults < --config file < DW_* environment < -X and other flags.\n"
            "Exit status: 0 ok, 1 runtime failure, 2 bad usage or configuration.\n");
}

static void dw_cli_vmsg(const dw_cli_t *cli, const dw_cli_spec_t *spec, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void dw_cli_vmsg(const dw_cli_t *cli, const dw_cli_spec_t *spec, const char *fmt, va_list ap)
{
    FILE *err = dw_cli_errf(cli);
    const char *name = spec && spec->name ? spec->name : NULL;
    fprintf(err, "%s%s%s: ", cli->program, name ? " " : "", name ? name : "");
    vfprintf(err, fmt, ap);
    fputc('\n', err);
}

int dw_cli_usage_error(const dw_cli_t *cli, const dw_cli_spec_t *spec, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dw_cli_vmsg(cli, spec, fmt, ap);
    va_end(ap);
    if (spec) {
        fputc('\n', dw_cli_errf(cli));
        dw_cli_usage(cli, spec, dw_cli_errf(cli));
    }
    fflush(dw_cli_errf(cli));
    return DW_EXIT_USAGE;
}

/* Print every line of a multi-line message with the program's name in front. */
static void dw_cli_print_lines(const dw_cli_t *cli, const char *text)
{
    FILE *err = dw_cli_errf(cli);
    while (*text) {
        size_t l = strcspn(text, "\n");
        fprintf(err, "%s: %.*s\n", cli->program, (int)l, text);
        text += l;
        if (*text == '\n')
            text++;
    }
    fflush(err);
}

static dw_err_t dw_cli_add_flag(dw_cli_t *cli, const char *key, size_t keylen, const char *value,
                                const char *origin)
{
    dw_cli_flag_t *n = realloc(cli->flags, (cli->nflags + 1) * sizeof(*n));
    if (!n)
        return DW_ERR_NOMEM;
    cli->flags = n;
    dw_cli_flag_t *f = &cli->flags[cli->nflags];
    f->key = strndup(key, keylen);
    f->value = strdup(value);
    f->origin = origin;
    if (!f->key || !f->value) {
        free(f->key);
        free(f->value);
        return DW_ERR_NOMEM;
    }
    cli->nflags++;
    return DW_OK;
}

/* The common options followed by spec's: new arrays in *longp and *shortp. */
static dw_err_t dw_cli_merge_options(const dw_cli_spec_t *spec, struct option **longp,
                                     char **shortp, char *errstr, size_t errstr_size)
{
    size_t ncommon = sizeof(dw_cli_common_long) / sizeof(dw_cli_common_long[0]) - 1;
    size_t nown = 0;
    const char *own_short = spec->shortopts ? spec->shortopts : "";
    struct option *lo = NULL;
    char *so = NULL;
    dw_err_t err = DW_OK;

    for (const char *s = own_short; *s; s++) {
        if (*s != ':' && strchr(dw_cli_common_short, *s)) {
            err = dw_errf(DW_ERR_INTERNAL, errstr, errstr_size,
                          "option -%c is one of the common options", *s);
            goto out;
        }
    }
    for (const struct option *o = spec->longopts; o && o->name; o++, nown++) {
        for (size_t k = 0; k < ncommon; k++) {
            if (strcmp(o->name, dw_cli_common_long[k].name) == 0 || o->val >= DW_CLI_OPT_RESERVED) {
                err = dw_errf(DW_ERR_INTERNAL, errstr, errstr_size,
                              "option --%s clashes with the common options", o->name);
                goto out;
            }
        }
    }
    if ((nown || *own_short) && !spec->on_option) {
        err = dw_errf(DW_ERR_INTERNAL, errstr, errstr_size, "options given without a callback");
        goto out;
    }
    lo = calloc(ncommon + nown + 1, sizeof(*lo));
    so = malloc(strlen(own_short) + sizeof(dw_cli_common_short) + 2);
    if (!lo || !so) {
        err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto out;
    }
    memcpy(lo, dw_cli_common_long, ncommon * sizeof(*lo));
    if (nown)
        memcpy(lo + ncommon, spec->longopts, nown * sizeof(*lo));
    /* '+': stop at the first non-option; ':': report a missing argument as ':' */
    snprintf(so, strlen(own_short) + sizeof(dw_cli_common_short) + 2, "+:%s%s", dw_cli_common_short,
             own_short);
    *longp = lo;
    *shortp = so;
    lo = NULL;
    so = NULL;
out:
    free(lo);
    free(so);
    return err;
}

static int dw_cli_print_help_config(dw_cli_t *cli)
{
    char errstr[DW_CLI_ERR_MAX];
    dw_conf_t *conf = dw_conf_new(cli->tables, cli->foreign, errstr, sizeof(errstr));
    if (!conf) {
        dw_cli_print_lines(cli, errstr);
        return DW_EXIT_FAILURE;
    }
    fprintf(dw_cli_out(cli), "Configuration keys of %s:\n", cli->program);
    dw_conf_print_help(conf, dw_cli_out(cli));
    fflush(dw_cli_out(cli));
    dw_conf_destroy(conf);
    return DW_EXIT_OK;
}

int dw_cli_parse(dw_cli_t *cli, const dw_cli_spec_t *spec, int argc, char **argv, int *argip)
{
    static const dw_cli_spec_t empty = {0};
    struct option *lo = NULL;
    char *so = NULL;
    char errstr[DW_CLI_ERR_MAX];
    int rc = DW_CLI_CONTINUE;
    /* argv[base] (the program or the subcommand's word) plays getopt's argv[0] */
    int base = *argip > 0 ? *argip - 1 : 0;
    int ac = argc - base;
    char **av = argv + base;
    dw_err_t err;

    if (!spec)
        spec = &empty;
    err = dw_cli_merge_options(spec, &lo, &so, errstr, sizeof(errstr));
    if (err) {
        dw_cli_print_lines(cli, errstr);
        rc = DW_EXIT_FAILURE;
        goto out;
    }

    optind = 0; /* glibc: a full reset, as each call parses a new vector */
    opterr = 0;
    while (rc == DW_CLI_CONTINUE) {
        int opt = getopt_long(ac, av, so, lo, NULL);
        if (opt == -1)
            break;
        const char *word = av[optind - 1]; /* the argument that held the option */
        switch (opt) {
        case 'c':
            free(cli->config_path);
            cli->config_path = strdup(optarg);
            if (!cli->config_path)
                rc = DW_EXIT_FAILURE;
            break;
        case 'X': {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                rc = dw_cli_usage_error(cli, NULL, "-X/--set expects KEY=VALUE, not '%s'", optarg);
                break;
            }
            if (dw_cli_add_flag(cli, optarg, (size_t)(eq - optarg), eq + 1, "--set"))
                rc = DW_EXIT_FAILURE;
            break;
        }
        case DW_CLI_OPT_LOG_LEVEL:
            if (dw_cli_add_flag(cli, "log.level", 9, optarg, "--log-level"))
                rc = DW_EXIT_FAILURE;
            break;
        case DW_CLI_OPT_LOG_FORMAT:
            if (dw_cli_add_flag(cli, "log.format", 10, optarg, "--log-format"))
                rc = DW_EXIT_FAILURE;
            break;
        case DW_CLI_OPT_DUMP:
            if (optarg && strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0) {
                rc = dw_cli_usage_error(cli, NULL, "--dump-config takes 'text' or 'json', not '%s'",
                                        optarg);
                break;
            }
            cli->dump = true;
            cli->dump_json = optarg && strcmp(optarg, "json") == 0;
            break;
        case DW_CLI_OPT_HELP_CONFIG:
            rc = dw_cli_print_help_config(cli);
            break;
        case 'h':
            dw_cli_usage(cli, spec, dw_cli_out(cli));
            fflush(dw_cli_out(cli));
            rc = DW_EXIT_OK;
            break;
        case 'V':
            fprintf(dw_cli_out(cli), "%s %s (%s) librdkafka %s\n", cli->program, DW_VERSION,
                    DW_GIT_REV, rd_kafka_version_str());
            fflush(dw_cli_out(cli));
            rc = DW_EXIT_OK;
            break;
        case '?':
            /* glibc: optopt is the letter of an unknown short option, 0 for a long one */
            if (optopt && strncmp(word, "--", 2) == 0 && strchr(word, '='))
                rc = dw_cli_usage_error(cli, spec, "option '%s' takes no argument", word);
            else if (optopt)
                rc = dw_cli_usage_error(cli, spec, "unknown option '-%c'", optopt);
            else
                rc = dw_cli_usage_error(cli, spec, "unknown or ambiguous option '%s'", word);
            break;
        case ':':
            /* a missing argument is always at the end, so word is the option itself */
            if (strncmp(word, "--", 2) == 0)
                rc = dw_cli_usage_error(cli, spec, "option '%s' needs an argument", word);
            else
                rc = dw_cli_usage_error(cli, spec, "option '-%c' needs an argument", optopt);
            break;
        case 0:
            break; /* a long option that set its flag itself */
        default:
            errstr[0] = '\0';
            err = spec->on_option
                      ? spec->on_option(opt, optarg, spec->opaque, errstr, sizeof(errstr))
                      : DW_ERR_INTERNAL;
            if (err) {
                rc = dw_cli_exit_code(err);
                if (rc == DW_EXIT_USAGE)
                    dw_cli_usage_error(cli, spec, "%s", errstr[0] ? errstr : dw_err2str(err));
                else
                    dw_cli_print_lines(cli, errstr[0] ? errstr : dw_err2str(err));
            }
            break;
        }
    }
    if (rc != DW_CLI_CONTINUE)
        goto out;

    *argip = base + optind;
    int npos = argc - *argip;
    if (cli->dump)
        goto out; /* --dump-config works without the arguments a run would need */
    if (npos < spec->min_args)
        rc = dw_cli_usage_error(cli, spec, "missing argument");
    else if (spec->max_args >= 0 && npos > spec->max_args)
        rc = dw_cli_usage_error(cli, spec, "unexpected argument '%s'",
                                argv[*argip + spec->max_args]);
out:
    free(lo);
    free(so);
    return rc;
}

/* Append one message to a multi-line buffer, cut safely when full. */
static void dw_cli_append(char *buf, size_t size, const char *msg)
{
    size_t l = strlen(buf);
    if (l > 0 && l + 1 < size)
        buf[l++] = '\n';
    size_t n = strlen(msg);
    if (n > size - l - 1)
        n = size - l - 1;
    memcpy(buf + l, msg, n);
    buf[l + n] = '\0';
}

dw_conf_t *dw_cli_build_conf(const dw_cli_t *cli, char *const *envp, char *errstr,
                             size_t errstr_size)
{
    char msg[DW_CLI_ERR_MAX];
    char *all = NULL;
    dw_conf_t *conf = NULL;
    bool failed = false;

    all = calloc(1, DW_CLI_ERR_MAX);
    if (!all) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto out;
    }
    conf = dw_conf_new(cli->tables, cli->foreign, msg, sizeof(msg));
    if (!conf) {
        dw_cli_append(all, DW_CLI_ERR_MAX, msg);
        failed = true;
        goto out;
    }
    /* Every source is read even after a bad one, so that one run reports every problem. */
    if (cli->config_path && dw_conf_load_file(conf, cli->config_path, msg, sizeof(msg))) {
        dw_cli_append(all, DW_CLI_ERR_MAX, msg);
        failed = true;
    }
    if (dw_conf_load_env(conf, envp ? envp : environ, msg, sizeof(msg))) {
        dw_cli_append(all, DW_CLI_ERR_MAX, msg);
        failed = true;
    }
    for (size_t k = 0; k < cli->nflags; k++) {
        const dw_cli_flag_t *f = &cli->flags[k];
        if (dw_conf_set(conf, f->key, f->value, DW_CONF_SRC_FLAG, f->origin, msg, sizeof(msg))) {
            dw_cli_append(all, DW_CLI_ERR_MAX, msg);
            failed = true;
        }
    }
out:
    if (failed) {
        dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "%s", all);
        dw_conf_destroy(conf);
        conf = NULL;
    }
    free(all);
    return conf;
}

void dw_cli_apply_log(const dw_conf_t *conf)
{
    dw_log_level_t level;
    dw_log_format_t format;
    if (dw_log_level_parse(dw_conf_get_str(conf, "log.level"), &level) == DW_OK)
        dw_log_set_level(level);
    if (dw_log_format_parse(dw_conf_get_str(conf, "log.format"), &format) == DW_OK)
        dw_log_set_format(format);
}

int dw_cli_load(dw_cli_t *cli, char *const *envp, dw_conf_t **confp)
{
    char errstr[DW_CLI_ERR_MAX];
    dw_conf_t *conf = NULL;
    int rc = DW_CLI_CONTINUE;

    *confp = NULL;
    conf = dw_cli_build_conf(cli, envp, errstr, sizeof(errstr));
    if (!conf) {
        dw_cli_print_lines(cli, errstr);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    dw_cli_apply_log(conf);
    if (cli->dump) {
        dw_conf_dump(conf, dw_cli_out(cli), cli->dump_json);
        rc = DW_EXIT_OK;
        goto out;
    }
    if (dw_conf_check(conf, errstr, sizeof(errstr))) {
        dw_cli_print_lines(cli, errstr);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    *confp = conf;
    conf = NULL;
out:
    dw_conf_destroy(conf);
    return rc;
}
