/*
 * The transports' settings loader and the setting grammars (see settings.h).
 *
 * A row is checked when it is used (kind against field width, bounds,
 * offset within the struct), so a table that does not match its struct
 * fails the open with -EINVAL and a message rather than writing past a
 * field.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compiler.h"
#include "settings.h"

#include <ragg/ragg.h>

int ragg__tp_parse_size(const char *text, size_t *out)
{
	/* A digit first: no sign (strtoull would wrap "-1"), no space, not empty. */
	if (!isdigit((unsigned char)text[0]))
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno)
		return -ERANGE;
	unsigned shift = 0;
	switch (toupper((unsigned char)*end)) {
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	default:
		break;
	}
	if (shift) {
		end++;
		if (toupper((unsigned char)*end) == 'I')
			end++;
	}
	if (toupper((unsigned char)*end) == 'B')
		end++;
	if (*end)
		return -EINVAL;
	if (v > (SIZE_MAX >> shift))
		return -ERANGE;
	*out = (size_t)v << shift;
	return 0;
}

int ragg__tp_parse_int(const char *text, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (end == text || *end)
		return -EINVAL;
	if (errno)
		return -ERANGE;
	*out = v;
	return 0;
}

int ragg__tp_parse_bool(const char *text, bool *out)
{
	static const char *const yes[] = { "1", "y", "yes", "on", "true" };
	static const char *const no[] = { "0", "n", "no", "off", "false" };
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(yes); i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

__attribute__((format(printf, 4, 5))) static int fail(ragg__tp_log_fn *log, void *log_arg, int rc,
                                                      const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log(log_arg, msg);
	return rc;
}

static size_t kind_width(const struct ragg__tp_setting *row)
{
	switch (row->kind) {
	case RAGG__TP_SIZE:
		return sizeof(size_t);
	case RAGG__TP_INT:
		return sizeof(long);
	case RAGG__TP_BOOL:
		return sizeof(bool);
	case RAGG__TP_STRING:
		return row->width ? row->width : 1; /* any capacity of at least one */
	default:
		return SIZE_MAX; /* no field is this wide */
	}
}

static bool row_is_sane(const struct ragg__tp_setting *row)
{
	if (row->width != kind_width(row) || row->min > row->max)
		return false;
	if (row->kind == RAGG__TP_SIZE && row->min < 0)
		return false;
	if (row->kind == RAGG__TP_INT && (row->min < LONG_MIN || row->max > LONG_MAX))
		return false;
	return true;
}

int ragg__tp_setting_parse(const char *var, const struct ragg__tp_setting *row, const char *text,
                           void *cfg, ragg__tp_log_fn *log, void *log_arg)
{
	char *field = cfg ? (char *)cfg + row->offset : NULL;
	size_t size;
	long l;
	bool b;

	if (!row_is_sane(row))
		return fail(log, log_arg, -EINVAL,
		            "%s: the settings table's row does not match its field", var);
	switch (row->kind) {
	case RAGG__TP_SIZE:
		/* min and max are >= 0 here (row_is_sane). */
		if (ragg__tp_parse_size(text, &size) || size < (unsigned long long)row->min ||
		    size > (unsigned long long)row->max)
			goto err_size;
		if (field)
			memcpy(field, &size, sizeof(size));
		return 0;
	case RAGG__TP_INT:
		if (ragg__tp_parse_int(text, &l) || l < row->min || l > row->max)
			return fail(log, log_arg, RAGG_ERR_CONFIG,
			            "%s=\"%s\": expected an integer in [%lld, %lld]", var, text,
			            row->min, row->max);
		if (field)
			memcpy(field, &l, sizeof(l));
		return 0;
	case RAGG__TP_BOOL:
		if (ragg__tp_parse_bool(text, &b))
			return fail(
			    log, log_arg, RAGG_ERR_CONFIG,
			    "%s=\"%s\": expected a boolean (1, y, yes, on, true or 0, n, no, "
			    "off, false)",
			    var, text);
		if (field)
			memcpy(field, &b, sizeof(b));
		return 0;
	case RAGG__TP_STRING:
	default:
		if (strlen(text) >= row->width)
			return fail(log, log_arg, RAGG_ERR_CONFIG,
			            "%s=\"%s\": expected at most %zu characters", var, text,
			            row->width - 1);
		if (field)
			memcpy(field, text, strlen(text) + 1);
		return 0;
	}

err_size:
	if (row->max == LLONG_MAX && row->min == 0)
		return fail(log, log_arg, RAGG_ERR_CONFIG,
		            "%s=\"%s\": expected a size (bytes, or with a K, M or G suffix)", var,
		            text);
	if (row->max == LLONG_MAX)
		return fail(log, log_arg, RAGG_ERR_CONFIG,
		            "%s=\"%s\": expected a size (bytes, or with a K, M or G suffix) of at "
		            "least %lld",
		            var, text, row->min);
	return fail(
	    log, log_arg, RAGG_ERR_CONFIG,
	    "%s=\"%s\": expected a size in [%lld, %lld] (bytes, or with a K, M or G suffix)", var,
	    text, row->min, row->max);
}

const char *ragg__tp_setting_value(const char *prefix, const struct ragg__tp_setting *row,
                                   char var[RAGG__TP_VAR_MAX])
{
	snprintf(var, RAGG__TP_VAR_MAX, "RAGG_%s_%s", prefix, row->field);
	const char *env = getenv(var);
	return env && *env ? env : row->def;
}

int ragg__tp_settings_load(const char *prefix, const struct ragg__tp_setting *rows, void *cfg,
                           size_t cfg_size, ragg__tp_log_fn *log, void *log_arg)
{
	char var[RAGG__TP_VAR_MAX];
	int rc = 0;

	/* Filled aside so that cfg is untouched when a later row fails. */
	void *c = calloc(1, cfg_size);
	if (!c)
		return fail(log, log_arg, -ENOMEM, "RAGG_%s_*: no memory for the settings", prefix);
	for (const struct ragg__tp_setting *row = rows; row->field; row++) {
		const char *value = ragg__tp_setting_value(prefix, row, var);
		if (row->offset > cfg_size || row->width > cfg_size - row->offset) {
			rc = fail(log, log_arg, -EINVAL,
			          "%s: the settings table's row is outside the struct", var);
			goto err_free;
		}
		rc = ragg__tp_setting_parse(var, row, value, c, log, log_arg);
		if (rc)
			goto err_free;
	}
	memcpy(cfg, c, cfg_size);
err_free:
	free(c);
	return rc;
}
