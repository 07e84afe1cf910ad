/*
 * Every setting is one row of one table {name, default, doc}; ragg-info
 * prints the table and ragg(7) documents each row. Values come from the
 * environment (RAGG_<FIELD>) over the defaults.
 */
#ifndef RAGG_SETTINGS_H
#define RAGG_SETTINGS_H

#include <stddef.h>

#include <ragg/ragg.h>

struct ragg__setting {
	const char *name; /* environment variable */
	const char *def; /* default, as text */
	const char *doc;
};

/* NULL-terminated. */
extern const struct ragg__setting ragg__settings[];

/* The value in force: the environment's, else the default. */
const char *ragg__setting_value(const char *name);

/* Parsers for setting values; 0 or RAGG_ERR_CONFIG (logged with the name). */
int ragg__parse_size(const char *name, const char *text, size_t *out);
int ragg__parse_int(const char *name, const char *text, long min, long max, long *out);
int ragg__parse_float(const char *name, const char *text, float *out);

/* RAGG_AGG_THREADS as the engine takes it: "auto" is -1. */
int ragg__agg_threads(long *out);

/* Set the logging level from RAGG_LOG. */
void ragg__logging_setup(void);

/* Check opts for consistency; logs what is wrong. */
int ragg__opts_validate(const struct ragg_opts *opts);

#endif
