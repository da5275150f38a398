/*
 * dwctl: the operator CLI of dwfleet. Finds the command from the first one or two words, parses
 * that command's options (the common ones -c/-X/--dump-config included), builds the
 * configuration and runs the command. Exit codes: 0 ok, 1 runtime failure, 2 bad usage,
 * configuration or input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_cli.h"
#include "dw_config.h"
#include "dw_log.h"
#include "dw_system.h"
#include "dw_topics.h"
#include "dwctl.h"

/* dwctl has no keys of its own: the fleet's common keys, topics.* and the dv.* / fo.* connections
 * (initial-sync). */
static const dw_conf_def_t *const dwctl_tables[] = {dw_conf_common_defs, dw_topics_conf_defs,
                                                      dw_system_conf_defs, NULL};

/* Sections of the shared fleet file that belong to other components. */
static const char *const dwctl_foreign[] = {"capture", "transform", "writer", "monitor",
                                            "emulator", NULL};

static const dwctl_cmd_t *const *const dwctl_groups[] = {
    dwctl_check_cmds, dwctl_db_cmds,           dwctl_topics_cmds, dwctl_groups_cmds,
    dwctl_maps_cmds,  dwctl_initial_sync_cmds, NULL};

static char dwctl_top_help[4096];

static void dwctl_build_top_help(void)
{
    size_t o = 0;
    o += (size_t)snprintf(dwctl_top_help + o, sizeof(dwctl_top_help) - o,
                          "The operator CLI of dwfleet: checks, database migrations, topics,"
                          " consumer groups, maps, initial sync.\n\n"
                          "Commands:\n");
    for (int g = 0; dwctl_groups[g]; g++) {
        for (int c = 0; dwctl_groups[g][c]; c++) {
            const dwctl_cmd_t *cmd = dwctl_groups[g][c];
            if (o < sizeof(dwctl_top_help))
                o += (size_t)snprintf(dwctl_top_help + o, sizeof(dwctl_top_help) - o,
                                      "  %-22s %s\n", cmd->words, cmd->summary);
        }
    }
    if (o < sizeof(dwctl_top_help))
        snprintf(dwctl_top_help + o, sizeof(dwctl_top_help) - o,
                 "\nRun 'dwctl COMMAND --help' for a command's options.\n");
}

/* The command whose words start argv[argi..]; *nwords: how many words it took. */
static const dwctl_cmd_t *dwctl_find(int argc, char **argv, int argi, int *nwords)
{
    for (int g = 0; dwctl_groups[g]; g++) {
        for (int c = 0; dwctl_groups[g][c]; c++) {
            const dwctl_cmd_t *cmd = dwctl_groups[g][c];
            const char *w = cmd->words;
            int i = argi;
            bool match = true;
            while (*w && match) {
                size_t len = strcspn(w, " ");
                match = i < argc && strlen(argv[i]) == len && strncmp(argv[i], w, len) == 0;
                i++;
                w += len;
                w += strspn(w, " ");
            }
            if (match) {
                *nwords = i - argi;
                return cmd;
            }
        }
    }
    return NULL;
}

dw_err_t dwctl_opt_json(int opt, const char *arg, void *opaque, char *errstr, size_t errstr_size)
{
    if (opt != DWCTL_OPT_JSON)
        return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "unexpected option");
    ((dwctl_opts_t *)opaque)->json = true;
    return DW_OK;
}

void dwctl_print_json(json_t *value)
{
    char *text = value ? json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (text)
        printf("%s\n", text);
    free(text);
    json_decref(value);
}

int main(int argc, char **argv)
{
    int rc = DW_EXIT_FAILURE;
    dw_conf_t *conf = NULL;
    dw_cli_t *cli = dw_cli_new("dwctl", dwctl_tables, dwctl_foreign);
    if (!cli) {
        fprintf(stderr, "dwctl: out of memory\n");
        return DW_EXIT_FAILURE;
    }
    dwctl_build_top_help();
    dw_cli_spec_t top = {
        .synopsis = "[OPTIONS] COMMAND [ARGS...]",
        .description = dwctl_top_help,
        .max_args = -1,
        .min_args = 1,
    };
    int argi = 1;
    rc = dw_cli_parse(cli, &top, argc, argv, &argi);
    if (rc != DW_CLI_CONTINUE)
        goto out;

    if (argi >= argc) {
        /* only --dump-config gets here without a command (the spec requires one otherwise) */
        rc = dw_cli_load(cli, NULL, &conf);
        goto out;
    }
    int nwords = 0;
    const dwctl_cmd_t *cmd = dwctl_find(argc, argv, argi, &nwords);
    if (!cmd) {
        rc = dw_cli_usage_error(cli, &top, "unknown command '%s'", argv[argi]);
        goto out;
    }
    /* The command's own options follow its last word. */
    int cmdi = argi + nwords;
    rc = dw_cli_parse(cli, cmd->spec, argc, argv, &cmdi);
    if (rc != DW_CLI_CONTINUE)
        goto out;
    rc = dw_cli_load(cli, NULL, &conf);
    if (rc != DW_CLI_CONTINUE)
        goto out;

    dwctl_ctx_t ctx = {
        .cli = cli,
        .conf = conf,
        .argc = argc - cmdi,
        .argv = argv + cmdi,
    };
    const dwctl_opts_t *opts = cmd->spec->opaque;
    ctx.json = opts ? opts->json : false;
    rc = cmd->run(&ctx, cmd->spec->opaque);
out:
    dw_conf_destroy(conf);
    dw_cli_destroy(cli);
    return rc;
}
