/*
 * dw_config: the declarative configuration of a dwfleet binary.
 *
 * Each binary declares one table of dw_conf_def_t (name, type, default, range, description).
 * Values are applied in order: defaults, then the JSON config file (--config FILE; nested objects
 * flatten to dotted names: {"pg": {"dsn": "..."}} is "pg.dsn"), then DW_* environment variables,
 * then command-line flags. A later source overrides an earlier one. Every value is checked when it
 * is set; a bad value is an error that names the key and where it came from
 * ("/etc/dw.json: pg.connect_timeout_ms: ..." or "environment DW_LOG_LEVEL: ...").
 *
 * "kafka.<property>" keys pass through to librdkafka: each is checked with rd_kafka_conf_set() on
 * a scratch configuration when set, so librdkafka's own error text reaches the user.
 *
 * Environment: a declared key "a.b_c" is read from DW_A_B_C (upper case, '.' -> '_'), and from its
 * declared alias (e.g. DW_KAFKA_BOOTSTRAP for kafka.bootstrap.servers). Any other DW_KAFKA_X_Y is
 * the librdkafka property kafka.x.y. Other DW_* variables that match nothing are ignored (the
 * fleet shares one environment), file keys that match nothing are errors, except under the
 * sections of other components the binary names as foreign (the fleet shares one file).
 */
#ifndef DW_CONFIG_H
#define DW_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "dw_err.h"

typedef enum {
    DW_CONF_STR = 0,
    DW_CONF_INT,    /* long long; range [min, max] when min < max */
    DW_CONF_DOUBLE, /* double; range [min, max] when min < max */
    DW_CONF_BOOL,   /* true/false, 1/0, yes/no, on/off; JSON booleans in the file */
    DW_CONF_ENUM,   /* one of choices: "text|json" */
} dw_conf_type_t;

#define DW_CONF_F_SECRET   0x1 /* masked in --dump-config and registered with dw_log */
#define DW_CONF_F_REQUIRED 0x2 /* dw_conf_check() fails when unset */
#define DW_CONF_F_DSN      0x4 /* a DSN or URL: only its password part is masked in dumps and logs */

typedef struct dw_conf_def_s {
    const char *name;    /* dotted; one segment may be "*": "maps.*.partitions" */
    dw_conf_type_t type;
    const char *defval;  /* default as text; NULL = unset */
    double min, max;     /* numeric range, used when min < max */
    const char *choices; /* DW_CONF_ENUM: '|'-separated */
    int flags;           /* DW_CONF_F_* */
    const char *env;     /* an extra environment name, e.g. "DW_KAFKA_BOOTSTRAP"; may be NULL */
    const char *desc;    /* one line for --help and the docs */
} dw_conf_def_t;

/* Ends a definition table. */
#define DW_CONF_END {NULL, DW_CONF_STR, NULL, 0, 0, NULL, 0, NULL, NULL}

typedef enum {
    DW_CONF_SRC_DEFAULT = 0,
    DW_CONF_SRC_FILE,
    DW_CONF_SRC_ENV,
    DW_CONF_SRC_FLAG,
} dw_conf_src_t;

typedef struct dw_conf_s dw_conf_t;

/* The keys every dwfleet binary has: log.level, log.format, kafka.bootstrap.servers,
 * pg.dsn, maps.dir, ... (defined in dw_config.c). */
extern const dw_conf_def_t dw_conf_common_defs[];

/* New configuration holding the defaults of the tables. tables: NULL-terminated list of
 * DW_CONF_END-terminated tables (typically dw_conf_common_defs and the binary's own); borrowed,
 * must outlive the conf (static tables). A name declared twice is an error. foreign: NULL-terminated list of top-level sections owned by other components, whose
 * keys this binary ignores in the shared file (borrowed, may be NULL). NULL on error (errstr). */
dw_conf_t *dw_conf_new(const dw_conf_def_t *const *tables, const char *const *foreign, char *errstr,
                       size_t errstr_size);
void dw_conf_destroy(dw_conf_t *conf);

/* Set one value from text. origin names the source in messages ("--set", "DW_LOG_LEVEL",
 * "/path/file.json"); borrowed. Unknown key, wrong type, out of range, a librdkafka rejection:
 * DW_ERR_CONFIG with "ORIGIN: KEY: reason" in errstr. */
dw_err_t dw_conf_set(dw_conf_t *conf, const char *name, const char *value, dw_conf_src_t src,
                     const char *origin, char *errstr, size_t errstr_size);

/* Load a JSON config file (parsed with JSON_REJECT_DUPLICATES). Unreadable file, bad JSON (with
 * line and column), unknown keys, bad values: DW_ERR_CONFIG; every problem is reported in errstr,
 * one per line. */
dw_err_t dw_conf_load_file(dw_conf_t *conf, const char *path, char *errstr, size_t errstr_size);

/* Apply DW_* variables from envp (NULL-terminated "NAME=value" strings; pass `environ`). */
dw_err_t dw_conf_load_env(dw_conf_t *conf, char *const *envp, char *errstr, size_t errstr_size);

/* After all sources: every DW_CONF_F_REQUIRED key has a value, else DW_ERR_CONFIG naming it. */
dw_err_t dw_conf_check(const dw_conf_t *conf, char *errstr, size_t errstr_size);

/* Getters (name must be declared, or a concrete name matching a pattern, or kafka.*).
 * Strings are borrowed from the conf and valid until the key is set again; NULL when unset. */
const char *dw_conf_get_str(const dw_conf_t *conf, const char *name);
long long dw_conf_get_int(const dw_conf_t *conf, const char *name);
double dw_conf_get_double(const dw_conf_t *conf, const char *name);
bool dw_conf_get_bool(const dw_conf_t *conf, const char *name);
bool dw_conf_is_set(const dw_conf_t *conf, const char *name);
dw_conf_src_t dw_conf_source(const dw_conf_t *conf, const char *name);

/* Call cb for every set key that starts with prefix (e.g. "kafka."), in name order.
 * A non-zero return from cb stops the walk and is returned. */
typedef int(dw_conf_foreach_cb)(const char *name, const char *value, void *opaque);
int dw_conf_foreach(const dw_conf_t *conf, const char *prefix, dw_conf_foreach_cb *cb,
                    void *opaque);

/* True for a key whose value is a secret: declared DW_CONF_F_SECRET, or a kafka.* property whose
 * name holds "password", "secret", ".key.pem", "sasl.oauthbearer.config" or "sasl.jaas". */
bool dw_conf_is_secret(const dw_conf_t *conf, const char *name);

/* Print the effective configuration, one "name = value    # source" line per key (or a JSON
 * object when json), secrets as "***". */
void dw_conf_dump(const dw_conf_t *conf, FILE *out, bool json);

/* Print the table as help text: name, type, default, description. */
void dw_conf_print_help(const dw_conf_t *conf, FILE *out);

/* A copy of dsn with its password parts replaced by "***": the libpq keyword form
 * ("host=h password=PASS"), the URI user info ("scheme://user:PASS@host") and a URI query
 * parameter ("...?password=PASS"). For messages that name a connection string.
 * New string (free() it); NULL when dsn is NULL or on allocation failure. */
char *dw_conf_dsn_mask(const char *dsn);

#endif
