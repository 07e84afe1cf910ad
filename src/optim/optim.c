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

int ragg__optim_conf_read(const struct ragg_opts *o, struct ragg__optim_conf *out)
{
	struct ragg__optim_conf c = { .lr = o->lr, .momentum = o->momentum };

	if (!(c.optim = ragg__optim_by_id(o->optimizer))) {
		ragg__error("optimizer %d: not one of sgd, momentum, adam, adamw",
		            (int)o->optimizer);
		return RAGG_ERR_CONFIG;
	}
	/* Their bounds were checked when they were set (src/settings.c). */
	c.beta1 = (float)ragg__opt_double(o, "RAGG_BETA1");
	c.beta2 = (float)ragg__opt_double(o, "RAGG_BETA2");
	c.eps = (float)ragg__opt_double(o, "RAGG_EPS");
	c.weight_decay = (float)ragg__opt_double(o, "RAGG_WEIGHT_DECAY");
	*out = c;
	return 0;
}
