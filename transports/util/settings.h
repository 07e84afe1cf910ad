/*
 * Settings of the built-in transports, shared by all of them (the idea of
 * libfabric's prov/util): each transport describes its variables in one
 * table of rows {field, default, kind, offset, bounds, doc}, and one loader
 * reads RAGG_<PREFIX>_<FIELD> from the environment over the defaults into
 * the transport's config struct. The size grammar here is also the core's
 * (src/settings.c), so there is one in the library.
 *
 * This folder includes only standard headers, the public ragg headers and
 * src/compiler.h; it knows no transport's internals.
 */
#ifndef RAGG_TP_UTIL_SETTINGS_H
#define RAGG_TP_UTIL_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>

enum ragg__tp_kind {
	RAGG__TP_SIZE, /* size_t: decimal bytes, optional K, M or G suffix */
	RAGG__TP_INT, /* long: decimal integer */
	RAGG__TP_BOOL, /* bool: 1 y yes on true / 0 n no off false */
	RAGG__TP_STRING, /* char[width]: text shorter than the field */
	RAGG__TP_DOUBLE, /* double: finite decimal number (the core's rows) */
	RAGG__TP_CHOICE, /* long: index of the value in a list of names (the core's rows) */
};

/* Flags of a value's spec. */
#define RAGG__TP_AUTO     0x1u /* "auto" is accepted, stored as -1 (an INT) */
#define RAGG__TP_OPEN_MAX 0x2u /* a DOUBLE must stay below dmax, not reach it */

/*
 * What a value may be, for the one parser below: a transport row gives kind,
 * width and the integer bounds; the core's rows (src/settings.c) also use
 * the floating-point bounds, the list of a choice and the flags.
 */
struct ragg__tp_spec {
	enum ragg__tp_kind kind;
	size_t width; /* of the field it is stored in */
	long long min, max; /* SIZE, INT */
	double dmin, dmax; /* DOUBLE */
	const char *choices; /* CHOICE: "sgd|momentum|adam", case-insensitive */
	unsigned flags;
};

struct ragg__tp_setting {
	const char *field; /* <FIELD> of RAGG_<PREFIX>_<FIELD>; NULL ends a table */
	const char *def; /* default, as text */
	enum ragg__tp_kind kind;
	size_t offset; /* of the field in the transport's config struct */
	size_t width; /* sizeof that field: checked against the kind, a string's capacity */
	long long min, max; /* accepted range of a size or an int (sizes: 0 <= min) */
	const char *doc;
};

/* offset and width of a field of a config struct, for a row. */
#define RAGG__TP_FIELD(type, member) offsetof(type, member), sizeof(((type *)0)->member)

/* Longest variable name a row may give, with its terminating NUL. */
#define RAGG__TP_VAR_MAX 64

/* Receives each error message of the loader, complete, without a newline. */
typedef void ragg__tp_log_fn(void *arg, const char *msg);

/*
 * Fill cfg (cfg_size bytes) from the table rows: every row's variable from
 * the environment, or its default when unset or empty; bytes no row covers
 * are zero. cfg is written only on success. 0, RAGG_ERR_CONFIG for a bad
 * value, -EINVAL for a bad row, or -ENOMEM; the message (naming the
 * variable, the value and what is expected) goes to log(log_arg, msg).
 */
int ragg__tp_settings_load(const char *prefix, const struct ragg__tp_setting *rows, void *cfg,
                           size_t cfg_size, ragg__tp_log_fn *log, void *log_arg);

/*
 * One meaning for an empty value, everywhere in the library: a variable
 * that is unset or set to the empty string leaves the setting at its
 * default. The value in force of env (getenv's result) and def.
 */
const char *ragg__tp_value_or_default(const char *env, const char *def);

/*
 * Check text against spec and store it at out (spec->width bytes) when out
 * is not NULL. 0, or RAGG_ERR_CONFIG (-EINVAL for a spec that is not sane)
 * with the message, naming var, given to log.
 */
int ragg__tp_value_parse(const char *var, const struct ragg__tp_spec *spec, const char *text,
                         void *out, ragg__tp_log_fn *log, void *log_arg);

/*
 * The value in force of one row: the environment's if set and not empty,
 * else the default. Its variable name is written to var.
 */
const char *ragg__tp_setting_value(const char *prefix, const struct ragg__tp_setting *row,
                                   char var[RAGG__TP_VAR_MAX]);

/*
 * Check text as a value of row, and store it at cfg + row->offset when cfg is
 * not NULL. 0, or RAGG_ERR_CONFIG (-EINVAL for a bad row) with the message
 * given to log.
 */
int ragg__tp_setting_parse(const char *var, const struct ragg__tp_setting *row, const char *text,
                           void *cfg, ragg__tp_log_fn *log, void *log_arg);

/*
 * The grammars, without logging. *out is written only on success; -EINVAL
 * for text that is not of the grammar, -ERANGE for a size that does not fit.
 * A size is decimal digits, then optionally K, M or G (powers of 1024), then
 * optionally i (after a suffix) and B, all case-insensitive: 4096, 64K, 4MiB,
 * 2mb, 512B.
 */
int ragg__tp_parse_size(const char *text, size_t *out);
int ragg__tp_parse_int(const char *text, long *out);
int ragg__tp_parse_bool(const char *text, bool *out);
/* A finite number (strtod's grammar, no inf or nan). */
int ragg__tp_parse_double(const char *text, double *out);
/* The index of text in choices ("a|b|c"), case-insensitive. */
int ragg__tp_parse_choice(const char *text, const char *choices, long *out);

/* Each transport's table, defined in its config.c; the registry
 * (transports/registry.h) lists those built in. */
extern const struct ragg__tp_setting ragg__tp_tcp_settings[];
extern const struct ragg__tp_setting ragg__tp_shm_settings[];
extern const struct ragg__tp_setting ragg__tp_verbs_settings[];

#endif
