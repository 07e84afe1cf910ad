/*
 * The core's settings: one typed table, each row {name, type, default,
 * bounds, flags, doc}, parsed by the same loader as the transports' tables
 * (transports/util/settings.h): the same grammars, `auto` where a row allows
 * it, and an unset or empty variable meaning the default. ragg_opts_default
 * fills a struct ragg_opts from the environment over the defaults,
 * ragg_opts_set changes one setting by name, ragg-info prints the table and
 * ragg(7) documents each row.
 *
 * A row is stored either in a public field of struct ragg_opts (the fields
 * that existed before the table) or, as text, in the struct's opaque `ext`
 * area; code reads every setting through ragg__opt_* below, never getenv.
 */
#ifndef RAGG_SETTINGS_H
#define RAGG_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ragg/ragg.h>

#include "../transports/util/settings.h"

/* Where a row's value lives. */
enum ragg__opt_field {
	RAGG__OPT_EXT = 0, /* text in opts->ext */
	RAGG__OPT_INT, /* int field, from an INT or CHOICE (an enum) */
	RAGG__OPT_SIZE, /* size_t field */
	RAGG__OPT_FLOAT, /* float field, from a DOUBLE */
	RAGG__OPT_TEXT, /* char[] field, from a STRING */
};

/* Flags of a row. */
#define RAGG__SETTING_JOB_WIDE 0x1u /* every process of the job must agree on it */
#define RAGG__SETTING_SECRET   0x2u /* never printed */

struct ragg__setting {
	const char *name; /* the environment variable, RAGG_<FIELD>; NULL ends the table */
	const char *def; /* default, as text */
	struct ragg__tp_spec spec; /* type and bounds */
	unsigned flags;
	enum ragg__opt_field field;
	size_t offset; /* of the public field */
	const char *doc;
};

/* NULL-terminated, in the order of ragg(7). */
extern const struct ragg__setting ragg__settings[];

/* The row of name, or NULL. */
const struct ragg__setting *ragg__setting_find(const char *name);

/* The value the environment gives a row (its default when unset or empty). */
const char *ragg__setting_env(const struct ragg__setting *s);

/*
 * A setting's value in o, as text (valid until the next call from this
 * thread for a public field's row; for other rows, while o is unchanged).
 * NULL for a name without a row.
 */
const char *ragg__opt_get(const struct ragg_opts *o, const char *name);

/* Typed values of a row of that type; a name without a row, or of another
 * type, is a programming error that yields 0. */
long ragg__opt_long(const struct ragg_opts *o, const char *name); /* INT (auto: -1), CHOICE */
double ragg__opt_double(const struct ragg_opts *o, const char *name);
size_t ragg__opt_size(const struct ragg_opts *o, const char *name);

/*
 * A job-wide row's value in a canonical 64-bit form, the same on every
 * host for the same setting: a size or an integer as itself, a choice as
 * its index, a number as its IEEE double bits, a text as a hash. The text
 * of a canonical value, for messages, is written by ragg__setting_canon_text.
 */
uint64_t ragg__setting_canon(const struct ragg_opts *o, const struct ragg__setting *s);
void ragg__setting_canon_text(const struct ragg__setting *s, uint64_t v, char *buf, size_t len);

/* Parsers for setting values; 0 or RAGG_ERR_CONFIG (logged with the name). */
int ragg__parse_size(const char *name, const char *text, size_t *out);
int ragg__parse_int(const char *name, const char *text, long min, long max, long *out);
int ragg__parse_float(const char *name, const char *text, float *out);

/* Set the logging level from RAGG_LOG in o (NULL: the environment's). */
void ragg__logging_setup(const struct ragg_opts *o);

/* The push codec of o (RAGG_COMPRESS with RAGG_COMPRESS_EF applied);
 * 0 or RAGG_ERR_CONFIG, logged. */
struct ragg__codec_spec;
int ragg__opts_codec(const struct ragg_opts *o, struct ragg__codec_spec *spec);
/* The worker hop's codec of o: RAGG_WORKER_COMPRESS, or the push codec
 * when it says "same"; error feedback as RAGG_COMPRESS_EF says for lossy
 * codecs. 0 or RAGG_ERR_CONFIG, logged. */
int ragg__opts_worker_codec(const struct ragg_opts *o, struct ragg__codec_spec *spec);
/* The pull codec of o (RAGG_COMPRESS_PULL, error feedback as
 * RAGG_COMPRESS_EF says for lossy codecs) and RAGG_COMPRESS_RESYNC;
 * 0 or RAGG_ERR_CONFIG, logged. */
int ragg__opts_pull_codec(const struct ragg_opts *o, struct ragg__codec_spec *spec,
                          uint64_t *resync);

/* Check opts for consistency; logs what is wrong. */
int ragg__opts_validate(const struct ragg_opts *opts);

#endif
