/*
 * The optimizer table and the one place the optimizer's settings are read.
 */
#include <strings.h>

#include "log.h"
#include "optim/optim.h"
#include "settings.h"

static const struct ragg__optim *const table[] = {
	&ragg__optim_sgd,
	&ragg__optim_momentum,
	&ragg__optim_adam,
	&ragg__optim_adamw,
};

const struct ragg__optim *const *ragg__optim_table(size_t *n)
{
	*n = sizeof(table) / sizeof(table[0]);
	return table;
}

const struct ragg__optim *ragg__optim_find(const char *name)
{
	for (size_t i = 0; name && i < sizeof(table) / sizeof(table[0]); i++)
		if (strcasecmp(table[i]->name, name) == 0)
			return table[i];
	return NULL;
}

const struct ragg__optim *ragg__optim_by_id(enum ragg_optimizer id)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (table[i]->id == id)
			return table[i];
	return NULL;
}

/* A float setting in [lo, hi) (hi_open) or [lo, hi]. */
static int read_float(const char *name, float lo, float hi, int hi_open, float *out)
{
	const char *text = ragg__setting_value(name);
	float v;
	int rc = ragg__parse_float(name, text, &v);
	if (rc)
		return rc;
	if (v < lo || v > hi || (hi_open && v == hi)) {
		ragg__error("%s=\"%s\": expected a number in [%g, %g%c", name, text, (double)lo,
		            (double)hi, hi_open ? ')' : ']');
		return RAGG_ERR_CONFIG;
	}
	*out = v;
	return 0;
}

int ragg__optim_conf_read(const struct ragg_opts *o, struct ragg__optim_conf *out)
{
	struct ragg__optim_conf c = { .lr = o->lr, .momentum = o->momentum };
	int rc;

	if (!(c.optim = ragg__optim_by_id(o->optimizer))) {
		ragg__error("optimizer %d: not one of sgd, momentum, adam, adamw",
		            (int)o->optimizer);
		return RAGG_ERR_CONFIG;
	}
	if ((rc = read_float("RAGG_BETA1", 0.0f, 1.0f, 1, &c.beta1)) ||
	    (rc = read_float("RAGG_BETA2", 0.0f, 1.0f, 1, &c.beta2)) ||
	    (rc = read_float("RAGG_EPS", 0.0f, 1.0f, 0, &c.eps)) ||
	    (rc = read_float("RAGG_WEIGHT_DECAY", 0.0f, 1e6f, 0, &c.weight_decay)))
		return rc;
	*out = c;
	return 0;
}
