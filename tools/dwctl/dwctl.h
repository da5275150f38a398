/*
 * dwctl: the operator CLI. Each command is a function taking the parsed command line and the
 * effective configuration; main.c finds the command, parses its options and loads the config.
 */
#ifndef DWCTL_H
#define DWCTL_H

#include <stdbool.h>

#include "dw_cli.h"
#include "dw_config.h"

#include <jansson.h>

/* What every command gets. All borrowed from main. */
typedef struct dwctl_ctx_s {
    dw_cli_t *cli;
    dw_conf_t *conf;
    int argc;    /* the positional arguments of the command */
    char **argv;
    bool json;   /* --json: machine-readable output on stdout */
} dwctl_ctx_t;

/* The options every command has; the first member of each command's options struct. */
typedef struct dwctl_opts_s {
    bool json; /* --json */
} dwctl_opts_t;

/* The --json long option and the callback for commands that have no other option. */
#define DWCTL_LONGOPT_JSON {"json", no_argument, NULL, DWCTL_OPT_JSON}
dw_err_t dwctl_opt_json(int opt, const char *arg, void *opaque, char *errstr, size_t errstr_size);

/* Print a JSON value (stolen) on stdout, one line. */
void dwctl_print_json(json_t *value);

/* A command: its words, its command line, and what runs it (returns the exit code). */
typedef struct dwctl_cmd_s {
    const char *words;          /* "topics create" */
    const char *summary;        /* one line for dwctl --help */
    dw_cli_spec_t *spec; /* its options; spec->opaque (handed to run) points at a struct whose
                            first member is dwctl_opts_t */
    int (*run)(dwctl_ctx_t *ctx, void *opaque);
} dwctl_cmd_t;

/* The commands each file defines (NULL-terminated arrays of borrowed static commands). */
extern const dwctl_cmd_t *const dwctl_check_cmds[];
extern const dwctl_cmd_t *const dwctl_db_cmds[];
extern const dwctl_cmd_t *const dwctl_topics_cmds[];
extern const dwctl_cmd_t *const dwctl_groups_cmds[];
extern const dwctl_cmd_t *const dwctl_maps_cmds[];
extern const dwctl_cmd_t *const dwctl_initial_sync_cmds[];

/* Shared option values for --json, used by every command's spec. */
#define DWCTL_OPT_JSON 0x100

#endif
