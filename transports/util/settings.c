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
#include <math.h>
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

int ragg__tp_parse_double(const char *text, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(text, &end);
	if (end == text || *end || isspace((unsigned char)text[0]))
		return -EINVAL;
	if (errno || !isfinite(v))
		return -ERANGE;
	*out = v;
	return 0;
}

int ragg__tp_parse_choice(const char *text, const char *choices, long *out)
{
	size_t n = strlen(text);
	long i = 0;
	for (const char *c = choices; c && *c; i++) {
		const char *bar = strchr(c, '|');
		size_t len = bar ? (size_t)(bar - c) : strlen(c);
		if (len == n && n && strncasecmp(c, text, n) == 0) {
			*out = i;
			return 0;
		}
		if (!bar)
			break;
		c = bar + 1;
	}
	return -EINVAL;
}

const char *ragg__tp_value_or_default(const char *env, const char *def)
{
	return env && *env ? env : def;
}

__attribute__((format(printf, 4, 5))) static int fail(ragg__tp_log_fn *log, void *log_arg, int rc,
                                                      const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log)
		log(log_arg, msg);
	return rc;
}

static size_t kind_width(const struct ragg__tp_spec *spec)
{
	switch (spec->kind) {
	case RAGG__TP_SIZE:
		return sizeof(size_t);
	case RAGG__TP_INT:
	case RAGG__TP_CHOICE:
		return sizeof(long);
	case RAGG__TP_BOOL:
		return sizeof(bool);
	case RAGG__TP_DOUBLE:
		return sizeof(double);
	case RAGG__TP_STRING:
		return spec->width ? spec->width : 1; /* any capacity of at least one */
	default:
		return SIZE_MAX; /* no field is this wide */
	}
}

static bool spec_is_sane(const struct ragg__tp_spec *spec)
{
	if (spec->width != kind_width(spec))
		return false;
	switch (spec->kind) {
	case RAGG__TP_SIZE:
		return spec->min >= 0 && spec->min <= spec->max;
	case RAGG__TP_INT:
		return spec->min <= spec->max && spec->min >= LONG_MIN && spec->max <= LONG_MAX;
	case RAGG__TP_DOUBLE:
		return spec->dmin <= spec->dmax;
	case RAGG__TP_CHOICE:
		return spec->choices && *spec->choices;
	default:
		return true;
	}
}

static int size_error(const char *var, const struct ragg__tp_spec *spec, const char *text,
                      ragg__tp_log_fn *log, void *log_arg)
{
	if (spec->max == LLONG_MAX && spec->min == 0)
		return fail(log, log_arg, RAGG_ERR_CONFIG,
		            "%s=\"%s\": expected a size (bytes, or with a K, M or G suffix)", var,
		            text);
	if (spec->max == LLONG_MAX)
		return fail(log, log_arg, RAGG_ERR_CONFIG,
		            "%s=\"%s\": expected a size (bytes, or with a K, M or G suffix) of at "
		            "least %lld",
		            var, text, spec->min);
	return fail(
	    log, log_arg, RAGG_ERR_CONFIG,
	    "%s=\"%s\": expected a size in [%lld, %lld] (bytes, or with a K, M or G suffix)", var,
	    text, spec->min, spec->max);
}

int ragg__tp_value_parse(const char *var, const struct ragg__tp_spec *spec, const char *text,
                         void *out, ragg__tp_log_fn *log, void *log_arg)
{
	size_t size;
	long l;
	bool b;
	double d;

	if (!spec_is_sane(spec))
		return fail(log, log_arg, -EINVAL,
		            "%s: the settings table's row does not match its field", var);
	switch (spec->kind) {
	case RAGG__TP_SIZE:
		/* min and max are >= 0 here (spec_is_sane). */
		if (ragg__tp_parse_size(text, &size) || size < (unsigned long long)spec->min ||
		    size > (unsigned long long)spec->max)
			return size_error(var, spec, text, log, log_arg);
		if (out)
			memcpy(out, &size, sizeof(size));
		return 0;
	case RAGG__TP_INT:
		if ((spec->flags & RAGG__TP_AUTO) && strcasecmp(text, "auto") == 0)
			l = -1;
		else if (ragg__tp_parse_int(text, &l) || l < spec->min || l > spec->max)
			return fail(log, log_arg, RAGG_ERR_CONFIG,
			            "%s=\"%s\": expected %san integer in [%lld, %lld]", var, text,
			            spec->flags & RAGG__TP_AUTO ? "auto or " : "", spec->min,
			            spec->max);
		if (out)
			memcpy(out, &l, sizeof(l));
		return 0;
	case RAGG__TP_BOOL:
		if (ragg__tp_parse_bool(text, &b))
			return fail(
			    log, log_arg, RAGG_ERR_CONFIG,
			    "%s=\"%s\": expected a boolean (1, y, yes, on, true or 0, n, no, "
			    "off, false)",
			    var, text);
		if (out)
			memcpy(out, &b, sizeof(b));
		return 0;
	case RAGG__TP_DOUBLE:
		if (ragg__tp_parse_double(text, &d) || d < spec->dmin || d > spec->dmax ||
		    ((spec->flags & RAGG__TP_OPEN_MAX) && d >= spec->dmax))
			return fail(log, log_arg, RAGG_ERR_CONFIG,
			            "%s=\"%s\": expected a number in [%g, %g%c", var, text,
			            spec->dmin, spec->dmax,
			            spec->flags & RAGG__TP_OPEN_MAX ? ')' : ']');
		if (out)
			memcpy(out, &d, sizeof(d));
		return 0;
	case RAGG__TP_CHOICE:
		if (ragg__tp_parse_choice(text, spec->choices, &l))
			return fail(log, log_arg, RAGG_ERR_CONFIG, "%s=\"%s\": expected one of %s",
			            var, text, spec->choices);
		if (out)
			memcpy(out, &l, sizeof(l));
		return 0;
	case RAGG__TP_STRING:
	default:
		if (strlen(text) >= spec->width)
			return fail(log, log_arg, RAGG_ERR_CONFIG,
			            "%s=\"%s\": expected at most %zu characters", var, text,
			            spec->width - 1);
		if (out)
			memcpy(out, text, strlen(text) + 1);
		return 0;
	}
}

int ragg__tp_setting_parse(const char *var, const struct ragg__tp_setting *row, const char *text,
                           void *cfg, ragg__tp_log_fn *log, void *log_arg)
{
	/* A transport's row is a spec with integer bounds only. */
	const struct ragg__tp_spec spec = {
		.kind = row->kind,
		.width = row->width,
		.min = row->min,
		.max = row->max,
	};
	if (row->kind == RAGG__TP_DOUBLE || row->kind == RAGG__TP_CHOICE)
		return fail(log, log_arg, -EINVAL,
		            "%s: the settings table's row does not match its field", var);
	return ragg__tp_value_parse(var, &spec, text, cfg ? (char *)cfg + row->offset : NULL, log,
	                            log_arg);
}

const char *ragg__tp_setting_value(const char *prefix, const struct ragg__tp_setting *row,
                                   char var[RAGG__TP_VAR_MAX])
{
	snprintf(var, RAGG__TP_VAR_MAX, "RAGG_%s_%s", prefix, row->field);
	return ragg__tp_value_or_default(getenv(var), row->def);
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
