/*
 * Unit tests of dw_cli: help and version, usage errors and their exit codes, the order in which
 * file, environment and flags apply, --dump-config, and a dwctl-like program with subcommands
 * that parse their own options.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "dw_cli.h"
#include "dw_log.h"

#define ASSERT_CONTAINS(hay, needle)                                                               \
    cr_assert(strstr((hay), (needle)) != NULL, "expected \"%s\" in:\n%s", (needle), (hay))

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])) - 1)

static char tmpdir[64];
static char cfgpath[128];

/* Captured output and diagnostics of one run. */
static char *out_buf, *err_buf;
static size_t out_len, err_len;
static FILE *out_fp, *err_fp;

static void cli_setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/dw_test_cli.XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(cfgpath, sizeof(cfgpath), "%s/dw.json", tmpdir);
    out_fp = open_memstream(&out_buf, &out_len);
    err_fp = open_memstream(&err_buf, &err_len);
}

static void cli_teardown(void)
{
    fclose(out_fp);
    fclose(err_fp);
    free(out_buf);
    free(err_buf);
    unlink(cfgpath);
    rmdir(tmpdir);
}

static void write_config(const char *text)
{
    FILE *fp = fopen(cfgpath, "w");
    cr_assert_not_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static dw_cli_t *new_cli(void)
{
    dw_cli_t *cli = dw_cli_new("dwtest", NULL, NULL);
    cr_assert_not_null(cli);
    dw_cli_set_streams(cli, out_fp, err_fp);
    return cli;
}

/* Flush the captured streams so out_buf and err_buf hold everything so far. */
static void captured(void)
{
    fflush(out_fp);
    fflush(err_fp);
}

TestSuite(cli, .init = cli_setup, .fini = cli_teardown);

Test(cli, help_prints_usage_on_stdout_and_exits_0)
{
    char *argv[] = {"dwtest", "--help", NULL};
    int argi = 1;
    dw_cli_spec_t spec = {.synopsis = "[OPTIONS]", .options_help = "  -n N   how many\n"};
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, &spec, ARGC(argv), argv, &argi), DW_EXIT_OK);
    captured();
    ASSERT_CONTAINS(out_buf, "Usage: dwtest [OPTIONS]");
    ASSERT_CONTAINS(out_buf, "-n N   how many");
    ASSERT_CONTAINS(out_buf, "--config FILE");
    ASSERT_CONTAINS(out_buf, "--dump-config");
    cr_assert_eq(err_len, 0);
    dw_cli_destroy(cli);
}

Test(cli, version_names_program_and_librdkafka)
{
    char *argv[] = {"dwtest", "-V", NULL};
    char want[128];
    int argi = 1;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv), argv, &argi), DW_EXIT_OK);
    captured();
    cr_assert(strncmp(out_buf, "dwtest ", 7) == 0, "%s", out_buf);
    snprintf(want, sizeof(want), ") librdkafka %s\n", rd_kafka_version_str());
    ASSERT_CONTAINS(out_buf, want);
    ASSERT_CONTAINS(out_buf, " (");
    dw_cli_destroy(cli);
}

Test(cli, unknown_option_is_a_usage_error_with_usage_on_stderr)
{
    char *argv[] = {"dwtest", "--frobnicate", NULL};
    int argi = 1;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv), argv, &argi), DW_EXIT_USAGE);
    captured();
    ASSERT_CONTAINS(err_buf, "dwtest: unknown or ambiguous option '--frobnicate'");
    ASSERT_CONTAINS(err_buf, "Usage: dwtest");
    cr_assert_eq(out_len, 0, "nothing on stdout on a usage error");
    dw_cli_destroy(cli);
}

Test(cli, unknown_short_option_is_a_usage_error)
{
    char *argv[] = {"dwtest", "-q", NULL};
    int argi = 1;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv), argv, &argi), DW_EXIT_USAGE);
    captured();
    ASSERT_CONTAINS(err_buf, "unknown option '-q'");
    dw_cli_destroy(cli);
}

Test(cli, missing_option_argument_is_a_usage_error)
{
    char *argv_long[] = {"dwtest", "--config", NULL};
    char *argv_short[] = {"dwtest", "-X", NULL};
    int argi = 1;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv_long), argv_long, &argi), DW_EXIT_USAGE);
    argi = 1;
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv_short), argv_short, &argi), DW_EXIT_USAGE);
    captured();
    ASSERT_CONTAINS(err_buf, "option '--config' needs an argument");
    ASSERT_CONTAINS(err_buf, "option '-X' needs an argument");
    dw_cli_destroy(cli);
}

Test(cli, set_without_equals_is_a_usage_error)
{
    char *argv[] = {"dwtest", "-X", "log.level", NULL};
    int argi = 1;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv), argv, &argi), DW_EXIT_USAGE);
    captured();
    ASSERT_CONTAINS(err_buf, "expects KEY=VALUE");
    dw_cli_destroy(cli);
}

Test(cli, stray_argument_of_a_daemon_is_a_usage_error)
{
    char *argv[] = {"dwtest", "extra", NULL};
    int argi = 1;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv), argv, &argi), DW_EXIT_USAGE);
    captured();
    ASSERT_CONTAINS(err_buf, "unexpected argument 'extra'");
    dw_cli_destroy(cli);
}

Test(cli, flags_override_environment_which_overrides_file_whatever_the_order)
{
    write_config("{\"log\": {\"level\": \"debug\", \"format\": \"json\"},"
                 " \"pg\": {\"connect_timeout_ms\": 1000}}");
    /* the flag comes before --config on the command line and still wins */
    char *argv[] = {"dwtest", "-X", "pg.connect_timeout_ms=2000", "--config", cfgpath, NULL};
    char *env[] = {"DW_LOG_LEVEL=warn", "DW_PG_CONNECT_TIMEOUT_MS=1500", NULL};
    int argi = 1;
    dw_conf_t *conf = NULL;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv), argv, &argi), DW_CLI_CONTINUE);
    cr_assert_eq(argi, ARGC(argv));
    cr_assert_eq(dw_cli_load(cli, env, &conf), DW_CLI_CONTINUE);
    cr_assert_not_null(conf);
    cr_assert_eq(dw_conf_get_int(conf, "pg.connect_timeout_ms"), 2000);
    cr_assert_eq(dw_conf_source(conf, "pg.connect_timeout_ms"), DW_CONF_SRC_FLAG);
    cr_assert_str_eq(dw_conf_get_str(conf, "log.level"), "warn");
    cr_assert_eq(dw_conf_source(conf, "log.level"), DW_CONF_SRC_ENV);
    cr_assert_str_eq(dw_conf_get_str(conf, "log.format"), "json");
    cr_assert_eq(dw_conf_source(conf, "log.format"), DW_CONF_SRC_FILE);
    dw_conf_destroy(conf);
    dw_cli_destroy(cli);
}

Test(cli, later_flags_override_earlier_ones)
{
    char *argv[] = {"dwtest",         "--log-level",          "debug", "-X", "log.level=error",
                    "-Xkafka.acks=1", "--set=kafka.acks=all", NULL};
    char *env[] = {NULL};
    int argi = 1;
    dw_conf_t *conf = NULL;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv), argv, &argi), DW_CLI_CONTINUE);
    cr_assert_eq(dw_cli_load(cli, env, &conf), DW_CLI_CONTINUE);
    cr_assert_str_eq(dw_conf_get_str(conf, "log.level"), "error");
    cr_assert_str_eq(dw_conf_get_str(conf, "kafka.acks"), "all");
    dw_conf_destroy(conf);
    dw_cli_destroy(cli);
}

Test(cli, log_settings_are_applied_after_loading)
{
    char *argv[] = {"dwtest", "--log-level", "error", "--log-format", "json", NULL};
    char *env[] = {NULL};
    int argi = 1;
    dw_conf_t *conf = NULL;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv), argv, &argi), DW_CLI_CONTINUE);
    cr_assert_eq(dw_cli_load(cli, env, &conf), DW_CLI_CONTINUE);
    cr_assert_not(dw_log_enabled(DW_LOG_WARN));
    cr_assert(dw_log_enabled(DW_LOG_ERROR));

    char *line = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&line, &len);
    dw_log_set_output(fp);
    DW_ERROR("test", "hello");
    dw_log_set_output(NULL);
    fclose(fp);
    json_t *obj = json_loads(line, 0, NULL);
    cr_assert_not_null(obj, "not a JSON line: %s", line);
    json_decref(obj);
    free(line);
    dw_conf_destroy(conf);
    dw_cli_destroy(cli);
}

Test(cli, bad_configuration_names_key_and_origin_and_exits_2)
{
    write_config("{\"pg\": {\"connect_timeout_ms\": 5}}");
    char *argv[] = {"dwtest", "-c", cfgpath, "--log-level", "loud", "-X", "kafka.acks=banana",
                    NULL};
    char *env[] = {"DW_LOG_FORMAT=xml", NULL};
    char want[256];
    int argi = 1;
    dw_conf_t *conf = NULL;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv), argv, &argi), DW_CLI_CONTINUE);
    cr_assert_eq(dw_cli_load(cli, env, &conf), DW_EXIT_USAGE);
    cr_assert_null(conf);
    captured();
    snprintf(want, sizeof(want),
             "dwtest: %s: pg.connect_timeout_ms: 5 is out of range [100, 600000]\n", cfgpath);
    ASSERT_CONTAINS(err_buf, want);
    ASSERT_CONTAINS(err_buf, "dwtest: environment DW_LOG_FORMAT: log.format: 'xml' is not one "
                             "of text|json\n");
    ASSERT_CONTAINS(err_buf, "dwtest: --log-level: log.level: 'loud' is not one of "
                             "debug|info|warn|error\n");
    ASSERT_CONTAINS(err_buf, "dwtest: --set: kafka.acks: ");
    dw_cli_destroy(cli);
}

Test(cli, unreadable_config_file_exits_2)
{
    char *argv[] = {"dwtest", "--config", "/nonexistent/dw.json", NULL};
    char *env[] = {NULL};
    int argi = 1;
    dw_conf_t *conf = NULL;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv), argv, &argi), DW_CLI_CONTINUE);
    cr_assert_eq(dw_cli_load(cli, env, &conf), DW_EXIT_USAGE);
    captured();
    ASSERT_CONTAINS(err_buf, "/nonexistent/dw.json");
    dw_cli_destroy(cli);
}

Test(cli, dump_config_prints_the_effective_configuration_and_exits_0)
{
    char *argv[] = {"dwtest", "--dump-config",
                    "-X",     "pg.dsn=host=db password=Sup3rSecret",
                    "-X",     "kafka.sasl.password=KafkaSecret",
                    NULL};
    char *env[] = {"DW_KAFKA_BOOTSTRAP=localhost:9092", NULL};
    int argi = 1;
    dw_conf_t *conf = NULL;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv), argv, &argi), DW_CLI_CONTINUE);
    cr_assert(dw_cli_dump_requested(cli));
    cr_assert_eq(dw_cli_load(cli, env, &conf), DW_EXIT_OK);
    cr_assert_null(conf);
    captured();
    ASSERT_CONTAINS(out_buf, "kafka.bootstrap.servers = localhost:9092  # env\n");
    ASSERT_CONTAINS(out_buf, "log.level = info  # default\n");
    ASSERT_CONTAINS(out_buf, "pg.dsn = host=db password=***  # flag\n");
    ASSERT_CONTAINS(out_buf, "kafka.sasl.password = ***  # flag\n");
    cr_assert_null(strstr(out_buf, "Sup3rSecret"));
    cr_assert_null(strstr(out_buf, "KafkaSecret"));
    dw_cli_destroy(cli);
}

Test(cli, dump_config_json_is_a_json_object)
{
    char *argv[] = {"dwtest", "--dump-config=json", NULL};
    char *env[] = {NULL};
    int argi = 1;
    dw_conf_t *conf = NULL;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv), argv, &argi), DW_CLI_CONTINUE);
    cr_assert_eq(dw_cli_load(cli, env, &conf), DW_EXIT_OK);
    captured();
    json_t *root = json_loads(out_buf, 0, NULL);
    cr_assert(json_is_object(root), "%s", out_buf);
    cr_assert_str_eq(json_string_value(json_object_get(root, "log.level")), "info");
    json_decref(root);
    dw_cli_destroy(cli);
}

Test(cli, help_config_lists_the_keys)
{
    char *argv[] = {"dwtest", "--help-config", NULL};
    int argi = 1;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv), argv, &argi), DW_EXIT_OK);
    captured();
    ASSERT_CONTAINS(out_buf, "pg.connect_timeout_ms (integer");
    ASSERT_CONTAINS(out_buf, "kafka.<property>");
    dw_cli_destroy(cli);
}

/* A dwctl-like program: global options, then "topics create [--partitions N] MAP...". */
struct topics_opts {
    long partitions;
    bool dry_run;
};

enum { OPT_DRY_RUN = 0x100 };

static dw_err_t topics_option(int opt, const char *arg, void *opaque, char *errstr,
                              size_t errstr_size)
{
    struct topics_opts *o = opaque;
    char *end = NULL;
    switch (opt) {
    case 'p':
        o->partitions = strtol(arg, &end, 10);
        if (!*arg || *end || o->partitions < 1)
            return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                           "--partitions expects a positive integer, not '%s'", arg);
        return DW_OK;
    case OPT_DRY_RUN:
        o->dry_run = true;
        return DW_OK;
    default:
        return DW_ERR_INTERNAL;
    }
}

static const struct option topics_longopts[] = {
    {"partitions", required_argument, NULL, 'p'},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {NULL, 0, NULL, 0},
};

Test(cli, subcommands_parse_their_own_options)
{
    write_config("{\"log\": {\"level\": \"warn\"}}");
    char *argv[] = {"dwctl",        "--config", cfgpath,     "topics", "create",
                    "--partitions", "3",        "--dry-run", "-X",     "kafka.acks=all",
                    "customers",    "vendors",  NULL};
    char *env[] = {NULL};
    dw_cli_spec_t top = {.synopsis = "[OPTIONS] COMMAND [ARGS...]", .min_args = 1, .max_args = -1};
    struct topics_opts o = {0};
    dw_cli_spec_t create = {.name = "topics create",
                            .synopsis = "[--partitions N] [--dry-run] MAP...",
                            .shortopts = "p:",
                            .longopts = topics_longopts,
                            .on_option = topics_option,
                            .opaque = &o,
                            .min_args = 1,
                            .max_args = -1};
    int argi = 1;
    dw_conf_t *conf = NULL;
    dw_cli_t *cli = new_cli();

    cr_assert_eq(dw_cli_parse(cli, &top, ARGC(argv), argv, &argi), DW_CLI_CONTINUE);
    cr_assert_eq(argi, 3, "stops at the command");
    cr_assert_str_eq(argv[argi], "topics");
    argi++; /* dwctl dispatches on "topics", then on "create" */
    cr_assert_str_eq(argv[argi], "create");
    argi++; /* the options of "create" follow its word */
    cr_assert_eq(dw_cli_parse(cli, &create, ARGC(argv), argv, &argi), DW_CLI_CONTINUE);
    cr_assert_eq(argi, 10);
    cr_assert_str_eq(argv[argi], "customers");
    cr_assert_eq(o.partitions, 3);
    cr_assert(o.dry_run);
    cr_assert_str_eq(dw_cli_config_path(cli), cfgpath);

    cr_assert_eq(dw_cli_load(cli, env, &conf), DW_CLI_CONTINUE);
    cr_assert_str_eq(dw_conf_get_str(conf, "log.level"), "warn");
    cr_assert_str_eq(dw_conf_get_str(conf, "kafka.acks"), "all",
                     "common options after the "
                     "command count too");
    dw_conf_destroy(conf);
    dw_cli_destroy(cli);
}

Test(cli, subcommand_help_and_errors_name_the_subcommand)
{
    struct topics_opts o = {0};
    dw_cli_spec_t create = {.name = "topics create",
                            .synopsis = "[--partitions N] MAP...",
                            .shortopts = "p:",
                            .longopts = topics_longopts,
                            .on_option = topics_option,
                            .opaque = &o,
                            .min_args = 1,
                            .max_args = -1};
    char *help[] = {"dwctl", "topics", "create", "-h", NULL};
    char *bad[] = {"dwctl", "topics", "create", "--partitions", "zero", "m", NULL};
    char *noarg[] = {"dwctl", "topics", "create", "--dry-run", NULL};
    int argi = 3;
    dw_cli_t *cli = dw_cli_new("dwctl", NULL, NULL);
    dw_cli_set_streams(cli, out_fp, err_fp);

    cr_assert_eq(dw_cli_parse(cli, &create, ARGC(help), help, &argi), DW_EXIT_OK);
    captured();
    ASSERT_CONTAINS(out_buf, "Usage: dwctl topics create [--partitions N] MAP...");

    argi = 3;
    cr_assert_eq(dw_cli_parse(cli, &create, ARGC(bad), bad, &argi), DW_EXIT_USAGE);
    captured();
    ASSERT_CONTAINS(err_buf, "dwctl topics create: --partitions expects a positive integer, "
                             "not 'zero'");

    argi = 3;
    cr_assert_eq(dw_cli_parse(cli, &create, ARGC(noarg), noarg, &argi), DW_EXIT_USAGE);
    captured();
    ASSERT_CONTAINS(err_buf, "dwctl topics create: missing argument");
    dw_cli_destroy(cli);
}

Test(cli, double_dash_ends_the_options)
{
    char *argv[] = {"dwctl", "--", "-not-an-option", NULL};
    dw_cli_spec_t top = {.min_args = 1, .max_args = -1};
    int argi = 1;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, &top, ARGC(argv), argv, &argi), DW_CLI_CONTINUE);
    cr_assert_eq(argi, 2);
    dw_cli_destroy(cli);
}

Test(cli, a_binary_option_clashing_with_a_common_one_is_refused)
{
    static const struct option clash[] = {{"config", required_argument, NULL, 'k'},
                                          {NULL, 0, NULL, 0}};
    char *argv[] = {"dwtest", NULL};
    dw_cli_spec_t letter = {.shortopts = "c:", .on_option = topics_option};
    dw_cli_spec_t longname = {.longopts = clash, .on_option = topics_option};
    int argi = 1;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, &letter, ARGC(argv), argv, &argi), DW_EXIT_FAILURE);
    argi = 1;
    cr_assert_eq(dw_cli_parse(cli, &longname, ARGC(argv), argv, &argi), DW_EXIT_FAILURE);
    dw_cli_destroy(cli);
}

Test(cli, exit_codes_follow_the_error_class)
{
    cr_assert_eq(dw_cli_exit_code(DW_OK), 0);
    cr_assert_eq(dw_cli_exit_code(DW_ERR_CONFIG), 2);
    cr_assert_eq(dw_cli_exit_code(DW_ERR_INVALID_ARG), 2);
    cr_assert_eq(dw_cli_exit_code(DW_ERR_PARSE), 2);
    cr_assert_eq(dw_cli_exit_code(DW_ERR_KAFKA), 1);
    cr_assert_eq(dw_cli_exit_code(DW_ERR_TIMEOUT), 1);
}

Test(cli, build_conf_rebuilds_quietly_for_a_reload)
{
    write_config("{\"log\": {\"level\": \"debug\"}}");
    char *argv[] = {"dwtest", "-c", cfgpath, NULL};
    char *env[] = {NULL};
    char errstr[512];
    int argi = 1;
    dw_cli_t *cli = new_cli();
    cr_assert_eq(dw_cli_parse(cli, NULL, ARGC(argv), argv, &argi), DW_CLI_CONTINUE);
    dw_conf_t *conf = dw_cli_build_conf(cli, env, errstr, sizeof(errstr));
    cr_assert_not_null(conf, "%s", errstr);
    cr_assert_str_eq(dw_conf_get_str(conf, "log.level"), "debug");
    dw_conf_destroy(conf);

    write_config("{\"log\": {\"level\": \"chatty\"}}");
    cr_assert_null(dw_cli_build_conf(cli, env, errstr, sizeof(errstr)));
    ASSERT_CONTAINS(errstr, "log.level: 'chatty'");
    captured();
    cr_assert_eq(err_len, 0, "quiet: the caller decides what to print");
    dw_cli_destroy(cli);
}
