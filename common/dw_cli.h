/*
 * dw_cli: the standard command line of every dwfleet binary, on getopt_long.
 *
 * Common options, accepted by every binary and every subcommand:
 *   -c, --config FILE        the JSON configuration file
 *   -X, --set KEY=VALUE      set any key, kafka.* included (repeatable)
 *       --log-level LEVEL    same as -X log.level=LEVEL
 *       --log-format FMT     same as -X log.format=FMT
 *       --dump-config[=json] print the effective configuration (secrets masked), exit 0
 *       --help-config        list the configuration keys, exit 0
 *   -h, --help               usage on stdout, exit 0
 *   -V, --version            "<program> <version> (<git rev>) librdkafka <version>", exit 0
 * A binary adds its own options (getopt short letters and long options) and a callback.
 * Parsing stops at the first non-option argument, so a binary with subcommands finds the command
 * there and parses the command's own options with dw_cli_parse() again.
 *
 * The configuration is built from defaults, then the --config file, then the environment, then
 * the flags in command-line order, whatever the order of the flags on the command line.
 *
 * Exit codes: DW_EXIT_OK (0), DW_EXIT_FAILURE (1, runtime failure), DW_EXIT_USAGE (2, bad usage,
 * bad configuration, invalid input). Functions that may end the program return DW_CLI_CONTINUE or
 * the exit code main() should return; they print the message themselves.
 */
#ifndef DW_CLI_H
#define DW_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include "dw_config.h"
#include "dw_err.h"

#define DW_EXIT_OK      0
#define DW_EXIT_FAILURE 1
#define DW_EXIT_USAGE   2

/* Returned by dw_cli_parse() and dw_cli_load() when the program should go on. */
#define DW_CLI_CONTINUE (-1)

/* Option values from DW_CLI_OPT_RESERVED up are the common long-only options; a binary's own
 * long-only options use values from 0x100 to DW_CLI_OPT_RESERVED - 1. The short letters
 * c, X, h and V are taken too. */
#define DW_CLI_OPT_RESERVED 0x7000

typedef struct dw_cli_s dw_cli_t;

/* Called for each of the binary's own options: opt is getopt_long's return value (the short
 * letter or the long option's val), arg the argument or NULL (borrowed from argv). A non-zero
 * return ends parsing: the message in errstr is printed and the exit code follows from the error
 * (dw_cli_exit_code: invalid argument/config/parse: 2, anything else: 1). */
typedef dw_err_t(dw_cli_opt_cb)(int opt, const char *arg, void *opaque, char *errstr,
                                size_t errstr_size);

/* What one command line accepts: the program's top level or one subcommand. Zero-initialise and
 * fill what applies; every pointer is borrowed and must outlive the parse. */
typedef struct dw_cli_spec_s {
    const char *name;         /* subcommand words for usage ("topics create"); NULL at top level */
    const char *synopsis;     /* after the name in "Usage:", e.g. "[OPTIONS] COMMAND [ARGS...]" */
    const char *description;  /* paragraph after the usage line; may be NULL */
    const char *options_help; /* the binary's own options, preformatted lines; may be NULL */
    const char *shortopts; /* the binary's own short options, getopt syntax ("p:n"); may be NULL */
    const struct option *longopts; /* the binary's own long options, {0}-terminated; may be NULL */
    dw_cli_opt_cb *on_option;      /* required when shortopts or longopts are given */
    void *opaque;                  /* passed to on_option */
    int min_args;                  /* positional arguments after the options: at least min_args, */
    int max_args;                  /* at most max_args (< 0: no limit); {0, 0} allows none */
} dw_cli_spec_t;

/* New command-line state for program (borrowed: a literal such as "dw-writer"; also passed to
 * dw_log_init). tables/foreign: as for dw_conf_new (borrowed, static; NULL tables = the common
 * keys only). NULL on allocation failure. */
dw_cli_t *dw_cli_new(const char *program, const dw_conf_def_t *const *tables,
                     const char *const *foreign);
void dw_cli_destroy(dw_cli_t *cli);

/* Where usage, version and dumps (out, default stdout) and diagnostics (err, default stderr) go.
 * Borrowed; for tests. */
void dw_cli_set_streams(dw_cli_t *cli, FILE *out, FILE *err);

/* Parse the options of argv[*argip ..] against spec: the top level with *argip == 1, or a
 * subcommand with *argip just after the subcommand's word. Common options are
 * collected in cli; the binary's own go to spec->on_option. Stops at the first non-option
 * argument or after "--"; *argip is then the index of the first positional argument.
 * Returns DW_CLI_CONTINUE, or the exit code after -h/-V/--help-config (0) or a usage error (2,
 * message and usage on stderr). The positional count is checked against spec unless
 * --dump-config was given. argv: borrowed; getopt_long's global state is reset first. */
int dw_cli_parse(dw_cli_t *cli, const dw_cli_spec_t *spec, int argc, char **argv, int *argip);

/* Build the configuration (defaults, --config file, envp or environ when NULL, flags), apply
 * log.level and log.format to dw_log, print it and return 0 when --dump-config was given,
 * then check required keys. Returns DW_CLI_CONTINUE with *confp new (dw_conf_destroy), or an
 * exit code (every problem on stderr, one per line, naming origin and key; *confp NULL). */
int dw_cli_load(dw_cli_t *cli, char *const *envp, dw_conf_t **confp);

/* The same configuration again, quietly (for a reload on SIGHUP): new conf, or NULL with every
 * problem in errstr. Does not touch dw_log; see dw_cli_apply_log. */
dw_conf_t *dw_cli_build_conf(const dw_cli_t *cli, char *const *envp, char *errstr,
                             size_t errstr_size);

/* Apply log.level and log.format of conf to dw_log. conf: borrowed. */
void dw_cli_apply_log(const dw_conf_t *conf);

/* Print "program[ name]: message" and the usage of spec (NULL: no usage) on the error stream;
 * returns DW_EXIT_USAGE, for a binary's own argument checks. */
int dw_cli_usage_error(const dw_cli_t *cli, const dw_cli_spec_t *spec, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Print the usage of spec with the common options to out. */
void dw_cli_usage(const dw_cli_t *cli, const dw_cli_spec_t *spec, FILE *out);

/* The exit code for an error: 0 for DW_OK, 2 for invalid argument, configuration or parse
 * errors, 1 for anything else. */
int dw_cli_exit_code(dw_err_t err);

/* Borrowed from cli. */
const char *dw_cli_program(const dw_cli_t *cli);
/* The --config path, or NULL. Borrowed from cli. */
const char *dw_cli_config_path(const dw_cli_t *cli);
/* True when --dump-config was given. */
bool dw_cli_dump_requested(const dw_cli_t *cli);

#endif
